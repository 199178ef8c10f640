"""Publishing a tested release: push a candidate, verify, sign, then write the version tags, record.

Order matters: nothing is pushed before every gate passed; the candidate goes up by digest (or
under a candidate tag that is not a version, where the engine pushes only by tag), so no tag a
user would pull names it until it was read back, re-gated, signed, its SBOM, SLSA provenance and
vulnerability scan attested and all of it verified, by digest. Only then is the version tag
written (if it is still absent), then the floating tags; the history and the release notes change
after all of that. What was pushed is a `Candidate`: any failure until the version tag is written
withdraws it.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
import time
from collections.abc import Awaitable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from ci.core.config import REPO_ROOT, RunConfig, rfc3339
from ci.core.errors import PipelineError, RegistryError, StageFailure
from ci.core.files import write_atomically
from ci.core.report import Report
from ci.engines.seam import Engine, Image, Pushed
from ci.image import sbom, vulns
from ci.image.gates import refuse, same_versions
from ci.image.probe import gate_image
from ci.image.sbom import write_sbom
from ci.oci import media
from ci.oci.auth import SecretRef, docker_config, read_secret
from ci.oci.registry import Registry, is_loopback
from ci.release import history, notes, provenance, refresh, signing, tags
from ci.release.plan import STAGE, Plan
from ci.release.provenance import file_digests
from ci.stages.build import Built

T = TypeVar("T")


@dataclass(frozen=True)
class Published:
    """One platform of the release, as the registry serves it."""

    built: Built
    digest: str
    image: Image
    sbom: str
    # The SLSA provenance predicate, as attested.
    provenance: str
    # The vulnerability scan of the tested image (cosign's vuln predicate), as attested.
    vuln: str


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
    built: Built,
    digest: str,
    image_id: str,
    sbom_text: str,
    signed: Mapping[str, Any],
    provenance_text: str | None,
    vuln_text: str | None = None,
) -> dict[str, Any]:
    """What the history keeps of one platform."""
    return {
        "digest": digest,
        "image_id": image_id,
        "base_image": built.base.name,
        "base_digest": built.base.digest,
        "base_local_id": built.base.local_id,
        "packages_sha256": sbom.package_set_sha256(json.loads(sbom_text)),
        "sbom_sha256": sha256_hex(sbom_text),
        **{k: v for k, v in signed.items() if k != history.ATTESTED},
        "provenance_sha256": None if provenance_text is None else sha256_hex(provenance_text),
        "vulnerabilities": None if vuln_text is None else vuln_values(vuln_text),
    }


def vuln_values(vuln_text: str) -> dict[str, Any]:
    """What the history keeps of a platform's attested scan: its counts, database and digest."""
    predicate = json.loads(vuln_text)
    return {
        **vulns.predicate_counts(predicate),
        "database": predicate["scanner"]["db"]["version"],
        "sha256": sha256_hex(vuln_text),
    }


def sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass
class Candidate:
    """What a release pushed, owned until the version tag names it: any failure withdraws all of it.

    `pushed` holds the candidate's digest first (the manifest, or the index), then each platform
    manifest; `tag` is the candidate tag it went up under, None when pushed by digest alone.
    """

    plan: Plan
    pushed: list[str] = field(default_factory=list)
    tag: str | None = None

    @property
    def digest(self) -> str:
        return self.pushed[0]

    @property
    def where(self) -> str:
        return f"{self.plan.repo}@{self.digest}"

    async def guard(self, what: str, work: Awaitable[T]) -> T:
        """Await work on the candidate; on any failure withdraw it, and say so in the error."""
        try:
            return await work
        except Exception as err:
            outcome = self.withdraw()
            if not isinstance(err, PipelineError):
                err.add_note(f"{what} of {self.plan.ref}: {outcome}")
                raise
            # The withdrawal's outcome leads: the first line is the one every summary shows.
            raise StageFailure(f"{what} of {self.plan.ref} failed ({outcome}): {err}") from None

    def untag(self) -> str:
        """Remove the candidate tag, if there is one: "removed" or "not allowed"."""
        if self.tag is None:
            return "removed"
        outcome = self.plan.registry.untag(self.tag, self.where)
        self.tag = None
        return outcome

    def withdraw(self) -> str:
        """Remove the candidate's tag, its manifests and whatever cosign stored for it."""
        plan = self.plan
        try:
            # The same content under the version tag is a release, not this candidate's to remove.
            if plan.registry.digest(str(plan.version)) == self.digest:
                return f"{plan.ref} names it: left in place"
            self.untag()
            outcome = plan.registry.delete(self.pushed[0])
            for digest in self.pushed[1:]:
                plan.registry.delete(digest)
            for digest in self.pushed:
                for tag in signing.signature_tags(digest):
                    stored_digest = plan.registry.digest(tag)
                    if stored_digest is not None:
                        plan.registry.delete(stored_digest)
        except RegistryError as err:
            return f"could not remove the candidate ({err}): remove {self.where} by hand"
        return {
            "removed": f"removed the candidate {self.where}",
            "absent": f"the candidate {self.where} is not in the registry",
            "not allowed": f"the registry does not allow deletes: the candidate {self.where} stays, under no tag",
        }[outcome]

    async def land(self) -> str:
        """Remove the candidate tag, then write the version tag if it is still absent.

        Returns what became of the candidate tag: "removed", or "not allowed" (it names a placeholder).
        """
        plan = self.plan
        untagged = self.untag()
        served = plan.registry.digest(str(plan.version))
        if served is not None:
            raise StageFailure(f"{plan.ref} appeared during the release, naming {served}: it is not overwritten")
        moved = plan.registry.tag(self.digest, str(plan.version))
        if moved != self.digest:
            raise StageFailure(f"{plan.ref} points at {moved}, not {self.digest}")
        return untagged


async def release(
    engine: Engine,
    config: RunConfig,
    plan: Plan,
    tested: Sequence[Built],
    report: Report,
    scans: Sequence[vulns.Scan],
) -> None:
    # The label, version and feature gates ran on these very images in the final stage, before
    # the test stage; the labels are checked again on what the registry serves after the push.
    with report.step(STAGE, "one set of tool versions for every platform"):
        refuse(same_versions({built.platform: built.versions for built in tested}))
    if config.dry_run:
        with report.step(STAGE, "dry run: what a release would publish"):
            dry_run(config, plan, tested)
        return
    identity = plan.identity
    if identity is None:
        raise StageFailure("a release that is not a dry run needs a signing identity")
    # What changed since the last release, for the notes: read before anything is pushed.
    last = plan.builds[-1] if plan.builds else None
    changes = await refresh.changes_since(engine, last, tested, plan.auth, report, STAGE) if last else []
    with report.step(STAGE, "the engine's version and the build files, for provenance"):
        made = Made(engine.name, await engine.version(), file_digests(REPO_ROOT))
    with report.step(STAGE, "build the signing tools image (cosign)"):
        tools = await signing.build_tools(engine, config.tools_base_image, plan.auth)
    names = [built.platform for built in tested]
    with report.step(STAGE, f"push the candidate for {plan.ref} ({', '.join(names)}), under no version tag"):
        candidate_tag = tags.candidate_tag(config.run_id)
        pushed = await engine.publish([built.image for built in tested], plan.repo, candidate_tag, plan.auth)
        candidate = Candidate(plan, [pushed.digest], pushed.tag)
    digest = candidate.digest
    with report.step(STAGE, f"read back {candidate.where}: it names {', '.join(names)}"):
        digests = await candidate.guard("verification", read_back(plan.registry, pushed, names))
        candidate.pushed += [d for d in digests.values() if d != digest]
    scanned = {scan.platform: vulns.render(vulns.predicate(scan, config.vuln_threshold)) for scan in scans}
    published = [
        await verify_platform(engine, config, candidate, built, digests, made, report, scanned[built.platform])
        for built in tested
    ]
    with tempfile.TemporaryDirectory(prefix="dar-backup-ci-cosign-") as private_dir:
        login = registry_config(plan, Path(private_dir))
        loopback = plan.registry.host if is_loopback(plan.registry.host) else None
        cosign = signing.Cosign(engine, tools, identity, loopback, login)
        signed, platforms = await sign_and_verify(cosign, candidate, published, report)
    with report.step(STAGE, f"write {plan.ref}: signed, attested and verified, and still absent"):
        if await candidate.guard("tagging", candidate.land()) == "not allowed":
            report.notes.append(
                f"{plan.repo}:{candidate_tag} names an empty placeholder: the registry does not allow deletes"
            )
    for tag in plan.floating:
        with report.step(STAGE, f"move {plan.repo}:{tag}"):
            try:
                moved = plan.registry.tag(digest, tag)
            except RegistryError as err:
                raise StageFailure(f"moving {tag}: {err}") from None
            if moved != digest:
                raise StageFailure(f"{plan.repo}:{tag} points at {moved}, not {digest}")
    with report.step(STAGE, "append the build history"):
        values = history_values(config, plan, digest, tested[0].versions, platforms, signed)
        entry = history.next_entry(plan.builds, values)
        history.append(plan.history_path, entry)
    with report.step(STAGE, f"release notes: {config.report_dir / notes.NOTES_FILE}"):
        upgrade = notes.upgrade_result(report.steps, report.run.get("previous_version"))
        commands = signing.user_commands(identity, f"{plan.repo}@{digest}", is_loopback(plan.registry.host))
        scanned_lines = [line for scan in scans for line in vulns.summary(scan, config.vuln_threshold)]
        text = notes.render(entry, last, changes, upgrade, commands, scanned_lines)
        write_atomically(config.report_dir / notes.NOTES_FILE, text)


@dataclass(frozen=True)
class Made:
    """What every platform's provenance shares: the engine, its version and the build files' digests."""

    engine: str
    engine_version: str
    files: Mapping[str, str]


async def verify_platform(
    engine: Engine,
    config: RunConfig,
    candidate: Candidate,
    built: Built,
    digests: Mapping[str, str],
    made: Made,
    report: Report,
    vuln_text: str,
) -> Published:
    """One platform as the registry serves it: pulled by its digest, gated, its SBOM and provenance naming it."""
    digest = digests[built.platform]
    where = f"{candidate.plan.repo}@{digest}"
    with report.on_platform(built.platform):
        with report.step(STAGE, f"verify {where}"):
            pulled = await candidate.guard("verification", pull_and_gate(engine, where, candidate.plan, built))
        with report.step(STAGE, "SBOM of the published image"):
            written = write_sbom(engine, pulled, built.platform, config, built.versions, report, digest)
            sbom_text = await candidate.guard("the SBOM", written)
        with report.step(STAGE, "SLSA provenance of the published image"):
            build = provenance.Build(built.platform, built.base, made.engine, made.engine_version)
            predicate = provenance.predicate(config, build, made.files, rfc3339(time.time()))
            statement = provenance.statement(candidate.plan.repo, digest, predicate)
            write_atomically(
                config.report_dir / provenance.provenance_file(built.platform), provenance.render(statement)
            )
    return Published(built, digest, pulled, sbom_text, provenance.render(predicate), vuln_text)


async def sign_and_verify(
    cosign: signing.Cosign, candidate: Candidate, published: Sequence[Published], report: Report
) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """Sign what the tag names, attest the SBOMs, provenance and scans, verify it all; what the history keeps of it.

    An index is signed with `--recursive` (each platform manifest gets the signature too) and
    carries every platform's SBOM, provenance and scan, so a user verifying the tag finds them;
    each platform manifest carries its own.
    """
    plan, digest = candidate.plan, candidate.digest
    index = len(published) > 1
    sboms = [item.sbom for item in published]
    provenances = [item.provenance for item in published]
    scans = [item.vuln for item in published]
    with report.step(STAGE, f"sign {candidate.where}" + (" and every platform manifest" if index else "")):
        public_key = await candidate.guard("signing", cosign.public_key())
        await candidate.guard("signing", cosign.sign(plan.repo, digest, recursive=index))
    for item in published:
        for what, text in ((signing.SBOM, item.sbom), (signing.PROVENANCE, item.provenance), (signing.VULN, item.vuln)):
            with report.on_platform(item.built.platform), report.step(STAGE, f"attest the {what.kind} predicate"):
                for subject in dict.fromkeys((item.digest, digest)):
                    await candidate.guard("signing", cosign.attest(plan.repo, subject, text, what))
    with report.step(STAGE, f"verify the signature, the SBOM, provenance and scan attestations of {candidate.where}"):
        signed: dict[str, Any] = {"identity": signing.identity_record(cosign.identity, public_key)}
        check = verify(cosign, plan, candidate.where, digest, public_key, sboms, provenances, scans)
        signed |= await candidate.guard("signature verification", check)
    platforms: dict[str, dict[str, Any]] = {}
    for item in published:
        if index:
            step = f"verify the signature, the SBOM, provenance and scan attestations of {plan.repo}@{item.digest}"
            with report.on_platform(item.built.platform), report.step(STAGE, step):
                ref = f"{plan.repo}@{item.digest}"
                check = verify(cosign, plan, ref, item.digest, public_key, [item.sbom], [item.provenance], [item.vuln])
                records = await candidate.guard("signature verification", check)
        else:
            records = {k: v for k, v in signed.items() if k != "identity"}
        platforms[item.built.platform] = platform_values(
            item.built, item.digest, item.image.image_id or "", item.sbom, records, item.provenance, item.vuln
        )
    return signed, platforms


async def verify(
    cosign: signing.Cosign,
    plan: Plan,
    ref: str,
    digest: str,
    public_key: str | None,
    sboms: Sequence[str],
    provenances: Sequence[str],
    scans: Sequence[str],
) -> dict[str, Any]:
    """ref (a tag, or the digest) names digest, whose signature, SBOM, provenance and scan
    attestations verify, each exactly as written; where they are stored and what was attested."""
    await cosign.verify(ref, digest, public_key)
    attested = []
    for what, written in ((signing.SBOM, sboms), (signing.PROVENANCE, provenances), (signing.VULN, scans)):
        await cosign.verify_attestation(ref, digest, public_key, written, what)
        attested.append(what.predicate_type)
    stored_at = {**await stored(plan, digest, "signature"), **await stored(plan, digest, "attestation")}
    return {**stored_at, history.ATTESTED: attested}


def dry_run(config: RunConfig, plan: Plan, tested: Sequence[Built]) -> None:
    after_push = "known after the push"
    platforms = {
        built.platform: {
            **platform_values(built, after_push, built.image.image_id or "", built.sbom, {}, None),
            "digest": after_push,
        }
        for built in tested
    }
    values = history_values(config, plan, after_push, tested[0].versions, platforms, {})
    entry = {**values, "build_number": len(plan.builds) + 1, "digest": None, "image_ref": None, "signing": None}
    print(
        json.dumps(
            {
                "tags": [plan.ref, *(f"{plan.repo}:{t}" for t in plan.floating)],
                "platforms": [built.platform for built in tested],
                "labels": {built.platform: built.labels for built in tested},
                "history_entry": entry,
                "signs": "nothing: a dry run builds and validates the SBOMs only",
            },
            indent=2,
        ),
        flush=True,
    )


async def read_back(registry: Registry, pushed: Pushed, platforms: Sequence[str]) -> dict[str, str]:
    """platform → manifest digest of the candidate as the registry serves it, holding exactly these platforms.

    Every manifest is fetched by its digest and refused unless its bytes hash to it
    (`Registry.manifest`); an index's entries must be the digests the engine pushed, where it says.
    """
    if pushed.tag is not None and (served := registry.digest(pushed.tag)) != pushed.digest:
        raise StageFailure(f"the registry serves {served} for {pushed.tag}, the push reported {pushed.digest}")
    media_type, body = registry.manifest(pushed.digest)
    if len(platforms) == 1:
        return {platforms[0]: pushed.digest}
    try:
        document = json.loads(body)
    except ValueError as err:
        raise RegistryError(f"the index {pushed.digest} is not JSON: {err}") from None
    found = media.index_platforms(document)
    if sorted(found) != sorted(platforms):
        raise StageFailure(f"the index {pushed.digest} ({media_type}) holds {sorted(found)}, not {sorted(platforms)}")
    for platform, digest in sorted(pushed.platforms.items()):
        if found.get(platform) != digest:
            named = found.get(platform)
            raise StageFailure(f"the index {pushed.digest} names {named} for {platform}, the engine pushed {digest}")
    for digest in found.values():
        registry.manifest(digest)
    return found


async def pull_and_gate(engine: Engine, where: str, plan: Plan, built: Built) -> Image:
    pulled = await engine.pull(where, plan.auth, built.platform)
    await gate_image(engine, pulled, built.labels, built.versions)
    return pulled


def registry_config(plan: Plan, private_dir: Path) -> SecretRef | None:
    """The registry login as a docker config file in a private temp dir, for cosign to push with."""
    if plan.auth is None:
        return None
    path = private_dir / "config.json"
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
