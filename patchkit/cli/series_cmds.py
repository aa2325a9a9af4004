"""`patchkit` commands for the series: vendor, apply, refresh, status, version new, range-diff."""

from __future__ import annotations

import click

from patchkit import upstream
from patchkit.cli.base import cli
from patchkit.errors import PatchkitError, SeriesError
from patchkit.git.apply import apply_series
from patchkit.git.rangediff import range_diff
from patchkit.git.refresh import refresh_series
from patchkit.project import Project
from patchkit.review.carry import new_version_keeping_trailers
from patchkit.status import status_lines


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
def vendor_cmd(project: Project, source: str | None) -> None:
    """Import the pinned upstream into the cache (re-run to update and re-validate)."""
    pin = project.pin
    report = upstream.vendor_report(project.store, pin, source, _progress)
    latest = f"; latest {pin.latest[:12]} {'present' if report.latest_present else 'missing'}" if pin.latest else ""
    click.echo(f"{pin.name}: {report.path} (pinned {pin.commit[:12]} verified{latest})")


@cli.command("apply")
@click.argument("series", required=False)
@click.option("--version", "version", metavar="vN", help="Apply a frozen version instead of the current one.")
@click.option("--upto", type=int, metavar="K", help="Apply only the first K patches.")
@click.option("--onto", metavar="REV", help="Apply onto this upstream revision (drift check) instead of the base.")
@click.pass_obj
def apply_cmd(project: Project, series: str | None, version: str | None, upto: int | None, onto: str | None) -> None:
    """Apply SERIES as commits on branch patchkit/<series>/v<N> in the cache's work tree."""
    result = apply_series(project, series, version=_version_number(version), upto=upto, onto=onto,
                                  progress=_progress)
    click.echo(f"{result.branch}: {len(result.commits)} commit(s) on {result.base[:12]} in {result.tree}")
    for name in result.merged:
        click.echo(f"already upstream (merged, skipped): {name}: {result.merged_why.get(name, '')}")


@cli.command("refresh")
@click.argument("series", required=False)
@click.pass_obj
def refresh_cmd(project: Project, series: str | None) -> None:
    """Write the commits on the series branch back into series/<name>/patches/."""
    changed = refresh_series(project, series, progress=_progress)
    if not changed:
        click.echo("no change")
    for name in changed:
        click.echo(f"updated {name}")


@cli.command("status")
@click.argument("series", required=False)
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
@click.argument("series", required=False)
@click.option("--changelog", required=True, metavar="TEXT", help="What changed in the new version.")
@click.pass_obj
def version_new_cmd(project: Project, series: str | None, changelog: str) -> None:
    """Freeze the current version into versions/vN/ and start vN+1."""
    with project.editing(series) as s:
        updated, dropped = new_version_keeping_trailers(project.store, s, changelog)
    click.echo(f"{s.name}: froze v{s.version} in versions/v{s.version}/; now editing v{updated.version}")
    for index, given in dropped:
        click.echo(f"dropped from patch {index}: {given.collected.trailer.text()} "
                   f"(given on v{given.version}; the patch changed since; noted in the changelog)")


@cli.command("range-diff")
@click.argument("version_a", metavar="vA")
@click.argument("version_b", metavar="vB")
@click.argument("series", required=False)
@click.pass_obj
def range_diff_cmd(project: Project, version_a: str, version_b: str, series: str | None) -> None:
    """Show `git range-diff` between two versions of SERIES."""
    a, b = _version_number(version_a), _version_number(version_b)
    if a is None or b is None:
        raise PatchkitError("range-diff needs two versions")
    click.echo(range_diff(project, series, a, b), nl=False)
    click.echo("")
