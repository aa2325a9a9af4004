"""`patchkit test`: boot the guests through the series' ROM and record the verdicts."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Literal

import click

from patchkit.boot.run import DEFAULT_STALL_TIMEOUT
from patchkit.cli import complete
from patchkit.cli.base import cli, next_step, progress, rev_option, series_argument, steps_shown
from patchkit.guests.image import BOOT_FAILURES, DEFAULT_EXPECT, DEFAULT_MEMORY, DEFAULT_TIMEOUT, ImageSpec
from patchkit.project import Project
from patchkit.series.io import MAX_MEMORY, MIN_MEMORY
from patchkit.triage.bisect import bisect_cell, failing_cells
from patchkit.triage.flaky import RERUNS
from patchkit.validate import run_tests


class Seconds(click.ParamType[float]):
    """A positive, finite number of seconds (-1, 0, nan and inf are refused: a boot needs a time limit)."""

    name = "seconds"

    def convert(self, value: object, param: click.Parameter | None, ctx: click.Context | None) -> float:
        try:
            seconds = float(value)  # type: ignore[arg-type]  # click passes the option's text (or a default float)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not a number of seconds", param, ctx)
        if not math.isfinite(seconds) or seconds <= 0:
            self.fail(f"{value!r} must be a positive, finite number of seconds", param, ctx)
        return seconds


@cli.command("test")
@series_argument()
@rev_option("to test (default: the current one)")
@click.option("--guest", "guests", multiple=True, metavar="NAME", shell_complete=complete.guests,
              help="Guest to boot (repeatable); all = the series' guests (the default without --image). keepsan / "
                   "keepsan-aoe: the probe uses the virtio / AoE disk gPXE kept after a sanboot that returned "
                   "with keep-san set.")
@click.option("--image", type=click.Path(path_type=Path),
              help="Boot this disk image (raw or qcow2) too, through an overlay: it is never written.")
@click.option("--expect", default=DEFAULT_EXPECT, show_default="a login, shell, DOS or grub> prompt at a line's end",
              help="--image passes when this regular expression shows up on serial or on the screen.")
@click.option("--fail", "fail_pattern",
              help="--image fails when this regular expression shows up (besides boot loaders' own failure "
                   "messages: " + ", ".join(BOOT_FAILURES) + ").")
@click.option("--image-dir", "image_dirs", multiple=True, type=click.Path(file_okay=False, path_type=Path),
              envvar="PATCHKIT_IMAGE_DIRS",
              help="A directory outside the project that the manifest's [[images]] and the backing files of an "
                   "image may be in (repeatable; PATCHKIT_IMAGE_DIRS: colon-separated). Default: only the project "
                   "and the image's own directory.")
@click.option("--image-format", type=click.Choice(["raw", "qcow2"]),
              help="--image's format, opened so and never guessed (default: qemu-img's guess, then its backing "
                   "chain checked). A raw image from someone else: say raw.")
@click.option("--backing-anywhere", is_flag=True,
              help="Let --image's backing files be anywhere (an image you made yourself).")
@click.option("--config", "configs", multiple=True, metavar="NAME", shell_complete=complete.configs,
              help="Configuration of the manifest to boot on (repeatable; default: its first). "
                   "Named guests run on it whether it lists them or not.")
@click.option("--matrix", is_flag=True, help="Every configuration of the manifest, each with its guests "
                                             "(--guest filters them).")
@click.option("--jobs", "-j", type=click.IntRange(min=1), help="Boots at once (default: the number of CPUs).")
@click.option("--cluster", metavar="ADDRESS",
              help="Boot on the workers of the Dask scheduler at ADDRESS (tcp://HOST:8786), one task per boot; "
                   "results are recorded here. Needs the `cluster` extra (README: more than one machine).")
@click.option("--coverage", is_flag=True,
              help="Also record which source lines each boot ran (QEMU's translation log mapped through the ROM's "
                   "ELF), and print how many of the series' changed lines ran (`patchkit coverage` shows it again).")
@click.option("--rom", type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="Boot this ROM instead of building the series' bin/1af41001.rom.")
@click.option("--accel", type=click.Choice(["auto", "kvm", "tcg"]), default="auto", show_default=True,
              help="auto uses KVM only when it can run the guests, and falls back to TCG.")
@click.option("--timeout", type=Seconds(), help=f"Overall seconds per boot (default: the guest's; --image: "
                                            f"{DEFAULT_TIMEOUT:g}).")
@click.option("--stall-timeout", type=Seconds(), default=DEFAULT_STALL_TIMEOUT, show_default=True,
              help="Fail a boot after this many seconds without serial output.")
@click.option("--reruns", type=click.IntRange(min=0), default=RERUNS, show_default=True,
              help="Boot a cell whose boots all failed again, up to this many times, until one passes: a cell that "
                   "failed and passed on the same ROM is FLAKY.")
@click.option("--bisect", "bisect", is_flag=True,
              help="For each cell that failed every boot, find the patch that broke it (as `patchkit bisect`).")
@click.option("--memory", "memory_mib", type=click.IntRange(MIN_MEMORY, MAX_MEMORY), metavar="MIB",
              help=f"The machine's memory for every boot (default: the configuration's `memory`, else the guest's: "
                   f"128 MiB for the built-in small guests, {DEFAULT_MEMORY} for --image and [[images]]).")
@click.option("--fresh", is_flag=True,
              help="Boot every cell, also those an earlier revision passed with a byte-identical ROM (whose passes "
                   "are otherwise carried over: same ROM, guest image, configuration and QEMU).")
@click.option("--reference", is_flag=True, help="Let SeaBIOS boot the disks natively (no ROM), for comparison.")
@click.option("--root-path", help="What to type after `sanboot` (default: the configuration's, "
                                   "virtio_blk:PCI00:04.0; a bare virtio_blk: boots the first usable virtio disk).")
@click.pass_obj
def test_command(project: Project, series: str | None, rev: int | None, guests: tuple[str, ...], image: Path | None,
                 expect: str, fail_pattern: str | None,
                 image_dirs: tuple[Path, ...], image_format: Literal["raw", "qcow2"] | None, backing_anywhere: bool,
                 configs: tuple[str, ...], matrix: bool, jobs: int | None,
                 cluster: str | None, coverage: bool, rom: Path | None, accel: str, timeout: float | None,
                 stall_timeout: float, reruns: int, bisect: bool, memory_mib: int | None, fresh: bool,
                 reference: bool,
                 root_path: str | None) -> int:
    """Boot each guest from its virtio disk through SERIES' ROM (`sanboot`), and record the results.

    Exits 1 if any boot failed; each verdict line names the run directory with
    serial.log, screen.txt, screenshots and the SeaBIOS log; a run of several boots
    ends with a configuration x guest table. keepsan-aoe boots through the series'
    NIC ROM (bin/1af41000.rom) and needs root and vblade.

    A cell whose boots all failed is booted again (--reruns), and one that both
    failed and passed on the same ROM is FLAKY (send-email refuses it).

    --image FILE boots a disk image of your own the same way (recorded as guest
    image:FILE-NAME, keyed by the file's content): it passes on --expect, fails on
    --fail, on a boot loader's failure message, when gPXE's sanboot returns, after
    --stall-timeout seconds without output or at the timeout.
    """
    if rev is not None and (rom or reference):
        raise click.UsageError("--rev picks the series version whose ROM to build and boot: drop --rom/--reference")
    if reference and rom:
        raise click.UsageError("--reference boots without a ROM: drop --rom")
    if matrix and configs:
        raise click.UsageError("--matrix runs every configuration: drop --config")
    if cluster and memory_mib:
        raise click.UsageError("--memory is not passed to cluster workers yet: set `memory` in the configurations")
    if cluster and jobs:
        raise click.UsageError("--jobs is for this machine: with --cluster each worker boots as many at once as "
                               "it has threads (dask worker --nthreads)")
    images = []
    if image is not None:
        images.append(ImageSpec(image, expect=expect, fail=fail_pattern, timeout=timeout or DEFAULT_TIMEOUT,
                                format=image_format, memory_mib=memory_mib or DEFAULT_MEMORY, image_dirs=image_dirs,
                                backing_anywhere=backing_anywhere))
    elif expect != DEFAULT_EXPECT or fail_pattern or backing_anywhere or image_format:
        raise click.UsageError("--expect, --fail, --image-format and --backing-anywhere are for an --image: give one")
    results = run_tests(project, guests or (() if images else ("all",)), series_name=series, version=rev,
                        configs=configs,
                        matrix=matrix, jobs=jobs, cluster=cluster, coverage=coverage, rom=rom, accel=accel,
                        timeout=timeout, stall_timeout=stall_timeout, reference=reference, root_path=root_path,
                        user_images=images, image_dirs=image_dirs, reruns=reruns, progress=progress,
                        result_line=click.echo, steps=steps_shown(), memory_mib=memory_mib, fresh=fresh)
    failed = [f"{r.key.config}/{r.key.guest}" for r in results if not r.passed]
    if failed:
        click.echo(f"{len(failed)} of {len(results)} boots failed: {', '.join(failed)}", err=True)
        if bisect and (rom or reference or rev is not None or images):
            click.echo("note: --bisect bisects the series' current revision: not with --rom, --reference, --rev "
                       "or --image", err=True)
        elif bisect:
            for cell in failing_cells(results):
                found = bisect_cell(project, series, cell, jobs=jobs or 2, cluster=cluster, accel=accel,
                                    progress=lambda m: click.echo(m, err=True))
                click.echo(found.summary())
        next_step("read the FAIL lines' run directories (serial.log, screen.txt), fix, then test again")
        return 1
    next_step("patchkit report (the page), patchkit send-email --dry-run (what would be mailed)")
    return 0
