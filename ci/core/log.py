"""The pipeline's one way to say what it is doing: `[where] message` lines on stdout."""

from __future__ import annotations

import sys


def say(where: str, message: str) -> None:
    print(f"[{where}] {message}", flush=True)


def error(message: str) -> None:
    """The one `error:` line a failed command ends with, on stderr."""
    print(f"error: {message}", file=sys.stderr, flush=True)
