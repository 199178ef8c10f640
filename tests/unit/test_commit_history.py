"""scripts/commit-history against real git repositories: one commit, rebased when main moved, never forced."""

import json
import subprocess
from pathlib import Path

import pytest

from ci.core.config import REPO_ROOT
from tests.support.git import ENV, git, origin_and_seed

SCRIPT = REPO_ROOT / "scripts/commit-history"
HISTORY = "doc/build-history.json"


def write_history(where: Path, tags: list[str]) -> None:
    (where / HISTORY).write_text(json.dumps({"format": 1, "builds": [{"tag": t} for t in tags]}) + "\n")


def commit(where: Path, path: str, text: str, message: str) -> None:
    (where / path).parent.mkdir(parents=True, exist_ok=True)
    (where / path).write_text(text)
    git(where, "add", path)
    git(where, "commit", "-qm", message)
    git(where, "push", "-q", "origin", "HEAD:main")


@pytest.fixture
def origin(tmp_path: Path) -> Path:
    bare, seed = origin_and_seed(tmp_path)
    (seed / "doc").mkdir()
    write_history(seed, [])
    commit(seed, "README.md", "x\n", "start")
    git(seed, "add", HISTORY)
    git(seed, "commit", "-qm", "history")
    git(seed, "push", "-q", "origin", "HEAD:main")
    git(seed, "tag", "v1.0.0")
    git(seed, "push", "-q", "origin", "v1.0.0")
    return bare


def release_checkout(origin: Path, where: Path) -> Path:
    """As the release job has it: the tag checked out, the history appended by the release."""
    git(origin.parent, "clone", "-q", str(origin), str(where))
    git(where, "checkout", "-q", "v1.0.0")
    write_history(where, ["1.0.0"])
    return where


def run(where: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """As the workflow runs it: the default branch from the event, unless env says otherwise."""
    env = {"DEFAULT_BRANCH": "main", **env}
    return subprocess.run([str(SCRIPT), *args], cwd=where, capture_output=True, text=True, check=False, env=ENV | env)


def test_one_commit_with_the_history_alone_lands_on_main(origin: Path, tmp_path: Path):
    work = release_checkout(origin, tmp_path / "work")
    (work / "README.md").write_text("an unrelated local change\n")
    done = run(work)
    assert done.returncode == 0, done.stderr
    assert git(origin, "log", "--format=%s", "main") == "Build history: 1.0.0\nhistory\nstart\n"
    assert git(origin, "show", "--name-only", "--format=", "main").split() == [HISTORY]
    assert json.loads(git(origin, "show", f"main:{HISTORY}"))["builds"] == [{"tag": "1.0.0"}]


def test_main_moved_since_the_tag_and_again_while_pushing(origin: Path, tmp_path: Path):
    other = tmp_path / "other"
    git(tmp_path, "clone", "-q", str(origin), str(other))
    work = release_checkout(origin, tmp_path / "work")
    commit(other, "docs.md", "moved before\n", "main moved before the push")
    # The first push is refused after main moved once more, as when another push wins the race.
    hook = origin / "hooks/pre-receive"
    hook.write_text(
        "#!/bin/sh\n"
        '[ -e "$GIT_DIR/raced" ] && exit 0\n'
        "unset GIT_QUARANTINE_PATH GIT_OBJECT_DIRECTORY GIT_ALTERNATE_OBJECT_DIRECTORIES\n"
        'touch "$GIT_DIR/raced"\n'
        "tree=$(git rev-parse main^{tree})\n"
        'git update-ref refs/heads/main "$(git commit-tree "$tree" -p main -m "main moved while pushing")"\n'
        "exit 1\n"
    )
    hook.chmod(0o755)
    done = run(work)
    assert done.returncode == 0, done.stderr
    assert "main moved while pushing; trying again (1/5)" in done.stdout
    assert git(origin, "log", "--format=%s", "main").splitlines()[:3] == [
        "Build history: 1.0.0",
        "main moved while pushing",
        "main moved before the push",
    ]


def test_a_history_changed_on_main_is_not_overwritten(origin: Path, tmp_path: Path):
    other = tmp_path / "other"
    git(tmp_path, "clone", "-q", str(origin), str(other))
    work = release_checkout(origin, tmp_path / "work")
    write_history(other, ["0.9.9"])
    git(other, "commit", "-qam", "someone else's history")
    git(other, "push", "-q", "origin", "HEAD:main")
    before = git(origin, "rev-parse", "main")
    done = run(work)
    assert done.returncode == 1
    assert done.stderr.strip() == (
        f"commit-history: {HISTORY} changed on main meanwhile; not overwriting it (commit the entry by hand)"
    )
    assert git(origin, "rev-parse", "main") == before


def test_nothing_to_commit_is_an_error(origin: Path, tmp_path: Path):
    work = tmp_path / "work"
    git(tmp_path, "clone", "-q", str(origin), str(work))
    done = run(work)
    assert (done.returncode, done.stderr.strip()) == (1, f"commit-history: {HISTORY} has no change to commit")


def test_a_scheduled_run_pushes_to_the_branch_it_runs_on(origin: Path, tmp_path: Path):
    """On `schedule` the payload has no repository (DEFAULT_BRANCH is empty); the run is on the default branch."""
    work = release_checkout(origin, tmp_path / "work")
    done = run(work, DEFAULT_BRANCH="", GITHUB_EVENT_NAME="schedule", GITHUB_REF_NAME="main")
    assert done.returncode == 0, done.stderr
    assert done.stdout == 'commit-history: pushed "Build history: 1.0.0" to main\n'


@pytest.mark.parametrize(
    "event", [{"GITHUB_EVENT_NAME": "workflow_dispatch", "GITHUB_REF_NAME": "feature"}, {"GITHUB_REF_NAME": "main"}, {}]
)
def test_an_unknown_default_branch_is_refused_not_guessed(origin: Path, tmp_path: Path, event):
    work = release_checkout(origin, tmp_path / "work")
    before = git(origin, "rev-parse", "main")
    done = run(work, DEFAULT_BRANCH="", **event)
    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr == (
        "commit-history: the default branch is unknown: set DEFAULT_BRANCH "
        "(on GitHub: github.event.repository.default_branch)\n"
    )
    assert git(origin, "rev-parse", "main") == before


def test_a_refresh_that_released_nothing_commits_nothing(origin: Path, tmp_path: Path):
    work = tmp_path / "work"
    git(tmp_path, "clone", "-q", str(origin), str(work))
    before = git(origin, "rev-parse", "main")
    done = run(work, "--if-changed")
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout == f"commit-history: {HISTORY} has no change: nothing was released, nothing to commit\n"
    assert git(origin, "rev-parse", "main") == before
    assert run(work, "1.0.0").stderr == "commit-history: usage: scripts/commit-history [--if-changed] [--tag]\n"


def test_a_refresh_release_tags_its_history_commit_in_the_same_push(origin: Path, tmp_path: Path):
    """A refresh's release starts from no git tag: the commit recording it becomes vX.Y.Z."""
    work = release_checkout(origin, tmp_path / "work")
    write_history(work, ["1.0.0", "1.0.1"])
    done = run(work, "--if-changed", "--tag")
    assert done.returncode == 0, done.stderr
    assert done.stdout == 'commit-history: pushed "Build history: 1.0.1" to main, tagged v1.0.1\n'
    assert git(origin, "rev-parse", "v1.0.1^{commit}") == git(origin, "rev-parse", "main")
    assert git(origin, "log", "-1", "--format=%s", "v1.0.1") == "Build history: 1.0.1\n"


def test_an_existing_tag_is_never_moved_and_nothing_is_pushed(origin: Path, tmp_path: Path):
    work = release_checkout(origin, tmp_path / "work")
    before = git(origin, "rev-parse", "main", "v1.0.0^{commit}")
    done = run(work, "--tag")
    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr == "commit-history: tag v1.0.0 exists on origin already; not moving it\n"
    assert git(origin, "rev-parse", "main", "v1.0.0^{commit}") == before
