"""Suite-wide rules: under DAR_BACKUP_CI_NO_SKIP=1 (as .ci/run sets it) a skipped test fails the run."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from ci.core.config import REPO_ROOT
from tests.support.registry import LocalRegistry


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.skipped and os.environ.get("DAR_BACKUP_CI_NO_SKIP") == "1" and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        report.longrepr = f"skipped, but DAR_BACKUP_CI_NO_SKIP=1 forbids skips here: {report.longrepr}"


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[LocalRegistry]:
    """A real registry (Debian's docker-registry) on a free loopback port, stopped afterwards."""
    local = LocalRegistry(tmp_path / "registry")
    local.root.mkdir()
    local.start()
    yield local
    local.stop()


@pytest.fixture
def auth_registry(tmp_path: Path) -> Iterator[LocalRegistry]:
    """The same with htpasswd authentication."""
    local = LocalRegistry(tmp_path / "auth-registry", username="releaser", password="s3cret-Token-9f2e")
    local.root.mkdir()
    local.start()
    yield local
    local.stop()


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    """A clean clone of the committed tree: releases refuse dirty trees, and its history is ours to change."""
    target = tmp_path / "checkout"
    subprocess.run(["git", "clone", "-q", str(REPO_ROOT), str(target)], check=True)
    return target
