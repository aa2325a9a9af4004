"""`patchkit report`: a static HTML page of one series revision."""

from __future__ import annotations

from pathlib import Path

import click

from patchkit.cli.base import cli
from patchkit.cli.series_cmds import _version_number
from patchkit.report.data import gather
from patchkit.report.page import write_report
from patchkit.series.io import find_series
from patchkit.store import cache_dir


@cli.command("report")
@click.argument("series", required=False)
@click.option("--version", "version", metavar="vN", help="Report this version (default: the current one).")
@click.option("-o", "--output", type=click.Path(file_okay=False, path_type=Path),
              help="Directory to write index.html and the run artifacts to (default: the cache's reports/).")
@click.pass_obj
def report_cmd(project: Path, series: str | None, version: str | None, output: Path | None) -> None:
    """Write an offline HTML report: cover, diffs, builds, test matrix with screenshots, range-diff, review."""
    s = find_series(project, series)
    data = gather(project, s, _version_number(version))
    out = output or cache_dir() / "reports" / f"{s.name}-v{data.series.version}"
    page = write_report(data, out)
    click.echo(f"{page} ({data.matrix.runs} run(s), {len(data.series.patches)} patch(es))")
