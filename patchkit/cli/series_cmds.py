"""`patchkit` commands for the series: vendor, apply, refresh, status, version new, range-diff."""

from __future__ import annotations

from pathlib import Path

import click
import unidiff

from patchkit import gitrepo, upstream
from patchkit.cli.base import cli
from patchkit.errors import PatchkitError, SeriesError
from patchkit.review.carry import new_version_keeping_trailers
from patchkit.review.summary import patch_counts
from patchkit.series.io import available_versions, find_series, list_series
from patchkit.series.model import Patch, Series
from patchkit.store import Results


def _progress(message: str) -> None:
    if message:
        click.echo(message, err=True)


def _version_number(value: str | None) -> int | None:
    """``v2`` or ``2`` -> 2."""
    if value is None:
        return None
    text = value[1:] if value[:1] in ("v", "V") else value
    if not text.isdigit():
        raise SeriesError(f"not a version: {value!r}", hint="write versions as vN, e.g. v2")
    return int(text)


@cli.command("vendor")
@click.option("--from", "source", metavar="URL|PATH",
              help="Import from this URL or local mirror instead of the pin's URL.")
@click.pass_obj
def vendor_cmd(project: Path, source: str | None) -> None:
    """Import the pinned upstream into the cache (re-run to update and re-validate)."""
    pin = upstream.load_pin(project)
    report = upstream.vendor_report(pin, source, _progress)
    latest = f"; latest {pin.latest[:12]} {'present' if report.latest_present else 'missing'}" if pin.latest else ""
    click.echo(f"{pin.name}: {report.path} (pinned {pin.commit[:12]} verified{latest})")


@cli.command("apply")
@click.argument("series", required=False)
@click.option("--version", "version", metavar="vN", help="Apply a frozen version instead of the current one.")
@click.option("--upto", type=int, metavar="K", help="Apply only the first K patches.")
@click.option("--onto", metavar="REV", help="Apply onto this upstream revision (drift check) instead of the base.")
@click.pass_obj
def apply_cmd(project: Path, series: str | None, version: str | None, upto: int | None, onto: str | None) -> None:
    """Apply SERIES as commits on branch patchkit/<series>/v<N> in the cache's work tree."""
    result = gitrepo.apply_series(project, series, version=_version_number(version), upto=upto, onto=onto,
                                  progress=_progress)
    click.echo(f"{result.branch}: {len(result.commits)} commit(s) on {result.base[:12]} in {result.tree}")
    for name in result.merged:
        click.echo(f"already upstream (merged, skipped): {name}: {result.merged_why.get(name, '')}")


@cli.command("refresh")
@click.argument("series", required=False)
@click.pass_obj
def refresh_cmd(project: Path, series: str | None) -> None:
    """Write the commits on the series branch back into series/<name>/patches/."""
    changed = gitrepo.refresh_series(project, series, progress=_progress)
    if not changed:
        click.echo("no change")
    for name in changed:
        click.echo(f"updated {name}")


@cli.command("status")
@click.argument("series", required=False)
@click.pass_obj
def status_cmd(project: Path, series: str | None) -> int:
    """Show each series: version, patches, where it is applied, and test results per guest.

    Exits 1 when a series is invalid (each is still shown)."""
    names = [series] if series else list_series(project)
    invalid = 0
    if not names:
        click.echo("no series (series/<name>/series.toml)")
    with Results() as results:
        for i, name in enumerate(names):
            if i:
                click.echo("")
            try:
                s = find_series(project, name)
            except SeriesError as exc:
                if series:
                    raise
                click.echo(f"{name}: INVALID: {exc}")
                invalid += 1
                continue
            for line in status_lines(s, results):
                click.echo(line)
    return 1 if invalid else 0


def status_lines(s: Series, results: Results) -> list[str]:
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
    if s.cover_title:
        lines.append(f"  cover: {s.cover_title}")
    counts = patch_counts(s)
    for n, patch in enumerate(s.patches, 1):
        lines.append(f"  {n}. {patch.subject}")
        lines.append(f"     {diffstat(patch)}")
        if counts is not None:
            lines.append(f"     {counts[n - 1].text()}")
    lines.append("  " + _applied_line(s, revision))
    lines.extend("  " + line for line in _matrix(s, results, revision))
    return lines


def diffstat(patch: Patch) -> str:
    """``N file(s), +A -R: path (+a -r), ...``."""
    files = unidiff.PatchSet(patch.diff)
    parts = [f"{f.path} (+{f.added} -{f.removed})" for f in files]
    added = sum(f.added for f in files)
    removed = sum(f.removed for f in files)
    return f"{len(files)} file(s), +{added} -{removed}: " + ", ".join(parts)


def _applied_line(s: Series, revision: str) -> str:
    tree = gitrepo.tree_dir(s.name)
    branch = gitrepo.branch_name(s.name, s.version)
    if not (tree / ".git").is_dir():
        return f"applied: no (run `patchkit apply {s.name}`)"
    if (switching := gitrepo.interrupted_switch(tree)) is not None:
        return (f"applied: INTERRUPTED while switching {tree} to {switching}: its files are a mix "
                f"(run `patchkit apply {s.name}` to finish the switch)")
    state = gitrepo.read_state(tree, branch)
    if state is None or state.head is None:
        return f"applied: not on {branch} (run `patchkit apply {s.name}`)"
    checked_out, _ = gitrepo.current_branch(tree)
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
            rows.append([label, config, *("-" if r is None else "pass" if r.passed else "FAIL" for r in found)])
            label = ""
    widths = [max(8, *(len(row[i]) for row in rows)) for i in range(len(rows[0]))]
    lines = ["  " + "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    return ["results:", *lines, "  (* = the current revision)"]


@cli.group("version")
def version_group() -> None:
    """Manage series versions."""


@version_group.command("new")
@click.argument("series", required=False)
@click.option("--changelog", required=True, metavar="TEXT", help="What changed in the new version.")
@click.pass_obj
def version_new_cmd(project: Path, series: str | None, changelog: str) -> None:
    """Freeze the current version into versions/vN/ and start vN+1."""
    s = find_series(project, series)
    updated, dropped = new_version_keeping_trailers(s, changelog)
    click.echo(f"{s.name}: froze v{s.version} in versions/v{s.version}/; now editing v{updated.version}")
    for index, given in dropped:
        click.echo(f"dropped from patch {index}: {given.collected.trailer.text()} "
                   f"(given on v{given.version}; the patch changed since; noted in the changelog)")


@cli.command("range-diff")
@click.argument("version_a", metavar="vA")
@click.argument("version_b", metavar="vB")
@click.argument("series", required=False)
@click.pass_obj
def range_diff_cmd(project: Path, version_a: str, version_b: str, series: str | None) -> None:
    """Show `git range-diff` between two versions of SERIES."""
    a, b = _version_number(version_a), _version_number(version_b)
    if a is None or b is None:
        raise PatchkitError("range-diff needs two versions")
    click.echo(gitrepo.range_diff(project, series, a, b), nl=False)
    click.echo("")
