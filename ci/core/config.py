"""What a run is about: one immutable value built from flags, the environment and the repository."""

from __future__ import annotations

import re
import secrets
import subprocess
import time
import tomllib
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from ci.core.baseimage import DEFAULT_BASE_IMAGE
from ci.core.errors import UsageError
from ci.core.names import DEFAULT_SOURCE, IMAGE_NAME
from ci.core.platforms import host_platform, tag_suffix
from ci.core.versions import locked_dar_backup_version, parse_release_version

REPO_ROOT = Path(__file__).resolve().parents[2]
# What the cosign tools image (docker/tools.Dockerfile) builds FROM.
DEFAULT_TOOLS_BASE_IMAGE = "debian:trixie-slim"
DEV_IMAGE_VERSION = "0.0.0-dev"
# Severities from low to critical, as the vulnerability gate ranks them.
VULN_LEVELS = ("low", "medium", "high", "critical")


@dataclass(frozen=True)
class RunConfig:
    image_version: str
    dar_backup_version: str
    base_image: str
    revision: str
    created: str
    run_id: str
    repo: str | None
    source: str
    licenses: str
    dry_run: bool
    report_dir: Path
    # `test --previous-image`: the release whose archives the candidate must restore.
    previous_image: str | None = None
    # What is built, in this order (the upgrade check runs on the first).
    platforms: tuple[str, ...] = ()
    # The git ref built (refs/tags/v1.2.0, refs/heads/main; the revision when HEAD is detached).
    ref: str = ""
    # When the run started, RFC 3339 UTC: `created` may be pinned to the commit, this never is.
    started: str = ""
    # The workflow running the pipeline on GitHub Actions (`https://github.com/o/r/.github/workflows/ci.yml@ref`).
    workflow: str | None = None
    # What the release's cosign tools image builds FROM (a registry the engine reaches, as for base_image).
    tools_base_image: str = DEFAULT_TOOLS_BASE_IMAGE
    # The vulnerability database (`DIR/<Ecosystem>/all.zip`): release and refresh need one, test uses one if given.
    vuln_db: Path | None = None
    # The lowest severity of a fixable finding that refuses a release.
    vuln_threshold: str = "high"

    def local_tag(self, platform: str) -> str:
        """`dar-backup:VERSION` for the host's platform, `dar-backup:VERSION-arm64` for a foreign one."""
        return f"{IMAGE_NAME}:{self.image_version}{tag_suffix(platform, host_platform())}"

    @property
    def ref_name(self) -> str:
        return f"{self.repo}:{self.image_version}" if self.repo else f"{IMAGE_NAME}:{self.image_version}"


def _git(root: Path, *args: str) -> str | None:
    try:
        done = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, check=False)
    except FileNotFoundError:
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def git_revision(root: Path, env: Mapping[str, str]) -> str:
    """The revision that is built: the checkout's, which GitHub's GITHUB_SHA need not be (see plan)."""
    return _git(root, "rev-parse", "HEAD") or env.get("GITHUB_SHA") or "unknown"


def git_tree_is_clean(root: Path) -> bool:
    return _git(root, "status", "--porcelain") == ""


def rfc3339(seconds: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


def created_timestamp(env: Mapping[str, str]) -> str:
    """RFC 3339 UTC; SOURCE_DATE_EPOCH pins it for reproducible builds."""
    epoch = env.get("SOURCE_DATE_EPOCH")
    try:
        seconds = int(epoch) if epoch else int(time.time())
    except ValueError:
        raise UsageError(f"SOURCE_DATE_EPOCH must be whole seconds, got {epoch!r}") from None
    return rfc3339(seconds)


def git_ref(env: Mapping[str, str], root: Path, revision: str) -> str:
    """The ref built: GitHub Actions' GITHUB_REF, else the checkout's branch, else the revision (detached)."""
    return env.get("GITHUB_REF") or _git(root, "symbolic-ref", "-q", "HEAD") or revision


def workflow_ref(env: Mapping[str, str]) -> str | None:
    """The workflow running this on GitHub Actions, as its OIDC certificate names it; None elsewhere."""
    if env.get("GITHUB_ACTIONS") != "true" or not env.get("GITHUB_WORKFLOW_REF"):
        return None
    return f"{env.get('GITHUB_SERVER_URL', 'https://github.com').rstrip('/')}/{env['GITHUB_WORKFLOW_REF']}"


def project_license(pyproject: Path) -> str:
    return str(tomllib.loads(pyproject.read_text())["project"]["license"])


_SCP_REMOTE = re.compile(r"^(?:[^@/]+@)?([^:/@]+):/?(.+)$")


def web_url(remote: str) -> str | None:
    """`https://host/owner/name` for a git remote (https, ssh or scp-like), credentials dropped.

    None for what names no web host (a local path, file://): a fork's label must not be guessed.
    """
    remote = remote.strip()
    if "://" in remote:
        parts = urllib.parse.urlsplit(remote)
        if parts.scheme not in ("http", "https", "ssh", "git", "git+ssh") or not parts.hostname:
            return None
        # An ssh port says nothing about the web server's; an https one does.
        web_port = f":{parts.port}" if parts.port and parts.scheme in ("http", "https") else ""
        host, path = parts.hostname + web_port, parts.path
    elif scp := _SCP_REMOTE.match(remote):
        host, path = scp.group(1), scp.group(2)
    else:
        return None
    path = path.strip("/").removesuffix(".git").strip("/")
    return f"https://{host}/{path}" if path else None


def source_url(env: Mapping[str, str], root: Path) -> str:
    """Where this build comes from: the override, GitHub Actions' repository, origin, else upstream."""
    override = env.get("DAR_BACKUP_SOURCE_URL")
    if override is not None:
        parts = urllib.parse.urlsplit(override)
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.username or parts.password:
            raise UsageError("DAR_BACKUP_SOURCE_URL must be an http(s) URL without credentials")
        return override.rstrip("/")
    if env.get("GITHUB_SERVER_URL") and env.get("GITHUB_REPOSITORY"):
        return f"{env['GITHUB_SERVER_URL'].rstrip('/')}/{env['GITHUB_REPOSITORY']}"
    origin = _git(root, "remote", "get-url", "origin")
    return (web_url(origin) if origin else None) or DEFAULT_SOURCE


def build_config(
    *,
    image_version: str | None,
    dar_backup_version: str | None,
    base_image: str | None,
    repo: str | None,
    dry_run: bool,
    report_dir: Path,
    env: Mapping[str, str],
    root: Path = REPO_ROOT,
    previous_image: str | None = None,
    platforms: tuple[str, ...] = (),
    tools_base_image: str | None = None,
    vuln_db: str | None = None,
    vuln_threshold: str = "high",
) -> RunConfig:
    """Refuse a run with bad versions before anything is built."""
    locked = locked_dar_backup_version(root / "docker/requirements.txt")
    wanted_image = image_version if image_version is not None else DEV_IMAGE_VERSION
    wanted_dar_backup = dar_backup_version if dar_backup_version is not None else locked
    image = parse_release_version(wanted_image, "image version")
    dar_backup = parse_release_version(wanted_dar_backup, "dar-backup version")
    if str(dar_backup) != locked:
        raise UsageError(
            f"dar-backup version {dar_backup} is not the one docker/requirements.txt locks ({locked}); "
            "regenerate the lock file (docs/building.md: Updating dar-backup)"
        )
    if repo is not None and (not repo or repo != repo.strip() or ":" in repo.rsplit("/", 1)[-1]):
        raise UsageError(f"--repo must be REGISTRY/NAME without a tag, got {repo!r}")
    if vuln_threshold not in VULN_LEVELS:
        raise UsageError(f"--vuln-threshold must be one of {', '.join(VULN_LEVELS)}, got {vuln_threshold!r}")
    if vuln_db and not Path(vuln_db).is_dir():
        raise UsageError(
            f"--vuln-db {vuln_db} is not a directory (DIR/<Ecosystem>/all.zip, as the OSV bucket serves it)"
        )
    revision = git_revision(root, env)
    return RunConfig(
        image_version=str(image),
        dar_backup_version=str(dar_backup),
        base_image=base_image or DEFAULT_BASE_IMAGE,
        revision=revision,
        created=created_timestamp(env),
        run_id=secrets.token_hex(4),
        repo=repo,
        source=source_url(env, root),
        licenses=project_license(root / "pyproject.toml"),
        dry_run=dry_run,
        report_dir=report_dir,
        previous_image=previous_image or None,
        platforms=platforms or (host_platform(),),
        ref=git_ref(env, root, revision),
        started=rfc3339(time.time()),
        workflow=workflow_ref(env),
        tools_base_image=tools_base_image or DEFAULT_TOOLS_BASE_IMAGE,
        vuln_db=Path(vuln_db).resolve() if vuln_db else None,
        vuln_threshold=vuln_threshold,
    )
