"""Shared by the guest tests: boot a run disk with SeaBIOS natively under TCG, return the serial log.

The guests power QEMU off themselves; patchkit.run's timeout kills and reaps QEMU
when one does not, so no QEMU outlives a test.
"""

from __future__ import annotations

import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from patchkit.guests.base import Guest
from patchkit.run import CommandTimeout, run


@dataclass
class Boot:
    """What one native boot produced."""

    log: str
    timed_out: bool
    seconds: float


def boot_native(disk: Path, timeout: float, *, blank_at: str | None = None, ide: bool = False,
                readonly: bool = False) -> Boot:
    """Boot ``disk`` with SeaBIOS (no option ROM), serial to a file.

    The disk is virtio-blk at 00:04.0, or on IDE with ``ide``; ``blank_at`` adds an
    empty virtio disk at that PCI address; ``readonly`` attaches the disk read-only.
    """
    if shutil.which("qemu-system-x86_64") is None:
        pytest.skip("qemu-system-x86_64 is not installed (apt-get install qemu-system-x86)")
    serial = disk.with_suffix(".serial.log")
    argv = [
        "qemu-system-x86_64", "-accel", "tcg", "-m", "256", "-machine", "pc,graphics=off",
        "-display", "none", "-monitor", "none", "-nic", "none", "-serial", f"file:{serial}", "-no-reboot",
        "-drive", f"if=none,id=d0,file={disk},format=raw" + (",readonly=on" if readonly else ""),
        "-device", "ide-hd,drive=d0,bus=ide.0,bootindex=0" if ide else "virtio-blk-pci,drive=d0,addr=04.0,bootindex=0",
    ]
    if blank_at is not None:
        blank = disk.with_suffix(".blank.img")
        with open(blank, "wb") as f:
            f.truncate(8 << 20)
        argv += ["-drive", f"if=none,id=d1,file={blank},format=raw",
                 "-device", f"virtio-blk-pci,drive=d1,addr={blank_at}"]
    started = time.monotonic()
    timed_out = False
    try:
        run(argv, timeout=timeout)  # a QEMU error (exit status != 0) raises CommandError
    except CommandTimeout:  # patchkit.run stopped and reaped QEMU
        timed_out = True
    seconds = time.monotonic() - started
    log = serial.read_text(errors="replace") if serial.exists() else ""
    return Boot(log, timed_out, seconds)


def passed(guest: Guest, boot: Boot, token: str) -> bool:
    """The marker check `patchkit test` makes: success marker seen, no failure marker."""
    return _seen(guest.success_marker(token), boot.log) and not any(_seen(m, boot.log) for m in guest.failure_markers)


def _seen(marker: str | re.Pattern[str], log: str) -> bool:
    return marker.search(log) is not None if isinstance(marker, re.Pattern) else marker in log


def freedos_imported() -> Path:
    """The imported FreeDOS files in the user's real cache (read only), or skip."""
    from conftest import REAL_STORE

    real = REAL_STORE.inputs / "freedos"
    if not (real / "KERNEL.SYS").is_file() or not (real / "COMMAND.COM").is_file():
        pytest.skip(f"FreeDOS not imported ({real} missing): run `patchkit guest import freedos --media PATH`")
    return real
