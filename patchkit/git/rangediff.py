"""``git range-diff`` between two versions of a series."""

from __future__ import annotations

from patchkit.git.apply import build_commits, pin_for
from patchkit.git.cmd import git_text, open_repo, resolve
from patchkit.git.patchid import UpstreamRange
from patchkit.git.worktree import work_tree
from patchkit.project import Project
from patchkit.series.io import load_version
from patchkit.series.model import Series
from patchkit.store import file_lock


def range_diff(project: Project, series: Series | str | None, version_a: int, version_b: int) -> str:
    """``git range-diff`` between two versions, each applied on the series base in a temp branch."""
    current = series if isinstance(series, Series) else project.series(series)
    a, b = load_version(current, version_a), load_version(current, version_b)
    pin = pin_for(project, current)
    path = work_tree(project.store, pin, current.name)
    repo = open_repo(path)
    with file_lock(path.parent / f".{path.name}.lock"):
        ends = []
        for v in (a, b):
            base = resolve(repo, v.base)
            commits = build_commits(repo, base, v.patches, UpstreamRange({}, {}), lambda _m: None)[0]
            ref = f"refs/patchkit/range-diff/v{v.version}"
            git_text(repo, "update-ref", ref, commits[-1] if commits else base)
            ends.append((base, ref))
        try:
            return git_text(repo, "range-diff", "--no-color", f"{ends[0][0]}..{ends[0][1]}",
                            f"{ends[1][0]}..{ends[1][1]}")
        finally:
            for _, ref in ends:
                git_text(repo, "update-ref", "-d", ref)
