"""Release notes (Markdown) from the history entry a release recorded, the one before it and the run.

Plain functions: what changed (tool versions; base digest and packages, as refresh computes
them), the upgrade check's result as the report recorded it, the vulnerability scan's findings
and exceptions, and the exact commands a user runs to verify this digest.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ci.core.report import Step
from ci.core.versions import TOOLS

NOTES_FILE = "release-notes.md"
UPGRADE_STAGE = "upgrade"
ROLLBACK = "rollback: "
HISTORY_KEYS = {"dar-backup": "dar_backup_version", "dar": "dar_version", "par2": "par2_version"}


def version_lines(entry: Mapping[str, Any], previous: Mapping[str, Any] | None) -> list[str]:
    lines = []
    for tool in TOOLS:
        now = entry[HISTORY_KEYS[tool]]
        before = previous[HISTORY_KEYS[tool]] if previous else None
        change = "" if previous is None else " (unchanged)" if before == now else f" (was {before})"
        lines.append(f"- {tool} {now}{change}")
    return lines


def upgrade_result(steps: Sequence[Step], previous_version: str | None) -> str:
    """One line: skipped with the reason, or what restored and whether the rollback did."""
    upgrade = [step for step in steps if step.stage == UPGRADE_STAGE]
    if not upgrade:
        return "not run"
    skipped = [step for step in upgrade if step.status == "skipped"]
    if skipped:
        return skipped[0].message
    rollback = [step for step in upgrade if step.name.startswith(ROLLBACK)]
    gating = [step for step in upgrade if step not in rollback]
    passed = sum(step.status == "passed" for step in gating)
    line = f"passed: {passed}/{len(gating)} checks, {previous_version}'s archives and catalog restore with this release"
    for step in rollback:
        line += f"; {step.name.removeprefix(ROLLBACK)}: {step.status}" + (f" ({step.message})" if step.message else "")
    return line


def render(
    entry: Mapping[str, Any],
    previous: Mapping[str, Any] | None,
    changes: Sequence[str],
    upgrade: str,
    commands: Sequence[str],
    scanned: Sequence[str] = (),
) -> str:
    """The notes of the release `entry` records; `previous` is the release before it (None: the first)."""
    lines = [f"# dar-backup image {entry['tag']}", ""]
    lines += [f"- Image: `{entry['image_ref']}`", f"- Revision: `{entry['git_revision']}`"]
    if entry["notes"]:
        lines.append(f"- Why: {entry['notes']}")
    if previous is None:
        lines.append("- First release in the build history")
    else:
        lines.append(f"- Previous release: {previous['tag']} (`{previous['image_ref']}`)")
    lines += ["", "## Platforms", "", "| platform | digest | base image | base digest |", "|---|---|---|---|"]
    for name, facts in entry["platforms"].items():
        base_digest = facts["base_digest"] or f"local {facts['base_local_id']}"
        lines.append(f"| {name} | `{facts['digest']}` | `{facts['base_image']}` | `{base_digest}` |")
    lines += ["", "## Tools", "", *version_lines(entry, previous)]
    lines += ["", "## Base image and packages since the previous release", ""]
    if previous is None:
        lines.append("Nothing to compare: this is the first release.")
    else:
        lines += [f"- {change}" for change in changes] or [f"No change since {previous['tag']}."]
    lines += ["", "## Upgrade check", "", upgrade]
    lines += ["", "## Vulnerability scan", "", *(f"- {line}" for line in scanned)] if scanned else []
    lines += ["", "## Verify", "", "```sh", *commands, "```", ""]
    return "\n".join(lines)
