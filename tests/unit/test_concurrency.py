"""Work at the same time (the venv's stage beside base, every platform's story): as if each ran alone."""

from __future__ import annotations

import time

import anyio
import pytest

from ci.core.concurrency import at_once, beside
from ci.core.errors import EngineError
from ci.core.report import Report


async def after(seconds: float, value: str, log: list[str]) -> str:
    await anyio.sleep(seconds)
    log.append(value)
    return value


def test_both_run_at_once_and_main_result_comes_back():
    log: list[str] = []

    async def main() -> tuple[str, float]:
        started = anyio.current_time()
        value = await beside(after(0.2, "base", log), after(0.2, "builder", log))
        return value, anyio.current_time() - started

    value, seconds = anyio.run(main)
    assert value == "base" and sorted(log) == ["base", "builder"]
    assert seconds < 0.35  # side by side, not one after the other


@pytest.mark.parametrize("failing", ["main", "side"])
def test_a_failure_is_raised_as_it_is_and_stops_the_other(failing: str):
    log: list[str] = []

    async def fails() -> str:
        await anyio.sleep(0.01)
        raise EngineError("docker build --target builder failed with exit code 1")

    async def main() -> str:
        slow = after(5, "never", log)
        return await (beside(fails(), slow) if failing == "main" else beside(slow, fails()))

    started = time.monotonic()
    with pytest.raises(EngineError, match="exit code 1"):
        anyio.run(main)
    assert log == [] and time.monotonic() - started < 2


def test_every_work_runs_at_once_and_the_first_failure_stops_the_rest():
    log: list[str] = []

    async def fails() -> None:
        await anyio.sleep(0.05)
        raise EngineError("the story on linux/amd64 failed")

    async def all_pass() -> float:
        started = anyio.current_time()
        await at_once(after(0.2, "amd64", log), after(0.2, "arm64", log), after(0.2, "riscv64", log))
        return anyio.current_time() - started

    assert anyio.run(all_pass) < 0.35 and sorted(log) == ["amd64", "arm64", "riscv64"]
    log.clear()
    started = time.monotonic()
    with pytest.raises(EngineError, match="linux/amd64 failed"):
        anyio.run(lambda: at_once(after(5, "never", log), fails(), after(5, "never", log)))
    assert log == [] and time.monotonic() - started < 2


def test_steps_of_platforms_tested_at_once_each_name_their_own_platform():
    report = Report("test", "docker")

    async def story(platform: str, pause: float) -> None:
        with report.on_platform(platform):
            for level in ("FULL", "DIFF"):
                with report.step("test", level):
                    await anyio.sleep(pause)

    async def both() -> None:
        await at_once(story("linux/amd64", 0.05), story("linux/arm64", 0.08))
        with report.step("release", "the index"):
            pass

    anyio.run(both)
    steps = [(s.platform, s.name) for s in report.steps]
    assert steps[0][0] != steps[1][0]  # each platform's FULL before either's DIFF: they ran at once
    assert sorted(steps[:4]) == [(p, n) for p in ("linux/amd64", "linux/arm64") for n in ("DIFF", "FULL")]
    assert steps[4] == ("", "the index")


def test_a_step_stopped_because_another_platform_failed_is_not_a_failure_of_its_own():
    report = Report("test", "docker")

    async def story(platform: str, fails: bool) -> None:
        with report.on_platform(platform), report.step("test", "FULL"):
            await anyio.sleep(0.05 if fails else 5)
            if fails:
                raise EngineError("restore of FULL: 1 difference(s)")

    with pytest.raises(EngineError):
        anyio.run(lambda: at_once(story("linux/amd64", True), story("linux/arm64", False)))
    assert [(s.platform, s.status) for s in report.failed] == [("linux/amd64", "failed")]
    (stopped,) = [s for s in report.steps if s.platform == "linux/arm64"]
    assert (stopped.status, stopped.message) == ("skipped", "stopped: a step running beside it failed")
