"""An ATA over Ethernet target for boot tests: vblade serving a disk on a private tap device.

Each target lives in a network namespace of its own, made for the run and deleted
after it (with its tap device), so nothing reaches the host's networks. QEMU joins
the namespace (see cmdline.Nic) and its NIC is the tap's other end; gPXE then
reaches the disk as `aoe:e<shelf>.<slot>`. Needs root (namespaces, tap devices)
and Debian's vblade.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from patchkit.errors import BootError
from patchkit.run import CommandError, run, spawned

TAP = "aoe0"
VBLADE_LOG = "vblade.log"


@dataclass(frozen=True)
class AoeTarget:
    """A disk exported as AoE shelf.slot on ``tap`` inside network namespace ``netns``."""

    netns: str
    tap: str
    shelf: int
    slot: int

    @property
    def root_path(self) -> str:
        """gPXE's root path for this disk."""
        return f"aoe:e{self.shelf}.{self.slot}"


def aoe_unavailable() -> str | None:
    """Why AoE targets cannot be made here (and what provides them), or None when they can."""
    if os.geteuid() != 0:
        return "AoE targets need root (a network namespace and a tap device per run)"
    for program, package in (("vblade", "vblade"), ("ip", "iproute2")):
        if shutil.which(program) is None:
            return f"{program} is not installed: `apt-get install {package}` (ci/setup.sh does)"
    if not Path("/dev/net/tun").exists():
        return "/dev/net/tun is missing: no tap devices on this machine"
    return None


@contextlib.contextmanager
def aoe_target(disk: Path, run_dir: Path, shelf: int = 0, slot: int = 0) -> Iterator[AoeTarget]:
    """Serve ``disk`` read-write as AoE ``shelf``.``slot`` until the block ends; vblade logs to run_dir."""
    if (reason := aoe_unavailable()) is not None:
        raise BootError(f"cannot make an AoE target: {reason}")
    netns = f"patchkit-{secrets.token_hex(4)}"
    run(["ip", "netns", "add", netns])
    try:
        for command in (["link", "set", "lo", "up"], ["tuntap", "add", "dev", TAP, "mode", "tap"],
                        ["link", "set", TAP, "up"]):
            run(["ip", "-n", netns, *command])
        argv = ["ip", "netns", "exec", netns, "vblade", str(shelf), str(slot), TAP, str(disk)]
        with spawned(argv, stderr_file=run_dir / VBLADE_LOG, cwd=run_dir):
            yield AoeTarget(netns, TAP, shelf, slot)
    finally:
        with contextlib.suppress(CommandError):
            run(["ip", "netns", "delete", netns])
