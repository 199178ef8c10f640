"""The release stage: refuse early, gate the tested image, publish it by digest, verify, sign, tag, record.

Order matters: nothing is pushed before every gate passed; no floating tag moves before the
pushed digest was read back, re-gated, signed, its SBOM attested and both verified; the
history changes only after all of that. Any failure after the push withdraws the candidate.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from collections.abc import Awaitable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import semver

from ci.config import OCI, ConfigError, RunConfig, git_tree_is_clean
from ci.engines.seam import Engine, EngineError, Image, RegistryAuth, SecretRef, read_secret
from ci.release import gates, history, oci, sbom, signing
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
        registry = Registry.logged_in(config.repo, auth)
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


@dataclass(frozen=True)
class Published:
    """One platform of the release, as the registry serves it."""

    built: Built
    digest: str
    image: Image
    sbom: str


def history_values(
    config: RunConfig,
    plan: Plan,
    digest: str,
    versions: Mapping[str, str],
    platforms: Mapping[str, Mapping[str, Any]],
    signed: Mapping[str, str],
) -> dict[str, Any]:
    return {
        "tag": str(plan.version),
        "image_ref": f"{plan.repo}@{digest}",
        "digest": digest,
        "dar_backup_version": versions["dar-backup"],
        "dar_version": versions["dar"],
        "par2_version": versions["par2"],
        "git_revision": config.revision,
        "created": config.created,
        "signing": dict(signed),
        "platforms": {name: dict(facts) for name, facts in platforms.items()},
        "notes": plan.notes,
    }


def platform_values(
    built: Built, digest: str, image_id: str, sbom_text: str, signed: Mapping[str, str]
) -> dict[str, Any]:
    """What the history keeps of one platform."""
    return {
        "digest": digest,
        "image_id": image_id,
        "base_image": built.labels[f"{OCI}.base.name"],
        "base_digest": built.labels.get(f"{OCI}.base.digest"),
        "packages_sha256": sbom.package_set_sha256(json.loads(sbom_text)),
        "sbom_sha256": hashlib.sha256(sbom_text.encode()).hexdigest(),
        **signed,
    }


async def release(engine: Engine, config: RunConfig, plan: Plan, builts: Sequence[Built], report: Report) -> None:
    # The version gate already ran on these very images in the final stage; labels are checked here.
    for built in builts:
        with report.on_platform(built.platform), report.step(STAGE, "label gate on the tested image"):
            refuse(gates.label_gate(await engine.labels(built.image, list(built.labels)), built.labels))
    with report.step(STAGE, "one set of tool versions for every platform"):
        refuse(gates.same_versions({built.platform: built.versions for built in builts}))
    if config.dry_run:
        with report.step(STAGE, "dry run: what a release would publish"):
            dry_run(config, plan, builts)
        return
    identity = plan.identity
    if identity is None:
        raise StageFailure("a release that is not a dry run needs a signing identity")
    with report.step(STAGE, "build the signing tools image (cosign)"):
        tools = await signing.build_tools(engine)
    names = [built.platform for built in builts]
    with report.step(STAGE, f"push {plan.ref} ({', '.join(names)})"):
        digest = await engine.publish([built.image for built in builts], plan.ref, plan.auth)
    pushed = [digest]
    with report.step(STAGE, f"read back {plan.ref}: {digest} names {', '.join(names)}"):
        digests = await guarded(plan, pushed, "verification", read_back(plan, digest, names))
        pushed += [d for d in digests.values() if d != digest]
    published = [await verify_platform(engine, config, plan, built, digests, pushed, report) for built in builts]
    with tempfile.TemporaryDirectory(prefix="dar-backup-ci-cosign-") as private:
        cosign = signing.Cosign(
            engine, tools, identity, is_loopback(plan.registry.host), registry_config(plan, Path(private))
        )
        signed, platforms = await sign_and_verify(cosign, plan, digest, published, pushed, report)
    for tag in plan.floating:
        with report.step(STAGE, f"move {plan.repo}:{tag}"):
            try:
                moved = plan.registry.tag(digest, tag)
            except RegistryError as err:
                raise StageFailure(f"moving {tag}: {err}") from None
            if moved != digest:
                raise StageFailure(f"{plan.repo}:{tag} points at {moved}, not {digest}")
    with report.step(STAGE, "append the build history"):
        values = history_values(config, plan, digest, builts[0].versions, platforms, signed)
        history.append(plan.history_path, history.next_entry(plan.builds, values))


async def verify_platform(
    engine: Engine,
    config: RunConfig,
    plan: Plan,
    built: Built,
    digests: Mapping[str, str],
    pushed: list[str],
    report: Report,
) -> Published:
    """One platform as the registry serves it: pulled by its digest, gated, its SBOM naming that digest."""
    digest = digests[built.platform]
    where = f"{plan.repo}@{digest}"
    with report.on_platform(built.platform):
        with report.step(STAGE, f"verify {where}"):
            pulled = await guarded(plan, pushed, "verification", pull_and_gate(engine, where, plan, built))
        with report.step(STAGE, "SBOM of the published image"):
            written = write_sbom(engine, pulled, built.platform, config, built.versions, report, digest)
            sbom_text = await guarded(plan, pushed, "the SBOM", written)
    return Published(built, digest, pulled, sbom_text)


async def sign_and_verify(
    cosign: signing.Cosign,
    plan: Plan,
    digest: str,
    published: Sequence[Published],
    pushed: list[str],
    report: Report,
) -> tuple[dict[str, str], dict[str, dict[str, Any]]]:
    """Sign what the tag names, attest the SBOMs, verify it all; what the history keeps of it.

    An index is signed with `--recursive` (each platform manifest gets the signature too) and
    carries every platform's SBOM, so a user verifying the tag finds them; each platform
    manifest carries its own.
    """
    index = len(published) > 1
    sboms = [item.sbom for item in published]
    with report.step(STAGE, f"sign {plan.repo}@{digest}" + (" and every platform manifest" if index else "")):
        public_key = await guarded(plan, pushed, "signing", cosign.public_key())
        await guarded(plan, pushed, "signing", cosign.sign(plan.repo, digest, recursive=index))
    for item in published:
        with report.on_platform(item.built.platform), report.step(STAGE, "attest the SBOM"):
            for subject in dict.fromkeys((item.digest, digest)):
                await guarded(plan, pushed, "signing", cosign.attest(plan.repo, subject, item.sbom))
    with report.step(STAGE, f"verify the signature and the SBOM attestations of {plan.ref}"):
        signed = {"identity": signing.describe(cosign.identity, public_key)}
        check = verify(cosign, plan, plan.ref, digest, public_key, sboms)
        signed |= await guarded(plan, pushed, "signature verification", check)
    platforms: dict[str, dict[str, Any]] = {}
    for item in published:
        if index:
            step = f"verify the signature and the SBOM attestation of {plan.repo}@{item.digest}"
            with report.on_platform(item.built.platform), report.step(STAGE, step):
                check = verify(cosign, plan, f"{plan.repo}@{item.digest}", item.digest, public_key, [item.sbom])
                records = await guarded(plan, pushed, "signature verification", check)
        else:
            records = {k: v for k, v in signed.items() if k != "identity"}
        platforms[item.built.platform] = platform_values(
            item.built, item.digest, item.image.image_id or "", item.sbom, records
        )
    return signed, platforms


async def verify(
    cosign: signing.Cosign, plan: Plan, ref: str, digest: str, public_key: str | None, sboms: Sequence[str]
) -> dict[str, str]:
    """ref (a tag, or the digest) names digest, whose signature and SBOM attestations verify; where they are."""
    await cosign.verify(ref, digest, public_key)
    await cosign.verify_attestation(ref, digest, public_key, sboms)
    return {**await stored(plan, digest, "signature"), **await stored(plan, digest, "attestation")}


def dry_run(config: RunConfig, plan: Plan, builts: Sequence[Built]) -> None:
    later = "known after the push"
    platforms = {
        built.platform: {**platform_values(built, later, built.image.image_id or "", built.sbom, {}), "digest": later}
        for built in builts
    }
    values = history_values(config, plan, later, builts[0].versions, platforms, {})
    entry = {**values, "build_number": len(plan.builds) + 1, "digest": None, "image_ref": None, "signing": None}
    print(
        json.dumps(
            {
                "tags": [plan.ref, *(f"{plan.repo}:{t}" for t in plan.floating)],
                "platforms": [built.platform for built in builts],
                "labels": {built.platform: built.labels for built in builts},
                "history_entry": entry,
                "signs": "nothing: a dry run builds and validates the SBOMs only",
            },
            indent=2,
        )
    )


T = TypeVar("T")


async def guarded(plan: Plan, pushed: Sequence[str], what: str, work: Awaitable[T]) -> T:
    """Await work on the published candidate; on any failure withdraw it, and say so in the error."""
    try:
        return await work
    except (StageFailure, EngineError, RegistryError, signing.SigningError, ValueError) as err:
        # The withdrawal's outcome leads: the first line is the one every summary shows.
        raise StageFailure(f"{what} of {plan.ref} failed ({withdraw(plan, pushed)}): {err}") from None


async def read_back(plan: Plan, digest: str, platforms: Sequence[str]) -> dict[str, str]:
    """platform → manifest digest of what the tag names: the pushed digest, holding exactly these platforms."""
    served = plan.registry.digest(str(plan.version))
    if served != digest:
        raise StageFailure(f"the registry serves {served} for {plan.ref}, the push reported {digest}")
    if len(platforms) == 1:
        return {platforms[0]: digest}
    media_type, body = plan.registry.manifest(digest)
    found = oci.index_platforms(json.loads(body))
    if sorted(found) != sorted(platforms):
        raise StageFailure(f"the index {digest} ({media_type}) holds {sorted(found)}, not {sorted(platforms)}")
    return found


async def pull_and_gate(engine: Engine, where: str, plan: Plan, built: Built) -> Image:
    pulled = await engine.pull(where, plan.auth, built.platform)
    await gate_image(engine, pulled, built.labels, built.versions)
    return pulled


def registry_config(plan: Plan, private: Path) -> SecretRef | None:
    """The registry login as a docker config file in a private temp dir, for cosign to push with."""
    if plan.auth is None:
        return None
    path = private / "config.json"
    path.touch(mode=0o600)
    path.write_text(docker_config(plan.auth.address, plan.auth.username, read_secret(plan.auth.password)))
    return SecretRef(f"file://{path}")


async def stored(plan: Plan, digest: str, kind: str) -> dict[str, str]:
    """Where cosign stored the signature or attestations of digest: `{kind: tag, kind_digest: digest}`."""
    tag = signing.signature_tags(digest)[("signature", "attestation").index(kind)]
    try:
        found = plan.registry.digest(tag)
    except RegistryError as err:
        raise StageFailure(f"reading {plan.repo}:{tag}: {err}") from None
    if found is None:
        raise StageFailure(f"cosign reported success but {plan.repo}:{tag} is not in the registry")
    return {kind: f"{plan.repo}:{tag}", f"{kind}_digest": found}


def withdraw(plan: Plan, pushed: Sequence[str]) -> str:
    """Remove the candidate (index and platform manifests) and whatever cosign stored for it."""
    try:
        outcome = plan.registry.delete(pushed[0])
        for digest in pushed[1:]:
            plan.registry.delete(digest)
        for digest in pushed:
            for tag in signing.signature_tags(digest):
                stored_digest = plan.registry.digest(tag)
                if stored_digest is not None:
                    plan.registry.delete(stored_digest)
    except RegistryError as err:
        return f"could not remove the candidate tag ({err}): remove {plan.ref} by hand"
    return {
        "removed": f"removed {plan.ref}",
        "absent": f"{plan.ref} is not in the registry",
        "not allowed": f"the registry does not allow deletes: remove {plan.ref} by hand",
    }[outcome]
