"""Suite-wide rules: under DAR_BACKUP_CI_NO_SKIP=1 (as .ci/run sets it) a skipped test fails the run."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.skipped and os.environ.get("DAR_BACKUP_CI_NO_SKIP") == "1" and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        report.longrepr = f"skipped, but DAR_BACKUP_CI_NO_SKIP=1 forbids skips here: {report.longrepr}"
