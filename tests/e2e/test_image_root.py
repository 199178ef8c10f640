"""A root run of the image executes nothing a non-root user can change.

Not a module planted in its working directory, and not a config, backup definition (dar reads it
as options; -E runs a command) or catalog that such a user could rewrite: those it refuses, with
one line naming the file, unless DAR_BACKUP_TRUST_USER_FILES=1 says to trust whoever can.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from ci.core.config import REPO_ROOT
from tests.support.docker import Docker

pytestmark = pytest.mark.engine
RUN = ("run", "--rm", "--network", "none")
AS_ROOT = ("-e", "RUN_AS_UID=0")
TRUST = ("-e", "DAR_BACKUP_TRUST_USER_FILES=1")
ROOT_NOTICE = "dar-backup-image: RUN_AS_UID=0: running as root (GID 0), as asked"
USER = 1000


def root_layout(tmp_path: Path) -> tuple[Path, Path, list[str]]:
    """/backup.d (holding the image's example definition) and /backups as root runs want them:
    root's, writable by root alone. Their bind mounts follow."""
    definitions, backups = tmp_path / "backup.d", tmp_path / "backups"
    for directory in (definitions, backups):
        directory.mkdir()
        directory.chmod(0o755)
    (definitions / "default").write_text((REPO_ROOT / "docker/backup.d/default").read_text())
    (definitions / "default").chmod(0o644)
    return definitions, backups, ["-v", f"{definitions}:/backup.d", "-v", f"{backups}:/backups"]


def refusal(what: str, path: str, culprit: str, why: str) -> str:
    return (
        f"dar-backup-image: refusing to run as root: {what} {path} can be changed by a non-root user, "
        f"as {culprit} {why}: make {culprit} root's and writable by root alone (chown root, chmod go-w), "
        "or set DAR_BACKUP_TRUST_USER_FILES=1 to trust whoever can write to it"
    )


# Runs as root if it is imported at all: it marks that it ran, as the old entrypoint's check did.
PLANTED = 'import os\nwith open("/backups/planted-ran", "a") as f:\n    f.write(f"{os.getuid()}\\n")\n'


def test_a_module_planted_in_the_working_directory_never_runs_as_root(docker: Docker, image: str, tmp_path: Path):
    """/backups is the image's working directory; a user who owns it plants configparser.py there."""
    _, backups, binds = root_layout(tmp_path)
    (backups / "configparser.py").write_text(PLANTED)
    for path in (backups, backups / "configparser.py"):
        os.chown(path, USER, USER)
    refused = docker(*RUN, *binds, *AS_ROOT, image, "-F", "-d", "default")
    assert refused.returncode == 126, refused.stderr
    assert refused.stderr.splitlines() == [
        ROOT_NOTICE,
        refusal("the catalog directory", "/backups", "/backups", f"is owned by UID {USER}"),
    ]
    # Trusted, the check, manager --create-db and the FULL all run as root from /backups, and
    # none of them imports the planted module.
    done = docker(*RUN, *binds, *AS_ROOT, *TRUST, image, "-F", "-d", "default", "--log-stdout")
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert (backups / "default.db").stat().st_uid == 0
    assert not (backups / "planted-ran").exists()


def user_owns(relative: str) -> Callable[[Path], None]:
    return lambda root: os.chown(root / relative, USER, USER)


def group_writable(root: Path) -> None:
    (root / "backup.d/default").chmod(0o664)


def catalog_of_the_user(root: Path) -> None:
    (root / "backups/default.db").write_bytes(b"")
    os.chown(root / "backups/default.db", USER, USER)


def definition_behind_a_link(root: Path) -> None:
    """The definition is a link to a file the user can replace: a directory of theirs holds it."""
    (root / "backups/mine").mkdir()
    (root / "backup.d/default").rename(root / "backups/mine/default")
    (root / "backup.d/default").symlink_to("../backups/mine/default")
    os.chown(root / "backups/mine", USER, USER)


def config_of_the_user(root: Path) -> None:
    (root / "backups/mine").mkdir()
    (root / "backups/mine/dar-backup.conf").write_text((REPO_ROOT / "dar-backup.conf").read_text())
    os.chown(root / "backups/mine", USER, USER)


DEFINITION = ("the backup definition", "/backup.d/default")
CONFIG = ("the config file", "/backups/mine/dar-backup.conf")
OWNED = f"is owned by UID {USER}"
LIST = ["--list-definitions"]


@pytest.mark.parametrize(
    ("change", "command", "refused"),
    [
        pytest.param(user_owns("backup.d/default"), LIST, (*DEFINITION, "/backup.d/default", OWNED), id="definition"),
        pytest.param(
            user_owns("backup.d"),
            LIST,
            ("the backup definitions directory", "/backup.d", "/backup.d", OWNED),
            id="definitions directory",
        ),
        pytest.param(
            group_writable,
            LIST,
            (*DEFINITION, "/backup.d/default", "is writable by its group (mode 664)"),
            id="group-writable definition",
        ),
        pytest.param(
            definition_behind_a_link, LIST, (*DEFINITION, "/backups/mine", OWNED), id="definition behind a link"
        ),
        pytest.param(
            catalog_of_the_user,
            LIST,
            ("the catalog database", "/backups/default.db", "/backups/default.db", OWNED),
            id="catalog",
        ),
        pytest.param(
            config_of_the_user,
            [*LIST, "--config-file", CONFIG[1]],
            (*CONFIG, "/backups/mine", OWNED),
            id="config",
        ),
        # Any other program as root too: a shell may start dar-backup, and manager reads the catalogs.
        pytest.param(
            user_owns("backup.d/default"), ["true"], (*DEFINITION, "/backup.d/default", OWNED), id="another program"
        ),
        pytest.param(
            config_of_the_user,
            ["manager", "--create-db", f"--config-file={CONFIG[1]}"],
            (*CONFIG, "/backups/mine", OWNED),
            id="manager with its own config",
        ),
    ],
)
def test_a_root_run_refuses_what_a_user_can_change_unless_trusted(
    docker: Docker, image: str, tmp_path: Path, change, command, refused
):
    _, backups, binds = root_layout(tmp_path)
    change(tmp_path)
    before = sorted(backups.iterdir())
    done = docker(*RUN, *binds, *AS_ROOT, image, *command)
    assert done.returncode == 126, done.stdout[-2000:] + done.stderr[-2000:]
    assert done.stderr.splitlines() == [ROOT_NOTICE, refusal(*refused)]
    assert sorted(backups.iterdir()) == before
    trusted = docker(*RUN, *binds, *AS_ROOT, *TRUST, image, *command)
    assert trusted.returncode == 0, trusted.stdout[-2000:] + trusted.stderr[-2000:]
    assert trusted.stderr.splitlines() == [ROOT_NOTICE]


def test_a_root_run_with_root_files_runs_unasked(docker: Docker, image: str, tmp_path: Path):
    """Not vacuous: the same layout, root's throughout, passes without the opt-in."""
    _, backups, binds = root_layout(tmp_path)
    done = docker(*RUN, *binds, *AS_ROOT, image, "--list-definitions")
    assert (done.returncode, done.stdout.split(), done.stderr.splitlines()) == (0, ["default"], [ROOT_NOTICE])
    assert (backups / "default.db").stat().st_uid == 0
