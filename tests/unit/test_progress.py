"""A step that runs long says so as it goes: a progress line at least every PROGRESS_SECONDS."""

from __future__ import annotations

import time

import anyio
import pytest

from ci.core import log
from ci.core.log import progress
from ci.core.report import Report


def still_running(out: str, where: str, what: str) -> list[str]:
    return [line for line in out.splitlines() if line.startswith(f"[{where}] {what}: still running (")]


def test_a_slow_block_says_it_is_still_running_until_it_ends(capsys: pytest.CaptureFixture[str]):
    with progress("engine", "debootstrap bookworm (amd64)", every=0.05):
        time.sleep(0.32)
    said = len(still_running(capsys.readouterr().out, "engine", "debootstrap bookworm (amd64)"))
    assert 4 <= said <= 7
    time.sleep(0.15)
    assert still_running(capsys.readouterr().out, "engine", "debootstrap bookworm (amd64)") == []


def test_a_quick_block_says_nothing_more(capsys: pytest.CaptureFixture[str]):
    with progress("engine", "apt-get update", every=5):
        pass
    assert capsys.readouterr().out == ""


def test_a_slow_step_of_the_pipeline_reports_progress_even_while_awaiting(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr(log, "PROGRESS_SECONDS", 0.05)
    report = Report("test", "docker")

    async def slow_step() -> None:
        with report.step("test", "FULL backup"):
            await anyio.sleep(0.3)

    anyio.run(slow_step)
    out = capsys.readouterr().out
    assert len(still_running(out, "test", "FULL backup")) >= 3
    # The lines come between the step's start and its end.
    lines = out.splitlines()
    assert lines[0] == "[test] FULL backup ..." and lines[-1].startswith("[test] FULL backup: passed (")


def test_a_failing_step_stops_reporting_progress(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(log, "PROGRESS_SECONDS", 0.05)
    report = Report("test", "docker")
    with pytest.raises(RuntimeError), report.step("test", "bitrot"):
        raise RuntimeError("boom")
    time.sleep(0.15)
    assert still_running(capsys.readouterr().out, "test", "bitrot") == []
