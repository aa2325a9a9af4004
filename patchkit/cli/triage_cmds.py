"""`patchkit bisect` (which patch made a cell fail) and `patchkit shrink` (which of its settings matter)."""

from __future__ import annotations

import click

from patchkit.cli.base import Rev, cli, series_argument
from patchkit.project import Project
from patchkit.triage.bisect import CONFIRM, bisect_cell
from patchkit.triage.shrink import shrink_cell


@cli.command("bisect")
@click.argument("cell")
@series_argument()
@click.option("--confirm", type=click.IntRange(min=1), default=CONFIRM, show_default=True,
              help="Boots that must all fail at the first bad patch, and all pass at its parent.")
@click.option("--since", type=Rev(), metavar="vN", help="Start from this earlier version's whole series (it passed) "
                                                        "instead of the series base.")
@click.option("--jobs", "-j", type=click.IntRange(min=1), default=2, show_default=True, help="Boots at once.")
@click.option("--cluster", metavar="ADDRESS", help="Boot on the workers of the Dask scheduler at ADDRESS.")
@click.option("--accel", type=click.Choice(["auto", "kvm", "tcg"]), default="auto", show_default=True)
@click.pass_obj
def bisect_command(project: Project, cell: str, series: str | None, confirm: int, since: int | None,
                   jobs: int, cluster: str | None, accel: str) -> int:
    """Find the first patch of SERIES at which CELL (CONFIG/GUEST, or a guest on the first configuration) fails.

    Builds the ROM after each patch as needed (cached by content), boots the cell there,
    bisects, and confirms: the first bad patch fails --confirm boots of --confirm, its
    parent passes as many. Exits 0 with a confirmed answer (a culprit, or a failure already at
    the base), 1 otherwise.
    """
    result = bisect_cell(project, series, cell, confirm=confirm, since=since, jobs=jobs, cluster=cluster,
                         accel=accel, progress=lambda m: click.echo(m, err=True))
    click.echo(result.summary())
    return 0 if result.confirmed else 1


@cli.command("shrink")
@click.argument("cell")
@series_argument()
@click.option("--accel", type=click.Choice(["auto", "kvm", "tcg"]), default="auto", show_default=True)
@click.pass_obj
def shrink_command(project: Project, cell: str, series: str | None, accel: str) -> int:
    """The smallest set of CELL's configuration settings (CONFIG/GUEST) that still fails on SERIES' ROM.

    Boots the cell as configured, then with each setting set back to the default in turn,
    dropping every setting whose removal still fails. Exits 0 when the cell fails as configured.
    """
    found = shrink_cell(project, series, cell, accel=accel, progress=lambda m: click.echo(m, err=True))
    click.echo(found.summary())
    return 0 if found.fails_as_is else 1
