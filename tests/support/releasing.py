"""A release as a maintainer runs it, and cosign as a user checks one."""

from __future__ import annotations

import atexit
import functools
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from ci.core.platforms import host_platform
from ci.engines.seam import Image
from tests.support.docker import Docker
from tests.support.vulndb import write_db

NAME = "dar-backup"
HOST = host_platform()


def release(
    checkout: Path, *args: str, env: dict[str, str] | None = None, command: str = "release"
) -> subprocess.CompletedProcess[str]:
    """A release of the host's platform (the two-platform release has a test of its own)."""
    return subprocess.run(
        [
            sys.executable,
            "ci/main.py",
            "--engine",
            "docker",
            command,
            "--report-dir",
            str(checkout / "reports"),
            *args,
        ],
        cwd=checkout,
        capture_output=True,
        text=True,
        check=False,
        env={**maintainer_env(), "DAR_BACKUP_PLATFORMS": HOST, "DAR_BACKUP_VULN_DB": str(clean_db()), **(env or {})},
    )


@functools.cache
def clean_db() -> Path:
    """A vulnerability database with nothing against the image: what a release scans unless a test says otherwise."""
    where = Path(tempfile.mkdtemp(prefix="dar-backup-test-osv-"))
    atexit.register(shutil.rmtree, where, ignore_errors=True)
    return write_db(where)


def maintainer_env() -> dict[str, str]:
    """The environment without the workflow run's commit: these releases are of the clone's own commits."""
    return {name: value for name, value in os.environ.items() if name != "GITHUB_SHA"}


def cosign(docker: Docker, tools: Image, *args: str, key: Path) -> subprocess.CompletedProcess[str]:
    """cosign as a user runs it to check a release: the public key, the loopback registry."""
    return docker(
        "run", "--rm", "--network", "host", "-v", f"{key}:/keys/cosign.pub:ro", tools.ref,
        *args, "--key", "/keys/cosign.pub", "--insecure-ignore-tlog=true", "--allow-insecure-registry",
    )  # fmt: skip
