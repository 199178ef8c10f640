"""The Dagger adapter (the dagger-io pyproject.toml pins): the seam mapped onto Directory.docker_build and Container.

Containers stay lazy Dagger objects kept by key; volumes are cache volumes keyed by the run
id, so no run ever sees another's data; secrets go by reference (`env://`, `file://`), so no
plaintext ever enters a query — except a build's secret files, which are public data (a
proxy's CA bundle): the engine takes only named secrets for a Dockerfile's secret mounts.
"""

from __future__ import annotations

import sys
import urllib.parse
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from itertools import count
from pathlib import Path

import anyio
import dagger
from dagger import dag

from ci.core.baseimage import BaseImage
from ci.core.errors import EngineError
from ci.engines.seam import BuildSpec, Image, Mount, Pushed, RunResult, Volume
from ci.oci.auth import RegistryAuth, SecretRef
from ci.oci.base import resolve_digest

# What the build never needs: keeps uploads small and stops local state from busting the cache.
CONTEXT_EXCLUDE = [
    ".git",
    ".venv",
    "**/__pycache__",
    ".mypy_cache",
    ".ruff_cache",
    ".pytest_cache",
    "reports",
    "bench/results",
]
CACHE_BUSTER = "DAR_BACKUP_CI_EXEC"

# A registry on the host's loopback, as cosign must see it. The engine pushes from the host, but
# an exec runs in a network namespace of its own on the engine's bridge (network/consts.go,
# 10.87.0.0/16), where 127.0.0.1 is the container. Host.service is a port the session's client
# dials on the host (core/schema/host.go, `service`: a HostIP socket per port), and
# withServiceBinding names it by an alias the engine writes into the exec's /etc/hosts
# (core/container_exec.go: HostAliases; engine/engineutil/executor_spec.go). The alias alone
# would change what is published: cosign writes the address it signs into the signature's
# critical.identity.docker-reference and each attestation's subject name (cosign 2.5
# cmd/cosign/cli/sign/sign.go signDigest; attest/attest.go, `Repo: digest.Repository`). Verify
# compares digests only (pkg/cosign/verifiers.go), so both would pass, but the payload would
# name a host only this engine resolves, and attest has no --sign-container-identity. So socat
# listens on the loopback address itself inside the container and relays to the alias: cosign
# runs the argv it runs on the local engine, and publishes the same names.
LOOPBACK_ALIAS = "host-loopback"
# $1 host, $2 port, then the command; exits 125 (as a runtime does) when the relay never listens.
RELAY = (
    'socat "TCP-LISTEN:$2,bind=$1,fork,reuseaddr" "TCP:{alias}:$2" & tries=0; '
    'until socat -u /dev/null "TCP:$1:$2" 2>/dev/null; do '
    'tries=$((tries + 1)); [ "$tries" -lt 100 ] || exit 125; sleep 0.05; done; shift 2; exec "$@"'
)


def loopback_address(address: str) -> tuple[str, int]:
    """host and port of a loopback registry address; plain HTTP (port 80) when it names none."""
    parts = urllib.parse.urlsplit(f"//{address}")
    if parts.hostname is None or ":" in parts.hostname:
        raise EngineError(f"{address} cannot be relayed on Dagger: give the registry as 127.0.0.1:PORT")
    return parts.hostname, parts.port or 80


def relayed(argv: Sequence[str], host: str, port: int) -> list[str]:
    """argv run behind a relay from host:port in the container to the host's, under the same address."""
    return ["sh", "-c", RELAY.format(alias=LOOPBACK_ALIAS), "sh", host, str(port), *argv]


class DaggerEngine:
    name = "dagger"

    def __init__(self, client: dagger.Client, run_id: str, context: Path) -> None:
        self.client = client
        self.run_id = run_id
        self.context = context
        self._containers: dict[str, dagger.Container] = {}
        self._execs = count(1)

    def _keep(self, container: dagger.Container, description: str, platform: str | None) -> Image:
        key = f"dagger-{len(self._containers) + 1}"
        self._containers[key] = container
        return Image(key, description, platform=platform)

    def _secret(self, ref: SecretRef) -> dagger.Secret:
        return self.client.secret(ref.uri)

    def _with_auth(self, container: dagger.Container, auth: RegistryAuth | None) -> dagger.Container:
        if auth is None:
            return container
        return container.with_registry_auth(auth.address, auth.username, self._secret(auth.password))

    async def resolve_base(self, requested: str, platform: str, auth: RegistryAuth | None) -> BaseImage:
        # The engine pulls the base for each platform itself, emulating foreign ones; it has no
        # images of its own to fall back on, so a base the registry does not resolve is an error.
        digest = await anyio.to_thread.run_sync(resolve_digest, requested, platform, auth)
        return BaseImage(requested, digest=digest)

    def _build_secret(self, secret_id: str, path: Path) -> dagger.Secret:
        # dockerBuild mounts a secret at /run/secrets/<its name> and refuses one without a name
        # (the engine's core/container.go); only setSecret names one, and it takes the plaintext.
        try:
            return self.client.set_secret(secret_id, path.read_text())
        except OSError as err:
            raise EngineError(f"cannot read the build secret {secret_id} from {path}: {err.strerror}") from None

    async def version(self) -> str:
        return await self.client.version()

    async def build(self, spec: BuildSpec) -> Image:
        context = self.client.host().directory(str(self.context), exclude=CONTEXT_EXCLUDE)
        container = context.docker_build(
            dockerfile=spec.dockerfile,
            target=spec.target,
            build_args=[dagger.BuildArg(name=k, value=v) for k, v in spec.build_args.items()],
            secrets=[self._build_secret(key, path) for key, path in spec.secret_files.items()],
            platform=dagger.Platform(spec.platform) if spec.platform else None,
        )
        for key, value in spec.labels.items():
            container = container.with_label(key, value)
        try:
            container = await container.sync()
        except dagger.DaggerError as err:
            raise EngineError(f"build of target {spec.target} failed: {err}") from None
        return self._keep(container, f"{spec.tag or spec.target} ({spec.platform or 'dagger'})", spec.platform)

    async def run(
        self,
        image: Image,
        argv: Sequence[str],
        *,
        mounts: Sequence[Mount] = (),
        env: Mapping[str, str] | None = None,
        user: str | None = None,
        use_entrypoint: bool = False,
        files: Mapping[str, str] | None = None,
        secrets: Mapping[str, SecretRef] | None = None,
        network: bool = False,
        loopback: str | None = None,
    ) -> RunResult:
        # Dagger containers always have the engine's network (not the host's); `network` only
        # matters to Docker, and the host's loopback is reached through a relay (LOOPBACK_ALIAS).
        container = self._containers[image.ref]
        if loopback is not None:
            if use_entrypoint:
                raise EngineError("a relayed run starts the relay, not the image's entrypoint")
            host, port = loopback_address(loopback)
            tunnel = self.client.host().service([dagger.PortForward(backend=port, frontend=port)], host=host)
            container = container.with_service_binding(LOOPBACK_ALIAS, tunnel)
            argv = relayed(argv, host, port)
        for mount in mounts:
            container = container.with_mounted_cache(mount.path, self.client.cache_volume(mount.volume.name))
        for key, value in (env or {}).items():
            container = container.with_env_variable(key, value)
        for path, text in (files or {}).items():
            container = container.with_new_file(path, text, permissions=0o644)
        for key, ref in (secrets or {}).items():
            if key.startswith("/"):
                container = container.with_mounted_secret(key, self._secret(ref))
            else:
                container = container.with_secret_variable(key, self._secret(ref))
        if user is not None:
            container = container.with_user(user)
        # Dagger serves identical execs from its cache; every run here must really happen.
        container = container.with_env_variable(CACHE_BUSTER, f"{self.run_id}-{next(self._execs)}")
        done = container.with_exec(list(argv), use_entrypoint=use_entrypoint, expect=dagger.ReturnType.ANY)
        try:
            return RunResult(await done.exit_code(), await done.stdout(), await done.stderr())
        except dagger.DaggerError as err:
            raise EngineError(f"running {argv[0]} failed in the engine: {err}") from None

    async def volume(self, role: str) -> Volume:
        return Volume(f"dar-backup-ci-{self.run_id}-{role}")

    async def labels(self, image: Image, names: Sequence[str]) -> dict[str, str | None]:
        container = self._containers[image.ref]
        return {name: await container.label(name) for name in names}

    async def publish(
        self, images: Sequence[Image], repo: str, candidate_tag: str, auth: RegistryAuth | None
    ) -> Pushed:
        # The engine pushes by tag only: publish never asks for a push by digest
        # (engine/engineutil/containerimage.go, PublishContainerImage), and an address without a
        # tag is pushed as `:latest` (engine/server/resolver/resolver.go, PushImage: TagNameOnly).
        # So the candidate goes up under a tag of its own that no user pulls; the release removes it.
        ref = f"{repo}:{candidate_tag}"
        containers = [self._containers[image.ref] for image in images]
        try:
            if len(containers) == 1:
                published = await self._with_auth(containers[0], auth).publish(ref)
            else:
                # The engine pushes each variant and writes the index that ref then names.
                receiver = self._with_auth(self.client.container(), auth)
                published = await receiver.publish(ref, platform_variants=containers)
        except dagger.DaggerError as err:
            raise EngineError(f"publishing {ref} failed: {err}") from None
        _, sep, digest = published.partition("@")
        if not sep or not digest.startswith("sha256:"):
            raise EngineError(f"publish of {ref} returned {published!r}, not ref@sha256:…")
        # The engine reports the index's digest only: its entries are read back from the registry.
        return Pushed(digest, tag=candidate_tag)

    async def pull(self, ref: str, auth: RegistryAuth | None, platform: str | None = None) -> Image:
        empty = self.client.container(platform=dagger.Platform(platform) if platform else None)
        container = self._with_auth(empty, auth).from_(ref)
        try:
            container = await container.sync()
        except dagger.DaggerError as err:
            raise EngineError(f"pulling {ref} failed: {err}") from None
        return self._keep(container, ref, platform)

    async def close(self) -> None:
        """Nothing to remove: cache volumes are keyed by this run's id and left to the engine's GC."""


@asynccontextmanager
async def dagger_engine(run_id: str, context: Path, client: dagger.Client | None = None) -> AsyncIterator[DaggerEngine]:
    """The adapter over `client`, or over the global `dag` of a new (or `dagger run`'s) session."""
    if client is not None:
        yield DaggerEngine(client, run_id, context)
        return
    async with dagger.connection(dagger.Config(log_output=sys.stderr)):
        yield DaggerEngine(dag, run_id, context)
