"""What this build of dar can do, as `dar -V` prints it, and the features the image promises. Pure functions.

`dar -V` prints one `   Name (library) : YES|NO[ (details)]` line per compile-time option; a
distribution that builds dar without one of them would silently weaken every backup made with
the image, so `final` refuses an image whose dar lacks a promised feature.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from ci.core.errors import OutputError

# Our name for each feature -> the text before the colon on its `dar -V` line.
LINES = {
    "gzip": "gzip compression (libz)",
    "bzip2": "bzip2 compression (libbzip2)",
    "lzo": "lzo compression (liblzo2)",
    "xz": "xz compression (liblzma)",
    "zstd": "zstd compression (libzstd)",
    "lz4": "lz4 compression (liblz4)",
    "libgcrypt": "Strong encryption (libgcrypt)",
    "gpgme": "Public key ciphers (gpgme)",
    "ea": "Extended Attributes support",
    "large-files": "Large files support (> 2GB)",
    "nodump": "ext2fs NODUMP flag support",
    "thread-safe": "Thread safe support",
    "furtive-read": "Furtive read mode support",
    "linux-fsa": "Linux ext2/3/4 FSA support",
    "statx": "Linux statx() support",
    "fadvise": "Posix fadvise support",
    "large-dirs": "Large dir. speed optimi.",
    "symlink-dates": "Restores dates of symlinks",
    "threads": "Multiple threads (libthreads)",
    "librsync": "Delta compression (librsync)",
    "libcurl": "Remote repository (libcurl)",
    "argon2": "argon2 hashing (libargon2)",
}
ACCURACY_LINES = ("Timestamp read accuracy", "Timestamp write accuracy")
# Present when dar reads and writes timestamps to the nanosecond (the test story compares them so).
NANOSECONDS = "ns-timestamps"

# What the image promises. Debian bookworm's dar 2.7.8 is built without threads, librsync and
# libcurl (trixie's 2.7.17 has them), so those are recorded but not required.
REQUIRED = (
    "gzip",
    "bzip2",
    "lzo",
    "xz",
    "zstd",
    "lz4",
    "libgcrypt",
    "gpgme",
    "ea",
    "large-files",
    "nodump",
    "linux-fsa",
    "furtive-read",
    "symlink-dates",
    "argon2",
    NANOSECONDS,
)

_LINE = re.compile(r"^\s+(\S.*?)\s*:\s*(.*?)\s*$")


def parse(output: str) -> dict[str, str]:
    """Each option line of `dar -V` output: its name -> its value, as printed (`YES`, `NO`, `1 nanosecond`)."""
    _, marker, options = output.partition("built with compilation time options:")
    if not marker:
        first = output.strip().splitlines()[:1]
        raise OutputError(f"dar -V printed no compile-time options (first line {first[0] if first else ''!r})")
    found = {}
    for line in options.split("\n\n", 1)[0].splitlines():
        if match := _LINE.match(line):
            found[match.group(1)] = match.group(2)
    return found


def features(options: Mapping[str, str]) -> set[str]:
    """Our names of the features a parsed `dar -V` says YES to, with NANOSECONDS when both accuracies are 1 ns."""
    present = {name for name, line in LINES.items() if options.get(line, "").startswith("YES")}
    if all(options.get(line) == "1 nanosecond" for line in ACCURACY_LINES):
        present.add(NANOSECONDS)
    return present


def missing(present: set[str], required: tuple[str, ...] = REQUIRED) -> list[str]:
    """One line per promised feature this dar lacks."""
    return [f"dar lacks the feature {name!r} ({_describe(name)})" for name in required if name not in present]


def _describe(name: str) -> str:
    if name == NANOSECONDS:
        return " and ".join(ACCURACY_LINES) + " of 1 nanosecond"
    return f"dar -V line {LINES[name]!r} is not YES"


def label_value(present: set[str]) -> str:
    """The feature set as one label value: names, sorted, comma-separated."""
    return ",".join(sorted(present))
