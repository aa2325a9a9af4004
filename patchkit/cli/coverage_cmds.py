"""`patchkit coverage`: the changed-line coverage of the last `patchkit test --coverage` runs."""

from __future__ import annotations

import click

from patchkit.cli.base import cli, series_argument
from patchkit.coverage.collect import collect, report_lines
from patchkit.errors import PatchkitError
from patchkit.project import Project


@cli.command("coverage")
@series_argument()
@click.pass_obj
def coverage_cmd(project: Project, series: str | None) -> int:
    """Of the lines the series adds or changes (executable ones), how many the test cells ran: per patch, the
    lines no cell ran (file:line and code) and those only one cell ran. From each cell's newest boot of the
    current revision made with `patchkit test --coverage`."""
    s = project.series(series)
    with project.store.results() as db:
        measured = collect(db, s, project.pin.build.directory)
    if measured is None:
        raise PatchkitError(f"no coverage recorded for {s.name} v{s.version} (this revision)",
                            hint="run `patchkit test --matrix --coverage`")
    for line in report_lines(s, measured):
        click.echo(line)
    return 0
