import json
import subprocess
import sys
import time
import xml.etree.ElementTree as ET

import pytest

from ci.cli import run_reported
from ci.core.config import REPO_ROOT
from ci.core.errors import OutputError, StageFailure
from ci.core.files import write_atomically
from ci.core.report import Report, to_junit, to_markdown, to_text, write_reports


def sample() -> Report:
    report = Report("test", "docker", run={"run_id": "abc"})
    with report.step("base", "build"):
        pass
    with pytest.raises(StageFailure), report.step("test", "FULL: restore"):
        raise StageFailure("restore of FULL: 1 difference(s)\n  missing: 'a & <b>'")
    report.outcome, report.error = "failed", "restore of FULL: 1 difference(s)"
    return report


def test_steps_record_status_duration_and_message():
    report = sample()
    assert [(s.stage, s.status) for s in report.steps] == [("base", "passed"), ("test", "failed")]
    assert report.failed[0].message.startswith("restore of FULL")


def test_a_step_records_how_long_it_ran():
    report = Report("test", "docker")
    with report.step("test", "wait"):
        time.sleep(0.2)
    assert 0.2 <= report.steps[0].seconds < 5


def test_junit_parses_back_with_one_case_per_step():
    report = sample()
    report.steps[0].seconds, report.steps[1].seconds = 1.25, 0.5
    root = ET.fromstring(to_junit(report))
    cases = root.findall(".//testcase")
    assert [(c.get("name"), c.get("time")) for c in cases] == [("build", "1.250"), ("FULL: restore", "0.500")]
    failure = cases[1].find("failure")
    assert failure is not None and "missing: 'a & <b>'" in failure.text
    assert root.find("testsuite[@name='test']").get("failures") == "1"
    assert [suite.get("time") for suite in root.findall("testsuite")] == ["1.250", "0.500"]


def test_markdown_and_text_summaries_name_the_failure():
    report = sample()
    assert "| test | FULL: restore | ❌ |" in to_markdown(report)
    assert "failed: [test] FULL: restore: restore of FULL: 1 difference(s)" in to_text(report)


def test_reports_are_written_and_step_summary_appended(tmp_path):
    summary = tmp_path / "summary.md"
    summary.write_text("earlier\n")
    write_reports(sample(), tmp_path / "reports", str(summary))
    written = json.loads((tmp_path / "reports/test.json").read_text())
    assert (written["command"], written["outcome"]) == ("test", "failed")
    assert [(s["stage"], s["name"], s["status"]) for s in written["steps"]] == [
        ("base", "build", "passed"),
        ("test", "FULL: restore", "failed"),
    ]
    junit = ET.parse(tmp_path / "reports/test.junit.xml").getroot()
    assert [(suite.get("name"), suite.get("failures"), [case.get("name") for case in suite]) for suite in junit] == [
        ("base", "0", ["build"]),
        ("test", "1", ["FULL: restore"]),
    ]
    assert junit.find("testsuite[@name='test']/testcase/failure").get("message") == "restore of FULL: 1 difference(s)"
    assert summary.read_text().startswith("earlier\n## dar-backup-image `test`")


def test_atomic_write_leaves_no_partial_file(tmp_path, monkeypatch):
    target = tmp_path / "history.json"
    target.write_text("old")

    class Boom(Exception):
        pass

    def explode(self, other):
        raise Boom

    monkeypatch.setattr("pathlib.Path.replace", explode)
    with pytest.raises(Boom):
        write_atomically(target, "new")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["history.json"]


def test_a_bug_in_the_pipeline_writes_the_reports_before_its_traceback(tmp_path, capsys):
    report = Report("test", "docker")

    async def buggy() -> None:
        with report.step("test", "a step"):
            pass
        {}["missing"]

    assert run_reported(report, tmp_path, None, buggy) == 3
    saved = json.loads((tmp_path / "test.json").read_text())
    assert saved["outcome"] == "failed" and saved["error"] == "internal error: KeyError: 'missing'"
    err = capsys.readouterr().err
    assert "Traceback" in err and err.strip().splitlines()[-1] == "error: internal error: KeyError: 'missing'"


def test_output_that_does_not_read_fails_its_step_naming_it():
    report = Report("test", "docker")
    with pytest.raises(OutputError, match=r"^parse it: bad number$"), report.step("test", "parse it"):
        raise OutputError("bad number")
    assert report.failed[0].message == "parse it: bad number"


def test_a_value_error_inside_a_step_is_a_bug_not_a_failing_gate():
    report = Report("test", "docker")
    with pytest.raises(ValueError, match="bad number"), report.step("test", "parse it"):
        raise ValueError("bad number")
    assert report.failed[0].message == "ValueError: bad number"


def test_a_step_that_is_not_gating_warns_and_the_run_goes_on():
    report = Report("test", "docker")
    with report.step("test", "rollback", gating=False):
        raise StageFailure("the previous image could not restore it")
    report.skip("test", "upgrade", "skipped: no previous release")
    assert [(s.status, s.message) for s in report.steps] == [
        ("warning", "the previous image could not restore it"),
        ("skipped", "skipped: no previous release"),
    ]
    junit = ET.fromstring(to_junit(report))
    assert junit.find("testsuite").get("failures") == "0" and junit.find("testsuite").get("skipped") == "1"
    assert "warning: [test] rollback" in to_text(report) and "⏭️ skipped" in to_markdown(report)


def test_the_sigterm_dagger_run_sends_on_ctrl_c_ends_with_the_reports_and_130(tmp_path):
    # `dagger run` cancels on SIGINT and sends its command SIGTERM, then SIGKILL after
    # --cleanup-timeout (cmd/dagger/exec_unix.go ensureChildProcessesAreKilled, cmd/dagger/run.go).
    # On an engine of the pinned version the pipeline died of it at once: no reports, and `dagger run` exited 255.
    script = (
        "import os, signal, sys, time\n"
        "from pathlib import Path\n"
        "from ci.cli import run_reported\n"
        "from ci.core.report import Report\n"
        "async def work():\n"
        "    os.kill(os.getpid(), signal.SIGTERM)\n"
        "    time.sleep(5)\n"
        "sys.exit(run_reported(Report('test', 'dagger'), Path(sys.argv[1]), None, work))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path)], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 130, done.stderr
    assert done.stderr.endswith("error: interrupted (Ctrl-C); volumes and containers removed\n")
    assert json.loads((tmp_path / "test.json").read_text())["outcome"] == "interrupted"
