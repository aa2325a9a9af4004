"""The benchmark's results: rows with ratios and targets, the one table, JSON, deltas.

No measuring here (see boots.py and loop.py): only figures in, text and JSON out,
so this part is unit-tested without QEMU.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from patchkit.figures import format_figure

FORMAT = 1  # the JSON layout's version


@dataclass(frozen=True)
class Target:
    """A goal for a row: its ratio at most / at least ``limit``, or its value below ``limit``."""

    kind: str  # "ratio<=", "ratio>=", "value<"
    limit: float

    def text(self, unit: str) -> str:
        if self.kind == "value<":
            return f"< {self.limit:g} {unit}"
        return f"{self.kind[-2:]} {self.limit:.2f}x"

    def met(self, row: Row) -> bool | None:
        """Whether ``row`` meets the target; None when the figure it needs is missing."""
        figure = row.value if self.kind == "value<" else row.ratio
        if figure is None:
            return None
        if self.kind == "ratio<=":
            return figure <= self.limit
        if self.kind == "ratio>=":
            return figure >= self.limit
        return figure < self.limit


@dataclass
class Row:
    """One measurement: the series' figure, the reference's, their ratio (or a stage's share).

    ``value`` belongs to the series' ROM (or the validation loop), ``reference`` to
    SeaBIOS's own virtio-blk (or the base tree's ROM for the size row). ``ratio`` is
    value/reference, or, when ``share`` is set, the stage's fraction of its loop.
    """

    key: str  # stable id, for --compare
    label: str
    unit: str
    value: float | None = None
    reference: float | None = None
    ratio: float | None = None
    share: bool = False
    target: Target | None = None
    note: str = ""
    samples: dict[str, list[float]] = field(default_factory=dict)

    def verdict(self) -> str:
        """PASS / MISS against the target, "n/a" when not measured, "" without a target."""
        if self.target is None:
            return ""
        met = self.target.met(self)
        return "n/a" if met is None else "PASS" if met else "MISS"


def median(values: Sequence[float]) -> float | None:
    """The median, or None for no values."""
    return statistics.median(values) if values else None


def ratio(value: float | None, reference: float | None) -> float | None:
    """value / reference, or None when either is missing or the reference is zero."""
    if value is None or not reference:
        return None
    return value / reference


def compared(key: str, label: str, unit: str, values: Sequence[float], references: Sequence[float],
             target: Target | None = None, note: str = "") -> Row:
    """A row of medians of ``values`` (the ROM's runs) and ``references`` (SeaBIOS's), with their ratio."""
    value, reference = median(values), median(references)
    return Row(key, label, unit, value, reference, ratio(value, reference), target=target, note=note,
               samples={"value": list(values), "reference": list(references)})


def stages(key: str, label: str, seconds: dict[str, float], target: Target | None = None,
           note: str = "") -> list[Row]:
    """A loop's total row (with ``target``) followed by one row per stage with its share."""
    total = sum(seconds.values())
    rows = [Row(key, label, "s", total if seconds else None, target=target, note=note)]
    for name, s in seconds.items():
        rows.append(Row(f"{key}.{name}", f"  {name}", "s", s, ratio=s / total if total else None, share=True))
    return rows


# --- the table --------------------------------------------------------------------------------

HEADERS = ("measurement", "ROM / loop", "reference", "ratio", "target", "result", "note")


def cells(row: Row) -> tuple[str, ...]:
    """The table cells of ``row``."""
    if row.ratio is None:
        ratio_text = ""
    elif row.share:
        ratio_text = f"{row.ratio:.0%}"
    else:
        ratio_text = f"{row.ratio:.2f}x"
    target = row.target.text(row.unit) if row.target else ""
    reference = "" if row.share else format_figure(row.reference, row.unit)
    return (row.label, format_figure(row.value, row.unit), reference, ratio_text, target, row.verdict(), row.note)


def render_table(rows: Sequence[Row], sections: Sequence[tuple[str, int]] = ()) -> str:
    """The one table: ``sections`` are (title, index of its first row) lines put between rows."""
    body = [cells(r) for r in rows]
    widths = [max(len(h), *(len(c[i]) for c in body)) if body else len(h) for i, h in enumerate(HEADERS)]

    def line(values: Sequence[str]) -> str:
        return " | ".join(v.ljust(w) if i == 0 or i >= 4 else v.rjust(w)
                          for i, (v, w) in enumerate(zip(values, widths, strict=True))).rstrip()

    titles = dict((index, title) for title, index in sections)
    out = [line(HEADERS), "-+-".join("-" * w for w in widths)]
    for n, row_cells in enumerate(body):
        if n in titles:
            out.append(f"[{titles[n]}]")
        out.append(line(row_cells))
    return "\n".join(out)


# --- JSON -------------------------------------------------------------------------------------


def to_json(rows: Sequence[Row], sections: Sequence[tuple[str, int]], meta: dict[str, Any],
            missing: Sequence[str]) -> dict[str, Any]:
    """The whole result as JSON-ready data."""
    return {
        "format": FORMAT,
        "meta": meta,
        "missing": list(missing),
        "sections": [list(s) for s in sections],
        "rows": [{**asdict(r), "verdict": r.verdict()} for r in rows],
    }


def from_json(data: dict[str, Any]) -> tuple[list[Row], list[tuple[str, int]], dict[str, Any], list[str]]:
    """Rows, sections, meta and missing inputs back from ``to_json`` data."""
    if data.get("format") != FORMAT:
        raise ValueError(f"unknown results format {data.get('format')!r} (this bench reads {FORMAT})")
    rows = []
    for r in data["rows"]:
        fields = {k: v for k, v in r.items() if k != "verdict"}
        fields["target"] = Target(**r["target"]) if r.get("target") else None
        rows.append(Row(**fields))
    return rows, [(t, i) for t, i in data["sections"]], data["meta"], list(data["missing"])


def save(path: Path, data: dict[str, Any]) -> None:
    """Write ``data`` as indented JSON (creating the directory)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


def load(path: Path) -> tuple[list[Row], list[tuple[str, int]], dict[str, Any], list[str]]:
    """Read results written by ``save``."""
    return from_json(json.loads(path.read_text(encoding="utf-8")))


# --- deltas -----------------------------------------------------------------------------------


def render_deltas(old: Sequence[Row], new: Sequence[Row]) -> str:
    """Old and new figures of rows both runs have, with the relative change of value and ratio."""
    before = {r.key: r for r in old}
    lines = [f"{'measurement':<44} {'old':>12} {'new':>12} {'change':>8} {'old ratio':>10} {'new ratio':>10}"]
    for row in new:
        was = before.get(row.key)
        if was is None:
            continue
        change = ratio(row.value, was.value)
        lines.append(
            f"{row.label:<44} {format_figure(was.value, row.unit):>12} {format_figure(row.value, row.unit):>12} "
            f"{'' if change is None else f'{change - 1:+.1%}':>8} "
            f"{_ratio_text(was):>10} {_ratio_text(row):>10}")
    gone = [r.label.strip() for r in old if r.key not in {n.key for n in new}]
    if gone:
        lines.append("not measured this time: " + ", ".join(gone))
    return "\n".join(lines)


def _ratio_text(row: Row) -> str:
    if row.ratio is None:
        return "-"
    return f"{row.ratio:.0%}" if row.share else f"{row.ratio:.2f}x"
