"""The shell scripts, the Dockerfile and the workflows pass their linters."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ci.core.config import REPO_ROOT

SHELL_SCRIPTS = [
    "docker/entrypoint.sh",
    "scripts/run-backup.sh",
    "scripts/dev",
    "scripts/commit-history",
    ".ci/run",
]


def tool(name: str) -> str:
    beside = Path(sys.executable).parent / name
    found = str(beside) if beside.exists() else shutil.which(name)
    assert found, f"{name} is not installed: pip install -e '.[dev]'"
    return found


def check(argv: list[str]) -> None:
    done = subprocess.run(argv, cwd=REPO_ROOT, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("script", SHELL_SCRIPTS)
def test_shellcheck(script):
    check([tool("shellcheck"), "-x", script])


@pytest.mark.parametrize("dockerfile", ["docker/Dockerfile", "docker/tools.Dockerfile"])
def test_hadolint(dockerfile):
    check([tool("hadolint"), dockerfile])


def test_actionlint():
    workflows = sorted(str(p.relative_to(REPO_ROOT)) for p in (REPO_ROOT / ".github/workflows").glob("*.yml"))
    assert workflows
    check([tool("actionlint"), *workflows])


def test_zizmor_finds_nothing_at_medium_or_above():
    """The workflows' security audit (offline): no finding of medium severity or more."""
    check([tool("zizmor"), "--offline", "--min-severity", "medium", ".github/workflows"])
