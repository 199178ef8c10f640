"""From nothing: `scripts/dev pipeline` on an engine with no state, with no base and no venv yet.

The engine is one started empty for this (its own --data-root, --exec-root, --pidfile, socket
and bridge; docs/benchmarks.md shows how), named by DAR_BACKUP_BENCH_EMPTY_DOCKER_HOST. What
this cannot take from nothing is the engine's own installation (apt-get install docker.io): that
would mean removing the machine's. The venv is a new one, filled from the index with no pip
cache and no local wheels, as on a new machine; the base is bootstrapped where no registry
answers. The run's output is timed line by line: the longest silence is a figure too, since a
step that says nothing for a minute reads as a hang. The engine is emptied again afterwards.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path

from bench.harness import Bench, check
from bench.table import Figure, Measured
from ci.core.config import REPO_ROOT

EMPTY_ENGINE = "DAR_BACKUP_BENCH_EMPTY_DOCKER_HOST"
# Issue 30: a fresh machine to a green `scripts/dev pipeline` within 2 minutes, and no long step
# quiet for more than 15 s (ci/core/log.py's PROGRESS_SECONDS).
FRESH_PIPELINE_TARGET_SECONDS = 120.0
SILENCE_TARGET_SECONDS = 15.0


def longest_silence(times: list[float]) -> float:
    """The longest gap between one output line and the next (the start counts as a line)."""
    return max((b - a for a, b in itertools.pairwise(times)), default=0.0)


def timed_lines(argv: list[str], env: Mapping[str, str]) -> tuple[int, list[float], list[str]]:
    """argv's exit code, and when (seconds from its start) it printed each line, stdout and stderr alike."""
    started = time.monotonic()
    times, lines = [0.0], []
    with subprocess.Popen(
        argv, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace"
    ) as child:
        assert child.stdout is not None
        for line in child.stdout:
            times.append(time.monotonic() - started)
            lines.append(line.rstrip("\n"))
    return child.returncode, times, lines


def emptied(client: str, env: Mapping[str, str]) -> None:
    for argv in (["system", "prune", "-af", "--volumes"], ["builder", "prune", "-af"]):
        check([client, *argv], env=env)


async def measure(bench: Bench) -> Measured:
    host = os.environ.get(EMPTY_ENGINE)
    if not host:
        return Measured(notes={"fresh pipeline": [f"no empty engine named ({EMPTY_ENGINE}): not measured"]})
    with tempfile.TemporaryDirectory(prefix="dar-backup-bench-fresh-") as tmp:
        # A fresh machine's pip has no cache and no local wheels to find.
        env = {k: v for k, v in os.environ.items() if k != "PIP_FIND_LINKS"}
        env.update(DOCKER_HOST=host, DAR_BACKUP_VENV=f"{tmp}/venv", PIP_NO_CACHE_DIR="1")
        held = check([bench.client, "images", "-aq"], env=env).split()
        if held:
            raise SystemExit(f"bench: the engine at {host} is not empty ({len(held)} images): empty it first")
        reports = Path(tmp) / "reports"
        try:
            code, times, lines = timed_lines(
                [str(REPO_ROOT / "scripts/dev"), "pipeline", "test", "--report-dir", str(reports)], env
            )
        finally:
            emptied(bench.client, env)
        if code != 0:
            raise SystemExit(f"bench: the fresh pipeline exited {code}: {' | '.join(lines[-5:])}")
        steps = json.loads((reports / "test.json").read_text())["steps"]
    slowest = sorted(steps, key=lambda step: -step["seconds"])[:6]
    return Measured(
        [
            Figure.at_most(
                "fresh pipeline: empty engine, no base, new venv", times[-1], "s", FRESH_PIPELINE_TARGET_SECONDS
            ),
            Figure.at_most("  longest it said nothing", round(longest_silence(times), 1), "s", SILENCE_TARGET_SECONDS),
        ],
        notes={
            "fresh pipeline: its slowest steps": [
                f"{step['seconds']:6.1f}s  {step['stage']}: {step['name']}" for step in slowest
            ]
        },
    )
