"""Gates on one image: pure functions over values. Each returns the problems it finds, one line each."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from ci.core.errors import StageFailure


def label_gate(found: Mapping[str, str | None], expected: Mapping[str, str]) -> list[str]:
    """Every expected label present, non-empty and equal to what the run declared."""
    problems = []
    for key, want in expected.items():
        have = found.get(key)
        if not have:
            problems.append(f"label {key} is missing or empty")
        elif have != want:
            problems.append(f"label {key} is {have!r}, the run declared {want!r}")
    return problems


def version_gate(found: Mapping[str, str], declared: Mapping[str, str]) -> list[str]:
    """The versions the tools report inside the image equal the declared (and labelled) ones."""
    return [
        f"{tool} --version says {found.get(tool)!r}, declared {want!r}"
        for tool, want in declared.items()
        if found.get(tool) != want
    ]


def same_versions(by_platform: Mapping[str, Mapping[str, str]]) -> list[str]:
    """One tag carries one set of tool versions: every platform must report the first one's."""
    platforms = list(by_platform)
    if not platforms:
        return []
    first = by_platform[platforms[0]]
    return [
        f"{platform} has {tool} {versions.get(tool)!r}, {platforms[0]} has {want!r}"
        for platform in platforms[1:]
        for versions in [by_platform[platform]]
        for tool, want in first.items()
        if versions.get(tool) != want
    ]


def refuse(problems: Sequence[str]) -> None:
    """A gate's problems as one failure, or nothing when there are none."""
    if problems:
        raise StageFailure("; ".join(problems))
