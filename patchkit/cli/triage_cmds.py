"""`patchkit bisect`: which patch of the series made a cell fail."""

from __future__ import annotations

import click

from patchkit.cli.base import cli
from patchkit.project import Project
from patchkit.triage.bisect import CONFIRM, bisect_cell


def _version(value: str | None) -> int | None:
    if value is None:
        return None
    if not value.lstrip("v").isdigit():
        raise click.BadParameter(f"{value!r} is not a version (v3 or 3)")
    return int(value.lstrip("v"))


@cli.command("bisect")
@click.argument("cell")
@click.option("--series", "series_name", help="The series (default: the only one).")
@click.option("--confirm", type=click.IntRange(min=1), default=CONFIRM, show_default=True,
              help="Boots that must all fail at the first bad patch, and all pass at its parent.")
@click.option("--since", metavar="vN", help="Start from this earlier version's whole series (it passed), "
                                            "instead of the series base.")
@click.option("--jobs", "-j", type=click.IntRange(min=1), default=2, show_default=True, help="Boots at once.")
@click.option("--cluster", metavar="ADDRESS", help="Boot on the workers of the Dask scheduler at ADDRESS.")
@click.option("--accel", type=click.Choice(["auto", "kvm", "tcg"]), default="auto", show_default=True)
@click.pass_obj
def bisect_command(project: Project, cell: str, series_name: str | None, confirm: int, since: str | None,
                   jobs: int, cluster: str | None, accel: str) -> int:
    """Find the first patch at which CELL (CONFIG/GUEST, or a guest on the first configuration) fails.

    Builds the ROM after each patch as needed (cached by content), boots the cell there,
    bisects, and confirms: the first bad patch fails --confirm boots of --confirm, its
    parent passes as many. Exits 0 with a confirmed culprit, 1 otherwise.
    """
    result = bisect_cell(project, series_name, cell, confirm=confirm, since=_version(since), jobs=jobs,
                         cluster=cluster, accel=accel, progress=lambda m: click.echo(m, err=True))
    click.echo(result.summary())
    return 0 if result.confirmed else 1
