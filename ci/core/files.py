"""Files written whole or not at all, and a file lock for what one process at a time may do."""

from __future__ import annotations

import fcntl
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path


def write_atomically(path: Path, text: str) -> None:
    """Write via a temp file in the same directory and rename: readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        Path(tmp).replace(path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@contextmanager
def exclusive(lock: Path, waiting: Callable[[], None] | None = None) -> Iterator[None]:
    """One process at a time in the block (closing the file releases the lock, also on an error).

    waiting, if given, is called once when another process holds the lock, before waiting for it.
    """
    lock.parent.mkdir(parents=True, exist_ok=True)
    # Read-only, created only where missing: flock needs no write access, so a lock another user
    # made (root's tests, then a user's pipeline) still serves, and an O_CREAT open of another
    # user's file in a sticky directory such as /run/lock is refused where fs.protected_regular is set.
    try:
        fd = os.open(lock, os.O_RDONLY)
    except FileNotFoundError:
        fd = os.open(lock, os.O_RDONLY | os.O_CREAT, 0o644)
    with os.fdopen(fd) as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if waiting is not None:
                waiting()
            fcntl.flock(handle, fcntl.LOCK_EX)
        yield
