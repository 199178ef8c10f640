"""What the families of figures share: commands, the benchmark's image, its engine, a pipeline run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

from ci.core.config import REPO_ROOT
from ci.core.report import Report
from ci.engines.docker import DockerEngine
from ci.engines.seam import Image
from ci.stages.scenario import test_image

BASE, FINAL = "dar-backup:bench-base", "dar-backup:bench-final"


def check(argv: Sequence[str], *, cwd: Path | None = None, env: Mapping[str, str] | None = None) -> str:
    """stdout then stderr of argv; a failure ends the benchmark with the end of its stderr."""
    done = subprocess.run(argv, capture_output=True, text=True, check=False, cwd=cwd, env=env)
    if done.returncode != 0:
        raise SystemExit(f"bench: {' '.join(argv[:4])} … exited {done.returncode}: {done.stderr.strip()[-500:]}")
    return done.stdout + done.stderr


def image_id(client: str, tag: str) -> str:
    return check([client, "image", "inspect", "-f", "{{.Id}}", tag]).strip()


def commit_epoch() -> str:
    """SOURCE_DATE_EPOCH for the checked-out commit: its committer time."""
    return check(["git", "-C", str(REPO_ROOT), "log", "-1", "--format=%ct"]).strip()


@asynccontextmanager
async def docker_engine(client: str, name: str) -> AsyncIterator[DockerEngine]:
    """The pipeline's Docker engine for one family's containers and volumes, all gone when it closes."""
    engine = DockerEngine(f"bench{os.getpid()}{name}", REPO_ROOT, client)
    try:
        yield engine
    finally:
        await engine.close()


async def test_stage_seconds(client: str, image: Image) -> float:
    """The pipeline's whole test stage (FULL → DIFF → INCR, restores, PITR, bitrot) on image."""
    async with docker_engine(client, "t") as engine:
        started = time.monotonic()
        await test_image(engine, image, Report("test", "docker"))
        return time.monotonic() - started


def pipeline_run(
    prefix: Sequence[str], engine: str, reports: Path, env: Mapping[str, str] | None = None
) -> tuple[float, float]:
    """`PREFIX python ci/main.py --engine ENGINE test`: its wall seconds, and its steps' (as its report sums them)."""
    started = time.monotonic()
    argv = [*prefix, sys.executable, "ci/main.py", "--engine", engine, "test", "--report-dir", str(reports)]
    check(argv, cwd=REPO_ROOT, env=env)
    wall = time.monotonic() - started
    steps = json.loads((reports / "test.json").read_text())["steps"]
    return wall, sum(step["seconds"] for step in steps)


@dataclass
class Bench:
    """One benchmark run: its settings, and what its families share (the image, the host's test stage)."""

    client: str
    requested_base: str
    base: str
    version: str
    large: bool = False
    cold_runs: int = 3
    built: bool = False
    _host_stage: float | None = field(default=None, repr=False)

    def build(self, *extra: str, base: str | None = None, suffix: str = "") -> tuple[float, str]:
        """Seconds to build final then base as dar-backup:bench-{final,base}SUFFIX, and BuildKit's log.

        FROM base, the run's own by default. Final first, as the pipeline has it built: base and
        the venv's stage side by side. Base then comes whole from that build, even a cold one
        (`--no-cache` goes to final's build only): built again, it would be counted twice.
        """
        env = {**os.environ, "DOCKER_BUILDKIT": "1"}
        secret = ["--secret", f"id=pip_cert,src={os.environ['PIP_CERT']}"] if os.environ.get("PIP_CERT") else []
        args = [
            "BASE_IMAGE=" + (base or self.base),
            "DAR_BACKUP_VERSION=" + self.version,
            "SOURCE_DATE_EPOCH=" + commit_epoch(),
        ]
        started, log = time.monotonic(), ""
        for target, tag in (("final", FINAL), ("base", BASE)):
            log += check(
                [
                    self.client,
                    "build",
                    "--progress=plain",
                    "-f",
                    "docker/Dockerfile",
                    "--target",
                    target,
                    "-t",
                    tag + suffix,
                    *(part for arg in args for part in ("--build-arg", arg)),
                    *secret,
                    *extra,
                    ".",
                ],
                cwd=REPO_ROOT,
                env=env,
            )
            extra = tuple(option for option in extra if option != "--no-cache")
        self.built = self.built or not suffix
        return time.monotonic() - started, log

    def image(self) -> Image:
        """The host's dar-backup:bench-final; built (from the cache where it can be) if no family built it yet."""
        if not self.built:
            self.build()
        found = image_id(self.client, FINAL)
        return Image(found, FINAL, found)

    async def host_stage_seconds(self) -> float:
        """The host's test stage on the image, measured once for every family that needs it."""
        if self._host_stage is None:
            self._host_stage = await test_stage_seconds(self.client, self.image())
        return self._host_stage

    def close(self) -> None:
        if self.built:
            check([self.client, "rmi", FINAL, BASE])
