"""Registry credentials and secrets, by reference: the plaintext is read only where it is used."""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from ci.core.errors import UsageError

# Docker Hub's API host; `docker.io` is how users and logins name it.
DOCKER_HUB = "registry-1.docker.io"


@dataclass(frozen=True)
class SecretRef:
    """A secret by reference: `env://NAME` or `file:///path`. The plaintext never enters the pipeline."""

    uri: str

    def __post_init__(self) -> None:
        if not (self.uri.startswith("env://") or self.uri.startswith("file://")):
            raise UsageError(f"secret reference must be env://NAME or file://PATH, got {self.uri!r}")

    @property
    def scheme(self) -> str:
        return self.uri.split("://", 1)[0]

    @property
    def target(self) -> str:
        return self.uri.split("://", 1)[1]


@dataclass(frozen=True)
class RegistryAuth:
    address: str
    username: str
    password: SecretRef


def split_repo(repo: str) -> tuple[str, str]:
    """(registry host, repository path): `host[:port]/path`, or Docker Hub for `user/name`."""
    first, _, rest = repo.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        return (DOCKER_HUB if first == "docker.io" else first), rest
    return DOCKER_HUB, repo if "/" in repo else f"library/{repo}"


def split_reference(ref: str) -> tuple[str, str]:
    """(repository, tag or digest) of `name[:tag][@digest]`: the digest wins, a bare name is `latest`."""
    name, at, digest = ref.partition("@")
    # A colon after the last slash ends the name; one before it belongs to the host's port.
    colon = name.rfind(":")
    tag = "latest"
    if colon > name.rfind("/"):
        name, tag = name[:colon], name[colon + 1 :]
    return name, digest if at else tag


def auth_for(repo: str, auth: RegistryAuth | None) -> RegistryAuth | None:
    """The run's credentials for repo only when repo is on their registry: never sent to another host."""
    if auth is None:
        return None
    host = split_repo(repo)[0]
    return auth if auth.address == ("docker.io" if host == DOCKER_HUB else host) else None


def registry_auth(env: Mapping[str, str], repo: str) -> RegistryAuth | None:
    """Credentials by reference: DAR_BACKUP_REGISTRY_USERNAME with ..._PASSWORD or ..._PASSWORD_FILE."""
    username = env.get("DAR_BACKUP_REGISTRY_USERNAME")
    if not username:
        return None
    if env.get("DAR_BACKUP_REGISTRY_PASSWORD") is not None:
        password = SecretRef("env://DAR_BACKUP_REGISTRY_PASSWORD")
    elif env.get("DAR_BACKUP_REGISTRY_PASSWORD_FILE"):
        password = SecretRef(f"file://{env['DAR_BACKUP_REGISTRY_PASSWORD_FILE']}")
    else:
        raise UsageError("DAR_BACKUP_REGISTRY_USERNAME is set without DAR_BACKUP_REGISTRY_PASSWORD(_FILE)")
    host = split_repo(repo)[0]
    return RegistryAuth("docker.io" if host == DOCKER_HUB else host, username, password)


def docker_config(address: str, username: str, password: str) -> str:
    """A docker config.json holding one registry login, for tools (cosign) that read it."""
    key = "https://index.docker.io/v1/" if address == "docker.io" else address
    auth = base64.b64encode(f"{username}:{password}".encode()).decode()
    return json.dumps({"auths": {key: {"auth": auth}}})


def read_secret(ref: SecretRef) -> str:
    """The plaintext of a secret reference, for the one call that needs it; never logged."""
    if ref.scheme == "env":
        value = os.environ.get(ref.target)
        if value is None:
            raise UsageError(f"secret environment variable {ref.target} is not set")
        return value
    try:
        return Path(ref.target).read_text().rstrip("\n")
    except OSError as err:
        raise UsageError(f"cannot read secret file {ref.target}: {err.strerror}") from None
