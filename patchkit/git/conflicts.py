"""Why a patch cannot go on a tree: paths outside it, and which hunk differs from which upstream lines."""

from __future__ import annotations

import difflib

import git as gitpython
import unidiff

from patchkit.errors import SeriesError
from patchkit.git.cmd import git_text, git_try
from patchkit.series.io import unsafe_path
from patchkit.series.model import Patch

DIFF_LEGEND = " (- the patch expects, + upstream has):"


def check_paths(repo: gitpython.Repo, parent: str, patch: Patch) -> None:
    """Refuse paths outside the tree, including through a symlink present in ``parent``."""
    paths = set()
    for pf in unidiff.PatchSet(patch.diff):
        for p in (pf.source_file, pf.target_file):
            if p and p != "/dev/null":
                paths.add(p[2:] if p[:2] in ("a/", "b/") else p)
    for p in sorted(paths):
        problem = unsafe_path(p)
        if problem:
            raise SeriesError(f"{patch.filename}: patch touches {p!r}, {problem}")
        parts = p.split("/")
        prefixes = ["/".join(parts[:i]) for i in range(1, len(parts))]
        if not prefixes:
            continue
        listing = git_text(repo, "ls-tree", parent, "--", *prefixes)
        for line in listing.splitlines():
            mode, _, rest = line.partition(" ")
            if mode == "120000":
                link = rest.split("\t", 1)[1]
                raise SeriesError(f"{patch.filename}: patch touches {p!r} through the symlink {link!r} in the tree",
                                  hint="a patch may only change files inside the tree; "
                                       "change the symlink's target path instead")


def conflict_report(repo: gitpython.Repo, parent: str, patch: Patch, git_output: str) -> str:
    """Name the patch, the file, the hunk and the upstream lines that differ."""
    head = f"patch {patch.filename} ({patch.subject}) does not apply on {parent[:12]}"
    for pf in unidiff.PatchSet(patch.diff):
        if pf.is_added_file:
            if git_try(repo, "cat-file", "-e", f"{parent}:{pf.path}").ok:
                return f"{head}:\n  {pf.path}: the patch creates it but it already exists upstream"
            continue
        source = pf.source_file[2:] if pf.source_file.startswith("a/") else pf.source_file
        shown = git_try(repo, "show", f"{parent}:{source}")
        if not shown.ok:
            return f"{head}:\n  {source}: the file does not exist upstream"
        upstream = shown.output.split("\n")
        for number, hunk in enumerate(pf, 1):
            expected = [line.value.rstrip("\n") for line in hunk if line.is_context or line.is_removed]
            if _find(upstream, expected) is not None:
                continue
            start = _closest(upstream, expected, max(hunk.source_start - 1, 0))
            actual = upstream[start:start + len(expected)]
            compared = difflib.unified_diff(expected, actual, lineterm="", n=1)
            detail = "\n".join(f"    {line}" for line in compared if not line.startswith(("---", "+++", "@@")))
            return (f"{head}:\n  {source}: hunk {number} of {len(pf)} "
                    f"(@@ -{hunk.source_start},{hunk.source_length} +{hunk.target_start},{hunk.target_length} @@) "
                    f"does not match upstream lines {start + 1}-{start + len(actual)}{DIFF_LEGEND}\n{detail}")
    return f"{head}:\n{git_output.strip()}"


def _closest(lines: list[str], block: list[str], near: int, reach: int = 200) -> int:
    """Start of the window of ``lines`` most like ``block``, within ``reach`` of ``near`` (ties: nearest)."""
    best, best_score = min(near, max(len(lines) - len(block), 0)), -1.0
    for start in sorted(range(max(near - reach, 0), max(min(near + reach, len(lines) - len(block)), 0) + 1),
                        key=lambda i: abs(i - near)):
        score = difflib.SequenceMatcher(None, block, lines[start:start + len(block)]).ratio()
        if score > best_score:
            best, best_score = start, score
    return best


def _find(lines: list[str], block: list[str]) -> int | None:
    if not block:
        return 0
    for i in range(len(lines) - len(block) + 1):
        if lines[i:i + len(block)] == block:
            return i
    return None
