"""Dagger figures: `dagger run python ci/main.py test` on a reachable engine, beside the same test on Docker.

An engine is reachable when `_EXPERIMENTAL_DAGGER_RUNNER_HOST` names it (how the CLI finds an
engine it did not start); the CLI is `_EXPERIMENTAL_DAGGER_CLI_BIN`, else `dagger` on PATH.
The pipeline's own variables (BASE_IMAGE, …) pass through to both runs.
"""

from __future__ import annotations

import os
import shutil
import statistics
import tempfile
from collections.abc import Mapping
from pathlib import Path

from bench.harness import Bench, check, pipeline_run
from bench.table import Figure, Measured

RUNNER_HOST = "_EXPERIMENTAL_DAGGER_RUNNER_HOST"
CLI_BIN = "_EXPERIMENTAL_DAGGER_CLI_BIN"
# Runs after the first, each engine's warm figure being their median; the engines alternate,
# so both see the same hour's load.
WARM_RUNS = 2
TITLE = "Dagger"


def dagger_cli(env: Mapping[str, str]) -> str | None:
    """The CLI to reach the named engine with; None when no engine is named, an error when no CLI is found."""
    if not env.get(RUNNER_HOST):
        return None
    cli = env.get(CLI_BIN) or shutil.which("dagger", path=env.get("PATH"))
    if cli is None:
        raise SystemExit(f"bench: {RUNNER_HOST} names an engine, but no dagger CLI: set {CLI_BIN} or put it on PATH")
    return cli


def wall_figures(engine: str, walls: list[float]) -> list[Figure]:
    return [
        Figure.reported(f"{engine}: test, first run (cache as found)", walls[0], "s"),
        Figure.reported(f"{engine}: test, warm (median of {len(walls) - 1})", statistics.median(walls[1:]), "s"),
    ]


async def measure(bench: Bench) -> Measured:
    cli = dagger_cli(os.environ)
    if cli is None:
        return Measured(notes={TITLE: [f"no engine: {RUNNER_HOST} is not set"]})
    # Off the network: no update check, no telemetry.
    env = {**os.environ, "DAGGER_NO_UPDATE_CHECK": "1", "DO_NOT_TRACK": "1"}
    version = check([cli, "version"], env=env).strip()
    walls: dict[str, list[float]] = {"dagger run": [], "docker": []}
    with tempfile.TemporaryDirectory(prefix="dar-backup-bench-dagger-") as tmp:
        for number in range(WARM_RUNS + 1):
            walls["dagger run"].append(pipeline_run([cli, "run"], "dagger", Path(tmp) / f"dagger{number}", env)[0])
            walls["docker"].append(pipeline_run([], "docker", Path(tmp) / f"docker{number}")[0])
    figures = [figure for engine, seconds in walls.items() for figure in wall_figures(engine, seconds)]
    warm = statistics.median(walls["dagger run"][1:]) / statistics.median(walls["docker"][1:])
    figures.append(Figure.reported("  dagger run / docker, warm", warm, "x"))
    return Measured(figures, notes={TITLE: [f"engine {os.environ[RUNNER_HOST]}, CLI {cli}: {version}"]})
