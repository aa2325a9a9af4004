"""The optional coverage gate of send-email: ``[coverage]`` in the manifest, and the series' coverage notes.

``min = N`` requires that some cell ran at least N% of the executable changed lines;
``reasons = true`` that every line no cell ran has a reason in ``coverage-notes.txt``
beside series.toml, one line each: ``src/file.c:LINE # not run: why`` (LINE as
`patchkit coverage` prints it; blank lines and lines starting with ``#`` are comments).
"""

from __future__ import annotations

import re

from patchkit.coverage.collect import SeriesCoverage
from patchkit.errors import SeriesError
from patchkit.series.model import Series

NOTES = "coverage-notes.txt"
_NOTE = re.compile(r"^(\S+:\d+)\s+#\s*not run:\s*(\S.*)$")


def read_notes(series: Series) -> dict[str, str]:
    """``path:line`` -> the reason it is not run, from the series' coverage notes (none without the file)."""
    if series.path is None or not (path := series.path / NOTES).is_file():
        return {}
    notes: dict[str, str] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if (m := _NOTE.match(line.strip())) is None:
            raise SeriesError(f"{path}:{number}: not a coverage note: {line.strip()!r}",
                              hint="write `src/file.c:LINE # not run: reason`")
        notes[m[1]] = m[2].strip()
    return notes


def coverage_problems(series: Series, coverage: SeriesCoverage | None) -> list[str]:
    """What the manifest's ``[coverage]`` gate finds wrong with ``coverage`` (none without the table)."""
    gate = series.coverage
    if gate is None or (gate.min is None and not gate.reasons):
        return []
    if coverage is None:
        return ["the manifest has a [coverage] gate but this revision's coverage was not measured "
                "(`patchkit test --matrix --coverage`)"]
    problems = []
    if gate.min is not None and coverage.ran * 100 < gate.min * coverage.total:
        problems.append(f"{coverage.figure()}: below the manifest's [coverage] min = {gate.min}%")
    if gate.reasons:
        notes = read_notes(series)
        missing = [c.where for c in coverage.lines if not c.cells and c.where not in notes]
        if missing:
            shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
            problems.append(f"{len(missing)} changed line(s) no cell ran have no reason in {NOTES}: {shown}")
    return problems

