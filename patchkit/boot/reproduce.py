"""reproduce.sh: a run directory's boot again by hand, without patchkit.

Written before QEMU starts, in every run directory: the run's exact QEMU command line,
with the human monitor instead of patchkit's QMP socket, serial (and the monitor,
Ctrl-A c) on the terminal, and its disks as throwaway qcow2 overlays in a temporary
directory. The guest disk's overlay sits on ``reproduce-disk.qcow2``, the run disk as
it was when the boot started (the run's token in it) as an overlay of the cached base
image; so neither the cached images nor the run's own files are ever written.
"""

from __future__ import annotations

import os
import shlex
import stat
import tempfile
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from patchkit.qemu.cmdline import Drive, MachineSpec, qemu_argv
from patchkit.run import run
from patchkit.store import atomic_write, data_extents

REPRODUCER = "reproduce.sh"
START_DISK = "reproduce-disk.qcow2"
_CHUNK = 64 << 10  # qcow2's default cluster size: the overlay's unit of difference


def start_overlay(base: Path, disk: Path, disk_format: str, out: Path) -> None:
    """``out``: a qcow2 overlay of ``base`` with the content of the run disk ``disk`` (before the boot).

    A qcow2 run disk already is an overlay of the cached image: it is copied. A raw one (a copy
    of the base image plus the run's token) is compared with the base over its data extents,
    and only the 64 KiB chunks that differ are written into the overlay.
    """
    if disk_format == "qcow2":
        run(["cp", "--sparse=always", disk, out])
        return
    run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "raw", "-b", base, out])
    with tempfile.TemporaryDirectory(prefix="patchkit-reproduce-") as tmp:
        commands: list[str] = []
        with open(disk, "rb") as new, open(base, "rb") as old:
            for start, length in data_extents(new.fileno()):
                for offset in range(start - start % _CHUNK, start + length, _CHUNK):
                    chunk = os.pread(new.fileno(), _CHUNK, offset)
                    if chunk != os.pread(old.fileno(), _CHUNK, offset):
                        part = Path(tmp) / f"{offset}.bin"
                        part.write_bytes(chunk)
                        commands += ["-c", f"write -q -s {part} {offset} {len(chunk)}"]
        if commands:
            run(["qemu-io", "-f", "qcow2", *commands, out])


def write_reproducer(run_dir: Path, spec: MachineSpec, guest_disk: Path, floppy: Path | None,
                     typed: Sequence[str], why_not: str | None = None) -> Path:
    """Write ``run_dir/reproduce.sh`` for a boot of ``spec`` whose guest disk is ``guest_disk`` (its start
    already in START_DISK), ``floppy`` the cached image of its A: (if any), ``typed`` what to type at
    gPXE's prompt. ``why_not``: this boot cannot run by hand (the script says why and exits 2)."""
    path = run_dir / REPRODUCER
    head = ["#!/bin/sh", f"# The boot of {run_dir.name} again, by hand and without patchkit."]
    if why_not is not None:
        body = [*head, f"echo 'not reproducible by hand: {why_not}' >&2", "exit 2"]
        atomic_write(path, "\n".join(body) + "\n")
        path.chmod(path.stat().st_mode | stat.S_IXUSR)
        return path
    prepare: list[str] = []
    drives: list[Drive] = []
    for n, drive in enumerate(spec.drives):
        local = Path(f"disk{n}.qcow2")
        if drive.path == guest_disk:
            prepare.append(f'qemu-img create -q -f qcow2 -F qcow2 -b "$run/{START_DISK}" {local}')
        elif drive.blank:
            local = Path(f"blank{n}.img")
            prepare.append(f"truncate -s {drive.path.stat().st_size} {local}")
        elif floppy is not None:
            prepare.append(f"qemu-img create -q -f qcow2 -F raw -b {shlex.quote(str(floppy))} {local}")
        drives.append(replace(drive, path=local, format="raw" if drive.blank else "qcow2"))
    argv = qemu_argv(replace(spec, drives=tuple(drives), trace=False), monitor_fd=None)
    steps = ("at \"Press Ctrl-B\" press Ctrl-B, then type: " + "; ".join(typed)) if typed else "nothing to type"
    lines = [
        *head,
        "# Serial and QEMU's monitor on this terminal: Ctrl-A c switches between them, Ctrl-A x quits.",
        f"# gPXE: {steps}",
        "# The disks are qcow2 overlays in a temporary directory, removed at the end: the cached images",
        f"# and {START_DISK} (the guest disk as the run started) are only read.",
        "set -eu",
        'run=$(cd "$(dirname "$0")" && pwd)',
        'work=$(mktemp -d "${TMPDIR:-/tmp}/patchkit-reproduce.XXXXXX")',
        "trap 'rm -rf \"$work\"' EXIT",
        'cd "$work"',
        *prepare,
        f"echo {shlex.quote('gPXE: ' + steps + ' (Ctrl-A x quits)')} >&2",
        " \\\n  ".join(_option_lines(argv)),
    ]
    atomic_write(path, "\n".join(lines) + "\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


def _option_lines(argv: Sequence[str]) -> list[str]:
    """``argv`` quoted, an option and its value on one line."""
    lines: list[str] = []
    for arg in argv:
        if lines and not arg.startswith("-") and lines[-1].startswith("-") and " " not in lines[-1]:
            lines[-1] += " " + shlex.quote(arg)
        else:
            lines.append(shlex.quote(arg))
    return lines
