"""The release plan: everything that can refuse a release, decided before anything is built."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import semver

from ci.core.config import RunConfig, git_tree_is_clean
from ci.core.errors import HistoryError, RegistryError, StageFailure, UsageError
from ci.core.report import Report
from ci.image import vulns
from ci.image.gates import refuse
from ci.oci.auth import RegistryAuth, registry_auth
from ci.oci.registry import Registry
from ci.release import history, signing, tags
from ci.release.signing import Identity

STAGE = "release"
HISTORY = Path("doc/build-history.json")


@dataclass(frozen=True)
class Plan:
    version: semver.Version
    repo: str
    floating: list[str]
    history_path: Path
    builds: list[dict[str, Any]]
    auth: RegistryAuth | None
    registry: Registry
    identity: Identity | None
    # The last release, by digest: its archives must restore with the candidate (None: the first).
    previous: str | None = None
    # Why this release is made, for the history (a refresh names what changed).
    notes: str = ""

    @property
    def ref(self) -> str:
        return f"{self.repo}:{self.version}"


def read_history(path: Path) -> list[dict[str, Any]]:
    """The builds so far; a history that does not validate means the command cannot start."""
    try:
        return history.read(path)
    except HistoryError as err:
        raise UsageError(f"build history: {err}") from None


def preflight(config: RunConfig, env: Mapping[str, str], root: Path, report: Report) -> Plan:
    """Everything that can refuse a release before anything is built.

    What the user must fix first (no --repo, a dirty tree, the history, the exceptions file,
    credentials, the signing identity) is a UsageError; what the registry says (the tag exists,
    a newer version) refuses.
    """
    with report.step(STAGE, "release gate: repo, clean tree, history, registry, version"):
        if not config.repo:
            raise UsageError("release needs --repo REGISTRY/NAME (or DAR_BACKUP_REPO)")
        if not git_tree_is_clean(root):
            raise UsageError(
                f"the git tree has uncommitted changes; release from a clean checkout of {config.revision}"
            )
        refuse_another_revision(config.revision, env)
        # The exceptions file: a malformed one cannot start (2), a lapsed entry refuses (1), before any build.
        vulns.read_waivers(root / vulns.EXCEPTIONS_FILE, dt.datetime.now(dt.UTC).date())
        version = semver.Version.parse(config.image_version)
        builds = read_history(root / HISTORY)
        auth = registry_auth(env, config.repo)
        # A dry run signs nothing, so it needs no identity.
        identity = None if config.dry_run else signing.signing_identity(env)
        registry = Registry.logged_in(config.repo, auth)
        try:
            existing = registry.tags()
            exists = registry.digest(str(version)) is not None
        except RegistryError as err:
            raise StageFailure(f"cannot check the registry, refusing to release: {err}") from None
        problems = [f"tag {config.repo}:{version} already exists"] if exists else []
        refuse(problems + tags.newer_than_all(version, [b["tag"] for b in builds], existing))
        previous = previous_release(config.repo, builds, existing, registry)
        floating = tags.floating_tags(version)
        return Plan(version, config.repo, floating, root / HISTORY, builds, auth, registry, identity, previous)


def refuse_another_revision(revision: str, env: Mapping[str, str]) -> None:
    """On GitHub the keyless identity names the run's ref and GITHUB_SHA; the image must be that revision.

    A refresh dispatched from another branch checks out the default branch: it would build, label
    and record one revision and sign as another.
    """
    wanted, ref = env.get("GITHUB_SHA"), env.get("GITHUB_REF", "its ref")
    if wanted and wanted != revision:
        raise UsageError(
            f"the checkout is {revision[:12]} but the run is for {wanted[:12]} ({ref}): a release builds, labels, "
            "records and signs one revision; run it from the default branch"
        )


def previous_release(repo: str, builds: list[dict[str, Any]], existing: list[str], registry: Registry) -> str | None:
    """The last release by digest: the history's last entry, else the registry's highest semver tag."""
    if builds:
        return str(builds[-1]["image_ref"])
    newest = max(tags.semver_versions(existing), default=None)
    if newest is None:
        return None
    try:
        digest = registry.digest(str(newest))
    except RegistryError as err:
        raise StageFailure(f"cannot read the previous release {repo}:{newest}: {err}") from None
    return f"{repo}@{digest}" if digest else None
