"""`patchkit status`: a series' versions, patches, review counts, where it is applied, and its results."""

from __future__ import annotations

from pathlib import Path

import unidiff

from patchkit.coverage.collect import status_line
from patchkit.git.state import interrupted_switch, read_state
from patchkit.git.worktree import branch_name, current_branch
from patchkit.project import Project
from patchkit.report.mail import report_mail_lines
from patchkit.review.summary import patch_counts
from patchkit.series.io import available_versions
from patchkit.series.model import Patch, Series
from patchkit.store import Results
from patchkit.table import table
from patchkit.triage.flaky import flakes, verdict


def status_lines(project: Project, s: Series, results: Results) -> list[str]:
    """The status report of one series, as lines."""
    revision = s.revision_hash()
    lines = [f"{s.name}  v{s.version}  revision {revision[:12]}  base {s.base[:12]} ({s.upstream})"]
    versions = []
    for n in available_versions(s):
        info = s.version_info(n)
        mark = " current" if n == s.version else ""
        sent = f" sent {info.sent}" if info and info.sent else ""
        versions.append(f"v{n}{mark}{sent}")
    lines.append("  versions: " + ", ".join(versions))
    lines.extend("  " + line for line in report_mail_lines(project.store, s))
    if s.cover_title:
        lines.append(f"  cover: {s.cover_title}")
    counts = patch_counts(project.store, s)
    for n, patch in enumerate(s.patches, 1):
        lines.append(f"  {n}. {patch.subject}")
        lines.append(f"     {diffstat(patch)}")
        if counts is not None:
            lines.append(f"     {counts[n - 1].text()}")
    lines.append("  " + _applied_line(project.store.tree(s.name), s, revision))
    lines.extend("  " + line for line in _matrix(s, results, revision))
    lines.append("  " + status_line(results, s))
    return lines


def diffstat(patch: Patch) -> str:
    """``N file(s), +A -R: path (+a -r), ...``."""
    files = unidiff.PatchSet(patch.diff)
    parts = [f"{f.path} (+{f.added} -{f.removed})" for f in files]
    added = sum(f.added for f in files)
    removed = sum(f.removed for f in files)
    return f"{len(files)} file(s), +{added} -{removed}: " + ", ".join(parts)


def _applied_line(tree: Path, s: Series, revision: str) -> str:
    branch = branch_name(s.name, s.version)
    if not (tree / ".git").is_dir():
        return f"applied: no (run `patchkit apply {s.name}`)"
    if (switching := interrupted_switch(tree)) is not None:
        return (f"applied: INTERRUPTED while switching {tree} to {switching}: its files are a mix "
                f"(run `patchkit apply {s.name}` to finish the switch)")
    state = read_state(tree, branch)
    if state is None or state.head is None:
        return f"applied: not on {branch} (run `patchkit apply {s.name}`)"
    checked_out, _ = current_branch(tree)
    where = f"{branch} at {state.head[:12]} in {tree}" + (" (checked out)" if checked_out == branch else "")
    if state.onto:
        note = f"drift check onto {state.base[:12]}"
    elif state.head != (state.commits[-1] if state.commits else state.base):
        note = "branch has new commits: run `patchkit refresh`"
    elif state.revision != revision:
        note = "series files changed since: run `patchkit apply`"
    elif state.upto < len(s.patches):
        note = f"first {state.upto} of {len(s.patches)} patches"
    else:
        note = "up to date"
    return f"applied: {where} [{note}]"


def _matrix(s: Series, results: Results, current: str) -> list[str]:
    """Revision x configuration rows, a column per guest, newest revision first."""
    revisions: list[tuple[str, int]] = []
    for r in results.for_series(s.name):
        if r.key.revision not in [rev for rev, _ in revisions]:
            revisions.append((r.key.revision, r.version))
    if not revisions:
        return ["results: none (run `patchkit test`)"]
    configs = [c.name for c in s.test_configs()]
    guests = list(dict.fromkeys(g for c in s.test_configs() for g in c.guests))
    latest = {rev: results.latest_by_cell(s.name, rev) for rev, _ in revisions}
    flaky = {rev: flakes(results.for_revision(s.name, rev)) for rev, _ in revisions}
    for cells in latest.values():
        configs.extend(c for c, _ in cells if c not in configs)
        guests.extend(g for _, g in cells if g not in guests)
    rows = [["revision", "configuration", *guests]]
    for rev, version in revisions:
        label = f"{rev[:12]} v{version}" + (" *" if rev == current else "")
        for config in configs:
            found = [latest[rev].get((config, g)) for g in guests]
            if all(r is None for r in found):
                continue
            rows.append([label, config, *("-" if r is None else verdict(r, flaky[rev].get((config, g)))
                                          for r, g in zip(found, guests, strict=True))])
            label = ""
    lines = table(rows, indent="  ", min_width=8)
    notes = [f"  {rev[:12]} {'/'.join(cell)}: {flake.describe()}" for rev, _ in revisions
             for cell, flake in flaky[rev].items()]
    return ["results:", *lines, "  (* = the current revision)", *notes]
