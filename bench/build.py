"""Build figures: cold build, rebuilds, and whether two cold builds of one commit give one image."""

from __future__ import annotations

import collections
import hashlib
import json
import os
import re
import statistics
import tarfile
import tempfile
from pathlib import Path
from typing import Any

from bench.harness import FINAL, Bench, check
from bench.table import Figure, Measured
from ci.core.config import REPO_ROOT

# Issue 30: a cold build within 0.85x of the two-Dockerfile design on the same base. That design
# is not part of the project, so the target is in seconds: 0.85 x 25.0 s, the median of three cold
# builds of upstream's Dockerfile-base-image then Dockerfile-dar-backup (both --no-cache, FROM the
# bootstrapped bookworm base, pip given the proxy CA; 25.0, 22.9, 27.2 s at load 0.4-1.5),
# alternated with this Dockerfile's (23.3, 25.3, 25.1 s) on the 2-core machine, 2026-12-02. At
# load 3-4 the same design took 27.8-39.5 s, and at load 5-10 50-120 s: the mirror's speed for the
# index varies tenfold, so the figure means something only on a quiet machine. Since the builder
# unpacks ca-certificates instead of installing it, alternated again (load 1.6-1.9): the
# two-Dockerfile design 20.4, 21.4, 19.2, 16.6, 15.9, 18.1 s, this one 16.4, 18.1, 15.5, 13.9, 13.4,
# 14.6 s: each pair 0.80-0.85x, their median 0.82x (the network is half of each build).
COLD_BUILD_TARGET_SECONDS: float | None = 21.2

Entry = tuple[str, str, int, str]  # type, content (sha256 or link target), mtime, owner and mode


def rebuilt_steps(log: str) -> int:
    """RUN/COPY steps BuildKit executed rather than took from its cache."""
    steps = set(re.findall(r"^#(\d+) \[[^\]]+\] (?:RUN|COPY)", log, re.M))
    return len(steps - set(re.findall(r"^#(\d+) CACHED", log, re.M)))


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


def cold_build_figure(seconds: float, runs: int) -> Figure:
    name = f"cold build base+final (median of {runs})"
    if COLD_BUILD_TARGET_SECONDS is None:
        return Figure(name, seconds, "s", "unset: 0.85x two-Dockerfile", None)
    return Figure.at_most(name, seconds, "s", COLD_BUILD_TARGET_SECONDS)


async def measure(bench: Bench) -> Measured:
    """Cold builds (the first two compared, file by file, for reproducibility), then rebuilds."""
    with tempfile.TemporaryDirectory(prefix="dar-backup-bench-builds-") as tmp:
        colds, saved = [], []
        for number in range(bench.cold_runs):
            colds.append(bench.build("--no-cache")[0])
            if number < 2:
                saved.append(save(bench.client, FINAL, Path(tmp) / str(number)))
        identical, layers, differences = build_differences(*saved)
    warm, _ = bench.build()
    os.utime(REPO_ROOT / "ci/stages/scenario.py")  # a file only the test stage reads
    touched, log = bench.build()
    figures = [
        cold_build_figure(statistics.median(colds), bench.cold_runs),
        Figure.at_most("no-change rebuild", warm, "s", 2),
        Figure.reported("rebuild after a test-only change", touched, "s"),
        Figure.at_most("  image steps rebuilt by it", rebuilt_steps(log), "steps", 0),
        Figure(f"layers identical in two cold builds (of {layers})", identical, "", f"{layers}", identical == layers),
    ]
    title = "what differs between two cold builds of final (SOURCE_DATE_EPOCH from the commit)"
    return Measured(figures, notes={title: differences})
