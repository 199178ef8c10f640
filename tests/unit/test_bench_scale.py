"""The scale figures: seconds per GB in the image and natively, their ratio, and growth that outpaces the data."""

import re

import pytest

from bench.stage import GROWTH_LIMIT, OVERHEAD_LIMIT, ScaleRow, scale_results
from bench.story import IMAGE_PAR2_ENV, dar_backup_seconds
from ci.core.config import REPO_ROOT

MIB_100 = 100 * 2**20 / 1e9  # GB in the 100 MB scale (MiB, as the generator writes them)


def rows(*per_gb: tuple[float, float]) -> list[ScaleRow]:
    """A row per (image s/GB, native s/GB) at 100 MiB, 500 MiB, 2 GiB …"""
    sizes = [("100 MB", 100), ("500 MB", 500), ("2 GiB", 2048)]
    return [
        ScaleRow(label, mib, image * mib * 2**20 / 1e9, native * mib * 2**20 / 1e9)
        for (label, mib), (image, native) in zip(sizes, per_gb, strict=False)
    ]


def test_seconds_per_gb_and_the_ratio():
    row = ScaleRow("100 MB", 100, 20 * MIB_100, 16 * MIB_100)
    assert (row.image_per_gb, row.native_per_gb, row.ratio) == pytest.approx((20, 16, 1.25))


def test_the_table_has_a_row_per_scale():
    table = scale_results(rows((20, 16), (21, 17), (22, 18))).tables[0]
    assert table.columns == ("scale", "image s/GB", "native s/GB", "image / native")
    assert [row[0] for row in table.rows] == ["100 MB", "500 MB", "2 GiB"]
    assert table.rows[2][1:] == pytest.approx((22, 18, 22 / 18))


def test_growth_within_the_limit_passes_and_says_nothing():
    measured = scale_results(rows((20, 16), (21, 17), (20 * GROWTH_LIMIT, 16)))
    growth = {f.name: f for f in measured.figures}
    assert growth["image s/GB, 2 GiB / 100 MB"].passed is True
    assert growth["image s/GB, 2 GiB / 100 MB"].value == pytest.approx(GROWTH_LIMIT)
    assert growth["native s/GB, 2 GiB / 100 MB"].passed is None
    assert measured.notes == {}


def test_growth_beyond_the_limit_is_flagged_for_the_image_and_natively():
    measured = scale_results(rows((20, 10), (30, 16), (26, 13)))
    growth = {f.name: f for f in measured.figures}
    assert growth["image s/GB, 2 GiB / 100 MB"].passed is False
    assert measured.notes == {
        "seconds per GB grow faster than the data": [
            "image s/GB grows 1.30x from 100 MB to 2 GiB: a cost grows faster than the data",
            "native s/GB grows 1.30x from 100 MB to 2 GiB: a cost grows faster than the data",
        ]
    }


def test_without_2_gib_the_largest_scale_is_500_mb():
    names = [f.name for f in scale_results(rows((20, 16), (30, 17))).figures]
    assert "image s/GB, 500 MB / 100 MB" in names


def test_the_overhead_is_the_smallest_scales_ratio_against_the_target():
    def overhead(image_seconds: float) -> tuple[float, bool | None]:
        smallest = ScaleRow("100 MB", 100, image_seconds, 10.0)
        figure = scale_results([smallest, *rows((50, 10), (50, 10))[1:]]).figures[0]
        assert figure.name == "test-stage overhead, image vs native (100 MB)"
        return figure.value, figure.passed

    assert overhead(10 * OVERHEAD_LIMIT) == (OVERHEAD_LIMIT, True)
    assert overhead(10 * OVERHEAD_LIMIT + 0.1) == (pytest.approx(OVERHEAD_LIMIT + 0.01), False)


def test_dar_backup_seconds_leave_out_the_benchmarks_compare():
    assert dar_backup_seconds({"FULL": 3, "DIFF": 1, "INCR": 1, "restore": 2, "compare": 9}) == 7


def test_the_native_story_runs_par2_as_the_image_does():
    # Otherwise the ratio would count a setting of par2's threads as the container's overhead.
    dockerfile = (REPO_ROOT / "docker/Dockerfile").read_text()
    for name, value in IMAGE_PAR2_ENV.items():
        assert re.search(rf"^\s+{name}={value} \\$", dockerfile, re.M), f"docker/Dockerfile sets no {name}={value}"
