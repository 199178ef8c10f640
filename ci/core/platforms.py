"""Which platforms a run builds: `linux/amd64`, `linux/arm64`, from a comma list or the defaults."""

from __future__ import annotations

import platform as host
from collections.abc import Sequence

from ci.core.errors import PlatformError

SUPPORTED = ("linux/amd64", "linux/arm64")
# What `uname -m` (and Python's platform.machine()) says, as the platform it runs.
MACHINES = {"x86_64": "linux/amd64", "amd64": "linux/amd64", "aarch64": "linux/arm64", "arm64": "linux/arm64"}


def parse_platforms(text: str) -> tuple[str, ...]:
    """`linux/amd64,linux/arm64` as a tuple in the order given; unknown or repeated names refused."""
    names = [name.strip() for name in text.split(",")]
    if not text.strip() or not all(names):
        raise PlatformError(f"--platform must be a comma list such as {','.join(SUPPORTED)}, got {text!r}")
    unknown = [name for name in names if name not in SUPPORTED]
    if unknown:
        raise PlatformError(f"unknown platform {unknown[0]!r}; supported: {', '.join(SUPPORTED)}")
    if len(set(names)) != len(names):
        raise PlatformError(f"--platform names a platform twice: {text!r}")
    return tuple(names)


def host_platform(machine: str | None = None) -> str:
    machine = host.machine() if machine is None else machine
    try:
        return MACHINES[machine.lower()]
    except KeyError:
        raise PlatformError(f"this machine ({machine}) runs none of {', '.join(SUPPORTED)}") from None


def default_platforms(publishing: bool, host_is: str) -> tuple[str, ...]:
    """A release publishes every supported platform; other commands build the host's own."""
    if not publishing:
        return (host_is,)
    return (host_is, *(name for name in SUPPORTED if name != host_is))


def architecture(platform: str) -> str:
    """`arm64` for `linux/arm64`: the word Debian, Docker and image configs use."""
    return platform.split("/")[1]


def slug(platform: str) -> str:
    """`linux-arm64`: the platform in a file or tag name."""
    return platform.replace("/", "-")


def foreign(platforms: Sequence[str], host_is: str) -> list[str]:
    return [name for name in platforms if name != host_is]


def tag_suffix(platform: str, host_is: str) -> str:
    """`-arm64` for a foreign platform's local image tags, nothing for the host's own."""
    return "" if platform == host_is else f"-{architecture(platform)}"
