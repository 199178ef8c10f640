"""Work run at the same time, failing as one piece of work would: the first error, raised as it is."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import TypeVar

import anyio

T = TypeVar("T")


async def at_once(*works: Awaitable[object]) -> None:
    """Run works at the same time; the first to fail cancels the others, and its error is raised
    as it is (not in the ExceptionGroup a task group raises), so it reads as the one failure it is."""
    failures: list[Exception] = []

    async def guarded(work: Awaitable[object]) -> None:
        try:
            await work
        except Exception as err:
            failures.append(err)
            group.cancel_scope.cancel()

    async with anyio.create_task_group() as group:
        for work in works:
            group.start_soon(guarded, work)
    if failures:
        raise failures[0]


async def beside(main: Awaitable[T], side: Awaitable[object]) -> T:
    """main's result, side run at the same time (see at_once)."""
    results: list[T] = []

    async def keep() -> None:
        results.append(await main)

    await at_once(keep(), side)
    return results[0]
