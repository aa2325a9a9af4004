"""The series' changed lines against what the matrix ran: the union over the cells of one revision.

A cell counts with its newest boot of the revision that ran with coverage (a later boot
without coverage does not hide it). A changed line counts when the ROM's line table
has code for it; it ran when some cell's boot ran that code. Lines outside the series
(gPXE's own) never count.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from patchkit.coverage.changes import changed_lines
from patchkit.coverage.debuginfo import DebugInfo
from patchkit.coverage.result import CellCoverage, load
from patchkit.errors import PatchkitError
from patchkit.series.model import Series
from patchkit.store import Results


@dataclass(frozen=True)
class LineCoverage:
    """One executable changed line and the cells (config/guest) that ran it."""

    path: str
    line: int
    patch: int
    patch_line: int  # its number in the patch's own diff
    code: str
    cells: tuple[str, ...]

    @property
    def where(self) -> str:
        """``path:line``."""
        return f"{self.path}:{self.line}"


@dataclass(frozen=True)
class SeriesCoverage:
    """A revision's executable changed lines, the cells measured and the cells tested without coverage."""

    revision: str
    lines: list[LineCoverage]
    cells: list[str]
    without: list[str]

    @property
    def ran(self) -> int:
        return sum(1 for c in self.lines if c.cells)

    @property
    def total(self) -> int:
        return len(self.lines)

    def figure(self) -> str:
        """One line for status and the cover letter."""
        return f"the matrix ran {self.ran} of {self.total} changed lines ({len(self.cells)} cells)"

    def of_patch(self, number: int) -> list[LineCoverage]:
        return [c for c in self.lines if c.patch == number]


def cell_coverage(results: Results, series: str, revision: str) -> dict[str, CellCoverage]:
    """Each cell's newest coverage for ``revision`` (by config/guest name)."""
    found: dict[str, CellCoverage] = {}
    for r in results.for_revision(series, revision):  # newest first
        name = f"{r.key.config}/{r.key.guest}"
        if name not in found and (coverage := load(Path(r.run_dir))) is not None:
            found[name] = coverage
    return found


def collect(results: Results, series: Series) -> SeriesCoverage | None:
    """The current revision's coverage of its changed lines; None when no cell ran with coverage."""
    revision = series.revision_hash()
    cells = cell_coverage(results, series.name, revision)
    if not cells:
        return None
    executable: dict[str, set[int]] = {}
    for elf, prefix in sorted({(c.elf, c.prefix) for c in cells.values()}):
        for path, lines in DebugInfo(Path(elf), prefix).executable().items():
            executable.setdefault(path, set()).update(lines)
    tested = {f"{r.key.config}/{r.key.guest}" for r in results.for_revision(series.name, revision)}
    measured = [LineCoverage(c.path, c.line, c.patch, c.patch_line, c.code,
                          tuple(name for name, cell in sorted(cells.items()) if c.line in cell.ran.get(c.path, ())))
             for c in changed_lines(series.patches) if c.line in executable.get(c.path, ())]
    return SeriesCoverage(revision, measured, sorted(cells), sorted(tested - set(cells)))


def status_line(results: Results, series: Series) -> str:
    """``coverage: ...`` of the current revision for `patchkit status`."""
    try:
        measured = collect(results, series)
    except PatchkitError as exc:
        return f"coverage: not available ({exc.message})"
    if measured is None:
        return "coverage: not measured for this revision (`patchkit test --matrix --coverage`)"
    return f"coverage: {measured.figure()}; `patchkit coverage` lists the lines not run"


def report_lines(series: Series, coverage: SeriesCoverage, notes: Mapping[str, str] | None = None) -> list[str]:
    """The `patchkit coverage` text: the figure, then per patch its figure, the lines no cell ran (with their
    code, and the reason ``notes`` gives by ``path:line``) and the lines only one cell ran (by cell)."""
    lines = [f"{series.name} v{series.version} revision {coverage.revision[:12]}: {coverage.figure()}"]
    if coverage.without:
        lines.append(f"  tested without coverage (not counted): {', '.join(coverage.without)}")
    for n, patch in enumerate(series.patches, 1):
        mine = coverage.of_patch(n)
        ran = sum(1 for c in mine if c.cells)
        lines.append(f"{n}. {patch.subject}: " + (f"{ran} of {len(mine)} changed lines ran" if mine else
                     "none of its changed lines has code in the ROM (comments, declarations, real-mode code, "
                     "or code only another ROM links)"))
        for c in mine:
            if not c.cells:
                reason = (notes or {}).get(c.where)
                lines.append(f"   not run  {c.where}  {c.code.strip()}" + (f"  # {reason}" if reason else ""))
        only: dict[str, list[LineCoverage]] = {}
        for c in mine:
            if len(c.cells) == 1:
                only.setdefault(c.cells[0], []).append(c)
        for cell, which in sorted(only.items()):
            lines.append(f"   only {cell} ran: {line_ranges(which)}")
    return lines


def line_ranges(lines: Iterable[LineCoverage]) -> str:
    """``file.c:10-12,15; other.c:3`` for lines sorted by path and line."""
    by_path: dict[str, list[int]] = {}
    for c in lines:
        by_path.setdefault(c.path, []).append(c.line)
    parts = []
    for path, numbers in by_path.items():
        spans: list[list[int]] = []
        for n in numbers:
            if spans and n == spans[-1][1] + 1:
                spans[-1][1] = n
            else:
                spans.append([n, n])
        parts.append(f"{Path(path).name}:" + ",".join(f"{a}" if a == b else f"{a}-{b}" for a, b in spans))
    return "; ".join(parts)
