"""`scripts/dev test` runs the end-to-end tests side by side: what must share a worker does."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from ci.core.config import REPO_ROOT

CONFTEST = """
import os
import pytest
from tests.e2e.conftest import pytest_collection_modifyitems


@pytest.fixture(scope="module")
def two_runs():
    with open(os.environ["WORKERS_FILE"], "a") as workers:
        workers.write(os.environ["PYTEST_XDIST_WORKER"] + "\\n")
"""

TESTS = "".join(f"def test_{n}(two_runs):\n    pass\n\n\ndef test_alone_{n}():\n    pass\n\n\n" for n in range(6))


def test_the_tests_of_a_grouped_fixture_run_on_one_worker_which_makes_it_once(tmp_path: Path):
    # pytest 9.2 with pytest-xdist 3.8 spread them over every worker, each making the fixture
    # again (pytest-dev/pytest-xdist#1386), and so did a hook that marked them after xdist read the marks.
    (tmp_path / "conftest.py").write_text(CONFTEST)
    (tmp_path / "test_grouped.py").write_text(TESTS)
    workers = tmp_path / "workers"
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-n", "3", "--dist", "loadgroup", "."],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT), "WORKERS_FILE": str(workers)},
        check=False,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "12 passed" in done.stdout
    assert len(workers.read_text().split()) == 1
