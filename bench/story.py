"""The benchmark's story, FULL → DIFF → INCR → restore → compare on a generated data set, in the image and natively."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

import anyio

from bench.harness import check
from ci.core.config import REPO_ROOT
from ci.engines.docker import DockerEngine
from ci.engines.provision import apt_install
from ci.engines.seam import Image, Mount, RunResult
from ci.stages.manifest import MANIFEST_SCRIPT, compare, empty_dirs, parse

# label → (MiB, files); the last only under --large.
SCALES = {"100 MB": (100, 1_000), "500 MB": (500, 5_000), "2 GiB": (2_048, 20_000)}
ROLES = ("data", "backups", "backup.d", "restore", "scratch")
DEFINITION = "-am\n-R {root}\n-g data\n-z5\n-n\n--slice 1G\n"
CONFIG = """[MISC]
LOGFILE_LOCATION = {root}/backups/dar-backup.log
MAX_SIZE_VERIFICATION_MB = 20
MIN_SIZE_VERIFICATION_MB = 1
NO_FILES_VERIFICATION = 5
COMMAND_TIMEOUT_SECS = 86400
[DIRECTORIES]
BACKUP_DIR = {root}/backups
BACKUP.D_DIR = {root}/backup.d
TEST_RESTORE_DIR = {root}/restore
[AGE]
DIFF_AGE = 100
INCR_AGE = 40
[PAR2]
ERROR_CORRECTION_PERCENT = 5
ENABLED = True
[PREREQ]
[POSTREQ]
"""
# `python3 -c GENERATOR ROOT SIZE_MB FILES ROUND`: round 0 writes SIZE_MB in FILES files (half
# random, half text); rounds 1 and 2 rewrite about 10 % and 5 % of them.
GENERATOR = r"""
import os, random, sys
root, size_mb, files, rnd = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
rng = random.Random(rnd)
per_file = size_mb * 2**20 // files
words = b"dar par2 backup restore slice catalog archive diff incr".split()
for i in range(files):
    if rnd and rng.random() > (0.10 if rnd == 1 else 0.05):
        continue
    path = os.path.join(root, "data", f"d{i % 50:02d}", f"f{i:05d}.{'bin' if i % 2 else 'txt'}")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    data = rng.randbytes(per_file) if i % 2 else b" ".join(rng.choices(words, k=per_file // 5))[:per_file]
    with open(path, "wb") as handle:
        handle.write(data)
"""
# The steps that are dar-backup's work; `compare` is the benchmark's own check.
DAR_BACKUP_STEPS = ("FULL", "DIFF", "INCR", "restore")

Run = Callable[[list[str]], Awaitable[str]]

# par2's threads as the image sets them (docker/Dockerfile's ENV): a setting, not overhead.
IMAGE_PAR2_ENV = {"OMP_WAIT_POLICY": "PASSIVE"}


def scales(large: bool) -> dict[str, tuple[int, int]]:
    return {label: scale for label, scale in SCALES.items() if large or label != "2 GiB"}


def generate(root: str, size_mb: int, files: int, round_: int) -> list[str]:
    return ["python3", "-c", GENERATOR, root, str(size_mb), str(files), str(round_)]


def definition_argv() -> list[str]:
    """Writes the benchmark's backup definition into the image's /backup.d."""
    return ["sh", "-c", 'printf "%s" "$1" > /backup.d/bench', "sh", DEFINITION.format(root="/")]


async def volumes(engine: DockerEngine, image: Image, prefix: str) -> list[Mount]:
    """A new volume per role at /ROLE, owned by the image's user."""
    mounts = [Mount(await engine.volume(f"{prefix}-{role}"), f"/{role}") for role in ROLES]
    await engine.run(image, ["chown", "1000:1000", *(f"/{r}" for r in ROLES)], mounts=mounts)
    return mounts


async def run_ok(
    engine: DockerEngine,
    image: Image,
    argv: Sequence[str],
    mounts: Sequence[Mount],
    *,
    entrypoint: bool = True,
    env: Mapping[str, str] | None = None,
    user: str | None = None,
) -> RunResult:
    """One container through the pipeline's engine; a failure ends the benchmark."""
    result = await engine.run(image, argv, mounts=mounts, env=env, user=user, use_entrypoint=entrypoint)
    if not result.ok:
        raise SystemExit(f"bench: {' '.join(argv[:3])} exited {result.exit_code}: {result.tail(5)}")
    return result


async def story(run: Run, root: str, size_mb: int, files: int) -> dict[str, float]:
    """FULL → DIFF → INCR → restore → compare on one data set; seconds per step."""
    seconds: dict[str, float] = {}
    for number, flag in enumerate(("-F", "-D", "-I")):
        await run(generate(root, size_mb, files, number))
        started = time.monotonic()
        await run(["dar-backup", flag, "-d", "bench"])
        seconds[{"-F": "FULL", "-D": "DIFF", "-I": "INCR"}[flag]] = time.monotonic() - started
    archives = sorted(
        (n.removesuffix(".1.dar") for n in (await run(["ls", f"{root}/backups"])).split() if n.endswith(".1.dar")),
        key=lambda name: ["FULL", "DIFF", "INCR"].index(name.split("_")[1]),
    )
    started = time.monotonic()
    for position, archive in enumerate(archives):
        extra = ["--overwrite-restore-target"] if position else []
        await run(["dar-backup", "-r", archive, "--restore-dir", f"{root}/scratch", *extra])
    seconds["restore"] = time.monotonic() - started
    started = time.monotonic()
    expected = parse(await run(["sh", "-c", MANIFEST_SCRIPT, "sh", f"{root}/data"]))
    got = parse(await run(["sh", "-c", MANIFEST_SCRIPT, "sh", f"{root}/scratch/data"]))
    written = sum(1 for entry in expected.values() if entry.kind == "f")
    if written != files:
        raise SystemExit(f"bench: expected {files} files in {root}/data, found {written}")
    problems = compare(expected, got, may_be_missing=empty_dirs(expected))
    seconds["compare"] = time.monotonic() - started
    if problems:
        raise SystemExit(f"bench: the restore differs from the data: {problems[:3]}")
    return seconds


async def in_image(engine: DockerEngine, image: Image, size_mb: int, files: int) -> dict[str, float]:
    """The story through the pipeline's engine: one container per command, run volumes."""
    mounts = await volumes(engine, image, f"bench-{size_mb}")

    async def run(argv: list[str]) -> str:
        return (await run_ok(engine, image, argv, mounts)).stdout

    await run(definition_argv())
    return await story(run, "/", size_mb, files)


async def natively(venv: Path, size_mb: int, files: int) -> dict[str, float]:
    """The same commands on the host, with dar, par2 and the same locked dar-backup."""
    with tempfile.TemporaryDirectory(prefix="dar-backup-bench-") as tmp:
        root = Path(tmp)
        for role in ROLES:
            (root / role).mkdir()
        (root / "backup.d/bench").write_text(DEFINITION.format(root=root))
        (root / "dar-backup.conf").write_text(CONFIG.format(root=root))
        env = {
            **os.environ,
            "PATH": f"{venv}/bin:{os.environ['PATH']}",
            "DAR_BACKUP_CONFIG_FILE": f"{root}/dar-backup.conf",
            **IMAGE_PAR2_ENV,
        }

        async def run(argv: list[str]) -> str:
            done = await anyio.run_process(argv, env=env, check=False)
            if done.returncode != 0:
                raise SystemExit(f"bench: native {' '.join(argv[:3])} exited {done.returncode}")
            return done.stdout.decode("utf-8", "surrogateescape")

        await run(["manager", "--create-db"])
        return await story(run, str(root), size_mb, files)


def dar_backup_seconds(seconds: Mapping[str, float]) -> float:
    """What dar-backup itself spent in a story: its steps, without the benchmark's compare."""
    return sum(seconds[step] for step in DAR_BACKUP_STEPS)


@contextmanager
def native_venv() -> Iterator[Path]:
    """A temporary venv with the locked dar-backup, beside the host's dar and par2 (installed if missing)."""
    if any(shutil.which(tool) is None for tool in ("dar", "par2")):
        apt_install("dar", "par2")
    with tempfile.TemporaryDirectory(prefix="dar-backup-bench-venv-") as where:
        check([sys.executable, "-m", "venv", where])
        check(
            [f"{where}/bin/pip", "install", "-q", "--require-hashes", "-r", str(REPO_ROOT / "docker/requirements.txt")]
        )
        yield Path(where)
