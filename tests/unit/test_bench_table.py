"""The benchmark's table printer: figures with their targets, a family's own tables, notes, and the JSON."""

from bench.table import Figure, Measured, Table, as_json, render, render_table


def test_a_limit_is_met_at_the_limit_and_reads_with_its_unit():
    assert Figure.at_most("overhead", 1.15, "x", 1.15) == Figure("overhead", 1.15, "x", "<= 1.15x", True)
    assert Figure.at_most("warm", 12.01, "s", 12).target == "<= 12 s"
    assert Figure.at_most("warm", 12.01, "s", 12).verdict == "falls short"
    assert Figure.reported("size", 100, "MB").verdict == "-"


def test_columns_are_as_wide_as_their_widest_cell_numbers_right():
    assert render_table(("scale", "s/GB"), [("100 MB", 91.5), ("2 GiB", 102.25)]).splitlines() == [
        "scale    s/GB",
        "100 MB  91.50",
        "2 GiB  102.25",
    ]


def test_figures_then_tables_then_notes_under_their_titles():
    measured = Measured(
        [Figure.at_most("no-change rebuild", 1.5, "s", 2), Figure.reported("final image size", 190.123, "MB")],
        [Table("per GB", ("scale", "ratio"), [("100 MB", 1.2)])],
        {"what differs": [], "Dagger": ["no engine: _EXPERIMENTAL_DAGGER_RUNNER_HOST is not set"]},
    )
    assert render(measured) == "\n".join(
        [
            "figure             value unit target   verdict",
            "no-change rebuild   1.50 s    <= 2 s   pass",
            "final image size  190.12 MB   reported -",
            "",
            "per GB:",
            "scale  ratio",
            "100 MB  1.20",
            "",
            "what differs:",
            "  nothing",
            "",
            "Dagger:",
            "  no engine: _EXPERIMENTAL_DAGGER_RUNNER_HOST is not set",
        ]
    )


def test_families_merge_and_the_json_keeps_numbers():
    measured = Measured([Figure.reported("a", 1, "s")])
    measured.extend(Measured([Figure.reported("b", 2, "s")], [Table("t", ("scale", "x"), [("1", 0.5)])], {"n": ["l"]}))
    assert as_json(measured) == {
        "figures": [
            {"name": "a", "value": 1, "unit": "s", "target": "reported", "passed": None},
            {"name": "b", "value": 2, "unit": "s", "target": "reported", "passed": None},
        ],
        "tables": {"t": [{"scale": "1", "x": 0.5}]},
        "notes": {"n": ["l"]},
    }
