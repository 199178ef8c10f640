"""The image as users run it: privilege drop, ownership, arguments, config, hygiene."""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
import re
import subprocess
import tarfile
from pathlib import Path

import pytest

from ci.core.config import REPO_ROOT
from ci.core.labels import TOOL_LABELS
from ci.core.platforms import host_platform
from ci.core.versions import locked_dar_backup_version
from ci.image.sbom import sbom_file, tool_versions, validate_schema
from ci.stages.manifest import MANIFEST_SCRIPT, OWNER_ATTRIBUTES, TREE_ATTRIBUTES, compare, parse
from tests.support.docker import SEED_DATA, Docker, mounts

pytestmark = pytest.mark.engine
RUN = ("run", "--rm", "--network", "none")


def test_versions_match_the_pins(docker: Docker, image: str):
    assert docker.ok(*RUN, image, "--version").splitlines()[0] == (
        f"dar-backup {locked_dar_backup_version(REPO_ROOT / 'docker/requirements.txt')}"
    )
    assert re.search(r"dar version \d+\.\d+\.\d+", docker.ok(*RUN, image, "dar", "--version"))
    assert docker.ok(*RUN, image, "par2", "--version").startswith("par2cmdline version ")


def test_no_arguments_prints_usage_and_exits_0(docker: Docker, image: str):
    done = docker(*RUN, image)
    assert done.returncode == 0 and "RUN_AS_UID" in done.stdout


@pytest.mark.parametrize(
    ("env", "owner"),
    [
        ((), "1000:1000"),
        (("-e", "RUN_AS_UID=1234", "-e", "RUN_AS_GID=2345", "-e", "DAR_BACKUP_FIX_PERMS=1"), "1234:2345"),
    ],
)
def test_full_backup_runs_as_the_requested_user(docker: Docker, image: str, volumes, env, owner):
    # dar-backup wants to write to its definitions directory; DAR_BACKUP_FIX_PERMS never hands it over.
    docker.ok(*RUN, *mounts(volumes), "--entrypoint", "sh", image, "-c", f"{SEED_DATA} && chown {owner} /backup.d")
    done = docker(*RUN, *mounts(volumes), *env, image, "-F", "-d", "default", "--log-stdout")
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    listing = docker.ok(
        *RUN, *mounts(volumes), "--entrypoint", "sh", image, "-c", "cd /backups && stat -c '%u:%g %n' *"
    )
    files = dict(reversed(line.split(" ", 1)) for line in listing.splitlines())
    archives = [name for name in files if re.fullmatch(r"default_FULL_\d{4}-\d{2}-\d{2}\.1\.dar", name)]
    assert len(archives) == 1, files
    assert f"{archives[0]}.par2" in files
    # Every file dar-backup, dar, par2 and manager wrote is the user's: none of them ran as root.
    assert set(files.values()) == {owner}, files
    who = docker.ok(*RUN, *mounts(volumes), *env, image, "id", "-u").strip()
    assert who == owner.split(":")[0]


def test_home_is_never_root(docker: Docker, image: str):
    assert docker.ok(*RUN, image, "sh", "-c", 'echo "$HOME"').strip() == "/home/daruser"
    assert docker.ok(*RUN, "-e", "RUN_AS_UID=1234", image, "sh", "-c", 'echo "$HOME"').strip() == "/tmp"
    groups = docker.ok(*RUN, "-e", "RUN_AS_UID=1234", "-e", "RUN_AS_GID=2345", image, "id", "-G").split()
    assert groups == ["2345"]


def test_user_flag_wins(docker: Docker, image: str, tmp_path: Path):
    dirs = {name: tmp_path / name for name in ("data", "backups", "backup.d", "restore")}
    for path in dirs.values():
        path.mkdir()
    (dirs["data"] / "file.bin").write_bytes(os.urandom(2 * 2**20))
    (dirs["backup.d"] / "default").write_text((REPO_ROOT / "docker/backup.d/default").read_text())
    for path in [*dirs.values(), dirs["data"] / "file.bin", dirs["backup.d"] / "default"]:
        os.chown(path, 1234, 2345)
    binds = [arg for name, path in dirs.items() for arg in ("-v", f"{path}:/{name}")]
    assert docker.ok(*RUN, "--user", "1234:2345", "-e", "RUN_AS_UID=1000", image, "id", "-u").strip() == "1234"
    done = docker(*RUN, "--user", "1234:2345", *binds, image, "-F", "--log-stdout")
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert {(p.stat().st_uid, p.stat().st_gid) for p in dirs["backups"].iterdir()} == {(1234, 2345)}


def test_user_flag_for_root_with_a_group_stays_root(docker: Docker, image: str):
    """`--user 0:G` (G not 0) is root asked for; `--user 0:0` cannot be told apart from the default start."""
    trust = ("-e", "DAR_BACKUP_TRUST_USER_FILES=1")
    done = docker(*RUN, "--user", "0:2345", "-e", "RUN_AS_UID=1000", *trust, image, "sh", "-c", "id -u; id -g; id -G")
    assert (done.returncode, done.stdout.split()) == (0, ["0", "2345", "2345"]), done.stderr
    assert done.stderr.splitlines() == [
        "dar-backup-image: docker run --user 0:2345: running as root (GID 2345), as asked"
    ]
    # A root run like any other: it trusts nothing a non-root user can change (the image's /backup.d).
    refused = docker(*RUN, "--user", "0:2345", image, "true")
    assert refused.returncode == 126
    assert refused.stderr.splitlines()[1].startswith(
        "dar-backup-image: refusing to run as root: the backup definitions directory /backup.d can be changed"
    )
    assert docker.ok(*RUN, "--user", "0:0", image, "id", "-u").strip() == "1000"


def bounded(image: str) -> tuple[str, ...]:
    """The image, its entrypoint started as root under a timeout: an ID that the shell and setpriv
    read differently made it re-execute itself for ever."""
    return ("--entrypoint", "timeout", image, "-s", "KILL", "20", "docker-entrypoint.sh")


@pytest.mark.parametrize(
    ("env", "bad"),
    [
        (["RUN_AS_UID=abc"], "RUN_AS_UID 'abc'"),
        (["RUN_AS_UID=-1"], "RUN_AS_UID '-1'"),
        (["RUN_AS_UID=4294967295"], "RUN_AS_UID '4294967295'"),
        (["RUN_AS_UID=4294967296"], "RUN_AS_UID '4294967296'"),
        (["RUN_AS_UID=99999999999999999999"], "RUN_AS_UID '99999999999999999999'"),
        (["RUN_AS_UID=0", "RUN_AS_GID=root"], "RUN_AS_GID 'root'"),
        (["RUN_AS_UID=1234", "RUN_AS_GID=4294967295"], "RUN_AS_GID '4294967295'"),
    ],
)
def test_bad_run_as_values_fail_with_one_line(docker: Docker, image: str, env, bad):
    name, value = bad.split(" ")
    done = docker(*RUN, *(arg for var in env for arg in ("-e", var)), *bounded(image), "-F")
    assert (done.returncode, done.stderr.strip()) == (
        2,
        f"dar-backup-image: {name} must be a number from 0 to 4294967294, got {value}",
    )


def test_run_as_ids_are_numbers_leading_zeros_and_all(docker: Docker, image: str):
    """00 is root, and says so (the image's /backups is its user's, so root is told to trust it)."""
    env = ("-e", "RUN_AS_UID=00", "-e", "DAR_BACKUP_TRUST_USER_FILES=1")
    done = docker(*RUN, *env, *bounded(image), "id", "-u")
    assert (done.returncode, done.stdout.strip()) == (0, "0"), done.stderr
    assert done.stderr.splitlines() == ["dar-backup-image: RUN_AS_UID=00: running as root (GID 0), as asked"]
    done = docker(*RUN, "-e", "RUN_AS_UID=01234", *bounded(image), "sh", "-c", "id -u; id -g")
    assert (done.returncode, done.stdout.split()) == (0, ["1234", "1234"]), done.stderr


# System data as root backs it up: a root-only file and three other owners, with fixed mtimes.
# The definitions are root's, as a root run wants (what a user can change it refuses:
# test_image_root.py); the backups become root's with DAR_BACKUP_FIX_PERMS=1 at the first run.
ROOT_TREE = """
cp /usr/share/dar-backup/backup.d/default /backup.d/default && chown -R 0:0 /backup.d
mkdir -p /data/etc /data/home/alice /data/srv
echo 'root:*:19000:0:99999:7:::' > /data/etc/shadow && chmod 600 /data/etc/shadow
head -c 2097152 /dev/urandom > /data/home/alice/photo.raw && chown -R 1000:1000 /data/home/alice
echo notes > /data/home/bob.txt && chown 2001:2002 /data/home/bob.txt && chmod 640 /data/home/bob.txt
echo site > /data/srv/index.html && chown -R 3003:3004 /data/srv
find /data -mindepth 1 -exec touch -h -d '2024-02-29 12:34:56' {} +
"""
AS_ROOT = ("-e", "RUN_AS_UID=0", "-e", "TZ=UTC")
ROOT_NOTICE = "dar-backup-image: RUN_AS_UID=0: running as root (GID 0), as asked"


def restored_as_root(docker: Docker, image: str, volumes, *command: str) -> dict:
    """Run a restore into /tmp/target as root through the entrypoint; the manifest of what came back."""
    script = '"${@:2}" >&2 && sh -c "$1" sh /tmp/target/data'
    out = docker.ok(*RUN, *mounts(volumes), *AS_ROOT, image, "bash", "-c", script, "bash", MANIFEST_SCRIPT, *command)
    return parse(out)


def test_root_by_choice_backs_up_and_restores_numeric_owners(docker: Docker, image: str, volumes):
    docker.ok(*RUN, *mounts(volumes), "--entrypoint", "sh", image, "-c", ROOT_TREE)
    manifest = "sh", "-c", MANIFEST_SCRIPT, "sh", "/data"
    snapshot = parse(docker.ok(*RUN, *mounts(volumes), "--entrypoint", manifest[0], image, *manifest[1:]))
    assert {(e.uid, e.gid) for e in snapshot.values()} == {
        ("0", "0"),
        ("1000", "1000"),
        ("2001", "2002"),
        ("3003", "3004"),
    }
    assert snapshot["etc/shadow"].mode == "600"
    fix_perms = ("-e", "DAR_BACKUP_FIX_PERMS=1")
    done = docker(*RUN, *mounts(volumes), *AS_ROOT, *fix_perms, image, "-F", "-d", "default", "--log-stdout")
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert done.stderr.splitlines()[:2] == [
        "dar-backup-image: DAR_BACKUP_FIX_PERMS=1: chown -R 0:0 /backups /restore",
        ROOT_NOTICE,
    ]
    archives = docker.ok(*RUN, *mounts(volumes), *AS_ROOT, image, "sh", "-c", "cd /backups && ls *.1.dar").split()
    assert len(archives) == 1
    archive = archives[0].removesuffix(".1.dar")
    with_owners = TREE_ATTRIBUTES + OWNER_ATTRIBUTES
    restore = ("dar-backup", "-r", archive, "--restore-dir", "/tmp/target", "--log-stdout")
    assert (
        compare(
            snapshot, restored_as_root(docker, image, volumes, *restore, "--preserve-ownership"), attributes=with_owners
        )
        == []
    )
    # Without it, owners are ignored as dar-backup documents: everything comes back as root's.
    plain = restored_as_root(docker, image, volumes, *restore)
    assert compare(snapshot, plain) == []
    assert {(e.uid, e.gid) for e in plain.values()} == {("0", "0")}
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%S")
    pitr = ("manager", "--backup-def", "default", "--when", now, "--restore-path", "data", "--target", "/tmp/target")
    assert (
        compare(
            snapshot, restored_as_root(docker, image, volumes, *pitr, "--preserve-ownership"), attributes=with_owners
        )
        == []
    )


def definitions(tmp_path: Path, *names: str, mode: int = 0o755) -> list[str]:
    """A backup.d bind mount holding the named definitions, and an empty backups directory."""
    (tmp_path / "backup.d").mkdir(mode=mode)
    (tmp_path / "backups").mkdir()
    for name in names:
        (tmp_path / "backup.d" / name).write_text((REPO_ROOT / "docker/backup.d/default").read_text())
    for path in [tmp_path / "backup.d", tmp_path / "backups", *(tmp_path / "backup.d").iterdir()]:
        os.chown(path, 1000, 1000)
    (tmp_path / "backup.d").chmod(mode)
    return ["-v", f"{tmp_path / 'backup.d'}:/backup.d", "-v", f"{tmp_path / 'backups'}:/backups"]


EXAMPLE = "(the image's example is /usr/share/dar-backup/backup.d/default)"


@pytest.mark.parametrize(
    ("present", "args", "message"),
    [
        (
            (),
            ["-F"],
            "no backup definition in /backup.d, so there is nothing to back up: "
            f"put one there, e.g. a file named 'default' {EXAMPLE}",
        ),
        ((), ["--differential-backup", "--log-stdout"], "no backup definition in /backup.d, so there is nothing"),
        (
            ("default",),
            ["-I", "-d", "nightly"],
            f"no backup definition 'nightly' in /backup.d: put a file named 'nightly' there {EXAMPLE}",
        ),
        (("default",), ["--full-backup", "--backup-definition=nightly"], "no backup definition 'nightly' in /backup.d"),
        (("default",), ["--incr", "--backup", "nightly"], "no backup definition 'nightly' in /backup.d"),
        (("default",), ["-F", "-dnightly"], "no backup definition 'nightly' in /backup.d"),
    ],
)
def test_a_backup_with_nothing_to_run_fails_with_one_line(
    docker: Docker, image: str, tmp_path: Path, present, args, message
):
    done = docker(*RUN, *definitions(tmp_path, *present), image, *args)
    assert done.returncode == 127, done.stdout[-2000:] + done.stderr[-2000:]
    assert done.stderr.strip().startswith(f"dar-backup-image: {message}") and len(done.stderr.strip().splitlines()) == 1
    assert list((tmp_path / "backups").iterdir()) == []


def test_unreadable_definitions_directory_fails_with_one_line(docker: Docker, image: str, tmp_path: Path):
    binds = definitions(tmp_path, "default", mode=0o700)
    os.chown(tmp_path / "backup.d", 0, 0)
    done = docker(*RUN, *binds, image, "-F")
    assert done.returncode == 127
    assert done.stderr.strip() == (
        "dar-backup-image: the backup definitions directory /backup.d is not readable by UID 1000: "
        "make it readable by that user"
    )
    assert list((tmp_path / "backups").iterdir()) == []


def test_missing_config_fails_with_one_clear_line(docker: Docker, image: str):
    done = docker(*RUN, image, "-F", "--config-file", "/nowhere/dar-backup.conf")
    assert done.returncode == 127
    assert done.stderr.strip() == "dar-backup-image: config file not found: /nowhere/dar-backup.conf"
    done = docker(*RUN, "-e", "DAR_BACKUP_CONFIG_FILE=/gone.conf", image, "--list")
    assert (done.returncode, done.stderr.strip()) == (127, "dar-backup-image: config file not found: /gone.conf")


def test_arguments_arrive_verbatim(docker: Docker, image: str):
    odd = ["--selection=-I '*.JPG'", "two  words", "$HOME", "*", "", "semi;colon", 'dq"uote', "-leading"]
    script = "import json, sys; print(json.dumps(sys.argv[1:]))"
    assert json.loads(docker.ok(*RUN, image, "python3", "-c", script, *odd)) == odd


def test_existing_data_is_never_chowned_unless_asked(docker: Docker, image: str, volumes):
    """DAR_BACKUP_FIX_PERMS=1 hands the user /backups and /restore, never /data or /backup.d."""
    files = "/data/mine /backups/old.log /backup.d/nightly /restore/keep"
    prepare = f"touch {files} && chown 4321:4321 {files}"
    docker.ok(*RUN, *mounts(volumes), "--entrypoint", "sh", image, "-c", prepare)
    docker.ok(*RUN, *mounts(volumes), "-e", "RUN_AS_UID=1234", image, "true")
    owners = f"stat -c %u /backup.d {files}"
    assert (
        docker.ok(*RUN, *mounts(volumes), "--entrypoint", "sh", image, "-c", owners).split() == ["1000"] + ["4321"] * 4
    )
    docker.ok(*RUN, *mounts(volumes), "-e", "RUN_AS_UID=1234", "-e", "DAR_BACKUP_FIX_PERMS=1", image, "true")
    assert docker.ok(*RUN, *mounts(volumes), "--entrypoint", "sh", image, "-c", owners).split() == [
        "1000",
        "4321",
        "1234",
        "4321",
        "1234",
    ]


# Run as root with the entrypoint's mkdir followed, as a user who can write to the parent could,
# by a symbolic link to /tmp/victim in place of the new directory, before the entrypoint owns it.
LINK_RACE = """
mkdir -p /tmp/shims /tmp/race && touch /tmp/victim
cat > /tmp/shims/mkdir <<'SHIM'
#!/bin/sh
/bin/mkdir "$@" || exit
for last; do :; done
[ "$last" != /tmp/race/new ] || { rmdir "$last" && ln -s /tmp/victim "$last"; }
SHIM
chmod 755 /tmp/shims/mkdir
PATH=/tmp/shims:$PATH RESTORE_DIR=/tmp/race/new docker-entrypoint.sh true
stat -c '%u:%g' /tmp/victim
"""


def test_a_missing_directory_is_made_without_following_a_link(docker: Docker, image: str):
    assert docker.ok(*RUN, "--entrypoint", "bash", image, "-c", LINK_RACE).strip() == "0:0"
    dangling = "ln -s /nowhere /tmp/dangling && RESTORE_DIR=/tmp/dangling docker-entrypoint.sh true"
    done = docker(*RUN, "--entrypoint", "bash", image, "-c", dangling)
    assert (done.returncode, done.stderr.strip()) == (
        1,
        "dar-backup-image: /tmp/dangling is a symbolic link to no directory: remove it, or make it a directory",
    )


# Python's own account (-v: "code object from" each bytecode file it reads, whoever imports the
# module) of the bytecode read while `manager --create-db` creates the catalogs (as the entrypoint
# does at a first start, with its output kept here), while dar-backup starts through the entrypoint
# (its definition check included) and while each console script's module is imported.
START_READS = """
export PYTHONVERBOSE=1
manager --create-db >/dev/null
docker-entrypoint.sh dar-backup --list-definitions >/dev/null
for module in $(env -u PYTHONVERBOSE python3 -c "$1"); do python3 -c "import $module"; done
"""
CONSOLE_MODULES = (
    "import importlib.metadata as m; "
    "print(*{e.value.split(':')[0] for e in m.distribution('dar-backup').entry_points if e.group == 'console_scripts'})"
)


def bytecode_read_at_start(docker: Docker, image: str) -> set[str]:
    done = docker(
        *RUN, "--user", "1000:1000", "--entrypoint", "bash", image, "-c", START_READS, "bash", CONSOLE_MODULES
    )
    assert done.returncode == 0, done.stderr[-2000:]
    read = set(re.findall(r"^# code object from '(/[^']+\.pyc)'$", done.stderr, re.M))
    # Not vacuous: the account names a standard module and one of dar-backup's.
    assert any("/__pycache__/configparser." in path for path in read), sorted(read)[:5]
    assert any("/dar_backup/__pycache__/manager." in path for path in read), sorted(read)[:5]
    return read


def test_final_image_has_no_build_tools_or_caches(docker: Docker, image: str):
    script = (
        "for t in pip pip3 gcc cc make; do command -v $t; done; "
        "find / -xdev \\( -name 'pip' -path '*site-packages*' "
        "-o -name 'setuptools' -path '*site-packages*' -o -name 'wheel' -path '*site-packages*' \\) -print; "
        "ls /root/.cache /var/lib/apt/lists/*_Packages /var/log/* 2>/dev/null; "
        "find /var/cache /var/lib/dpkg \\( -name aux-cache -o -name '*-old' \\) -size +0; true"
    )
    assert docker.ok(*RUN, "--entrypoint", "sh", image, "-c", script).strip() == ""
    assert docker(*RUN, image, "python3", "-m", "pip", "--version").returncode != 0
    # Outside the venv, the only bytecode is what a start reads (that a start compiles nothing, so
    # that nothing is missing, is the next test's).
    found = "find / -xdev -name '*.pyc' ! -path '/opt/dar-backup/*'; find / -xdev -name __pycache__ -empty"
    read = bytecode_read_at_start(docker, image)
    stdlib = {path for path in read if not path.startswith(("/opt/dar-backup/", "/opt/venv/"))}
    assert set(docker.ok(*RUN, "--entrypoint", "sh", image, "-c", found).split()) == stdlib


def test_par2_threads_sleep_while_they_wait_unless_the_user_says_otherwise(docker: Docker, image: str):
    # OpenMP's default (spinning threads) made par2 many times slower on a busy host. The setting
    # reaches the user's commands through the entrypoint, and a user's own value wins.
    assert "libgomp" in docker.ok(*RUN, "--entrypoint", "ldd", image, "/usr/bin/par2")
    assert docker.ok(*RUN, image, "printenv", "OMP_WAIT_POLICY").strip() == "PASSIVE"
    chosen = docker.ok(*RUN, "-e", "OMP_WAIT_POLICY=ACTIVE", image, "printenv", "OMP_WAIT_POLICY")
    assert chosen.strip() == "ACTIVE"


# As root and allowed to write bytecode, a start writes a .pyc for every module it had to compile.
# /backups and /backup.d are made root's, or the root run would stop at its check of them: a
# start that fails says so.
COMPILED_AT_START = """
chown -R 0:0 /backups /backup.d
touch /tmp/before
RUN_AS_UID=0 PYTHONDONTWRITEBYTECODE= docker-entrypoint.sh dar-backup --list-definitions >/dev/null 2>&1 \\
  || echo "the start exited $?"
find / -xdev -name '*.pyc' -newer /tmp/before
"""


def test_dar_backup_is_compiled_at_build_time_and_never_recompiled(docker: Docker, image: str):
    """Bytecode in the image (unchecked-hash: reproducible, never rewritten) so no start compiles it."""
    script = (
        "import configparser, dar_backup.dar_backup, importlib.util, pathlib, sys\n"
        "for name in ('dar_backup.dar_backup', 'configparser'):\n"
        "    source = pathlib.Path(sys.modules[name].__file__)\n"
        "    cached = pathlib.Path(importlib.util.cache_from_source(str(source)))\n"
        "    print(cached.is_file(), cached.read_bytes()[4:8].hex(), sys.modules[name].__cached__ == str(cached))"
    )
    assert (
        docker.ok(*RUN, "--read-only", image, "/opt/dar-backup/bin/python", "-c", script).split()
        == [
            "True",
            "01000000",
            "True",
        ]
        * 2
    )
    assert docker.ok(*RUN, "--entrypoint", "bash", image, "-c", COMPILED_AT_START) == ""


def test_upstream_venv_paths_run_unchanged_as_entrypoints(docker: Docker, image: str, volumes):
    """Upstream's image keeps its venv at /opt/venv; scripts and compose files written for it call these."""
    docker.ok(*RUN, *mounts(volumes), "--entrypoint", "sh", image, "-c", f"{SEED_DATA} && chown -R 1000:1000 /data")
    as_user = (*RUN, *mounts(volumes), "--user", "1000:1000", "--entrypoint")
    docker.ok(*as_user, "/opt/venv/bin/manager", image, "--create-db", "--backup-def", "default")
    done = docker(*as_user, "/opt/venv/bin/dar-backup", image, "-F", "-d", "default", "--log-stdout")
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    listing = docker.ok(*RUN, *mounts(volumes), "--entrypoint", "ls", image, "/backups").split()
    assert "default.db" in listing
    assert [n for n in listing if re.fullmatch(r"default_FULL_\d{4}-\d{2}-\d{2}\.1\.dar", n)], listing


def test_dar_backup_is_found_on_path_as_upstream_names_it(docker: Docker, image: str):
    """Upstream's scripts and its own tests look dar-backup up on PATH and expect /opt/venv/bin."""
    lookup = "command -v dar-backup; command -v manager; head -n 1 /opt/venv/bin/dar-backup"
    found = docker.ok(*RUN, image, "sh", "-c", lookup).split()
    assert found == ["/opt/venv/bin/dar-backup", "/opt/venv/bin/manager", "#!/opt/dar-backup/bin/python3"]


def pem_bodies(text: str) -> set[str]:
    return {
        "".join(block.split())
        for block in re.findall(r"-----BEGIN CERTIFICATE-----(.*?)-----END CERTIFICATE-----", text, re.S)
    }


def test_no_proxy_ca_or_secret_in_any_layer_or_history(docker: Docker, image: str, tmp_path: Path):
    host_bundle = Path(os.environ.get("PIP_CERT", "/etc/ssl/certs/ca-certificates.crt"))
    image_bundle = docker.ok(*RUN, "--entrypoint", "cat", image, "/etc/ssl/certs/ca-certificates.crt")
    extra = pem_bodies(host_bundle.read_text()) - pem_bodies(image_bundle)
    # With a proxy CA (PIP_CERT, as on the CI machines) there must be something to look for.
    assert extra or "PIP_CERT" not in os.environ
    # Probes: the CAs the host adds (the proxy's) and the secret's mount point.
    probes = [base64.b64decode(body)[:64] for body in extra] + [body[:64].encode() for body in extra]
    probes.append(b"/run/secrets/pip_cert\x00")
    archive = tmp_path / "image.tar"
    subprocess.run([docker.client, "save", "-o", str(archive), image], check=True)
    with tarfile.open(archive) as outer:
        for member in outer.getmembers():
            if not member.isfile():
                continue
            data = outer.extractfile(member).read()
            for probe in probes:
                assert probe not in data, f"{probe[:20]!r} found in {member.name}"
    history = docker.ok("history", "--no-trunc", "--format", "{{.CreatedBy}}", image)
    assert "BEGIN CERTIFICATE" not in history and "PIP_CERT=/etc" not in history


EPOCH = 1_700_000_000


def test_source_date_epoch_clamps_every_mtime_the_build_adds(docker: Docker, image: str, tmp_path: Path):
    """With SOURCE_DATE_EPOCH nothing the build adds is newer than it, so two builds of one commit agree.

    A fixed epoch keeps the build cached from run to run. The one exception is the engine's: docker
    20.10's BuildKit stubs /etc/hosts for each RUN when the base has none and removes the stub after
    the RUN, which stamps /etc with the build's time (BuildKit's rewrite-timestamp would clamp it).
    """
    base = docker.ok("image", "inspect", "-f", '{{index .Config.Labels "org.opencontainers.image.base.name"}}', image)
    tag = "dar-backup:e2e-source-date-epoch"
    secret = ["--secret", f"id=pip_cert,src={os.environ['PIP_CERT']}"] if os.environ.get("PIP_CERT") else []
    argv = ["build", "-q", "-f", "docker/Dockerfile", "--target", "final", "-t", tag, *secret]
    for arg in (
        f"BASE_IMAGE={base.strip()}",
        f"DAR_BACKUP_VERSION={locked_dar_backup_version(REPO_ROOT / 'docker/requirements.txt')}",
        f"SOURCE_DATE_EPOCH={EPOCH}",
    ):
        argv += ["--build-arg", arg]
    done = subprocess.run(
        [docker.client, *argv, "."],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "DOCKER_BUILDKIT": "1"},
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    try:
        subprocess.run([docker.client, "save", "-o", str(tmp_path / "image.tar"), tag], check=True)
    finally:
        docker("rmi", tag)
    base_layers = len(json.loads(docker.ok("image", "inspect", "-f", "{{json .RootFS.Layers}}", base.strip())))
    late = set()
    with tarfile.open(tmp_path / "image.tar") as saved:
        manifest = json.load(saved.extractfile("manifest.json"))
        for layer in manifest[0]["Layers"][base_layers:]:
            with tarfile.open(fileobj=saved.extractfile(layer)) as members:
                late |= {member.name for member in members if member.mtime > EPOCH}
    assert late <= {"etc"}, sorted(late)[:20]


@pytest.mark.parametrize("version", ["", "latest"])
def test_plain_docker_build_refuses_unpinned_dar_backup(docker: Docker, image: str, version: str):
    env = {**os.environ, "DOCKER_BUILDKIT": "1"}
    base = docker.ok("image", "inspect", "-f", '{{index .Config.Labels "org.opencontainers.image.base.name"}}', image)
    done = subprocess.run(
        [
            docker.client,
            "build",
            "-f",
            "docker/Dockerfile",
            "--target",
            "final",
            "--build-arg",
            f"BASE_IMAGE={base.strip()}",
            "--build-arg",
            f"DAR_BACKUP_VERSION={version}",
            ".",
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert done.returncode != 0
    assert f"DAR_BACKUP_VERSION must name a release (e.g. 1.1.11), got '{version}'" in done.stderr


def test_final_writes_a_valid_sbom_of_what_the_image_holds(docker: Docker, image: str, final_reports: Path):
    text = (final_reports / sbom_file(host_platform())).read_text()
    validate_schema(text)
    document = json.loads(text)
    labels = json.loads(docker.ok("image", "inspect", "-f", "{{json .Config.Labels}}", image))
    assert tool_versions(document) == {tool: labels[label] for tool, label in TOOL_LABELS.items()}
    names = {c["name"]: c for c in document["components"]}
    assert names["python3"]["purl"].startswith("pkg:deb/") and "distro=" in names["python3"]["purl"]
    debs = docker.ok(*RUN, "--entrypoint", "dpkg-query", image, "-W", "-f", "${Package}\n").split()
    assert {c["name"] for c in document["components"] if c["purl"].startswith("pkg:deb/")} == set(debs)
    assert names["dar-backup"]["purl"] == f"pkg:pypi/dar-backup@{labels[TOOL_LABELS['dar-backup']]}"
    assert document["metadata"]["component"]["version"] == labels["org.opencontainers.image.version"]


# Marks the builder's python3 as another version than base's, just before the check reads both.
def run_base(docker: Docker, image: str) -> str:
    """What the run built image FROM, as its label names it."""
    label = '{{index .Config.Labels "org.opencontainers.image.base.name"}}'
    return docker.ok("image", "inspect", "-f", label, image).strip()


def build_target(
    docker: Docker, target: str, base: str, *extra: str, dockerfile: Path = REPO_ROOT / "docker/Dockerfile"
) -> subprocess.CompletedProcess[str]:
    """`docker build --target TARGET` FROM base with the locked dar-backup, as the pipeline builds it."""
    secret = ["--secret", f"id=pip_cert,src={os.environ['PIP_CERT']}"] if os.environ.get("PIP_CERT") else []
    version = locked_dar_backup_version(REPO_ROOT / "docker/requirements.txt")
    argv = ["build", *extra, "-f", str(dockerfile), "--target", target, *secret]
    argv += ["--build-arg", f"BASE_IMAGE={base}", "--build-arg", f"DAR_BACKUP_VERSION={version}", "."]
    env = {**os.environ, "DOCKER_BUILDKIT": "1"}
    return subprocess.run([docker.client, *argv], cwd=REPO_ROOT, capture_output=True, text=True, env=env, check=False)


OTHER_PYTHON = "RUN sed -i '/^Package: python3$/,/^$/s/^Version: .*/Version: 0.0-other/' /var/lib/dpkg/status\n"
PYTHON_CHECK = "RUN --mount=type=bind,from=base,source=/var/lib/dpkg,target=/tmp/base-dpkg"


def test_build_refuses_a_venv_made_by_another_python_than_base(docker: Docker, image: str, tmp_path: Path):
    """The venv's stage is not built on base: final's Python must be its, package for package."""
    dockerfile = (REPO_ROOT / "docker/Dockerfile").read_text()
    assert dockerfile.count(PYTHON_CHECK) == 1
    (tmp_path / "Dockerfile").write_text(dockerfile.replace(PYTHON_CHECK, OTHER_PYTHON + PYTHON_CHECK))
    done = build_target(docker, "final", run_base(docker, image), dockerfile=tmp_path / "Dockerfile")
    assert done.returncode != 0
    assert re.search(r"base's Python is not the builder's, .*: the builder has not python3=\S+;", done.stderr)


# What Debian's and Ubuntu's official images keep in /etc/apt/apt.conf.d/docker-clean: apt's cache
# of packages is emptied after every dpkg run (the bootstrapped base has no such file).
DOCKER_CLEAN = (
    'DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb '
    '/var/cache/apt/*.bin || true"; };'
)


def test_the_builder_trusts_for_pip_the_bundle_update_ca_certificates_writes(docker: Docker, image: str):
    """The builder unpacks ca-certificates instead of installing it: pip must trust what an install would,
    also on a base that cleans apt's cache as the official images do."""
    cleaning = "dar-backup-test-base:docker-clean"
    dockerfile = (
        f"FROM {run_base(docker, image)}\nRUN printf '%s\\n' '{DOCKER_CLEAN}' > /etc/apt/apt.conf.d/docker-clean\n"
    )
    env = {**os.environ, "DOCKER_BUILDKIT": "1"}
    argv = [docker.client, "build", "-q", "-t", cleaning, "-"]
    made = subprocess.run(argv, input=dockerfile, capture_output=True, text=True, env=env, check=False)
    assert made.returncode == 0, made.stderr[-2000:]
    try:
        done = build_target(docker, "builder", cleaning, "-q")
        assert done.returncode == 0, done.stderr[-2000:]
        builder = done.stdout.strip()
        given = docker.ok(*RUN, "--entrypoint", "sha256sum", builder, "/tmp/ca-certificates.crt").split()[0]
        docker("rmi", builder)
    finally:
        docker("rmi", cleaning)
    written = docker.ok(*RUN, "--entrypoint", "sha256sum", image, "/etc/ssl/certs/ca-certificates.crt").split()[0]
    assert given == written
    # And it is not empty: the image's bundle holds the public roots.
    bundle = "/etc/ssl/certs/ca-certificates.crt"
    assert int(docker.ok(*RUN, "--entrypoint", "grep", image, "-c", "BEGIN CERTIFICATE", bundle)) > 100
