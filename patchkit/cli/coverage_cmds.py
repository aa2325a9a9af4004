"""`patchkit coverage`: the changed-line coverage of the last `patchkit test --coverage` runs."""

from __future__ import annotations

import click

from patchkit.cli import complete
from patchkit.cli.base import cli
from patchkit.coverage.collect import collect, report_lines
from patchkit.coverage.gate import coverage_problems, read_notes
from patchkit.errors import PatchkitError
from patchkit.project import Project


@cli.command("coverage")
@click.argument("series_name", metavar="[SERIES]", required=False, shell_complete=complete.series_names)
@click.pass_obj
def coverage_cmd(project: Project, series_name: str | None) -> int:
    """Of the lines the series adds or changes (executable ones), how many the test cells ran: per patch, the
    lines no cell ran (file:line and code) and those only one cell ran. From each cell's newest boot of the
    current revision made with `patchkit test --coverage`. Exits 1 when the manifest's [coverage] gate
    (min, reasons) is not met."""
    series = project.series(series_name)
    with project.store.results() as db:
        measured = collect(db, series)
    if measured is None:
        raise PatchkitError(f"no coverage recorded for {series.name} v{series.version} (this revision)",
                            hint="run `patchkit test --matrix --coverage`")
    for line in report_lines(series, measured, read_notes(series)):
        click.echo(line)
    problems = coverage_problems(series, measured)
    for problem in problems:
        click.echo(f"coverage gate: {problem}", err=True)
    return 1 if problems else 0
