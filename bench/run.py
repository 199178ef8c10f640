"""Benchmarks for the image and its pipeline: figures with targets, as a table and as JSON.

    python bench/run.py [--large] [--cold-runs N] [--only FAMILY,…] [--no-foreign] [--out reports/bench.json]

Families, in the order they run: build (cold build, rebuilds, reproducibility), start (size,
entrypoint, dar-backup's start), stage (the story against natively at each scale, the test
stage, a warm pipeline), emulated (the foreign platform), fresh (the pipeline from nothing, on an
empty engine when one is named), dagger (when an engine is reachable).
The machine is shared and noisy, so timings are medians and the overhead figure is a ratio
measured within one run. Everything created here (images tagged :bench, volumes, temp dirs,
the native dar-backup venv) is removed at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

import anyio

sys.path[0] = str(Path(__file__).resolve().parent.parent)

from bench import build, emulated, fresh, on_dagger, stage, start  # noqa: E402
from bench.harness import Bench  # noqa: E402
from bench.table import Figure, Measured, as_json, render  # noqa: E402
from ci.core.config import REPO_ROOT  # noqa: E402
from ci.core.versions import locked_dar_backup_version  # noqa: E402
from ci.engines.docker import DockerEngine  # noqa: E402
from ci.engines.provision import ensure_base_image  # noqa: E402

FAMILIES: dict[str, Callable[[Bench], Awaitable[Measured]]] = {
    "build": build.measure,
    "start": start.measure,
    "stage": stage.measure,
    "emulated": emulated.measure,
    "fresh": fresh.measure,
    "dagger": on_dagger.measure,
}


def chosen(only: str | None, no_foreign: bool) -> list[str]:
    """The families to run, in FAMILIES' order; an unknown name is a ValueError naming the known ones."""
    names = [name.strip() for name in only.split(",")] if only else list(FAMILIES)
    unknown = [name for name in names if name not in FAMILIES]
    if unknown:
        raise ValueError(f"--only: no family {', '.join(unknown)} (the families: {', '.join(FAMILIES)})")
    return [name for name in FAMILIES if name in names and not (no_foreign and name == "emulated")]


def parse(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--large", action="store_true", help="stage: also run the 2 GiB case")
    parser.add_argument(
        "--cold-runs",
        type=int,
        default=3,
        help="build: cold builds to take the median of (default 3; the first two are compared)",
    )
    parser.add_argument("--only", help=f"comma list of families to run (default all: {','.join(FAMILIES)})")
    parser.add_argument("--no-foreign", action="store_true", help="skip the emulated foreign-platform figures")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "reports/bench.json")
    args = parser.parse_args(argv)
    if args.cold_runs < 2:
        parser.error("--cold-runs must be at least 2: reproducibility compares two cold builds")
    try:
        args.families = chosen(args.only, args.no_foreign)
    except ValueError as err:
        parser.error(str(err))
    return args


def main() -> int:
    args = parse()
    if "dagger" in args.families:
        on_dagger.dagger_cli(os.environ)  # a named engine without a CLI fails now, not after the rest
    engine = DockerEngine.open("bench", REPO_ROOT)
    requested = os.environ.get("BASE_IMAGE", "ubuntu:24.04")
    bench = Bench(
        engine.client,
        requested,
        ensure_base_image(engine.client, requested, engine.host, engine.host),
        locked_dar_backup_version(REPO_ROOT / "docker/requirements.txt"),
        large=args.large,
        cold_runs=args.cold_runs,
    )
    measured = Measured()
    try:
        for family in args.families:
            measured.extend(anyio.run(FAMILIES[family], bench))
    finally:
        bench.close()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    measured.figures.append(Figure.reported("peak memory of the benchmark process", peak, "MiB"))
    print(f"\n{render(measured)}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(as_json(measured), indent=2) + "\n")
    print(f"\nwritten to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
