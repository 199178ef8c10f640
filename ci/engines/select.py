"""Which engine a run uses, and opening it for the length of the run."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path

from ci.core.errors import UsageError
from ci.engines.seam import Engine

ENGINES = ("auto", "dagger", "docker")


def choose_engine(requested: str, env: Mapping[str, str]) -> tuple[str, str]:
    """(engine, why): `auto` takes Dagger inside a Dagger session, the local Docker engine otherwise."""
    if requested not in ENGINES:
        raise UsageError(f"unknown engine {requested!r}; choose one of {', '.join(ENGINES)}")
    if requested != "auto":
        return requested, "asked for"
    if env.get("DAGGER_SESSION_PORT"):
        return "dagger", "auto: a Dagger session is present (DAGGER_SESSION_PORT)"
    return "docker", "auto: no Dagger session, using the local Docker engine"


@asynccontextmanager
async def open_engine(name: str, run_id: str, context: Path) -> AsyncIterator[Engine]:
    """The named engine for one run; `context` is the build context (the repository's root)."""
    engine: Engine
    if name == "dagger":
        from ci.engines.dagger import dagger_engine

        async with dagger_engine(run_id, context) as engine:
            yield engine
        return
    from ci.engines.docker import DockerEngine

    engine = DockerEngine.open(run_id, context)
    try:
        yield engine
    finally:
        await engine.close()
