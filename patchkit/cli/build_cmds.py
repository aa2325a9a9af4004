"""`patchkit build`: build (or reuse) the series' ROM, or every patch of it with --each-patch."""

from __future__ import annotations

import time
from pathlib import Path

import click

from patchkit.build.cache import build_rom, rom_ids
from patchkit.build.each_patch import build_each_patch
from patchkit.build.series import ensure_series_rom
from patchkit.cli.base import cli, next_step, progress, rev_option, series_argument
from patchkit.errors import BuildError
from patchkit.project import Project
from patchkit.report.data import save_builds
from patchkit.series.io import load_version


@cli.command("build")
@series_argument()
@rev_option("to build (default: the current one)")
@click.option("--each-patch", is_flag=True, help="Build the base and the tree after every patch; fail on new warnings.")
@click.option("--target", metavar="T", help="Make target (default: the pin's, bin/1af41001.rom).")
@click.option("--tree", type=click.Path(file_okay=False, exists=True, path_type=Path),
              help="Build this gPXE tree as it is instead of applying the series.")
@click.pass_obj
def build_cmd(project: Project, series: str | None, rev: int | None, each_patch: bool, target: str | None,
              tree: Path | None) -> None:
    """Build SERIES' ROM (default: the only series) and check it; reuse an identical earlier build."""
    if each_patch:
        if tree is not None or target is not None:
            raise click.UsageError("--each-patch builds the pin's targets in its own tree: drop --tree/--target")
        _each_patch(project, series, rev)
        return
    start = time.monotonic()
    if tree is not None:
        if rev is not None:
            raise click.UsageError("--tree builds that tree as it is: drop --rev")
        rom = build_rom(project.store, tree.resolve(), project.pin, target, progress=progress)
    else:
        rom = ensure_series_rom(project, series, target=target, version=rev, progress=progress)
    vendor, device = rom_ids(project.pin, rom.target)  # checked when the build was stored
    how = "reused (tree and settings unchanged)" if rom.reused else f"built in {rom.seconds:.1f} s"
    click.echo(f"ROM:     {rom.path}")
    click.echo(f"size:    {rom.size} bytes ({rom.size // 1024} KiB)")
    click.echo(f"sha256:  {rom.sha256}")
    click.echo(f"checks:  passed (55AA, size byte, checksum, PCIR {vendor:04x}:{device:04x}, x86 code)")
    click.echo(f"build:   {how}; {time.monotonic() - start:.1f} s in all")
    click.echo(f"log:     {rom.log}")
    if tree is None:
        rev_arg = f" --rev v{rev}" if rev is not None else ""
        next_step(f"patchkit test{rev_arg} (boot the guests through it), patchkit build --each-patch{rev_arg}")


def _each_patch(project: Project, series: str | None, rev: int | None) -> None:
    steps = build_each_patch(project, series, progress, version=rev)
    current = project.series(series)
    s = load_version(current, rev) if rev is not None else current
    save_builds(project.store, s.name, s.revision_hash(), [(st.index, st.name, {t: r.size for t, r in st.roms.items()},
                                             len(st.warnings), st.new_warnings) for st in steps])
    added = 0
    for step in steps:
        roms = ", ".join(f"{Path(t).name} {r.size} bytes" for t, r in step.roms.items())
        label = "base" if step.index == 0 else f"patch {step.index} {step.name}"
        note = f"{len(step.warnings)} warnings" if step.index == 0 else f"{len(step.new_warnings)} new warning(s)"
        click.echo(f"{step.commit[:12]} {label}: builds ({roms}); {note}")
        for line in step.new_warnings:
            click.echo(f"    {line}")
        added += len(step.new_warnings)
    if added:
        raise BuildError(f"the series adds {added} compiler warning(s) (listed above)",
                         hint="fix them in the patch that introduces each, then `patchkit build --each-patch` again")
    click.echo(f"every step builds; the series adds no warnings ({len(steps) - 1} patch(es))")
    next_step("patchkit test --matrix" + (f" --rev v{rev}" if rev is not None else ""))
