"""`patchkit` commands for the series: vendor, apply, refresh, status, version new, range-diff."""

from __future__ import annotations

import click

from patchkit import upstream
from patchkit.cli.base import Rev, cli, next_step, rev_option, series_argument
from patchkit.errors import SeriesError
from patchkit.git.apply import apply_series
from patchkit.git.rangediff import range_diff
from patchkit.git.refresh import refresh_series
from patchkit.project import Project
from patchkit.review.carry import new_version_keeping_trailers
from patchkit.status import status_lines


def _progress(message: str) -> None:
    if message:
        click.echo(message, err=True)



@cli.command("vendor")
@click.option("--from", "source", metavar="URL|PATH",
              help="Import from this URL or local mirror instead of the pin's URL.")
@click.pass_obj
def vendor_cmd(project: Project, source: str | None) -> None:
    """Import the pinned upstream into the cache (re-run to update and re-validate)."""
    pin = project.pin
    report = upstream.vendor_report(project.store, pin, source, _progress)
    latest = f"; latest {pin.latest[:12]} {'present' if report.latest_present else 'missing'}" if pin.latest else ""
    click.echo(f"{pin.name}: {report.path} (pinned {pin.commit[:12]} verified{latest})")


@cli.command("apply")
@series_argument()
@rev_option("to apply (default: the current one; an earlier one is frozen in versions/vN/)")
@click.option("--upto", type=int, metavar="K", help="Apply only the first K patches.")
@click.option("--onto", metavar="REV", help="Apply onto this upstream revision (drift check) instead of the base.")
@click.pass_obj
def apply_cmd(project: Project, series: str | None, rev: int | None, upto: int | None, onto: str | None) -> None:
    """Apply SERIES as commits on branch patchkit/<series>/v<N> in the cache's work tree."""
    result = apply_series(project, series, version=rev, upto=upto, onto=onto,
                                  progress=_progress)
    click.echo(f"{result.branch}: {len(result.commits)} commit(s) on {result.base[:12]} in {result.tree}")
    for name in result.merged:
        click.echo(f"already upstream (merged, skipped): {name}: {result.merged_why.get(name, '')}")
    next_step("patchkit build" + (f" --rev v{rev}" if rev is not None else "") + " (or edit the commits, then "
              "patchkit refresh)")


@cli.command("refresh")
@series_argument()
@click.pass_obj
def refresh_cmd(project: Project, series: str | None) -> None:
    """Write the commits on the series branch back into series/<name>/patches/."""
    changed = refresh_series(project, series, progress=_progress)
    if not changed:
        click.echo("no change")
    for name in changed:
        click.echo(f"updated {name}")


@cli.command("status")
@series_argument()
@click.pass_obj
def status_cmd(project: Project, series: str | None) -> int:
    """Show each series: version, patches, where it is applied, and test results per guest.

    Exits 1 when a series is invalid (each is still shown)."""
    names = [series] if series else project.series_names()
    invalid = 0
    if not names:
        click.echo("no series (series/<name>/series.toml)")
    with project.store.results() as results:
        for i, name in enumerate(names):
            if i:
                click.echo("")
            try:
                s = project.series(name)
            except SeriesError as exc:
                if series:
                    raise
                click.echo(f"{name}: INVALID: {exc}")
                invalid += 1
                continue
            for line in status_lines(project, s, results):
                click.echo(line)
    return 1 if invalid else 0


@cli.group("version")
def version_group() -> None:
    """Manage series versions."""


@version_group.command("new")
@series_argument()
@click.option("--changelog", metavar="TEXT", help="What changed in the new version (default: written in $EDITOR).")
@click.pass_obj
def version_new_cmd(project: Project, series: str | None, changelog: str | None) -> None:
    """Freeze the current version into versions/vN/ and start vN+1."""
    if changelog is None:
        changelog = _edited_changelog(project.series(series).version + 1)
    with project.editing(series) as s:
        updated, dropped = new_version_keeping_trailers(project.store, s, changelog)
    click.echo(f"{s.name}: froze v{s.version} in versions/v{s.version}/; now editing v{updated.version}")
    for index, given in dropped:
        click.echo(f"dropped from patch {index}: {given.collected.trailer.text()} "
                   f"(given on v{given.version}; the patch changed since; noted in the changelog)")


def _edited_changelog(number: int) -> str:
    """The changelog of version ``number`` as written in $VISUAL / $EDITOR (as `git commit` asks for its message);
    lines starting with '#' are dropped, and an empty text aborts."""
    template = (f"\n# What changed in v{number}, for the cover letter's changelog. Lines starting\n"
                "# with '#' are ignored; an empty changelog aborts.\n")
    text = click.edit(template, extension=".txt") or ""
    kept = "\n".join(line for line in text.splitlines() if not line.startswith("#")).strip()
    if not kept:
        raise SeriesError("aborting: the changelog is empty (nothing was frozen)",
                          hint="write what changed, or pass --changelog TEXT")
    return kept + "\n"


@cli.command("range-diff")
@click.argument("version_a", metavar="vA", type=Rev())
@click.argument("version_b", metavar="vB", type=Rev())
@series_argument()
@click.pass_obj
def range_diff_cmd(project: Project, version_a: int, version_b: int, series: str | None) -> None:
    """Show `git range-diff` between two versions of SERIES."""
    click.echo(range_diff(project, series, version_a, version_b), nl=False)
    click.echo("")
