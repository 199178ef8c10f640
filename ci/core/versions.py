"""Version values: parsing what users type and what tools print. Pure functions."""

from __future__ import annotations

import re
from pathlib import Path

import semver

from ci.core.errors import OutputError, VersionError


def parse_release_version(text: str, what: str) -> semver.Version:
    """A strict semver version; `latest`, `1.2`, `0.5.06` and `v1.2.3` are refused with the reason."""
    value = text.strip()
    if not value:
        raise VersionError(f"{what} is empty; give a release such as 1.2.3")
    if value == "latest":
        raise VersionError(f"{what} 'latest' is not a version; give a release such as 1.2.3")
    if value[:1] in "vV" and semver.Version.is_valid(value[1:]):
        raise VersionError(f"{what} {value!r}: drop the leading 'v' (image tags are bare semver, e.g. {value[1:]})")
    try:
        return semver.Version.parse(value)
    except ValueError:
        raise VersionError(f"{what} {value!r} is not semver MAJOR.MINOR.PATCH (no leading zeros)") from None


def locked_dar_backup_version(requirements: Path) -> str:
    """The dar-backup version pinned in the image's hash-locked requirements file."""
    try:
        text = requirements.read_text()
    except OSError as err:
        raise VersionError(f"cannot read {requirements}: {err.strerror}") from None
    for line in text.splitlines():
        name, sep, rest = line.partition("==")
        if sep and name.strip().lower() == "dar-backup":
            return rest.split()[0].rstrip("\\").strip()
    raise VersionError(f"{requirements} pins no dar-backup version")


_TOOL_PATTERNS = {
    "dar-backup": re.compile(r"^dar-backup\s+(\S+)", re.MULTILINE),
    "dar": re.compile(r"^\s*dar version\s+([0-9][^,\s]*)", re.MULTILINE),
    "par2": re.compile(r"^par2cmdline version\s+(\S+)", re.MULTILINE),
}
TOOLS = tuple(_TOOL_PATTERNS)


def tool_version(tool: str, output: str) -> str:
    """The version in what `TOOL --version` printed."""
    match = _TOOL_PATTERNS[tool].search(output)
    if match is None:
        first = output.strip().splitlines()[:1]
        raise OutputError(f"cannot read a {tool} version from {first[0] if first else 'empty output'!r}")
    return match.group(1)
