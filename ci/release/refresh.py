"""Refresh: rebuild as a release would, and release the next patch only when the image changed
or the last release has a vulnerability a release can fix.

What counts as a change: another base image (registry digest, or local image id), or another
set of installed distribution packages (name, version, architecture) than the last released
build recorded. What counts as a fix: the day's database finds, in the last release's packages,
a fixable finding at or above the threshold (the candidate must then pass the gate itself).
Plain functions over history entries and SBOM documents, apart from reading the previous image.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from typing import Any

import semver

from ci.core.baseimage import BaseImage
from ci.core.config import RunConfig
from ci.core.errors import StageFailure
from ci.core.log import say
from ci.core.report import Report
from ci.engines.seam import Engine
from ci.image import sbom, vulns
from ci.oci.auth import RegistryAuth
from ci.release.plan import Plan
from ci.stages import vulnscan
from ci.stages.build import Built

STAGE = "refresh"


def next_patch(builds: Sequence[Mapping[str, Any]]) -> semver.Version | None:
    """X.Y.Z+1 after the last released build; None before the first release (nothing to refresh)."""
    if not builds:
        return None
    return semver.Version.parse(builds[-1]["tag"]).bump_patch()


def package_changes(old: Mapping[str, str], new: Mapping[str, str]) -> list[str]:
    """`name old → new`, `+name version` (added), `-name version` (removed), by name."""
    lines = [f"{name} {old[name]} → {new[name]}" for name in sorted(old.keys() & new.keys()) if old[name] != new[name]]
    lines += [f"+{name} {new[name]}" for name in sorted(new.keys() - old.keys())]
    lines += [f"-{name} {old[name]}" for name in sorted(old.keys() - new.keys())]
    return lines


def base_change(recorded: Mapping[str, Any], base: BaseImage) -> list[str]:
    """`base image OLD → NEW` when built on another base: another digest, or another local image."""
    before = BaseImage(recorded["base_image"], recorded["base_digest"], recorded["base_local_id"])
    if before.identity != base.identity:
        return [f"base image {before.identity} → {base.identity}"]
    return []


async def what_changed(engine: Engine, last: Mapping[str, Any], built: Built, auth: RegistryAuth | None) -> list[str]:
    """What differs on built's platform from the last released build; empty when nothing does."""
    recorded = last["platforms"].get(built.platform)
    if recorded is None:
        return [f"{built.platform} was not in {last['tag']}"]
    document = json.loads(built.sbom)
    changes = base_change(recorded, built.base)
    if sbom.package_set_sha256(document) != recorded["packages_sha256"]:
        previous = await engine.pull(last["image_ref"], auth, built.platform)
        old = {package.name: package.version for package in (await sbom.read_contents(engine, previous)).debs}
        changes += package_changes(old, sbom.deb_versions(document)) or ["the package set changed"]
    return [f"{built.platform}: {change}" for change in changes]


async def changes_since(
    engine: Engine,
    last: Mapping[str, Any],
    tested: Sequence[Built],
    auth: RegistryAuth | None,
    report: Report,
    stage: str,
) -> list[str]:
    """What differs on every tested platform from the last released build, one step per platform."""
    changes: list[str] = []
    for built in tested:
        with report.on_platform(built.platform), report.step(stage, f"compare with the last release {last['tag']}"):
            changes += await what_changed(engine, last, built, auth)
    return changes


def fix_reasons(tag: str, platform: str, refused: Sequence[vulns.Finding]) -> list[str]:
    """Why a fixable finding in the last release is a reason to release: one line each."""
    return [f"{platform}: {tag} has {finding.line}" for finding in refused]


async def last_release_findings(
    engine: Engine, config: RunConfig, last: Mapping[str, Any], tested: Sequence[Built], plan: Plan, report: Report
) -> list[str]:
    """The last release's SBOM, read again from its image, scanned with the day's database."""
    reasons: list[str] = []
    for built in tested:
        if built.platform not in last["platforms"]:
            continue
        step = f"scan the last release {last['tag']} with the day's database"
        with report.on_platform(built.platform), report.step(STAGE, step):
            if config.vuln_db is None:
                raise StageFailure("no vulnerability database (--vuln-db) to scan the last release with")
            previous = await engine.pull(last["image_ref"], plan.auth, built.platform)
            contents = await sbom.read_contents(engine, previous)
            text = sbom.render(sbom.build_bom(contents, last["tag"], last["created"]))
            scan = await vulns.scan_sbom(text, built.platform, config.vuln_db, vulnscan.EXCEPTIONS)
            reasons += fix_reasons(last["tag"], built.platform, scan.refused(config.vuln_threshold))
    return reasons


async def worth_releasing(
    engine: Engine, config: RunConfig, plan: Plan, tested: Sequence[Built], report: Report
) -> Plan | None:
    """The release plan, saying why, when a tested image differs from the last release or the
    last release has a fixable finding at or above the threshold; else None."""
    last = plan.builds[-1]
    changes = await changes_since(engine, last, tested, plan.auth, report, STAGE)
    changes += await last_release_findings(engine, config, last, tested, plan, report)
    if not changes:
        report.notes.append(f"nothing changed since {last['tag']}")
        say(STAGE, f"nothing changed since {last['tag']} and nothing to fix: nothing to release")
        return None
    report.notes.append(f"refresh {plan.version}: " + "; ".join(changes))
    return dataclasses.replace(plan, notes=f"refresh: {'; '.join(changes)}")
