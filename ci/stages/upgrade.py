"""The upgrade check: archives and catalogs written by the previous release restore with the candidate.

A backup image exists to get data back, often years later with a newer image. The previous
image (its own entrypoint, config and dar-backup) makes FULL → DIFF → INCR of the scenario's
data; after each level the candidate tests the old archive with its dar, restores the old chain
and restores the level's point in time from the previous image's catalog database, each
compared exactly as in the test stage. The other direction — the previous image restoring the
candidate's archive, what a rollback needs — is run and reported but does not gate.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from ci.core.errors import StageFailure
from ci.core.labels import OCI
from ci.core.report import Report
from ci.core.versions import TOOLS
from ci.engines.seam import Engine, Image
from ci.image.probe import probe
from ci.oci.auth import RegistryAuth
from ci.stages.manifest import Manifest
from ci.stages.scenario import DEFINITION, LEVELS, TIME_ZONE, Level, Scenario, fail_unless, prove_restored

STAGE = "upgrade"


@dataclass(frozen=True)
class Previous:
    """The release the candidate must read the archives of."""

    image: Image
    ref: str
    version: str
    versions: Mapping[str, str]


async def pull_previous(engine: Engine, ref: str, auth: RegistryAuth | None, platform: str, report: Report) -> Previous:
    """The previous release for platform, pulled (by digest where the ref has one) and asked for its versions."""
    with report.step(STAGE, f"pull the previous release {ref} ({platform})"):
        image = await engine.pull(ref, auth, platform)
        version = (await engine.labels(image, [f"{OCI}.version"]))[f"{OCI}.version"] or "unlabelled"
        previous = Previous(image, ref, version, (await probe(engine, image, TOOLS)).versions)
    report.run.update(previous_image=ref, previous_version=version)
    return previous


async def last_release(
    engine: Engine, ref: str | None, auth: RegistryAuth | None, platform: str, report: Report
) -> Previous | None:
    """The release before this one, pulled; the first release records the check as skipped, with why."""
    if ref is None:
        report.skip(
            STAGE, "archives of the previous release restore with the candidate", "skipped: no previous release"
        )
        return None
    return await pull_previous(engine, ref, auth, platform, report)


async def check(
    engine: Engine, candidate: Image, candidate_versions: Mapping[str, str], previous: Previous, report: Report
) -> None:
    report.notes.append(versions_note(previous, candidate_versions))
    await Upgrade(engine, candidate, previous, report).run()


def versions_note(previous: Previous, candidate_versions: Mapping[str, str]) -> str:
    sides = [
        f"{who}: " + ", ".join(f"{tool} {version}" for tool, version in versions.items())
        for who, versions in (("previous", previous.versions), ("candidate", candidate_versions))
    ]
    return f"upgrade from {previous.version} ({previous.ref}): " + "; ".join(sides)


@dataclass
class Upgrade:
    engine: Engine
    candidate: Image
    previous: Previous
    report: Report

    def pair(self, writer: Image, reader: Image, prefix: str) -> tuple[Scenario, Scenario]:
        """Two stories over the same volumes: one image writes, the other reads."""
        write = Scenario(self.engine, writer, self.report, stage=STAGE, volume_prefix=prefix)
        read = Scenario(
            self.engine,
            reader,
            self.report,
            volumes=write.volumes,
            snapshots=write.snapshots,
            archives=write.archives,
            stage=STAGE,
        )
        return write, read

    async def run(self) -> None:
        old, new = self.pair(self.previous.image, self.candidate, "upgrade-")
        version = self.previous.version
        with self.report.step(STAGE, f"volumes for the archives of {version}"):
            await old.set_up()
        previous: Manifest = {}
        for level in LEVELS:
            try:
                previous = await self.level(old, new, level, previous)
            except StageFailure as err:
                # The one line a refused release ends with names the release and the level.
                raise StageFailure(f"upgrade from {version} fails at {level.name}: {err}") from None
        with self.report.step(STAGE, f"the candidate's manager lists {version}'s catalog"):
            listed = fail_unless(await new.user(["manager", "--list-catalogs", "-d", DEFINITION]), "manager -l").stdout
            missing = [name for name in old.archives.values() if name not in listed]
            if missing:
                raise StageFailure(f"manager --list-catalogs does not list {', '.join(missing)}")
        await self.rollback()

    async def level(self, old: Scenario, new: Scenario, level: Level, previous: Manifest) -> Manifest:
        """The previous image backs the level up; the candidate tests, restores and PITRs it."""
        version = self.previous.version
        with self.report.step(STAGE, f"{level.name}: {version} backs up ({level.flag}) in {TIME_ZONE}"):
            expected = await old.change_data(level)
            archive = await old.archive_of(level, await old.back_up(level))
        pitr = new.point_in_time(level, previous, expected)
        with self.report.step(STAGE, f"{level.name}: the candidate's dar -t passes on {version}'s archive"):
            # The candidate's PITR reports from the old catalog come back from the same container.
            tested, *reports = await new.batch([["dar", "-t", f"/backups/{archive}", "-Q"], *pitr.report_argvs()])
            fail_unless(tested, f"the candidate's dar -t {archive}")
        chain = [old.archives[lv.name] for lv in LEVELS[: LEVELS.index(level) + 1]]
        with self.report.step(STAGE, f"{level.name}: the candidate restores {version}'s chain"):
            restored, pitr_done, pitr_listed = await new.restore_both("upgrade", chain, pitr)
            prove_restored(expected, restored, f"restore of {level.name}")
        with self.report.step(STAGE, f"{level.name}: the candidate's PITR from {version}'s catalog"):
            earlier = [old.snapshots[lv.name] for lv in LEVELS[: LEVELS.index(level)]]
            new.prove_point_in_time(pitr, pitr_done, pitr_listed, reports, earlier)
        return expected

    async def rollback(self) -> None:
        """The previous image restores the candidate's FULL: reported, not gating."""
        version, full = self.previous.version, LEVELS[0]
        with self.report.step(STAGE, f"rollback: {version} restores the candidate's FULL", gating=False):
            new, old = self.pair(self.candidate, self.previous.image, "rollback-")
            await new.set_up()
            expected = await new.change_data(full)
            archive = await new.archive_of(full, await new.back_up(full))
            target = await old.restore("rollback", [archive])
            prove_restored(expected, await old.manifest(f"{target}/data"), f"{version}'s restore")
