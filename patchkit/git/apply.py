"""Applying a series as commits on its branch, also onto another upstream revision (a drift check).

Commits are built in a temporary index (``git apply --cached --3way``, ``write-tree``,
``commit-tree``) without touching the work tree; only when every patch has applied is
the branch created and checked out (patchkit.git.state covers that switch). A failure
therefore leaves branch, HEAD, index and files exactly as they were.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import git as gitpython

from patchkit.errors import ApplyError, SeriesError
from patchkit.git.cmd import git_text, git_try, open_repo, resolve, temp_index
from patchkit.git.conflicts import DIFF_LEGEND, check_paths, conflict_report
from patchkit.git.identity import git_date, identity_env
from patchkit.git.patchid import UpstreamRange, patch_id, upstream_range
from patchkit.git.state import finish_switch, recorded, switch
from patchkit.git.worktree import branch_name, require_captured, require_clean, tree_lock, work_tree
from patchkit.pin import Pin
from patchkit.progress import Progress
from patchkit.project import Project
from patchkit.series.io import load_version
from patchkit.series.model import Patch, Series


@dataclass(frozen=True)
class ApplyResult:
    """Where a series was applied: the tree, its branch, the base, the new commits, merged patches."""

    tree: Path
    branch: str
    base: str
    commits: list[str]
    merged: list[str]
    merged_why: dict[str, str] = field(default_factory=dict)  # patch file -> how it was found upstream


def apply_series(
    project: Project,
    series: Series | str | None,
    *,
    version: int | None = None,
    upto: int | None = None,
    onto: str | None = None,
    progress: Progress | None = None,
) -> ApplyResult:
    """Put ``series`` (a Series, or its name; None = the only one) on ``patchkit/<series>/v<N>``.

    ``version`` picks a frozen version, ``upto`` applies only the first K patches,
    ``onto`` applies on another upstream revision than the series base (a drift
    check: patches already upstream are reported in ``merged`` and skipped).
    """
    say = progress or (lambda _msg: None)
    current = series if isinstance(series, Series) else project.series(series)
    s = load_version(current, version) if version is not None else current
    patches = _first(s.patches, upto)
    pin = pin_for(project, s)
    with tree_lock(project.store.tree(s.name), say):
        path = work_tree(project.store, pin, s.name)
        repo = open_repo(path)
        finish_switch(repo, say)
        require_clean(repo, path)
        branch = branch_name(s.name, s.version)
        require_captured(path, branch, s.name)
        base = resolve(repo, onto or s.base)
        landed = upstream_range(repo, resolve(repo, s.base), base) if onto else UpstreamRange({}, {})
        steps = [f"applying {len(patches)} patch(es) of {s.name} v{s.version} onto {base[:12]}"]
        commits, why = build_commits(repo, base, patches, landed, steps.append)
        merged = list(why)
        head = commits[-1] if commits else base
        entry: dict[str, object] = {
            "base": base, "version": s.version, "commits": commits, "revision": s.revision_hash(),
            "patches": [p.filename for p in patches if p.filename not in merged],
            "upto": len(patches), "onto": bool(onto), "merged": merged}
        if _checked_out(repo, branch, head) and recorded(repo, branch) == entry:
            say(f"{s.name} v{s.version}: {branch} at {head[:12]}, unchanged ({len(commits)} commit(s) on "
                f"{base[:12]})")
        else:
            for line in steps:
                say(line)
            switch(repo, s.name, branch, head, entry)
            say(f"{branch} at {head[:12]} in {path}")
    return ApplyResult(tree=path, branch=branch, base=base, commits=commits, merged=merged, merged_why=why)


def _checked_out(repo: gitpython.Repo, branch: str, head: str) -> bool:
    """Whether the work tree is on ``branch`` at ``head`` already."""
    on = git_try(repo, "symbolic-ref", "--quiet", "--short", "HEAD")
    at = git_try(repo, "rev-parse", "--verify", "--quiet", "HEAD")
    return on.ok and on.output.strip() == branch and at.ok and at.output.strip() == head


def build_commits(repo: gitpython.Repo, base: str, patches: list[Patch], landed: UpstreamRange,
                  say: Progress) -> tuple[list[str], dict[str, str]]:
    """Commit each patch on top of the last in a temp index.

    Returns the commits and, for each patch skipped as already upstream, how that
    was found: the same ``git patch-id --stable`` or the same subject as a commit in
    ``landed``, a reverse apply, or applying as no change.
    """
    commits: list[str] = []
    merged: dict[str, str] = {}

    def skip(patch: Patch, why: str) -> None:
        say(f"  {patch.filename}: already upstream: {why} (merged, skipped)")
        merged[patch.filename] = why

    parent = base
    with temp_index() as env, tempfile.TemporaryDirectory(prefix="patchkit-apply-") as tmp:
        git_text(repo, "read-tree", parent, env=env)
        for n, patch in enumerate(patches, 1):
            diff_file = Path(tmp) / f"{n:04d}.diff"
            diff_file.write_text(patch.diff, encoding="utf-8")
            check_paths(repo, parent, patch)
            found = landed.find(patch_id(repo.working_tree_dir, patch.diff), patch.subject)
            if found:
                skip(patch, found)
                continue
            applied = git_try(repo, "apply", "--cached", "--3way", "--whitespace=nowarn", str(diff_file), env=env)
            if not applied.ok:
                git_text(repo, "read-tree", parent, env=env)  # drop conflict stages
                if git_try(repo, "apply", "--cached", "--reverse", "--check", str(diff_file), env=env).ok:
                    skip(patch, "the patch reverse-applies")
                    continue
                report = conflict_report(repo, parent, patch, applied.output)
                report += "".join(f"\n  already upstream: {name}: {why}" for name, why in merged.items())
                report += _later_report(repo, parent, patches[n:], landed, Path(tmp), env)
                raise ApplyError(report, hint="the tree was left as it was; rebase the patch "
                                              "(edit it, or apply --upto and fix by hand)")
            tree = git_text(repo, "write-tree", env=env)
            if tree == git_text(repo, "rev-parse", f"{parent}^{{tree}}"):
                skip(patch, "the patch applies as no change")
                continue
            msg_file = Path(tmp) / f"{n:04d}.msg"
            msg_file.write_text(patch.commit_message, encoding="utf-8")
            parent = git_text(repo, "commit-tree", tree, "-p", parent, "-F", str(msg_file),
                              env={**env, **identity_env(git_date(patch), patch)})
            commits.append(parent)
            say(f"  {patch.filename}: {parent[:12]} {patch.subject}")
    return commits, merged


def _later_report(repo: gitpython.Repo, parent: str, later: list[Patch], landed: UpstreamRange, tmp: Path,
                  env: dict[str, str]) -> str:
    """How each patch after a conflicting one fares on ``parent`` by itself, so one drift check names them all."""
    if not later:
        return ""
    lines = [f"\n  the patches after it, each checked alone on {parent[:12]}:"]
    diff_file = tmp / "later.diff"
    for patch in later:
        diff_file.write_text(patch.diff, encoding="utf-8")
        found = landed.find(patch_id(repo.working_tree_dir, patch.diff), patch.subject)
        if found:
            verdict = f"already upstream: {found}"
        elif (check := git_try(repo, "apply", "--cached", "--check", str(diff_file), env=env)).ok:
            verdict = "applies"
        elif git_try(repo, "apply", "--cached", "--reverse", "--check", str(diff_file), env=env).ok:
            verdict = "already upstream: the patch reverse-applies"
        else:
            where = conflict_report(repo, parent, patch, check.output).split("\n")[1].strip()
            where = where.removesuffix(DIFF_LEGEND).removesuffix(":")
            verdict = f"does not apply: {where}"
        lines.append(f"    {patch.filename}: {verdict}")
    return "\n".join(lines)


def pin_for(project: Project, s: Series) -> Pin:
    """The project's pin, which must be the upstream ``s`` targets."""
    pin = project.pin
    if s.upstream != pin.name:
        raise SeriesError(f"series '{s.name}' targets upstream '{s.upstream}' but gpxe-tree/pin.toml pins '{pin.name}'")
    return pin


def _first(patches: list[Patch], upto: int | None) -> list[Patch]:
    if upto is None:
        return list(patches)
    if not 0 <= upto <= len(patches):
        raise SeriesError(f"--upto {upto}: the series has {len(patches)} patch(es)")
    return patches[:upto]
