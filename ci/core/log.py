"""The pipeline's one way to say what it is doing: `[where] message` lines on stdout."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

# How often a step that is still running says so: a quiet minute reads as a hang.
PROGRESS_SECONDS = 15.0


def say(where: str, message: str) -> None:
    print(f"[{where}] {message}", flush=True)


def error(message: str) -> None:
    """The one `error:` line a failed command ends with, on stderr."""
    print(f"error: {message}", file=sys.stderr, flush=True)


@contextmanager
def progress(where: str, what: str, every: float | None = None) -> Iterator[None]:
    """`[where] what: still running (Ns)` every `every` seconds (PROGRESS_SECONDS) until the block ends.

    From a thread of its own: a step awaiting the engine and one blocked in a subprocess say so alike.
    """
    interval = PROGRESS_SECONDS if every is None else every
    started = time.monotonic()
    done = threading.Event()

    def tell() -> None:
        while not done.wait(interval):
            say(where, f"{what}: still running ({time.monotonic() - started:.0f}s)")

    teller = threading.Thread(target=tell, name=f"progress: {what}", daemon=True)
    teller.start()
    try:
        yield
    finally:
        done.set()
        teller.join()
