"""The lines a series adds or changes, in the final tree's numbering, each with the patch that last wrote it.

Read from the patches' diffs alone: each patch's added lines are followed through the
later patches (moved by their hunks, dropped when a later patch removes them, taken
over when a later patch writes them again). Whether a line is executable is the line
table's business (patchkit.coverage.collect): comments, declarations and braces have
no code.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import unidiff

from patchkit.series.model import Patch


@dataclass(frozen=True)
class ChangedLine:
    """Line ``line`` of ``path`` in the series' final tree, written by patch ``patch`` (1-based) as its line
    ``patch_line`` (the number the patch's own diff shows)."""

    path: str
    line: int
    patch: int
    patch_line: int
    code: str


def changed_lines(patches: Sequence[Patch]) -> list[ChangedLine]:
    """Every line the series adds or changes, by path and line."""
    files: dict[str, dict[int, _Origin]] = {}  # path -> line -> where it was written
    for number, patch in enumerate(patches, 1):
        for changed in unidiff.PatchSet(patch.diff):
            old = files.pop(changed.source_file.removeprefix("a/"), {}) if not changed.is_added_file else {}
            if changed.is_removed_file:
                continue
            files[changed.path] = _follow(old, changed, number)
    return sorted((ChangedLine(path, line, *origin) for path, lines in files.items()
                   for line, origin in lines.items()), key=lambda c: (c.path, c.line))


_Origin = tuple[int, int, str]  # patch, its line number there, code


def _follow(old: dict[int, _Origin], changed: unidiff.PatchedFile, number: int) -> dict[int, _Origin]:
    """``old``'s lines renumbered through ``changed``'s hunks, plus the lines it adds (written by ``number``)."""
    new: dict[int, _Origin] = {}
    shift = 0  # target - source line number after the hunks so far
    pending = sorted(old.items())
    for hunk in changed:
        # An empty side's start is the line before it (``@@ -10,0 +11,2 @@`` inserts after line 10).
        first = hunk.source_start + (hunk.source_length == 0)
        target_first = hunk.target_start + (hunk.target_length == 0)
        while pending and pending[0][0] < first:
            line, what = pending.pop(0)
            new[line + shift] = what
        for row in hunk:
            if row.is_added and row.target_line_no is not None:
                new[row.target_line_no] = (number, row.target_line_no, row.value.rstrip("\n"))
            elif row.is_context and row.source_line_no in old and row.target_line_no is not None:
                new[row.target_line_no] = old[row.source_line_no]
        end = first + hunk.source_length
        pending = [(line, what) for line, what in pending if line >= end]
        shift = target_first + hunk.target_length - end
    for line, what in pending:
        new[line + shift] = what
    return new
