"""Which versions a release may take and which tags it moves: pure functions over values."""

from __future__ import annotations

from collections.abc import Iterable

import semver


def semver_versions(values: Iterable[str]) -> list[semver.Version]:
    """The values that are semver (registry tags such as `latest` or `1.2` are not)."""
    return [semver.Version.parse(v) for v in values if semver.Version.is_valid(v)]


def newer_than_all(version: semver.Version, history: Iterable[str], tags: Iterable[str]) -> list[str]:
    problems = []
    for source, values in (("the build history", history), ("the registry", tags)):
        newest = max(semver_versions(values), default=None)
        if newest is not None and version <= newest:
            problems.append(f"{version} is not newer than {newest} in {source}")
    return problems


def floating_tags(version: semver.Version) -> list[str]:
    """`X.Y` and `latest` follow final releases only; a prerelease moves nothing."""
    if version.prerelease or version.build:
        return []
    return [f"{version.major}.{version.minor}", "latest"]


def candidate_tag(run_id: str) -> str:
    """The tag a candidate goes up under where the engine cannot push by digest: never a version."""
    return f"candidate-{run_id}"
