"""The one plain-text table layout: `status`, the matrix summary, the send gate and the report mail use it."""

from __future__ import annotations

from collections.abc import Sequence


def table(rows: Sequence[Sequence[str]], *, indent: str = "", min_width: int = 0) -> list[str]:
    """``rows`` (the first one a header, if any) as lines of columns two spaces apart, each column as wide as
    its widest cell (at least ``min_width``), trailing spaces dropped."""
    if not rows:
        return []
    widths = [max(min_width, *(len(row[i]) for row in rows)) for i in range(len(rows[0]))]
    return [indent + "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows]
