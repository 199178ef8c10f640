"""The local Docker engine as the end-to-end tests drive it: the client, the pipeline's CLI, mounts, keys."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from ci.core.config import REPO_ROOT

# Seeds /data: a 2 MiB file (dar-backup's own restore test compares files of 1-20 MiB) and a small one.
SEED_DATA = "mkdir -p /data/docs && head -c 2097152 /dev/urandom > /data/docs/two-mib.bin && echo hi > /data/a.txt"


@dataclass(frozen=True)
class Docker:
    client: str

    def __call__(self, *args: str, input: bytes | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [self.client, *args], capture_output=True, text=True, check=False, input=input and input.decode()
        )

    def ok(self, *args: str) -> str:
        done = self(*args)
        assert done.returncode == 0, f"docker {' '.join(args)} exited {done.returncode}: {done.stderr[-2000:]}"
        return done.stdout


def run_pipeline(*args: str, cwd: Path = REPO_ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "ci/main.py", "--engine", "docker", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
    )


def mounts(volumes: dict[str, str]) -> list[str]:
    paths = {"data": "/data", "backups": "/backups", "backup.d": "/backup.d", "restore": "/restore"}
    return [arg for role, name in volumes.items() for arg in ("-v", f"{name}:{paths[role]}")]


@dataclass(frozen=True)
class KeyPair:
    private: Path
    public: Path
    password: str

    def env(self) -> dict[str, str]:
        return {"DAR_BACKUP_COSIGN_KEY_FILE": str(self.private), "DAR_BACKUP_COSIGN_PASSWORD": self.password}
