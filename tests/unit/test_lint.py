"""The shell scripts, the Dockerfile and the workflows pass their linters; the import contracts hold and bite."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from ci.core.config import REPO_ROOT

SHELL_SCRIPTS = [
    "docker/entrypoint.sh",
    "scripts/run-backup.sh",
    "scripts/dev",
    "scripts/commit-history",
    "scripts/release-gate",
    "scripts/github-release",
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


def lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    """`lint-imports` on the `ci` package under root (a copy), without its cache."""
    env = {**os.environ, "PYTHONPATH": str(root)}
    argv = [tool("lint-imports"), "--no-cache"]
    return subprocess.run(argv, cwd=root, env=env, capture_output=True, text=True, check=False)


def test_lint_imports_keeps_every_contract_and_fails_on_an_upward_import(tmp_path):
    shutil.copytree(REPO_ROOT / "ci", tmp_path / "ci", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO_ROOT / "pyproject.toml", tmp_path)
    contracts = tomllib.loads((tmp_path / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]
    (layers,) = [contract["name"] for contract in contracts if contract["type"] == "layers"]
    kept = lint_imports(tmp_path)
    assert kept.returncode == 0, kept.stdout + kept.stderr
    assert f"Contracts: {len(contracts)} kept, 0 broken." in kept.stdout
    # One import up, from the lowest layer into release code: the layers contract breaks.
    files = tmp_path / "ci/core/files.py"
    files.write_text(files.read_text().replace("\nimport os\n", "\nimport os\n\nimport ci.release.plan\n", 1))
    broken = lint_imports(tmp_path)
    assert broken.returncode != 0
    assert f"{layers} BROKEN" in broken.stdout
    assert "- ci.core.files -> ci.release.plan" in broken.stdout
