"""Reading `dar-backup --list-contents` output: which paths an archive saved or recorded as removed."""

from __future__ import annotations

import re

from ci.stages.manifest import Manifest, changed_paths

_REMOVED = re.compile(r"^\[--- REMOVED ENTRY ----\].*?\] (.*)$")


def saved_and_removed(text: str) -> tuple[set[str], set[str]]:
    saved: set[str] = set()
    removed: set[str] = set()
    for line in text.splitlines():
        if line.startswith("[Saved]"):
            saved.add(line.rsplit("\t", 1)[-1])
        elif match := _REMOVED.match(line):
            removed.add(match.group(1))
    return saved, removed


def unshown_changes(text: str, before: Manifest, after: Manifest, *, prefix: str) -> list[str]:
    """Changed paths the listing does not show as saved, and deleted ones it does not show as removed."""
    saved, removed = saved_and_removed(text)
    touched, gone = changed_paths(before, after)
    problems = [f"changed {p!r} not listed as saved" for p in sorted(touched) if prefix + p not in saved]
    problems += [f"deleted {p!r} not listed as removed" for p in sorted(gone) if prefix + p not in removed]
    return problems
