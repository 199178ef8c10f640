"""`scripts/dev pipeline` makes the engine ready with the system python3 while it creates the venv."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import pytest

from ci.core.config import REPO_ROOT
from ci.core.platforms import SUPPORTED, host_platform
from ci.engines import provision


def test_provisioning_ahead_of_the_run_needs_only_the_standard_library():
    # -S: no site-packages, so a package of the venv (semver, anyio, dagger) cannot be found.
    code = f"import sys; sys.path.insert(0, {str(REPO_ROOT)!r}); import ci.engines.provision"
    done = subprocess.run([sys.executable, "-I", "-S", "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr.strip().splitlines()[-1:]


def test_a_run_on_dagger_needs_nothing_of_the_local_engine(capsys: pytest.CaptureFixture[str]):
    # The pipeline's own arguments, --help among them, pass through untouched.
    assert provision.main(["--engine", "dagger", "test", "--help", "--base-image=debian:trixie"]) == 0
    assert capsys.readouterr().out == ""


def test_a_bad_engine_is_left_for_the_run_to_refuse(capsys: pytest.CaptureFixture[str]):
    assert provision.main(["--engine", "podman"]) == 1
    assert capsys.readouterr().out == (
        "[engine] not ready ahead of the run: unknown engine 'podman'; choose one of auto, dagger, docker\n"
    )


def test_on_a_machine_with_no_engine_the_base_is_bootstrapped_while_the_engine_is_installed(monkeypatch, tmp_path):
    # Each side waits for the other to have started: run one after the other, the barrier breaks.
    both_started = threading.Barrier(2, timeout=5)
    loaded = []

    def installed_and_started() -> str:
        both_started.wait()
        return "/usr/bin/docker"

    def bootstrapped(tmp: Path, tag: str, source: provision.AptSource, platform: str) -> Path:
        both_started.wait()
        return tmp / "image.tar"

    monkeypatch.setattr(provision, "LOCK_DIR", tmp_path)
    monkeypatch.setattr(provision, "registry_unreachable", lambda requested, host: True)
    monkeypatch.setattr(provision, "find_client", lambda: None)
    source = provision.AptSource("http://mirror.example/debian", "bookworm")
    monkeypatch.setattr(provision, "bootstrap_plan", lambda requested, platform, host: (source, "base:bookworm"))
    monkeypatch.setattr(provision, "started_engine", installed_and_started)
    monkeypatch.setattr(provision, "bootstrap_archive", bootstrapped)
    monkeypatch.setattr(provision, "load_base", lambda *args: loaded.append(args))
    provision.prepare("ubuntu:24.04", (host_platform(),))
    [(client, archive, tag, platform)] = loaded
    assert (client, archive.name, tag, platform) == ("/usr/bin/docker", "image.tar", "base:bookworm", host_platform())


def test_a_foreign_platform_named_gets_emulation_and_its_own_base_ahead_of_the_run(monkeypatch):
    # What the end-to-end tests ask for beside their own start: the foreign base is the longest wait.
    host = host_platform()
    other = next(platform for platform in SUPPORTED if platform != host)
    done = []
    monkeypatch.setattr(provision, "registry_unreachable", lambda requested, host: True)
    monkeypatch.setattr(provision, "find_client", lambda: "/usr/bin/docker")
    monkeypatch.setattr(provision, "started_engine", lambda: "/usr/bin/docker")
    monkeypatch.setattr(provision, "ensure_emulation", lambda platform: done.append(("emulation", platform)))
    monkeypatch.setattr(
        provision,
        "ensure_base_image",
        lambda client, requested, platform, host: done.append(("base", platform)) or "base",
    )
    monkeypatch.delenv("DAR_BACKUP_PLATFORMS", raising=False)
    assert provision.main(["--engine", "docker", "--platform", other, "release"]) == 0
    assert done == [("emulation", other), ("base", other)]
    done.clear()
    assert provision.main(["--engine", "docker"]) == 0
    assert done == [("base", host)]
    done.clear()
    # The pipeline's variable names the platforms too.
    monkeypatch.setenv("DAR_BACKUP_PLATFORMS", f"{host},{other}")
    assert provision.main(["--engine", "docker"]) == 0
    assert done == [("base", host), ("emulation", other), ("base", other)]


def test_a_foreign_platform_that_cannot_be_emulated_leaves_the_host_ready(monkeypatch, capsys):
    host = host_platform()
    other = next(platform for platform in SUPPORTED if platform != host)
    done = []

    def no_emulation(platform: str) -> None:
        raise provision.EngineError(f"emulation of {platform} is not enabled")

    monkeypatch.setattr(provision, "registry_unreachable", lambda requested, host: True)
    monkeypatch.setattr(provision, "find_client", lambda: "/usr/bin/docker")
    monkeypatch.setattr(provision, "started_engine", lambda: "/usr/bin/docker")
    monkeypatch.setattr(provision, "ensure_emulation", no_emulation)
    monkeypatch.setattr(
        provision,
        "ensure_base_image",
        lambda client, requested, platform, host: done.append(platform) or "base",
    )
    assert provision.main(["--engine", "docker", "--platform", f"{other},{host}"]) == 1
    assert done == [host]
    assert capsys.readouterr().out == f"[engine] not ready ahead of the run: emulation of {other} is not enabled\n"


def test_a_bad_platform_is_left_for_the_run_to_refuse(capsys: pytest.CaptureFixture[str]):
    assert provision.main(["--engine", "docker", "--platform", "linux/s390x"]) == 1
    assert capsys.readouterr().out == (
        "[engine] not ready ahead of the run: unknown platform 'linux/s390x'; supported: linux/amd64, linux/arm64\n"
    )


def test_a_second_run_waits_for_the_machine_lock_and_says_so(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(provision, "LOCK_DIR", tmp_path)
    # Another process holds the lock until told to let go (a line on its stdin).
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(tmp_path / "dar-backup-ci-apt.lock")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None and holder.stdin is not None
    assert holder.stdout.readline() == "held\n"
    entered = threading.Event()

    def second_run() -> None:
        with provision.machine_lock("apt"):
            entered.set()

    waiter = threading.Thread(target=second_run)
    waiter.start()
    assert not entered.wait(1), "entered while another process held the lock"
    holder.stdin.write("go\n")
    holder.stdin.flush()
    assert entered.wait(10)
    waiter.join()
    holder.wait(10)
    assert capsys.readouterr().out == "[engine] waiting for another run's apt\n"


HOLD_LOCK = """
import fcntl, sys
with open(sys.argv[1], "a") as handle:
    fcntl.flock(handle, fcntl.LOCK_EX)
    print("held", flush=True)
    sys.stdin.readline()
"""


def test_what_is_installed_is_not_installed_again(capsys):
    # dpkg is on every machine apt-get is: no apt-get runs, so nothing is said and root is not needed.
    provision.apt_install("dpkg")
    assert capsys.readouterr().out == ""


LOCK_AND_SAY = f"""
import sys
sys.path.insert(0, {str(REPO_ROOT)!r})
from ci.core.files import exclusive
from pathlib import Path
with exclusive(Path(sys.argv[1])):
    print("in", flush=True)
"""


def test_a_lock_another_user_made_still_serves(tmp_path):
    # Root's test run made the lock; a user's pipeline then takes it (it cannot write the file).
    if os.geteuid() == 0:
        # As root, "another user" is nobody, who can reach a directory in /tmp but not tmp_path.
        where = Path(tempfile.mkdtemp(dir="/tmp"))
        where.chmod(0o755)
        argv = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "/usr/bin/python3", "-I", "-S"]
    else:
        where = tmp_path
        argv = [sys.executable, "-I", "-S"]
    lock = where / "dar-backup-ci-engine.lock"
    lock.touch(mode=0o444)
    try:
        done = subprocess.run([*argv, "-c", LOCK_AND_SAY, str(lock)], capture_output=True, text=True, check=False)
    finally:
        if where != tmp_path:
            shutil.rmtree(where)
    assert (done.returncode, done.stdout) == (0, "in\n"), done.stderr.strip().splitlines()[-1:]
