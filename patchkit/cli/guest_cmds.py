"""`patchkit guest`: build, import and list the guest images `patchkit test` boots."""

from __future__ import annotations

import time
from pathlib import Path

import click

from patchkit.cli.base import cli
from patchkit.errors import MissingInputError, PatchkitError
from patchkit.guests import GUEST_NAMES, HARNESS_NAMES, get_guest
from patchkit.guests.freedos import import_media
from patchkit.project import Project


def _progress(message: str) -> None:
    click.echo(message, err=True)


def _build(project: Project, name: str, disk_shape: str | None = None, read_only: bool = False) -> None:
    guest = get_guest(name, project.store).variant(disk_shape=disk_shape, read_only=read_only)
    start = time.monotonic()
    image = guest.build(_progress)
    click.echo(f"{guest.image_name}: {image} (sha256 {guest.image_sha256()[:16]}…, {time.monotonic() - start:.1f} s)")


@cli.group("guest")
def guest_group() -> None:
    """Guest images: build, import media, list."""


@guest_group.command("build")
@click.argument("names", nargs=-1, required=True, type=click.Choice([*GUEST_NAMES, *HARNESS_NAMES, "all"]))
@click.option("--disk-shape", help="Build the variant on this disk shape (the probe's: see its disk_shapes).")
@click.option("--read-only", is_flag=True, help="Build the variant that expects a read-only disk (the probe).")
@click.pass_obj
def build_cmd(project: Project, names: tuple[str, ...], disk_shape: str | None, read_only: bool) -> None:
    """Build the NAMES guest images (debian, probe; freedos once imported; probe-hold), or `all` (not probe-hold)."""
    wanted = GUEST_NAMES if "all" in names else names
    for name in wanted:
        _build(project, name, disk_shape, read_only)


@guest_group.command("import")
@click.argument("name", type=click.Choice(["freedos"]))
@click.option("--media", required=True, type=click.Path(path_type=Path),
              help="A FreeDOS boot floppy or hard-disk installation image (MBR + FAT partition): KERNEL.SYS, "
                   "COMMAND.COM and FreeDOS's boot sector are taken from it.")
@click.pass_obj
def import_cmd(project: Project, name: str, media: Path) -> None:
    """Import third-party boot media for guest NAME, then build its images (freedos, freedos-installed)."""
    import_media(project.store, media, _progress)
    _build(project, name)
    try:
        _build(project, "freedos-installed")
    except MissingInputError as exc:  # the media's boot sector is not FreeDOS's: the fast guest still works
        click.echo(f"freedos-installed: not built: {exc}", err=True)


@guest_group.command("list")
@click.pass_obj
def list_cmd(project: Project) -> None:
    """Show each guest's image, or the command that makes it."""
    for name in GUEST_NAMES:
        guest = get_guest(name, project.store)
        try:
            image = guest.base_image()
        except PatchkitError as exc:
            hint = f" ({exc.hint})" if exc.hint else ""
            click.echo(f"{name:8} missing: {exc.message}{hint}")
            continue
        click.echo(f"{name:8} {image}  sha256 {guest.image_sha256()[:16]}…")
