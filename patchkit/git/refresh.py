"""`patchkit refresh`: the commits on a series' branch captured back into its patch files."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import git as gitpython

from patchkit.errors import ApplyError
from patchkit.git.cmd import GIT_ENV, git_text, open_repo
from patchkit.git.patchid import patch_id
from patchkit.git.state import read_state, save_state
from patchkit.git.worktree import branch_name, require_clean
from patchkit.progress import Progress
from patchkit.project import Project
from patchkit.series.io import save_series
from patchkit.series.model import Patch, Series, parse_patch, patch_filename


def refresh_series(project: Project, series: Series | str | None, progress: Progress | None = None) -> list[str]:
    """Capture the commits on the series' current branch back into its patch files.

    Commits patchkit made and nobody changed keep their patch file byte for byte;
    amended commits whose diff is unchanged keep the old diff text. Returns the
    names of the patch files that were written or removed.
    """
    say = progress or (lambda _msg: None)
    with project.editing(series.name if isinstance(series, Series) else series) as s:  # read again under its lock
        return _refresh(project, s, say)


def _refresh(project: Project, s: Series, say: Progress) -> list[str]:
    path = project.store.tree(s.name)
    branch = branch_name(s.name, s.version)
    if not (path / ".git").is_dir():
        raise ApplyError(f"no work tree for series '{s.name}' ({path})", hint=f"run `patchkit apply {s.name}` first")
    repo = open_repo(path)
    state = read_state(path, branch)
    if state is None or state.head is None:
        raise ApplyError(f"branch {branch} was not made by `patchkit apply` in {path}",
                         hint=f"run `patchkit apply {s.name}` first")
    if state.onto:
        raise ApplyError(f"{branch} was applied --onto another revision than the series base",
                         hint=f"run `patchkit apply {s.name}` (without --onto) before editing and refreshing")
    if state.merged:
        raise ApplyError(f"{', '.join(state.merged)} was already upstream when applied, so {branch} has no commit "
                         "for it and refresh would drop it",
                         hint=f"remove it from {s.name}'s series.toml (it is merged), or move the series base")
    require_clean(repo, path)
    shas = git_text(repo, "rev-list", "--reverse", "--topo-order", f"{state.base}..{state.head}").split()
    for sha in shas:
        if len(git_text(repo, "rev-list", "--parents", "-n1", sha).split()) > 2:
            raise ApplyError(f"{branch} has a merge commit {sha[:12]}",
                             hint="a series is a straight line of commits: rebase it")
    known = dict(zip(state.commits, state.patches, strict=False))
    by_name = {p.filename: p for p in s.patches}
    by_id = {patch_id(repo.working_tree_dir, p.diff): p for p in s.patches}
    new: list[Patch] = []
    for number, sha in enumerate(shas, 1):
        old = by_name.get(known.get(sha, "")) or _patch_from_commit(repo, sha, by_id)
        new.append(replace(old, filename=_kept_filename(s.patches, number, old.subject)))
    captured = len(new)
    for number, rest in enumerate(s.patches[state.upto:], captured + 1):
        keep = rest.filename.startswith(f"{number:04d}-")
        new.append(rest if keep else rest.with_filename(number))
    before = {p.filename: p.render() for p in s.patches}
    changed = sorted({p.filename for p in new if before.get(p.filename) != p.render()}
                     | (set(before) - {p.filename for p in new}))
    refreshed = replace(s, patches=new)
    save_series(refreshed)
    project.forget_series(s.name)
    save_state(repo, branch, {
        "base": state.base, "version": s.version, "commits": shas, "revision": refreshed.revision_hash(),
        "patches": [p.filename for p in new[:captured]], "upto": captured, "onto": False, "merged": []})
    say(f"{len(changed)} patch file(s) changed" if changed else "series unchanged")
    return changed


def _kept_filename(patches: Sequence[Patch], number: int, subject: str) -> str:
    """The series' file name for patch ``number`` with ``subject`` (also after an amend), else a new one."""
    for patch in patches:
        if patch.subject == subject and patch.filename.startswith(f"{number:04d}-"):
            return patch.filename
    return patch_filename(number, subject)


def _patch_from_commit(repo: gitpython.Repo, sha: str, by_id: dict[str, Patch]) -> Patch:
    """A Patch for a commit (reusing an existing patch's diff text when the change is the same)."""
    text = repo.git.format_patch("-1", "--stdout", "--no-signature", "-k", "--no-renames",
                                 "--encoding=UTF-8", sha, env=GIT_ENV, strip_newline_in_stdout=False)
    summary = repo.commit(sha).summary
    subject = summary if isinstance(summary, str) else summary.decode("utf-8", "replace")
    patch = parse_patch(text, patch_filename(1, subject), source=f"commit {sha[:12]}")
    old = by_id.get(patch_id(repo.working_tree_dir, patch.diff))
    if old is not None:
        patch = replace(patch, diff=old.diff)
    return patch
