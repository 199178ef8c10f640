"""The release stage: refuse early, gate the tested image, publish it by digest, verify, tag, record.

Order matters: nothing is pushed before every gate passed, no floating tag moves before the
pushed digest was read back and re-gated, and the history changes only after all of that.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import semver

from ci.config import ConfigError, RunConfig, git_tree_is_clean
from ci.engines.seam import Engine, EngineError, Image, RegistryAuth, SecretRef, read_secret
from ci.release import gates, history
from ci.release.registry import DOCKER_HUB, Registry, RegistryError, split_repo
from ci.report import Report, StageFailure
from ci.stages import probe_versions
from ci.versions import TOOLS

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

    @property
    def ref(self) -> str:
        return f"{self.repo}:{self.version}"


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
        raise ConfigError("DAR_BACKUP_REGISTRY_USERNAME is set without DAR_BACKUP_REGISTRY_PASSWORD(_FILE)")
    host = split_repo(repo)[0]
    return RegistryAuth("docker.io" if host == DOCKER_HUB else host, username, password)


def refuse(problems: list[str]) -> None:
    if problems:
        raise StageFailure("; ".join(problems))


def preflight(config: RunConfig, env: Mapping[str, str], root: Path, report: Report) -> Plan:
    """Everything that can refuse a release before anything is built."""
    with report.step(STAGE, "release gate: repo, clean tree, history, registry, version"):
        if not config.repo:
            raise StageFailure("release needs --repo REGISTRY/NAME (or DAR_BACKUP_REPO)")
        if not git_tree_is_clean(root):
            raise StageFailure(
                f"the git tree has uncommitted changes; release from a clean checkout of {config.revision}"
            )
        version = semver.Version.parse(config.image_version)
        try:
            builds = history.read(root / HISTORY)
        except history.HistoryError as err:
            raise StageFailure(f"build history: {err}") from None
        try:
            auth = registry_auth(env, config.repo)
        except ConfigError as err:
            raise StageFailure(str(err)) from None
        registry = Registry(config.repo, auth.username if auth else None, read_secret(auth.password) if auth else None)
        try:
            tags = registry.tags()
            exists = registry.digest(str(version)) is not None
        except RegistryError as err:
            raise StageFailure(f"cannot check the registry, refusing to release: {err}") from None
        problems = [f"tag {config.repo}:{version} already exists"] if exists else []
        refuse(problems + gates.newer_than_all(version, [b["tag"] for b in builds], tags))
        return Plan(version, config.repo, gates.floating_tags(version), root / HISTORY, builds, auth, registry)


async def gate_image(engine: Engine, image: Image, labels: Mapping[str, str], versions: Mapping[str, str]) -> None:
    """Label gate and version gate on the image pulled back from the registry by digest."""
    refuse(gates.label_gate(await engine.labels(image, list(labels)), labels))
    refuse(gates.version_gate(await probe_versions(engine, image, TOOLS), versions))


def history_values(
    config: RunConfig, plan: Plan, versions: Mapping[str, str], digest: str, image: Image
) -> dict[str, Any]:
    return {
        "tag": str(plan.version),
        "image_ref": f"{plan.repo}@{digest}",
        "digest": digest,
        "image_id": image.image_id or "",
        "dar_backup_version": versions["dar-backup"],
        "dar_version": versions["dar"],
        "par2_version": versions["par2"],
        "base_image": config.base_image,
        "base_digest": config.base_digest,
        "git_revision": config.revision,
        "created": config.created,
    }


async def release(
    engine: Engine,
    config: RunConfig,
    plan: Plan,
    image: Image,
    labels: Mapping[str, str],
    versions: Mapping[str, str],
    report: Report,
) -> None:
    # The version gate already ran on this very image in the final stage; labels are checked here.
    with report.step(STAGE, "label gate on the tested image"):
        refuse(gates.label_gate(await engine.labels(image, list(labels)), labels))
    if config.dry_run:
        with report.step(STAGE, "dry run: what a release would publish"):
            entry = history.next_entry(plan.builds, history_values(config, plan, versions, "sha256:" + "0" * 64, image))
            print(
                json.dumps(
                    {
                        "tags": [plan.ref, *(f"{plan.repo}:{t}" for t in plan.floating)],
                        "image_id": image.image_id,
                        "manifest_digest": "known after the push",
                        "labels": dict(labels),
                        "history_entry": {**entry, "digest": None, "image_ref": None},
                    },
                    indent=2,
                )
            )
        return
    with report.step(STAGE, f"push {plan.ref}"):
        digest = await engine.publish(image, plan.ref, plan.auth)
    with report.step(STAGE, f"verify {plan.repo}@{digest}"):
        await verify_or_withdraw(engine, plan, digest, labels, versions)
    for tag in plan.floating:
        with report.step(STAGE, f"move {plan.repo}:{tag}"):
            try:
                moved = plan.registry.tag(digest, tag)
            except RegistryError as err:
                raise StageFailure(f"moving {tag}: {err}") from None
            if moved != digest:
                raise StageFailure(f"{plan.repo}:{tag} points at {moved}, not {digest}")
    with report.step(STAGE, "append the build history"):
        history.append(
            plan.history_path, history.next_entry(plan.builds, history_values(config, plan, versions, digest, image))
        )


async def verify_or_withdraw(
    engine: Engine, plan: Plan, digest: str, labels: Mapping[str, str], versions: Mapping[str, str]
) -> None:
    try:
        served = plan.registry.digest(str(plan.version))
        if served != digest:
            raise StageFailure(f"the registry serves {served} for {plan.ref}, the push reported {digest}")
        pulled = await engine.pull(f"{plan.repo}@{digest}", plan.auth)
        await gate_image(engine, pulled, labels, versions)
    except (StageFailure, EngineError, RegistryError) as err:
        raise StageFailure(f"verification of {plan.ref} failed: {err}; {withdraw(plan, digest)}") from None


def withdraw(plan: Plan, digest: str) -> str:
    try:
        outcome = plan.registry.delete(digest)
    except RegistryError as err:
        return f"could not remove the candidate tag ({err}): remove {plan.ref} by hand"
    return {
        "removed": f"removed {plan.ref}",
        "absent": f"{plan.ref} is not in the registry",
        "not allowed": f"the registry does not allow deletes: remove {plan.ref} by hand",
    }[outcome]
