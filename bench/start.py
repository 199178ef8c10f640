"""Image start figures: its size, and where one FULL's seconds go (container start, entrypoint, dar-backup's start)."""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence

from bench.harness import FINAL, Bench, check, docker_engine
from bench.story import SCALES, definition_argv, generate, run_ok, volumes
from bench.table import Figure, Measured

# Put first on PATH, these record how long each dar and par2 call dar-backup makes takes.
SHIM = """#!/bin/sh
started=$(date +%s.%N)
"/usr/bin/$(basename "$0")" "$@"
code=$?
echo "$(basename "$0") $started $(date +%s.%N)" >> "$TIMINGS"
exit $code
"""
INSTALL_SHIMS = 'mkdir -p "$1" && for t in dar par2; do printf "%s" "$2" > "$1/$t" && chmod 755 "$1/$t"; done'
TIMED_ENV = {
    "PATH": "/scratch/shims:/opt/dar-backup/bin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "TIMINGS": "/scratch/timings",
}


def tool_seconds(timings: str) -> dict[str, float]:
    """Seconds spent in each tool, from the shims' `TOOL START END` lines."""
    spent: dict[str, float] = {}
    for line in timings.splitlines():
        tool, started, ended = line.split()
        spent[tool] = spent.get(tool, 0.0) + float(ended) - float(started)
    return spent


def size_figures(client: str, base: str) -> list[Figure]:
    size, base_size = (int(check([client, "image", "inspect", "-f", "{{.Size}}", tag])) for tag in (FINAL, base))
    return [
        Figure.reported("final image size", size / 1e6, "MB"),
        Figure.at_most("final image over its base", (size - base_size) / 1e6, "MB", 62),
    ]


async def breakdown(bench: Bench) -> list[Figure]:
    """Where the seconds of one FULL in the image go: container start, entrypoint, dar-backup, dar, par2."""
    label, (size_mb, files) = next(iter(SCALES.items()))
    image = bench.image()
    async with docker_engine(bench.client, "b") as engine:
        mounts = await volumes(engine, image, "breakdown")

        async def timed(argv: Sequence[str], entrypoint: bool = True, env: dict[str, str] | None = None) -> float:
            """Seconds for one container; without the entrypoint it runs directly as the image's user."""
            started = time.monotonic()
            await run_ok(
                engine, image, argv, mounts, entrypoint=entrypoint, env=env, user=None if entrypoint else "1000:1000"
            )
            return time.monotonic() - started

        async def median(argv: Sequence[str], entrypoint: bool) -> float:
            return statistics.median([await timed(argv, entrypoint) for _ in range(5)])

        await timed(definition_argv())
        await timed(generate("/", size_mb, files, 0))
        await timed(["sh", "-c", INSTALL_SHIMS, "sh", "/scratch/shims", SHIM])
        start = await median(["true"], entrypoint=False)
        probe = ["dar-backup", "--list-definitions"]
        direct = await median(probe, entrypoint=False)
        through_entrypoint = await median(probe, entrypoint=True)
        full = await timed(["dar-backup", "-F", "-d", "bench"], env=TIMED_ENV)
        tools = tool_seconds(
            (await run_ok(engine, image, ["cat", "/scratch/timings"], mounts, entrypoint=False)).stdout
        )
    entrypoint = through_entrypoint - direct
    dar, par2 = tools.get("dar", 0.0), tools.get("par2", 0.0)
    return [
        Figure.reported(f"{label} FULL in the image: total", full, "s"),
        Figure.reported("  container start (docker run)", start, "s"),
        Figure.at_most("  entrypoint (user drop, definition checks)", entrypoint, "s", 0.05),
        Figure.reported("  dar-backup (python, around dar and par2)", full - start - entrypoint - dar - par2, "s"),
        Figure.at_most("    of which its start (imports)", direct - start, "s", 0.12),
        Figure.reported("  dar", dar, "s"),
        Figure.reported("  par2", par2, "s"),
    ]


async def measure(bench: Bench) -> Measured:
    """The image's size over its base, then one FULL of the story's smallest data set, timed in parts."""
    bench.image()
    return Measured(size_figures(bench.client, bench.base) + await breakdown(bench))
