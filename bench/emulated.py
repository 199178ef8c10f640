"""Emulated platform figures: the foreign platform's cold build and test stage, beside the host's."""

from __future__ import annotations

from bench.harness import BASE, FINAL, Bench, check, image_id, test_stage_seconds
from bench.table import Figure, Measured
from ci.core.platforms import SUPPORTED, host_platform, tag_suffix
from ci.engines.provision import ensure_base_image, ensure_emulation
from ci.engines.seam import Image


async def measure(bench: Bench) -> Measured:
    host = host_platform()
    foreign = next(platform for platform in SUPPORTED if platform != host)
    ensure_emulation(foreign)
    base = ensure_base_image(bench.client, bench.requested_base, foreign, host)
    suffix = tag_suffix(foreign, host)
    cold, _ = bench.build("--no-cache", "--platform", foreign, base=base, suffix=suffix)
    found = image_id(bench.client, FINAL + suffix)
    try:
        seconds = await test_stage_seconds(bench.client, Image(found, FINAL + suffix, found, foreign))
    finally:
        check([bench.client, "rmi", FINAL + suffix, BASE + suffix])
    host_seconds = await bench.host_stage_seconds()
    return Measured(
        [
            Figure.reported(f"{foreign} cold build base+final (emulated)", cold, "s"),
            Figure.reported(f"test stage, {foreign} (emulated)", seconds, "s"),
            Figure.reported(f"  {foreign} / {host} test stage", seconds / host_seconds, "x"),
        ]
    )
