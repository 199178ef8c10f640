"""git as the script tests drive it: a fixed author, no GitHub Actions variables from the environment."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

ENV = {
    **{k: v for k, v in os.environ.items() if not k.startswith("GITHUB_")},
    "GIT_AUTHOR_NAME": "t",
    "GIT_AUTHOR_EMAIL": "t@example.org",
    "GIT_COMMITTER_NAME": "t",
    "GIT_COMMITTER_EMAIL": "t@example.org",
}


def git(where: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(where), *args], capture_output=True, text=True, check=True, env=ENV).stdout


def origin_and_seed(where: Path) -> tuple[Path, Path]:
    """An empty bare repository whose branch is main (the tests' origin), and a clone of it to fill it from."""
    bare, seed = where / "origin.git", where / "seed"
    git(where, "init", "-q", "--bare", "-b", "main", str(bare))
    git(where, "clone", "-q", str(bare), str(seed))
    return bare, seed
