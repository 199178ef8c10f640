"""What the benchmark found, as the table it prints and the JSON it writes.

A family of figures hands back a `Measured`: figures with their targets, any table of its own
(the scale's seconds per GB) and titled notes (what differs between two builds, "no engine").
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

Cell = str | float


def quantity(value: float, unit: str) -> str:
    """`1.15x`, `62 MB`: a ratio reads without a space."""
    return f"{value:g}{unit}" if unit in ("x", "") else f"{value:g} {unit}"


@dataclass
class Figure:
    name: str
    value: float
    unit: str
    target: str
    passed: bool | None

    @classmethod
    def reported(cls, name: str, value: float, unit: str) -> Figure:
        return cls(name, value, unit, "reported", None)

    @classmethod
    def at_most(cls, name: str, value: float, unit: str, limit: float) -> Figure:
        return cls(name, value, unit, f"<= {quantity(limit, unit)}", value <= limit)

    @property
    def verdict(self) -> str:
        return {True: "pass", False: "falls short", None: "-"}[self.passed]


@dataclass(frozen=True)
class Table:
    title: str
    columns: tuple[str, ...]
    rows: Sequence[tuple[Cell, ...]]


@dataclass
class Measured:
    figures: list[Figure] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    # title → lines; a title with no lines prints "nothing".
    notes: dict[str, list[str]] = field(default_factory=dict)

    def extend(self, other: Measured) -> None:
        self.figures += other.figures
        self.tables += other.tables
        self.notes.update(other.notes)


def cell(value: Cell) -> str:
    return f"{value:.2f}" if isinstance(value, float) else value


def render_table(columns: Sequence[str], rows: Sequence[Sequence[Cell]]) -> str:
    """Columns as wide as their widest cell; numbers to the right, text to the left."""
    text = [[cell(value) for value in row] for row in rows]
    numeric = [bool(rows) and all(isinstance(row[i], float) for row in rows) for i in range(len(columns))]
    widths = [max([len(name), *(len(row[i]) for row in text)]) for i, name in enumerate(columns)]

    def line(cells: Sequence[str]) -> str:
        padded = (c.rjust(w) if right else c.ljust(w) for c, w, right in zip(cells, widths, numeric, strict=True))
        return " ".join(padded).rstrip()

    return "\n".join([line(columns), *(line(row) for row in text)])


FIGURE_COLUMNS = ("figure", "value", "unit", "target", "verdict")


def render(measured: Measured) -> str:
    """The figures' table, then each family's own tables and notes, under their titles."""
    rows = [(f.name, float(f.value), f.unit, f.target, f.verdict) for f in measured.figures]
    parts = [render_table(FIGURE_COLUMNS, rows)]
    parts += [f"{table.title}:\n{render_table(table.columns, table.rows)}" for table in measured.tables]
    parts += [
        f"{title}:\n" + "\n".join(f"  {line}" for line in lines or ["nothing"])
        for title, lines in measured.notes.items()
    ]
    return "\n\n".join(parts)


def as_json(measured: Measured) -> dict[str, Any]:
    return {
        "figures": [asdict(figure) for figure in measured.figures],
        "tables": {t.title: [dict(zip(t.columns, row, strict=True)) for row in t.rows] for t in measured.tables},
        "notes": measured.notes,
    }
