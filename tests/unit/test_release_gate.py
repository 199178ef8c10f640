"""scripts/release-gate against real git repositories: a tag on the default branch releases, one elsewhere never."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from ci.core.config import REPO_ROOT
from tests.support.git import ENV, git, origin_and_seed

SCRIPT = REPO_ROOT / "scripts/release-gate"


def commit(where: Path, message: str) -> str:
    git(where, "commit", "-q", "--allow-empty", "-m", message)
    return git(where, "rev-parse", "HEAD").strip()


@pytest.fixture
def origin(tmp_path: Path) -> Path:
    """main with two commits (tagged v1.0.0, v1.1.0), and a side branch off the first with its own tag v9.0.0."""
    bare, seed = origin_and_seed(tmp_path)
    commit(seed, "start")
    git(seed, "tag", "v1.0.0")
    git(seed, "checkout", "-q", "-b", "side")
    commit(seed, "a change no one reviewed")
    git(seed, "tag", "-a", "-m", "release", "v9.0.0")
    git(seed, "checkout", "-q", "main")
    commit(seed, "reviewed")
    git(seed, "tag", "v1.1.0")
    git(seed, "push", "-q", "origin", "main", "side", "--tags")
    return bare


def checkout(origin: Path, where: Path, tag: str, *clone: str) -> Path:
    """As the release job has it: a clone (all history, as fetch-depth: 0 makes it), the tag checked out."""
    git(origin.parent, "clone", "-q", *clone, f"file://{origin}", str(where))
    git(where, "checkout", "-q", tag)
    return where


def gate(where: Path, **env: str) -> subprocess.CompletedProcess[str]:
    env = {"DEFAULT_BRANCH": "main", **env}
    return subprocess.run([str(SCRIPT)], cwd=where, capture_output=True, text=True, check=False, env=ENV | env)


@pytest.mark.parametrize("tag", ["v1.1.0", "v1.0.0"], ids=["tip", "older"])
def test_a_tag_on_the_default_branch_is_released(origin: Path, tmp_path: Path, tag: str):
    work = checkout(origin, tmp_path / "work", tag)
    sha = git(work, "rev-parse", "HEAD").strip()
    done = gate(work, GITHUB_SHA=sha)
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"release-gate: {sha} is on main\n"


def test_a_tag_on_another_branch_is_refused(origin: Path, tmp_path: Path):
    work = checkout(origin, tmp_path / "work", "v9.0.0")
    sha = git(work, "rev-parse", "HEAD").strip()
    # GITHUB_SHA as the tag's object (an annotated tag) or its commit; without it, HEAD.
    for env in ({"GITHUB_SHA": git(work, "rev-parse", "v9.0.0").strip()}, {"GITHUB_SHA": sha}, {}):
        done = gate(work, **env)
        assert (done.returncode, done.stdout) == (2, "")
        assert done.stderr == (
            f"release-gate: {sha} is not on main: a release is made only from a commit on the default branch\n"
        )


@pytest.mark.parametrize(
    ("clone", "env", "message"),
    [
        (("--depth", "1", "--no-single-branch"), {}, "the checkout's history is shallow: fetch all of it"),
        ((), {"DEFAULT_BRANCH": ""}, "the default branch is unknown: set DEFAULT_BRANCH"),
        ((), {"DEFAULT_BRANCH": "trunk"}, "origin/trunk is not fetched"),
        ((), {"GITHUB_SHA": "0" * 40}, f"{'0' * 40} names no commit in this checkout"),
    ],
    ids=["shallow", "no-branch", "unknown-branch", "unknown-commit"],
)
def test_what_the_gate_cannot_tell_is_refused(origin: Path, tmp_path: Path, clone, env, message):
    work = checkout(origin, tmp_path / "work", "v1.1.0", *clone)
    done = gate(work, **env)
    assert done.returncode == 2
    assert done.stderr.startswith(f"release-gate: {message}") and done.stderr.count("\n") == 1
