"""Benchmarks for the image and its pipeline: figures with targets, as a table and as JSON.

    python bench/run.py [--large] [--cold-runs N] [--out reports/bench.json]

The machine is shared and noisy, so timings are medians and the overhead figure is a ratio
measured within one run. Everything created here (images tagged :bench, volumes, temp dirs,
the native dar-backup venv) is removed at the end.
"""

from __future__ import annotations

import argparse
import collections
import hashlib
import json
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import anyio

sys.path[0] = str(Path(__file__).resolve().parent.parent)

from ci.core.config import REPO_ROOT  # noqa: E402
from ci.core.platforms import SUPPORTED, host_platform, tag_suffix  # noqa: E402
from ci.core.report import Report  # noqa: E402
from ci.core.versions import locked_dar_backup_version  # noqa: E402
from ci.engines.docker import DockerEngine  # noqa: E402
from ci.engines.provision import apt_install, ensure_base_image, ensure_emulation  # noqa: E402
from ci.engines.seam import Image, Mount  # noqa: E402
from ci.stages.manifest import MANIFEST_SCRIPT, compare, empty_dirs, parse  # noqa: E402
from ci.stages.scenario import test_image  # noqa: E402

SCALES = {"100 MB": (100, 1_000), "500 MB": (500, 5_000), "2 GiB": (2_048, 20_000)}
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

Run = Callable[[list[str]], Awaitable[str]]
# Put first on PATH, these record how long each dar and par2 call dar-backup makes takes.
SHIM = """#!/bin/sh
started=$(date +%s.%N)
"/usr/bin/$(basename "$0")" "$@"
code=$?
echo "$(basename "$0") $started $(date +%s.%N)" >> "$TIMINGS"
exit $code
"""
INSTALL_SHIMS = 'mkdir -p "$1" && for t in dar par2; do printf "%s" "$2" > "$1/$t" && chmod 755 "$1/$t"; done'


@dataclass
class Figure:
    name: str
    value: float
    unit: str
    target: str
    passed: bool | None

    def row(self) -> str:
        verdict = {True: "pass", False: "falls short", None: "-"}[self.passed]
        return f"{self.name:<52} {self.value:>10.2f} {self.unit:<5} {self.target:<20} {verdict}"


def check(argv: list[str], **kwargs: object) -> str:
    done = subprocess.run(argv, capture_output=True, text=True, check=False, **kwargs)  # type: ignore[call-overload]
    if done.returncode != 0:
        raise SystemExit(f"bench: {' '.join(argv[:4])} … exited {done.returncode}: {done.stderr.strip()[-500:]}")
    return str(done.stdout) + str(done.stderr)


def rebuilt_steps(log: str) -> int:
    """RUN/COPY steps BuildKit executed rather than took from its cache."""
    steps = set(re.findall(r"^#(\d+) \[[^\]]+\] (?:RUN|COPY)", log, re.M))
    return len(steps - set(re.findall(r"^#(\d+) CACHED", log, re.M)))


async def story(run: Run, root: str, size_mb: int, files: int) -> dict[str, float]:
    """FULL → DIFF → INCR → restore → compare on one data set; seconds per step."""
    seconds: dict[str, float] = {}
    for number, flag in enumerate(("-F", "-D", "-I")):
        await run(["python3", "-c", GENERATOR, root, str(size_mb), str(files), str(number)])
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
    roles = ("data", "backups", "backup.d", "restore", "scratch")
    mounts = [Mount(await engine.volume(f"bench-{size_mb}-{role}"), f"/{role}") for role in roles]
    await engine.run(image, ["chown", "1000:1000", *(f"/{r}" for r in roles)], mounts=mounts)

    async def run(argv: list[str]) -> str:
        result = await engine.run(image, argv, mounts=mounts, use_entrypoint=True)
        if not result.ok:
            raise SystemExit(f"bench: {' '.join(argv[:3])} exited {result.exit_code}: {result.tail(5)}")
        return result.stdout

    definition = DEFINITION.format(root="/")
    await run(["sh", "-c", 'printf "%s" "$1" > /backup.d/bench', "sh", definition])
    return await story(run, "/", size_mb, files)


async def natively(venv: Path, size_mb: int, files: int) -> dict[str, float]:
    """The same commands on the host, with dar, par2 and the same locked dar-backup."""
    with tempfile.TemporaryDirectory(prefix="dar-backup-bench-") as tmp:
        root = Path(tmp)
        for role in ("data", "backups", "backup.d", "restore", "scratch"):
            (root / role).mkdir()
        (root / "backup.d/bench").write_text(DEFINITION.format(root=root))
        (root / "dar-backup.conf").write_text(CONFIG.format(root=root))
        env = {
            **os.environ,
            "PATH": f"{venv}/bin:{os.environ['PATH']}",
            "DAR_BACKUP_CONFIG_FILE": f"{root}/dar-backup.conf",
        }

        async def run(argv: list[str]) -> str:
            done = await anyio.run_process(argv, env=env, check=False)
            if done.returncode != 0:
                raise SystemExit(f"bench: native {' '.join(argv[:3])} exited {done.returncode}")
            return done.stdout.decode("utf-8", "surrogateescape")

        await run(["manager", "--create-db"])
        return await story(run, str(root), size_mb, files)


def tool_seconds(timings: str) -> dict[str, float]:
    """Seconds spent in each tool, from the shims' `TOOL START END` lines."""
    spent: dict[str, float] = {}
    for line in timings.splitlines():
        tool, started, ended = line.split()
        spent[tool] = spent.get(tool, 0.0) + float(ended) - float(started)
    return spent


async def breakdown(engine: DockerEngine, image: Image, size_mb: int, files: int) -> list[Figure]:
    """Where the seconds of one FULL in the image go: container start, entrypoint, dar-backup, dar, par2."""
    roles = ("data", "backups", "backup.d", "restore", "scratch")
    mounts = [Mount(await engine.volume(f"breakdown-{role}"), f"/{role}") for role in roles]
    await engine.run(image, ["chown", "1000:1000", *(f"/{r}" for r in roles)], mounts=mounts)

    async def timed(argv: list[str], entrypoint: bool = True, env: dict[str, str] | None = None) -> float:
        """Seconds for one container; without the entrypoint it runs directly as the image's user."""
        started = time.monotonic()
        user = None if entrypoint else "1000:1000"
        result = await engine.run(image, argv, mounts=mounts, env=env, user=user, use_entrypoint=entrypoint)
        if not result.ok:
            raise SystemExit(f"bench: {' '.join(argv[:3])} exited {result.exit_code}: {result.tail(5)}")
        return time.monotonic() - started

    async def median(argv: list[str], entrypoint: bool) -> float:
        return statistics.median([await timed(argv, entrypoint) for _ in range(5)])

    await timed(["sh", "-c", 'printf "%s" "$1" > /backup.d/bench', "sh", DEFINITION.format(root="/")])
    await timed(["python3", "-c", GENERATOR, "/", str(size_mb), str(files), "0"])
    await timed(["sh", "-c", INSTALL_SHIMS, "sh", "/scratch/shims", SHIM])
    start = await median(["true"], entrypoint=False)
    probe = ["dar-backup", "--list-definitions"]
    direct = await median(probe, entrypoint=False)
    through_entrypoint = await median(probe, entrypoint=True)
    env = {
        "PATH": "/scratch/shims:/opt/dar-backup/bin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "TIMINGS": "/scratch/timings",
    }
    full = await timed(["dar-backup", "-F", "-d", "bench"], env=env)
    tools = tool_seconds((await engine.run(image, ["cat", "/scratch/timings"], mounts=mounts)).stdout)
    entrypoint = through_entrypoint - direct
    dar_backup = full - start - entrypoint - tools.get("dar", 0.0) - tools.get("par2", 0.0)
    label = f"{size_mb} MB FULL in the image"
    return [
        Figure(f"{label}: total", full, "s", "reported", None),
        Figure("  container start (docker run)", start, "s", "reported", None),
        Figure("  entrypoint (user drop, definition checks)", entrypoint, "s", "<= 0.05 s", entrypoint <= 0.05),
        Figure("  dar-backup (python, around dar and par2)", dar_backup, "s", "reported", None),
        Figure("    of which its start (imports)", direct - start, "s", "<= 0.12 s", direct - start <= 0.12),
        Figure("  dar", tools.get("dar", 0.0), "s", "reported", None),
        Figure("  par2", tools.get("par2", 0.0), "s", "reported", None),
    ]


def native_venv(where: Path) -> Path:
    for tool in ("dar", "par2"):
        if shutil.which(tool) is None:
            apt_install("dar", "par2")
    check([sys.executable, "-m", "venv", str(where)])
    check([f"{where}/bin/pip", "install", "-q", "--require-hashes", "-r", str(REPO_ROOT / "docker/requirements.txt")])
    return where


def build(client: str, base: str, version: str, *extra: str, suffix: str = "") -> tuple[float, str]:
    """Seconds to build base then final as dar-backup:bench-{base,final}SUFFIX, and BuildKit's log."""
    env = {**os.environ, "DOCKER_BUILDKIT": "1"}
    secret = ["--secret", f"id=pip_cert,src={os.environ['PIP_CERT']}"] if os.environ.get("PIP_CERT") else []
    started, log = time.monotonic(), ""
    for target in ("base", "final"):
        log += check(
            [
                client,
                "build",
                "--progress=plain",
                "-f",
                "docker/Dockerfile",
                "--target",
                target,
                "-t",
                f"dar-backup:bench-{target}{suffix}",
                "--build-arg",
                f"BASE_IMAGE={base}",
                "--build-arg",
                f"DAR_BACKUP_VERSION={version}",
                *secret,
                *extra,
                ".",
            ],
            cwd=REPO_ROOT,
            env=env,
        )
    return time.monotonic() - started, log


Entry = tuple[str, str, int, str]  # type, content (sha256 or link target), mtime, owner and mode


def layer_entries(layer: tarfile.TarFile) -> dict[str, Entry]:
    entries = {}
    for member in layer.getmembers():
        data = layer.extractfile(member) if member.isfile() else None
        content = hashlib.sha256(data.read()).hexdigest() if data else member.linkname
        entries[member.name] = (
            member.type.decode(),
            content,
            int(member.mtime),
            f"{member.uid}:{member.gid} {member.mode:o}",
        )
    return entries


def entry_differences(a: dict[str, Entry], b: dict[str, Entry]) -> list[str]:
    """`PATH: mtime, content, …` for each path whose entry differs between two layers."""
    found = []
    for path in sorted(a.keys() | b.keys()):
        if path not in a or path not in b:
            found.append(f"{path}: only in build {2 if path not in a else 1}")
            continue
        fields = ("type", "content", "mtime", "owner/mode")
        what = [name for name, x, y in zip(fields, a[path], b[path], strict=True) if x != y]
        if what:
            found.append(f"{path}: {', '.join(what)}")
    return found


def config_differences(a: object, b: object, where: str = "") -> list[str]:
    """JSON paths (`history[3].created`) where two image configs differ."""
    if isinstance(a, dict) and isinstance(b, dict):
        keys = sorted(a.keys() | b.keys())
        return [d for key in keys for d in config_differences(a.get(key), b.get(key), f"{where}.{key}")]
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [d for i, (x, y) in enumerate(zip(a, b, strict=True)) for d in config_differences(x, y, f"{where}[{i}]")]
    return [] if a == b else [where.lstrip(".")]


def save(client: str, tag: str, into: Path) -> Path:
    """`docker save` of tag, unpacked into a new directory `into`."""
    into.mkdir()
    check([client, "save", "-o", str(into / "image.tar"), tag])
    with tarfile.open(into / "image.tar") as saved:
        saved.extractall(into, filter="tar")
    return into


def saved_image(into: Path) -> tuple[dict[str, Any], list[Path]]:
    """The config of an unpacked `docker save` and its layer tars, bottom first."""
    manifest = json.loads((into / "manifest.json").read_text())[0]
    return json.loads((into / manifest["Config"]).read_text()), [into / layer for layer in manifest["Layers"]]


def build_differences(one: Path, two: Path) -> tuple[int, int, list[str]]:
    """Two `docker save`d builds of final: layers identical, layers, and what differs (config, then files)."""
    (config1, layers1), (config2, layers2) = saved_image(one), saved_image(two)
    # history[3].created and history[4].created are one line: history[*].created (2 entries)
    paths = collections.Counter(re.sub(r"\[\d+\]", "[*]", d) for d in config_differences(config1, config2))
    report = [f"image config: {path}" + (f" ({n} entries)" if n > 1 else "") for path, n in paths.items()]
    steps = [h.get("created_by", "") for h in config1["history"] if not h.get("empty_layer")]
    identical = 0
    ids = zip(config1["rootfs"]["diff_ids"], config2["rootfs"]["diff_ids"], strict=True)
    for number, ((id1, id2), layer1, layer2) in enumerate(zip(ids, layers1, layers2, strict=True)):
        if id1 == id2:
            identical += 1
            continue
        with tarfile.open(layer1) as first, tarfile.open(layer2) as second:
            differences = entry_differences(layer_entries(first), layer_entries(second))
        report.append(f"layer {number + 1} ({steps[number][-80:]}): {len(differences)} entries differ")
        report += [f"    {line}" for line in differences[:15] or ["same entries, tar bytes differ"]]
    return identical, len(layers1), report


def commit_epoch() -> str:
    """SOURCE_DATE_EPOCH for the checked-out commit: its committer time."""
    return check(["git", "-C", str(REPO_ROOT), "log", "-1", "--format=%ct"]).strip()


def build_figures(client: str, base: str, version: str, cold_runs: int) -> tuple[list[Figure], list[str]]:
    """Build times and size; the first two cold builds compared, file by file, for reproducibility."""
    epoch = ("--build-arg", f"SOURCE_DATE_EPOCH={commit_epoch()}")
    with tempfile.TemporaryDirectory(prefix="dar-backup-bench-builds-") as tmp:
        colds, saved = [], []
        for number in range(cold_runs):
            colds.append(build(client, base, version, "--no-cache", *epoch)[0])
            if number < 2:
                saved.append(save(client, "dar-backup:bench-final", Path(tmp) / str(number)))
        identical, layers, differences = build_differences(*saved)
    cold = statistics.median(colds)
    warm, _ = build(client, base, version, *epoch)
    scenario = REPO_ROOT / "ci/stages/scenario.py"
    os.utime(scenario)  # a file only the test stage reads
    touched, log = build(client, base, version, *epoch)
    size = int(check([client, "image", "inspect", "-f", "{{.Size}}", "dar-backup:bench-final"]))
    base_size = int(check([client, "image", "inspect", "-f", "{{.Size}}", base]))
    over = (size - base_size) / 1e6
    return [
        Figure(f"cold build base+final (median of {cold_runs})", cold, "s", "reported", None),
        Figure("no-change rebuild", warm, "s", "< 2 s", warm < 2),
        Figure("rebuild after a test-only change", touched, "s", "reported", None),
        Figure("  image steps rebuilt by it", rebuilt_steps(log), "steps", "0", rebuilt_steps(log) == 0),
        Figure("final image size", size / 1e6, "MB", "reported", None),
        Figure("final image over its base", over, "MB", "<= 62 MB", over <= 62),
        Figure(f"layers identical in two cold builds (of {layers})", identical, "", f"{layers}", identical == layers),
    ], differences


async def test_stage_seconds(engine: DockerEngine, image: Image) -> float:
    """The pipeline's whole test stage (FULL → DIFF → INCR, restores, PITR, bitrot) on image."""
    started = time.monotonic()
    await test_image(engine, image, Report("test", "docker"))
    return time.monotonic() - started


def warm_pipeline_figure(runs: int = 3) -> Figure:
    """What `scripts/dev pipeline` (python ci/main.py test) spends in its steps once its images are built.

    A first run warms the build cache; the median of the next `runs` runs' step seconds (the
    report's sum, as the pipeline prints it) is the figure.
    """
    totals = []
    with tempfile.TemporaryDirectory(prefix="dar-backup-bench-pipeline-") as tmp:
        for number in range(runs + 1):
            reports = Path(tmp) / str(number)
            check(
                [sys.executable, "ci/main.py", "--engine", "docker", "test", "--report-dir", str(reports)],
                cwd=REPO_ROOT,
            )
            steps = json.loads((reports / "test.json").read_text())["steps"]
            totals.append(sum(step["seconds"] for step in steps))
    warm = statistics.median(totals[1:])
    return Figure(f"warm pipeline: seconds of its steps (median of {runs})", warm, "s", "<= 20 s", warm <= 20)


async def host_test_stage(client: str) -> Figure:
    """The host's whole test stage on the benchmark's image: what each change to the story costs."""
    engine = DockerEngine(f"bench{os.getpid()}t", REPO_ROOT, client)
    image_id = check([client, "image", "inspect", "-f", "{{.Id}}", "dar-backup:bench-final"]).strip()
    try:
        seconds = await test_stage_seconds(engine, Image(image_id, "dar-backup:bench-final", image_id))
    finally:
        await engine.close()
    return Figure(f"test stage, {host_platform()} (native)", seconds, "s", "reported", None)


async def platform_figures(client: str, requested_base: str, version: str, host_seconds: float) -> list[Figure]:
    """The foreign platform under emulation: a cold build and the test stage, beside the host's test stage."""
    host = host_platform()
    foreign = next(platform for platform in SUPPORTED if platform != host)
    ensure_emulation(foreign)
    base = ensure_base_image(client, requested_base, foreign, host)
    suffix = tag_suffix(foreign, host)
    cold, _ = build(client, base, version, "--no-cache", "--platform", foreign, suffix=suffix)
    engine = DockerEngine(f"bench{os.getpid()}p", REPO_ROOT, client)
    image_id = check([client, "image", "inspect", "-f", "{{.Id}}", f"dar-backup:bench-final{suffix}"]).strip()
    try:
        seconds = await test_stage_seconds(
            engine, Image(image_id, f"dar-backup:bench-final{suffix}", image_id, foreign)
        )
    finally:
        await engine.close()
        check([client, "rmi", f"dar-backup:bench-final{suffix}", f"dar-backup:bench-base{suffix}"])
    return [
        Figure(f"{foreign} cold build base+final (emulated)", cold, "s", "reported", None),
        Figure(f"test stage, {foreign} (emulated)", seconds, "s", "reported", None),
        Figure(f"  {foreign} / {host} test stage", seconds / host_seconds, "x", "reported", None),
    ]


async def story_figures(client: str, large: bool, venv: Path) -> list[Figure]:
    engine = DockerEngine(f"bench{os.getpid()}", REPO_ROOT, client)
    image_id = check([client, "image", "inspect", "-f", "{{.Id}}", "dar-backup:bench-final"]).strip()
    image = Image(image_id, "dar-backup:bench-final", image_id)
    figures: list[Figure] = []
    totals: dict[str, float] = {}
    try:
        for label, (size_mb, files) in SCALES.items():
            if label == "2 GiB" and not large:
                continue
            seconds = await in_image(engine, image, size_mb, files)
            totals[label] = sum(seconds.values())
            for step, value in seconds.items():
                rate = f" ({size_mb / value:.0f} MB/s)" if step in ("FULL", "restore") else ""
                figures.append(Figure(f"{label}: {step}{rate}", value, "s", "reported", None))
            if label == "100 MB":
                native = await natively(venv, size_mb, files)
                ratio = sum(seconds[k] for k in native if k != "compare") / sum(
                    v for k, v in native.items() if k != "compare"
                )
                figures.append(
                    Figure("test-stage overhead, image vs native (100 MB)", ratio, "x", "<= 1.3x", ratio <= 1.3)
                )
                figures += await breakdown(engine, image, size_mb, files)
        if "2 GiB" in totals:
            growth = totals["2 GiB"] / totals["100 MB"]
            figures.append(Figure("2 GiB time / 100 MB time", growth, "x", "<= 22x", growth <= 22))
        if "500 MB" in totals:
            figures.append(Figure("500 MB time / 100 MB time", totals["500 MB"] / totals["100 MB"], "x", "~5x", None))
    finally:
        await engine.close()
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--large", action="store_true", help="also run the 2 GiB case")
    parser.add_argument(
        "--cold-runs",
        type=int,
        default=3,
        help="cold builds to take the median of (default 3; the first two are compared)",
    )
    parser.add_argument("--no-foreign", action="store_true", help="skip the emulated foreign-platform figures")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "reports/bench.json")
    args = parser.parse_args()
    if args.cold_runs < 2:
        parser.error("--cold-runs must be at least 2: reproducibility compares two cold builds")
    engine = DockerEngine.open("bench", REPO_ROOT)
    requested = os.environ.get("BASE_IMAGE", "ubuntu:24.04")
    base = ensure_base_image(engine.client, requested, engine.host, engine.host)
    version = locked_dar_backup_version(REPO_ROOT / "docker/requirements.txt")
    with tempfile.TemporaryDirectory(prefix="dar-backup-bench-venv-") as venv_dir:
        figures, differences = build_figures(engine.client, base, version, args.cold_runs)
        figures += anyio.run(story_figures, engine.client, args.large, native_venv(Path(venv_dir)))
    host_stage = anyio.run(host_test_stage, engine.client)
    figures += [host_stage, warm_pipeline_figure()]
    if not args.no_foreign:
        figures += anyio.run(platform_figures, engine.client, requested, version, host_stage.value)
    check([engine.client, "rmi", "dar-backup:bench-final", "dar-backup:bench-base"])
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    figures.append(Figure("peak memory of the benchmark process", peak, "MiB", "reported", None))
    print(f"\n{'figure':<52} {'value':>10} {'unit':<5} {'target':<20} verdict")
    print("\n".join(figure.row() for figure in figures))
    print("\nwhat differs between two cold builds of final (SOURCE_DATE_EPOCH from the commit):")
    print("\n".join(f"  {line}" for line in differences) or "  nothing")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps([asdict(f) for f in figures], indent=2) + "\n")
    print(f"\nwritten to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
