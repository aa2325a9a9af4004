"""`patchkit setup`: fill the cache (the README's second set-up command)."""

from __future__ import annotations

from pathlib import Path

import click

from patchkit.cli.base import cli, next_step, steps_shown
from patchkit.project import Project
from patchkit.setup import setup


@cli.command("setup")
@click.option("--gpxe-from", metavar="URL|PATH",
              help="Import the gPXE upstream from this mirror instead of the pinned URL.")
@click.option("--freedos-media", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="A FreeDOS boot floppy or disk image to import.")
@click.pass_obj
def setup_cmd(project: Project, gpxe_from: str | None, freedos_media: Path | None) -> None:
    """Import the upstream, build the guest images; report what is still missing."""
    items = setup(project, gpxe_from, freedos_media, lambda msg: click.echo(f"  {msg}", err=True), steps_shown())
    for item in items:
        click.echo(f"{'ok' if item.ready else 'MISSING':8} {item.name}: {item.detail}")
    if all(item.ready for item in items):
        next_step("patchkit test --matrix")
    else:
        next_step("each MISSING line says how to get that input; then patchkit setup again (or test without it)")
