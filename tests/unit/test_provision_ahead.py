"""`scripts/dev pipeline` makes the engine ready with the system python3 while it creates the venv."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import pytest

from ci.core.config import REPO_ROOT
from ci.core.platforms import host_platform
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

    monkeypatch.setattr(provision, "registry_unreachable", lambda requested, host: True)
    monkeypatch.setattr(provision, "find_client", lambda: None)
    source = provision.AptSource("http://mirror.example/debian", "bookworm")
    monkeypatch.setattr(provision, "bootstrap_plan", lambda requested, platform, host: (source, "base:bookworm"))
    monkeypatch.setattr(provision, "started_engine", installed_and_started)
    monkeypatch.setattr(provision, "bootstrap_archive", bootstrapped)
    monkeypatch.setattr(provision, "load_base", lambda *args: loaded.append(args))
    provision.prepare("ubuntu:24.04")
    [(client, archive, tag, platform)] = loaded
    assert (client, archive.name, tag, platform) == ("/usr/bin/docker", "image.tar", "base:bookworm", host_platform())
