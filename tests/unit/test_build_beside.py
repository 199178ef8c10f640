"""The build stage runs the venv's stage beside base: results and failures as if each ran alone."""

from __future__ import annotations

import time

import anyio
import pytest

from ci.core.errors import EngineError
from ci.stages.build import beside


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
