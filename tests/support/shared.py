"""What the side-by-side workers of one test run (pytest-xdist) make once and share.

Each worker is a process of its own with its own session fixtures; a fixture that costs
minutes (a whole release) and is only read afterwards is made by the first worker that asks,
under a file lock, and found by the others in a directory they all see.
"""

from __future__ import annotations

import os
import signal
import socket
import time
from pathlib import Path

import pytest

from tests.support.registry import LocalRegistry


def shared_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The run's own base temporary directory: xdist makes each worker's base temp dir inside it."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if "PYTEST_XDIST_WORKER" in os.environ else base


def answers(address: str) -> bool:
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=1):
            return True
    except OSError:
        return False


class SharedRegistry:
    """A registry the workers serve together: up while any worker uses it, stopped by the last.

    A worker that starts using it after the others stopped it serves it again, on the same port
    and storage (what was pushed names that address).
    """

    def __init__(self, registry: LocalRegistry, where: Path) -> None:
        self.registry = registry
        self.users = where / "users"
        self.pid = where / "registry.pid"

    def join(self) -> None:
        count = int(self.users.read_text()) if self.users.exists() else 0
        if count == 0 and not answers(self.registry.address):
            self.registry.start()
            assert self.registry.process is not None
            self.pid.write_text(str(self.registry.process.pid))
        self.users.write_text(str(count + 1))

    def leave(self) -> None:
        count = int(self.users.read_text()) - 1
        self.users.write_text(str(count))
        if count > 0:
            return
        if self.registry.process is not None:
            self.registry.stop()
            return
        # Another worker started it: no child of this process, so it is stopped by its pid.
        os.kill(int(self.pid.read_text()), signal.SIGTERM)
        deadline = time.monotonic() + 20
        while answers(self.registry.address):
            assert time.monotonic() < deadline, f"the shared registry on {self.registry.address} did not stop"
            time.sleep(0.1)
