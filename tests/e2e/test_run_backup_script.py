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

from ci.core.config import REPO_ROOT
from tests.support.docker import Docker
from tests.support.registry import LocalRegistry

pytestmark = pytest.mark.engine
SCRIPT = REPO_ROOT / "scripts/run-backup.sh"
USER_ID = 4242


def as_user(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run as an unprivileged user who may use the Docker socket, like a member of the docker group."""
    docker_gid = grp.getgrnam("docker").gr_gid
    wrapper = ["setpriv", f"--reuid={USER_ID}", f"--regid={USER_ID}", f"--groups={docker_gid}", "--"]
    return subprocess.run([*wrapper, *args], env=env, capture_output=True, text=True, check=False)


@pytest.fixture
def workdir() -> Iterator[Path]:
    """A WORKDIR the unprivileged user can reach (pytest's own temp root is root-only)."""
    path = Path(tempfile.mkdtemp(prefix="run-backup-", dir="/var/tmp"))
    path.chmod(0o755)
    os.chown(path, USER_ID, USER_ID)
    yield path
    shutil.rmtree(path)


def test_refuses_root(image: str):
    done = subprocess.run([str(SCRIPT), "-t", "FULL"], capture_output=True, text=True, check=False)
    assert done.returncode == 2
    assert done.stderr.strip() == "run-backup.sh: refusing to run as root: run as the user who owns the backups"


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["-t", "WEEKLY"], {}, "-t/--backup-type takes FULL, DIFF or INCR, got 'WEEKLY'"),
        (["--backup-type=weekly"], {}, "-t/--backup-type takes FULL, DIFF or INCR, got 'weekly'"),
        (["--backup-type"], {}, "--backup-type needs FULL, DIFF or INCR"),
        (["-t", "FULL", "--backup-definition", ""], {}, "-d/--backup-definition needs a definition name"),
        (["-t", "FULL", "--verbose"], {}, "unknown option '--verbose' (see --help)"),
        (["-t", "FULL"], {"DOCKER_PULL": "yes"}, "DOCKER_PULL must be true or false, got 'yes'"),
        (["-t", "FULL"], {"DAR_BACKUP_DIR": "/"}, "refusing / as DAR_BACKUP_DIR"),
        (["-t", "FULL"], {"DAR_BACKUP_D_DIR": "//"}, "refusing / as DAR_BACKUP_D_DIR"),
        (["-t", "FULL"], {"DAR_BACKUP_DATA_DIR": "/tmp/.."}, "refusing / as DAR_BACKUP_DATA_DIR"),
        (["-t", "FULL"], {"DAR_BACKUP_RESTORE_DIR": "/./"}, "refusing / as DAR_BACKUP_RESTORE_DIR"),
    ],
)
def test_bad_input_is_refused_with_one_line(args, env, message, workdir: Path):
    done = as_user([str(SCRIPT), *args], {"PATH": os.environ["PATH"], "WORKDIR": str(workdir), **env})
    assert (done.returncode, done.stderr.strip()) == (2, f"run-backup.sh: {message}")
    assert list(workdir.iterdir()) == []


def test_help_in_both_forms():
    for flag in ("-h", "--help"):
        done = as_user([str(SCRIPT), flag], {"PATH": os.environ["PATH"]})
        assert done.returncode == 0 and "--backup-type FULL|DIFF|INCR" in done.stdout and "DOCKER_PULL" in done.stdout


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
    # Upstream's short and long spellings, and every definition (-d omitted) or one by name.
    for args, change in (
        (["-t", "FULL"], None),
        (["--backup-type", "DIFF", "--backup-definition", "default"], "two.txt"),
        (["--backup-type=INCR", "--backup-definition=default"], "three.txt"),
    ):
        if change:
            as_user(["sh", "-c", f"echo {change} > '{workdir}/data/{change}'"], env)
        done = as_user([str(script), *args], env)
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    archives = sorted(p.name for p in (workdir / "backups").glob("default_*.1.dar"))
    assert [name.split("_")[1] for name in archives] == ["DIFF", "FULL", "INCR"]
    assert all((workdir / "backups" / f"{name}.par2").is_file() for name in archives)
    assert {p.stat().st_uid for p in (workdir / "backups").iterdir()} == {USER_ID}


def user_layout(workdir: Path) -> dict[str, str]:
    (workdir / "data").mkdir()
    (workdir / "data/file.bin").write_bytes(os.urandom(2 * 2**20))
    for path in [workdir, *workdir.rglob("*")]:
        os.chown(path, USER_ID, USER_ID)
    return {"PATH": os.environ["PATH"], "WORKDIR": str(workdir)}


def test_missing_default_definition_is_created_and_used(docker: Docker, image: str, workdir: Path):
    env = {**user_layout(workdir), "IMAGE": image, "DOCKER": docker.client}
    done = as_user([str(SCRIPT), "-t", "FULL"], env)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    created = workdir / "backup.d/default"
    assert done.stdout.splitlines()[0] == f"run-backup.sh: created {created} (backs up all of the data directory)"
    assert created.read_text() == (REPO_ROOT / "docker/backup.d/default").read_text()
    assert created.stat().st_uid == USER_ID
    assert len(list((workdir / "backups").glob("default_FULL_*.1.dar"))) == 1


def test_docker_pull_true_pulls_and_false_keeps_the_local_image(
    docker: Docker, image: str, registry: LocalRegistry, workdir: Path
):
    ref = f"{registry.address}/dar-backup:pull-test"
    docker.ok("tag", image, ref)
    docker.ok("push", ref)
    released = docker.ok("image", "inspect", "-f", "{{.Id}}", ref).strip()
    # A local image under the same name that differs from the registry's, as after a new release.
    container = docker.ok("create", image).strip()
    try:
        docker.ok("commit", "--change", "LABEL local.stale=yes", container, ref)
    finally:
        docker("rm", container)
    stale = docker.ok("image", "inspect", "-f", "{{.Id}}", ref).strip()
    assert stale != released
    env = {**user_layout(workdir), "IMAGE": ref, "DOCKER": docker.client}
    try:
        for pull, level, expected in (("false", "FULL", stale), (None, "DIFF", stale), ("true", "INCR", released)):
            done = as_user([str(SCRIPT), "-t", level], {**env, **({"DOCKER_PULL": pull} if pull else {})})
            assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
            assert docker.ok("image", "inspect", "-f", "{{.Id}}", ref).strip() == expected, (pull, level)
    finally:
        docker("rmi", "-f", ref, stale)
