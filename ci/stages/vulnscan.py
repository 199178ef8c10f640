"""The vulnerability stage: each tested image's SBOM scanned, then, for a release, the gate.

`release` and `refresh` run it on every tested image before anything is pushed, and refuse on
a fixable finding at or above the threshold or on any scan that cannot vouch for its result;
`test` runs it when given a database and only reports.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ci.core.config import REPO_ROOT, RunConfig
from ci.core.errors import StageFailure
from ci.core.files import write_atomically
from ci.core.platforms import slug
from ci.core.report import Report
from ci.image import vulns
from ci.image.vulns import Scan
from ci.stages.build import Built

STAGE = "vulnerabilities"


def scan_file(platform: str) -> str:
    return f"vulns-{slug(platform)}.json"


EXCEPTIONS = REPO_ROOT / vulns.EXCEPTIONS_FILE


async def scan(
    config: RunConfig, platform: str, sbom_text: str, report: Report, *, gating: bool, exceptions: Path = EXCEPTIONS
) -> Scan | None:
    """One SBOM scanned as a step of its platform; the predicate written to the reports. None: a
    non-gating scan that failed (recorded as a warning)."""
    db = config.vuln_db
    with report.on_platform(platform), report.step(STAGE, "scan the SBOM with osv-scanner, offline", gating=gating):
        if db is None:
            raise StageFailure("no vulnerability database (--vuln-db): a release is never published unscanned")
        found = await vulns.scan_sbom(sbom_text, platform, db, exceptions)
        predicate = vulns.predicate(found, config.vuln_threshold)
        write_atomically(config.report_dir / scan_file(platform), vulns.render(predicate))
        report.notes.extend(vulns.summary(found, config.vuln_threshold))
        return found
    return None


async def gate(
    config: RunConfig, tested: Sequence[Built], report: Report, *, gating: bool = True, exceptions: Path = EXCEPTIONS
) -> list[Scan]:
    """Scan every tested image; refuse (gating) or warn (test) on fixable findings at or above the threshold."""
    if not gating and config.vuln_db is None:
        for built in tested:
            with report.on_platform(built.platform):
                report.skip(STAGE, "scan the SBOM with osv-scanner, offline", "not scanned: no --vuln-db given")
        return []
    scans = [
        found
        for built in tested
        if (found := await scan(config, built.platform, built.sbom, report, gating=gating, exceptions=exceptions))
    ]
    with report.step(STAGE, f"vulnerability gate: nothing fixable at or above {config.vuln_threshold}", gating=gating):
        problem = vulns.refusal(scans, config.vuln_threshold)
        if problem is not None:
            raise StageFailure(problem)
    return scans
