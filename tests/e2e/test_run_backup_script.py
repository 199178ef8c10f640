"""scripts/run-backup.sh as a user runs it: not root, their own UID, FULL → DIFF → INCR."""

from __future__ import annotations

import grp
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from ci.config import REPO_ROOT
from conftest import Docker

pytestmark = pytest.mark.engine
SCRIPT = REPO_ROOT / "scripts/run-backup.sh"
USER_ID = 4242


def as_user(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run as an unprivileged user who may use the Docker socket, like a member of the docker group."""
    docker_gid = grp.getgrnam("docker").gr_gid
    wrapper = ["setpriv", f"--reuid={USER_ID}", f"--regid={USER_ID}", f"--groups={docker_gid}", "--"]
    return subprocess.run([*wrapper, *args], env=env, capture_output=True, text=True, check=False)


def test_refuses_root(image: str):
    done = subprocess.run([str(SCRIPT), "-t", "FULL"], capture_output=True, text=True, check=False)
    assert done.returncode == 2
    assert done.stderr.strip() == "run-backup.sh: refusing to run as root: run as the user who owns the backups"


def test_refuses_an_unknown_type(image: str):
    done = subprocess.run([str(SCRIPT), "-t", "WEEKLY"], capture_output=True, text=True, check=False)
    assert (done.returncode, done.stderr.strip()) == (2, "run-backup.sh: -t takes FULL, DIFF or INCR, got 'WEEKLY'")


@pytest.fixture
def workdir() -> Iterator[Path]:
    """A WORKDIR the unprivileged user can reach (pytest's own temp root is root-only)."""
    path = Path(tempfile.mkdtemp(prefix="run-backup-", dir="/var/tmp"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path)


def test_full_diff_incr_in_the_script_directory(docker: Docker, image: str, workdir: Path):
    """No WORKDIR set: the layout sits beside the script, as upstream documents."""
    script = workdir / "run-backup.sh"
    shutil.copy2(SCRIPT, script)
    (workdir / "data/photos").mkdir(parents=True)
    (workdir / "data/photos/one.jpg").write_bytes(os.urandom(3 * 2**20))
    (workdir / "backup.d").mkdir()
    (workdir / "backup.d/default").write_text((REPO_ROOT / "docker/backup.d/default").read_text())
    for path in [workdir, *workdir.rglob("*")]:
        os.chown(path, USER_ID, USER_ID, follow_symlinks=False)
    env = {"PATH": os.environ["PATH"], "IMAGE": image, "DOCKER": docker.client}
    for level, change in (("FULL", None), ("DIFF", "two.txt"), ("INCR", "three.txt")):
        if change:
            as_user(["sh", "-c", f"echo {change} > '{workdir}/data/{change}'"], env)
        done = as_user([str(script), "-t", level], env)
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    archives = sorted(p.name for p in (workdir / "backups").glob("default_*.1.dar"))
    assert [name.split("_")[1] for name in archives] == ["DIFF", "FULL", "INCR"]
    assert all((workdir / "backups" / f"{name}.par2").is_file() for name in archives)
    assert {p.stat().st_uid for p in (workdir / "backups").iterdir()} == {USER_ID}
