"""The git side: the work tree, applying a series as commits, refresh, patch-id, range-diff.

The only module that uses gitpython. Commits are built in a temporary index
(``git apply --cached --3way``, ``write-tree``, ``commit-tree``) without touching
the work tree; only when every patch has applied is the branch created and checked
out. A failure therefore leaves branch, HEAD, index and files exactly as they were.
The checkout itself can be interrupted (^C, a kill): a marker written before it and
removed once the record of the branch is saved tells `status` the truth, and the
next apply finishes that switch first (a forced checkout of its commit).

Commits carry the patch's author, date and message; the committer is patchkit's
fixed identity with the author date, so applying the same series to the same base
always gives the same commit ids.
"""

from __future__ import annotations

import difflib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field, replace
from datetime import timedelta
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import git
import unidiff

from patchkit.errors import ApplyError, DirtyTreeError, SeriesError, UpstreamError
from patchkit.gitcmd import environment
from patchkit.pin import Pin
from patchkit.progress import Progress
from patchkit.project import Project
from patchkit.series.io import load_version, save_series, unsafe_path
from patchkit.series.model import Patch, Series, parse_patch, patch_filename
from patchkit.store import Store, atomic_write, build_dir, file_lock
from patchkit.upstream import mirror_path

IDENTITY_NAME = "patchkit"
IDENTITY_EMAIL = "patchkit@localhost"
_GIT_ENV = environment()  # gitpython's commands run with patchkit.gitcmd's environment too
_STATE = "patchkit-applied.json"
_SWITCH = "patchkit-switch.json"  # present while apply switches the work tree: {series, branch, head, entry}


@dataclass(frozen=True)
class ApplyResult:
    """Where a series was applied: the tree, its branch, the base, the new commits, merged patches."""

    tree: Path
    branch: str
    base: str
    commits: list[str]
    merged: list[str]
    merged_why: dict[str, str] = field(default_factory=dict)  # patch file -> how it was found upstream


@dataclass(frozen=True)
class AppliedState:
    """What `patchkit apply` last put on a branch (read back by refresh and status)."""

    branch: str
    base: str
    version: int
    commits: list[str]
    patches: list[str]
    revision: str  # Series.revision_hash() of the series version applied from
    upto: int  # how many of its patches were applied
    onto: bool  # applied on another revision than the series base (a drift check)
    merged: list[str]  # patch files skipped because upstream already has them
    head: str | None  # the branch's current head (None when the branch is gone)


def branch_name(series: str, version: int) -> str:
    """``patchkit/<series>/v<N>``."""
    return f"patchkit/{series}/v{version}"


def tree_lock(path: Path, progress: Progress | None = None) -> AbstractContextManager[None]:
    """The lock of work tree ``path``: held while its files are switched, and by a build from hashing to storing.

    ``progress`` hears it when another patchkit command holds the tree.
    """
    def waiting() -> None:
        if progress is not None:
            progress(f"waiting for {path}: another patchkit command is using it")

    return file_lock(path.parent / f".{path.name}.lock", waiting)


def work_tree(store: Store, pin: Pin, name: str | None = None) -> Path:
    """The work tree ``trees/<name>/`` (default: the pin's name): cloned from the mirror, or refreshed."""
    mirror = mirror_path(store, pin)
    path = store.tree(name or pin.name)
    with tree_lock(path):
        if (path / ".git").is_dir():
            repo = _repo(path)
            _git(repo, "remote", "set-url", "origin", str(mirror))
            _git(repo, "fetch", "--quiet", "--prune", "--tags", "origin")
            return path
        with build_dir(path) as tmp:
            _git(None, "clone", "--quiet", str(mirror), str(tmp))
    return path


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
    pin = _pin_for(project, s)
    with tree_lock(project.store.tree(s.name), say):
        path = work_tree(project.store, pin, s.name)
        repo = _repo(path)
        _finish_switch(repo, say)
        _require_clean(repo, path)
        branch = branch_name(s.name, s.version)
        _require_captured(path, branch, s.name)
        base = _resolve(repo, onto or s.base)
        landed = _upstream_range(repo, _resolve(repo, s.base), base) if onto else _UpstreamRange({}, {})
        say(f"applying {len(patches)} patch(es) of {s.name} v{s.version} onto {base[:12]}")
        commits, why = _build(repo, base, patches, landed, say)
        merged = list(why)
        head = commits[-1] if commits else base
        _switch(repo, s.name, branch, head, {
            "base": base, "version": s.version, "commits": commits, "revision": s.revision_hash(),
            "patches": [p.filename for p in patches if p.filename not in merged],
            "upto": len(patches), "onto": bool(onto), "merged": merged})
    say(f"{branch} at {head[:12]} in {path}")
    return ApplyResult(tree=path, branch=branch, base=base, commits=commits, merged=merged, merged_why=why)


def refresh_series(project: Project, series: Series | str | None, progress: Progress | None = None) -> list[str]:
    """Capture the commits on the series' current branch back into its patch files.

    Commits patchkit made and nobody changed keep their patch file byte for byte;
    amended commits whose diff is unchanged keep the old diff text. Returns the
    names of the patch files that were written or removed.
    """
    say = progress or (lambda _msg: None)
    s = series if isinstance(series, Series) else project.series(series)
    path = project.store.tree(s.name)
    branch = branch_name(s.name, s.version)
    if not (path / ".git").is_dir():
        raise ApplyError(f"no work tree for series '{s.name}' ({path})", hint=f"run `patchkit apply {s.name}` first")
    repo = _repo(path)
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
    _require_clean(repo, path)
    shas = _git(repo, "rev-list", "--reverse", "--topo-order", f"{state.base}..{state.head}").split()
    for sha in shas:
        if len(_git(repo, "rev-list", "--parents", "-n1", sha).split()) > 2:
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
    _save_state(repo, branch, {
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


def read_state(tree: Path, branch: str) -> AppliedState | None:
    """What `patchkit apply` recorded for ``branch`` in ``tree`` (None if nothing)."""
    entry = _records(tree / ".git").get(branch)
    if entry is None:
        return None
    repo = _repo(tree)
    try:
        head = repo.commit(f"refs/heads/{branch}").hexsha
    except (git.BadName, ValueError):
        head = None
    return AppliedState(branch=branch, base=entry["base"], version=entry["version"],
                        commits=entry["commits"], patches=entry["patches"], revision=entry["revision"],
                        upto=entry["upto"], onto=entry["onto"], merged=entry.get("merged", []), head=head)


def interrupted_switch(tree: Path) -> str | None:
    """The branch an interrupted apply was switching ``tree`` to (its files may be a mix), else None."""
    marker = tree / ".git" / _SWITCH
    if not marker.is_file():
        return None
    return str(_read_record(marker).get("branch", "?"))


def current_branch(tree: Path) -> tuple[str | None, str]:
    """The branch checked out in ``tree`` (None when detached) and HEAD's commit."""
    repo = _repo(tree)
    head = repo.head.commit.hexsha
    return (None if repo.head.is_detached else repo.active_branch.name), head


def patch_id(repo_path: str | os.PathLike[str] | None, diff: str) -> str:
    """``git patch-id --stable`` of a diff ('' when the diff has no changes)."""
    with tempfile.NamedTemporaryFile("wb", suffix=".diff") as f:
        f.write(diff.encode("utf-8"))
        f.flush()
        with open(f.name, "rb") as stream:
            out = git.Git(str(repo_path) if repo_path else None).patch_id("--stable", istream=stream, env=_GIT_ENV)
    return out.split()[0] if out.strip() else ""


def range_diff(project: Project, series: Series | str | None, version_a: int, version_b: int) -> str:
    """``git range-diff`` between two versions, each applied on the series base in a temp branch."""
    current = series if isinstance(series, Series) else project.series(series)
    a, b = load_version(current, version_a), load_version(current, version_b)
    pin = _pin_for(project, current)
    path = work_tree(project.store, pin, current.name)
    repo = _repo(path)
    with file_lock(path.parent / f".{path.name}.lock"):
        ends = []
        for v in (a, b):
            base = _resolve(repo, v.base)
            commits = _build(repo, base, v.patches, _UpstreamRange({}, {}), lambda _m: None)[0]
            ref = f"refs/patchkit/range-diff/v{v.version}"
            _git(repo, "update-ref", ref, commits[-1] if commits else base)
            ends.append((base, ref))
        try:
            return _git(repo, "range-diff", "--no-color", f"{ends[0][0]}..{ends[0][1]}", f"{ends[1][0]}..{ends[1][1]}")
        finally:
            for _, ref in ends:
                _git(repo, "update-ref", "-d", ref)


def export_tree(repo: Path, rev: str, dest: Path) -> None:
    """Write the files of commit ``rev`` of ``repo`` into ``dest`` (created; modes and symlinks kept)."""
    r = _repo(repo)
    dest.mkdir(parents=True, exist_ok=True)
    with _temp_index() as env:
        _git(r, "read-tree", _resolve(r, rev), env=env)
        _git(r, "checkout-index", "--all", "--force", f"--prefix={dest.resolve()}/", env=env)


def tag(repo: Path, name: str, rev: str, message: str) -> None:
    """Create annotated tag ``name`` at ``rev`` (no-op if it already points there; error otherwise)."""
    r = _repo(repo)
    target = _resolve(r, rev)
    try:
        existing = r.commit(f"refs/tags/{name}").hexsha
    except (git.BadName, ValueError):
        existing = None
    if existing == target:
        return
    if existing is not None:
        raise ApplyError(f"tag {name} already exists at {existing[:12]}, not {target[:12]}",
                         hint="a sent version's tag never moves: start a new version")
    env = _identity_env(f"{int(time.time())} +0000")
    _git(r, "tag", "-a", "-m", message, name, target, env=env)


# --- internals -------------------------------------------------------------------


def _build(repo: git.Repo, base: str, patches: list[Patch], landed: _UpstreamRange,
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
    with _temp_index() as env, tempfile.TemporaryDirectory(prefix="patchkit-apply-") as tmp:
        _git(repo, "read-tree", parent, env=env)
        for n, patch in enumerate(patches, 1):
            diff_file = Path(tmp) / f"{n:04d}.diff"
            diff_file.write_text(patch.diff, encoding="utf-8")
            _check_paths(repo, parent, patch)
            found = landed.find(patch_id(repo.working_tree_dir, patch.diff), patch.subject)
            if found:
                skip(patch, found)
                continue
            applied = _try(repo, "apply", "--cached", "--3way", "--whitespace=nowarn", str(diff_file), env=env)
            if not applied.ok:
                _git(repo, "read-tree", parent, env=env)  # drop conflict stages
                if _try(repo, "apply", "--cached", "--reverse", "--check", str(diff_file), env=env).ok:
                    skip(patch, "the patch reverse-applies")
                    continue
                report = _conflict_report(repo, parent, patch, applied.output)
                report += "".join(f"\n  already upstream: {name}: {why}" for name, why in merged.items())
                report += _later_report(repo, parent, patches[n:], landed, Path(tmp), env)
                raise ApplyError(report, hint="the tree was left as it was; rebase the patch "
                                              "(edit it, or apply --upto and fix by hand)")
            tree = _git(repo, "write-tree", env=env)
            if tree == _git(repo, "rev-parse", f"{parent}^{{tree}}"):
                skip(patch, "the patch applies as no change")
                continue
            msg_file = Path(tmp) / f"{n:04d}.msg"
            msg_file.write_text(patch.commit_message, encoding="utf-8")
            parent = _git(repo, "commit-tree", tree, "-p", parent, "-F", str(msg_file),
                          env={**env, **_identity_env(_git_date(patch), patch)})
            commits.append(parent)
            say(f"  {patch.filename}: {parent[:12]} {patch.subject}")
    return commits, merged


def _later_report(repo: git.Repo, parent: str, later: list[Patch], landed: _UpstreamRange, tmp: Path,
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
        elif (check := _try(repo, "apply", "--cached", "--check", str(diff_file), env=env)).ok:
            verdict = "applies"
        elif _try(repo, "apply", "--cached", "--reverse", "--check", str(diff_file), env=env).ok:
            verdict = "already upstream: the patch reverse-applies"
        else:
            where = _conflict_report(repo, parent, patch, check.output).split("\n")[1].strip()
            where = where.removesuffix(_DIFF_LEGEND).removesuffix(":")
            verdict = f"does not apply: {where}"
        lines.append(f"    {patch.filename}: {verdict}")
    return "\n".join(lines)


def _check_paths(repo: git.Repo, parent: str, patch: Patch) -> None:
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
        listing = _git(repo, "ls-tree", parent, "--", *prefixes)
        for line in listing.splitlines():
            mode, _, rest = line.partition(" ")
            if mode == "120000":
                link = rest.split("\t", 1)[1]
                raise SeriesError(f"{patch.filename}: patch touches {p!r} through the symlink {link!r} in the tree",
                                  hint="a patch may only change files inside the tree; "
                                       "change the symlink's target path instead")


_DIFF_LEGEND = " (- the patch expects, + upstream has):"


def _conflict_report(repo: git.Repo, parent: str, patch: Patch, git_output: str) -> str:
    """Name the patch, the file, the hunk and the upstream lines that differ."""
    head = f"patch {patch.filename} ({patch.subject}) does not apply on {parent[:12]}"
    for pf in unidiff.PatchSet(patch.diff):
        if pf.is_added_file:
            if _try(repo, "cat-file", "-e", f"{parent}:{pf.path}").ok:
                return f"{head}:\n  {pf.path}: the patch creates it but it already exists upstream"
            continue
        source = pf.source_file[2:] if pf.source_file.startswith("a/") else pf.source_file
        shown = _try(repo, "show", f"{parent}:{source}")
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
                    f"does not match upstream lines {start + 1}-{start + len(actual)}{_DIFF_LEGEND}\n{detail}")
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


@dataclass(frozen=True)
class _UpstreamRange:
    """The upstream commits a drift check compares the series with, by patch-id and by subject."""

    ids: dict[str, str]
    subjects: dict[str, str]

    def find(self, pid: str, subject: str) -> str | None:
        """How ``patch`` is known upstream, or None."""
        if pid in self.ids:
            return f"upstream {self.ids[pid][:12]} has the same change (patch-id)"
        key = _subject_key(subject)
        if key in self.subjects:
            return f"upstream {self.subjects[key][:12]} has the same subject (its change differs: review it)"
        return None


def _subject_key(subject: str) -> str:
    return " ".join(subject.split()).casefold()


def _upstream_range(repo: git.Repo, base: str, onto: str) -> _UpstreamRange:
    """patch-ids and subjects of the upstream commits between the series base and ``onto``."""
    if base == onto:
        return _UpstreamRange({}, {})
    start = _git(repo, "merge-base", base, onto)
    subjects: dict[str, str] = {}
    for line in _git(repo, "log", "--no-merges", "--format=%H %s", f"{start}..{onto}").splitlines():
        commit, _, subject = line.partition(" ")
        subjects.setdefault(_subject_key(subject), commit)
    log = repo.git.log("-p", "--no-merges", "--no-color", "--format=commit %H", f"{start}..{onto}",
                       env=_GIT_ENV, stdout_as_string=False, strip_newline_in_stdout=False)
    ids: dict[str, str] = {}
    if log.strip():
        with tempfile.NamedTemporaryFile("wb", suffix=".log") as f:
            f.write(log)
            f.flush()
            with open(f.name, "rb") as stream:
                out = repo.git.patch_id("--stable", istream=stream, env=_GIT_ENV)
        for line in out.splitlines():
            pid, commit = line.split()
            ids.setdefault(pid, commit)
    return _UpstreamRange(ids, subjects)


def _patch_from_commit(repo: git.Repo, sha: str, by_id: dict[str, Patch]) -> Patch:
    """A Patch for a commit (reusing an existing patch's diff text when the change is the same)."""
    text = repo.git.format_patch("-1", "--stdout", "--no-signature", "-k", "--no-renames",
                                 "--encoding=UTF-8", sha, env=_GIT_ENV, strip_newline_in_stdout=False)
    summary = repo.commit(sha).summary
    subject = summary if isinstance(summary, str) else summary.decode("utf-8", "replace")
    patch = parse_patch(text, patch_filename(1, subject), source=f"commit {sha[:12]}")
    old = by_id.get(patch_id(repo.working_tree_dir, patch.diff))
    if old is not None:
        patch = replace(patch, diff=old.diff)
    return patch


def _git_date(patch: Patch) -> str:
    """The patch's Date header as git's internal date format (seconds + offset)."""
    try:
        when = parsedate_to_datetime(patch.date)
    except (TypeError, ValueError) as exc:
        raise SeriesError(f"{patch.filename}: Date header is not an RFC 2822 date: {patch.date!r}") from exc
    offset = when.utcoffset() or timedelta(0)
    minutes = int(offset.total_seconds() // 60)
    sign = "-" if minutes < 0 else "+"
    return f"{int(when.timestamp())} {sign}{abs(minutes) // 60:02d}{abs(minutes) % 60:02d}"


def _identity_env(date: str, patch: Patch | None = None) -> dict[str, str]:
    env = {"GIT_COMMITTER_NAME": IDENTITY_NAME, "GIT_COMMITTER_EMAIL": IDENTITY_EMAIL, "GIT_COMMITTER_DATE": date}
    if patch is not None:
        env |= {"GIT_AUTHOR_NAME": patch.author_name, "GIT_AUTHOR_EMAIL": patch.author_email, "GIT_AUTHOR_DATE": date}
    return env


def _require_clean(repo: git.Repo, path: Path) -> None:
    if (switching := interrupted_switch(path)) is not None:
        name = _read_record(Path(repo.git_dir) / _SWITCH).get("series", "SERIES")
        raise DirtyTreeError(f"an apply was interrupted while switching {path} to {switching}: its files are a mix",
                             hint=f"run `patchkit apply {name}` to finish the switch first")
    if repo.is_dirty(index=True, working_tree=True, untracked_files=False):
        changed = _git(repo, "status", "--porcelain", "--untracked-files=no")
        raise DirtyTreeError(f"the work tree {path} has uncommitted changes:\n{changed}",
                             hint="commit them (then `patchkit refresh`) or discard them; "
                                  "patchkit never overwrites them")


def _require_captured(path: Path, branch: str, name: str) -> None:
    """Refuse to move ``branch`` when it has commits that `patchkit refresh` has not captured."""
    state = read_state(path, branch)
    if state is None or state.head is None:
        return
    recorded = state.commits[-1] if state.commits else state.base
    if state.head != recorded:
        raise DirtyTreeError(f"{branch} in {path} has commits not yet captured into series/{name}/ "
                             f"(head {state.head[:12]}, applied {recorded[:12]})",
                             hint=f"run `patchkit refresh {name}` to keep them, or `git -C {path} reset --hard "
                                  f"{recorded[:12]}` to drop them")


def _resolve(repo: git.Repo, rev: str) -> str:
    result = _try(repo, "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}")
    if not result.ok:
        raise UpstreamError(f"revision {rev} is not in the upstream mirror",
                            hint="check the revision, or re-run `patchkit vendor` to update the mirror")
    return result.output.strip()


def _pin_for(project: Project, s: Series) -> Pin:
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


def _save_state(repo: git.Repo, branch: str, entry: dict[str, object]) -> None:
    """Record what is on ``branch`` (base, version, commits, patch files, revision, upto, onto)."""
    git_dir = Path(repo.git_dir)
    data = _records(git_dir)
    data[branch] = entry
    atomic_write(git_dir / _STATE, json.dumps(data, indent=1, sort_keys=True))


def _records(git_dir: Path) -> dict[str, dict[str, Any]]:
    """The apply records of a work tree (branch -> entry), {} when there are none."""
    state_file = git_dir / _STATE
    return _read_record(state_file) if state_file.is_file() else {}


def _read_record(path: Path) -> dict[str, Any]:
    """A JSON object patchkit keeps in a work tree's .git; ApplyError naming it when damaged."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        data = exc
    if not isinstance(data, dict):
        raise ApplyError(f"{path} is damaged ({data if isinstance(data, Exception) else 'not a JSON object'})",
                         hint=f"remove it and run `patchkit apply` again (it records what apply put on each "
                              f"branch; commits made since the last refresh are kept on the branches in "
                              f"{path.parent.parent})")
    return data


def _switch(repo: git.Repo, series: str, branch: str, head: str, entry: dict[str, object]) -> None:
    """Point ``branch`` at ``head``, check it out and record ``entry``; a marker covers the whole switch."""
    marker = Path(repo.git_dir) / _SWITCH
    atomic_write(marker, json.dumps({"series": series, "branch": branch, "head": head, "entry": entry}))
    _git(repo, "checkout", "--quiet", "-B", branch, head)
    _save_state(repo, branch, entry)
    marker.unlink()


def _finish_switch(repo: git.Repo, say: Progress) -> None:
    """Finish a switch an interrupted apply left half done: its files are a mix, so check out by force."""
    marker = Path(repo.git_dir) / _SWITCH
    if not marker.is_file():
        return
    switch = _read_record(marker)
    branch, head = switch["branch"], switch["head"]
    say(f"finishing the switch to {branch} that an interrupted apply left half done")
    # git killed mid-checkout leaves its index lock; the tree lock keeps other patchkit commands out.
    (Path(repo.git_dir) / "index.lock").unlink(missing_ok=True)
    _git(repo, "checkout", "--quiet", "--force", "-B", branch, head)
    _save_state(repo, branch, switch["entry"])
    marker.unlink()


@contextmanager
def _temp_index() -> Iterator[dict[str, str]]:
    """An environment pointing git at a throwaway index file."""
    d = tempfile.mkdtemp(prefix="patchkit-index-")
    try:
        yield {"GIT_INDEX_FILE": str(Path(d) / "index")}
    finally:
        shutil.rmtree(d, ignore_errors=True)


def _repo(path: Path | str) -> git.Repo:
    try:
        return git.Repo(path)
    except (git.InvalidGitRepositoryError, git.NoSuchPathError) as exc:
        raise UpstreamError(f"{path} is not a git repository",
                            hint="run `patchkit apply` to (re)create the work tree") from exc


def _git(repo: git.Repo | None, *args: str, env: dict[str, str] | None = None) -> str:
    """Run a git command (in ``repo``), returning its stdout without the final newline."""
    g = repo.git if repo is not None else git.Git()
    try:
        return g.execute(["git", *args], env={**_GIT_ENV, **(env or {})})
    except git.GitCommandError as exc:
        raise ApplyError(f"git {' '.join(args[:2])} failed: {exc.stderr.strip() or exc}") from exc


@dataclass(frozen=True)
class _Outcome:
    ok: bool
    output: str


def _try(repo: git.Repo, *args: str, env: dict[str, str] | None = None) -> _Outcome:
    """Run a git command that may fail; return whether it did and its output."""
    status, out, err = repo.git.execute(["git", *args], env={**_GIT_ENV, **(env or {})},
                                        with_extended_output=True, with_exceptions=False,
                                        strip_newline_in_stdout=False)
    return _Outcome(status == 0, out if status == 0 else (err or out))
