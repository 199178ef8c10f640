"""The release stage: refuse early, gate the tested image, publish it by digest, verify, sign, tag, record.

Order matters: nothing is pushed before every gate passed; no floating tag moves before the
pushed digest was read back, re-gated, signed, its SBOM attested and both verified; the
history changes only after all of that. Any failure after the push withdraws the candidate.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from collections.abc import Awaitable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import semver

from ci.config import ConfigError, RunConfig, git_tree_is_clean
from ci.engines.seam import Engine, EngineError, Image, RegistryAuth, SecretRef, read_secret
from ci.release import gates, history, sbom, signing
from ci.release.registry import DOCKER_HUB, Registry, RegistryError, docker_config, is_loopback, split_repo
from ci.release.signing import Identity
from ci.report import Report, StageFailure
from ci.stages import Built, probe_versions, write_sbom
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
    identity: Identity | None
    # The last release, by digest: its archives must restore with the candidate (None: the first).
    previous: str | None = None
    # Why this release is made, for the history (a refresh names what changed).
    notes: str = ""

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
            # A dry run signs nothing, so it needs no identity.
            identity = None if config.dry_run else signing.signing_identity(env)
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
        floating = gates.floating_tags(version)
        previous = previous_release(config.repo, builds, tags, registry)
        return Plan(version, config.repo, floating, root / HISTORY, builds, auth, registry, identity, previous)


def previous_release(repo: str, builds: list[dict[str, Any]], tags: list[str], registry: Registry) -> str | None:
    """The last release by digest: the history's last entry, else the registry's highest semver tag."""
    if builds:
        return str(builds[-1]["image_ref"])
    newest = max(gates.semver_versions(tags), default=None)
    if newest is None:
        return None
    try:
        digest = registry.digest(str(newest))
    except RegistryError as err:
        raise StageFailure(f"cannot read the previous release {repo}:{newest}: {err}") from None
    return f"{repo}@{digest}" if digest else None


async def gate_image(engine: Engine, image: Image, labels: Mapping[str, str], versions: Mapping[str, str]) -> None:
    """Label gate and version gate on the image pulled back from the registry by digest."""
    refuse(gates.label_gate(await engine.labels(image, list(labels)), labels))
    refuse(gates.version_gate(await probe_versions(engine, image, TOOLS), versions))


def history_values(
    config: RunConfig,
    plan: Plan,
    versions: Mapping[str, str],
    digest: str,
    image: Image,
    signed: Mapping[str, str],
    sbom_text: str,
) -> dict[str, Any]:
    return {
        "signing": dict(signed),
        "packages_sha256": sbom.package_set_sha256(json.loads(sbom_text)),
        "notes": plan.notes,
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


async def release(engine: Engine, config: RunConfig, plan: Plan, built: Built, report: Report) -> None:
    image, labels, versions = built.image, built.labels, built.versions
    # The version gate already ran on this very image in the final stage; labels are checked here.
    with report.step(STAGE, "label gate on the tested image"):
        refuse(gates.label_gate(await engine.labels(image, list(labels)), labels))
    if config.dry_run:
        with report.step(STAGE, "dry run: what a release would publish"):
            unknown = dict.fromkeys(history.SIGNING_FIELDS, "known after signing")
            values = history_values(config, plan, versions, "sha256:" + "0" * 64, image, unknown, built.sbom)
            entry = history.next_entry(plan.builds, values)
            print(
                json.dumps(
                    {
                        "tags": [plan.ref, *(f"{plan.repo}:{t}" for t in plan.floating)],
                        "image_id": image.image_id,
                        "manifest_digest": "known after the push",
                        "labels": dict(labels),
                        "history_entry": {**entry, "digest": None, "image_ref": None, "signing": None},
                        "signs": "nothing: a dry run builds and validates the SBOM only",
                    },
                    indent=2,
                )
            )
        return
    identity = plan.identity
    if identity is None:
        raise StageFailure("a release that is not a dry run needs a signing identity")
    with report.step(STAGE, "build the signing tools image (cosign)"):
        tools = await signing.build_tools(engine)
    with report.step(STAGE, f"push {plan.ref}"):
        digest = await engine.publish(image, plan.ref, plan.auth)
    with report.step(STAGE, f"verify {plan.repo}@{digest}"):
        pulled = await guarded(plan, digest, "verification", pull_and_gate(engine, plan, digest, labels, versions))
    with report.step(STAGE, "SBOM of the published image"):
        sbom_text = await guarded(
            plan, digest, "the SBOM", write_sbom(engine, pulled, config, versions, report, digest)
        )
    with tempfile.TemporaryDirectory(prefix="dar-backup-ci-cosign-") as private:
        cosign = signing.Cosign(
            engine, tools, identity, is_loopback(plan.registry.host), registry_config(plan, Path(private))
        )
        with report.step(STAGE, "sign the digest and attest the SBOM (cosign)"):
            public_key = await guarded(plan, digest, "signing", cosign.public_key())
            await guarded(plan, digest, "signing", cosign.sign_and_attest(plan.repo, digest, sbom_text))
        with report.step(STAGE, "verify the signature and the SBOM attestation"):
            verify = cosign.verify(f"{plan.repo}@{digest}", digest, public_key, sbom_text)
            await guarded(plan, digest, "signature verification", verify)
            record = signing_record(plan, digest, signing.describe(identity, public_key), sbom_text)
            signed = await guarded(plan, digest, "signature verification", record)
    for tag in plan.floating:
        with report.step(STAGE, f"move {plan.repo}:{tag}"):
            try:
                moved = plan.registry.tag(digest, tag)
            except RegistryError as err:
                raise StageFailure(f"moving {tag}: {err}") from None
            if moved != digest:
                raise StageFailure(f"{plan.repo}:{tag} points at {moved}, not {digest}")
    with report.step(STAGE, "append the build history"):
        values = history_values(config, plan, versions, digest, image, signed, sbom_text)
        history.append(plan.history_path, history.next_entry(plan.builds, values))


T = TypeVar("T")


async def guarded(plan: Plan, digest: str, what: str, work: Awaitable[T]) -> T:
    """Await work on the published candidate; on any failure withdraw it, and say so in the error."""
    try:
        return await work
    except (StageFailure, EngineError, RegistryError, signing.SigningError, ValueError) as err:
        # The withdrawal's outcome leads: the first line is the one every summary shows.
        raise StageFailure(f"{what} of {plan.ref} failed ({withdraw(plan, digest)}): {err}") from None


async def pull_and_gate(
    engine: Engine, plan: Plan, digest: str, labels: Mapping[str, str], versions: Mapping[str, str]
) -> Image:
    served = plan.registry.digest(str(plan.version))
    if served != digest:
        raise StageFailure(f"the registry serves {served} for {plan.ref}, the push reported {digest}")
    pulled = await engine.pull(f"{plan.repo}@{digest}", plan.auth)
    await gate_image(engine, pulled, labels, versions)
    return pulled


def registry_config(plan: Plan, private: Path) -> SecretRef | None:
    """The registry login as a docker config file in a private temp dir, for cosign to push with."""
    if plan.auth is None:
        return None
    path = private / "config.json"
    path.touch(mode=0o600)
    path.write_text(docker_config(plan.auth.address, plan.auth.username, read_secret(plan.auth.password)))
    return SecretRef(f"file://{path}")


async def signing_record(plan: Plan, digest: str, identity: str, sbom_text: str) -> dict[str, str]:
    """What the history keeps of the signature: who signed, and where the signature and SBOM are."""
    record = {"identity": identity, "sbom_sha256": hashlib.sha256(sbom_text.encode()).hexdigest()}
    for kind, tag in zip(("signature", "attestation"), signing.signature_tags(digest), strict=True):
        try:
            stored = plan.registry.digest(tag)
        except RegistryError as err:
            raise StageFailure(f"reading {plan.repo}:{tag}: {err}") from None
        if stored is None:
            raise StageFailure(f"cosign reported success but {plan.repo}:{tag} is not in the registry")
        record[kind] = f"{plan.repo}:{tag}"
        record[f"{kind}_digest"] = stored
    return record


def withdraw(plan: Plan, digest: str) -> str:
    """Remove the candidate and whatever cosign stored for it; the words say what happened."""
    try:
        outcome = plan.registry.delete(digest)
        for tag in signing.signature_tags(digest):
            stored = plan.registry.digest(tag)
            if stored is not None:
                plan.registry.delete(stored)
    except RegistryError as err:
        return f"could not remove the candidate tag ({err}): remove {plan.ref} by hand"
    return {
        "removed": f"removed {plan.ref}",
        "absent": f"{plan.ref} is not in the registry",
        "not allowed": f"the registry does not allow deletes: remove {plan.ref} by hand",
    }[outcome]
