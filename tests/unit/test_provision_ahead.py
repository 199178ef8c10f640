"""`scripts/dev pipeline` makes the engine ready with the system python3 while it creates the venv."""

from __future__ import annotations

import subprocess
import sys

import pytest

from ci.core.config import REPO_ROOT
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
