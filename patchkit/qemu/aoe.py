"""An ATA over Ethernet target for boot tests: vblade serving a disk on a private tap device.

Each target lives in a network namespace of its own, made for the run and deleted
after it (with its tap device), so nothing reaches the host's networks. QEMU joins
the namespace (see cmdline.Nic) and its NIC is the tap's other end; gPXE then
reaches the disk as `aoe:e<shelf>.<slot>`. Needs root (namespaces, tap devices)
and Debian's vblade.

A target's owner holds a lock on ``/run/patchkit/aoe/<netns>.lock`` while the namespace
exists. vblade and QEMU die with patchkit (see patchkit.run.spawned), but a SIGKILLed
patchkit cannot delete its namespace: the next target made finds the lock free, kills
whatever still runs in that namespace and deletes it.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import re
import secrets
import shutil
import signal
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from patchkit.errors import BootError
from patchkit.run import CommandError, run, spawned

TAP = "aoe0"
VBLADE_LOG = "vblade.log"
LOCK_DIR = Path("/run/patchkit/aoe")  # <netns>.lock, held by the target's owner
NETNS_TOKEN_BYTES = 4
NETNS_NAME = re.compile(rf"patchkit-[0-9a-f]{{{2 * NETNS_TOKEN_BYTES}}}")  # a target's namespace

log = logging.getLogger("patchkit.aoe")


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
def _owned(netns: str) -> Iterator[None]:
    """Hold ``netns``'s owner lock for the block (published already locked, so no cleaner takes it first)."""
    LOCK_DIR.mkdir(parents=True, exist_ok=True)
    final = LOCK_DIR / f"{netns}.lock"
    fd, tmp = tempfile.mkstemp(dir=LOCK_DIR, prefix=".new-")
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.replace(tmp, final)
        try:
            yield
        finally:
            final.unlink(missing_ok=True)
    finally:
        Path(tmp).unlink(missing_ok=True)
        os.close(fd)


def clean_stale_targets() -> list[str]:
    """Delete the namespaces (and kill what runs in them) of targets whose owner is gone; their names.

    A namespace named as ours without a lock file is stale too: an owner publishes its lock
    before it adds the namespace and removes it only after the namespace is deleted (runs
    from before locks existed left such namespaces behind).
    """
    cleaned = []
    for netns in _our_namespaces():
        if not (LOCK_DIR / f"{netns}.lock").exists():
            _remove_namespace(netns)
            cleaned.append(netns)
    for lock in sorted(LOCK_DIR.glob("patchkit-*.lock")) if LOCK_DIR.is_dir() else []:
        try:
            fd = os.open(lock, os.O_RDWR)
        except FileNotFoundError:
            continue  # its owner just finished
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # its owner is alive
            if os.fstat(fd).st_nlink == 0:
                continue  # cleaned meanwhile by another run
            netns = lock.name.removesuffix(".lock")
            _remove_namespace(netns)
            lock.unlink(missing_ok=True)
            cleaned.append(netns)
        finally:
            os.close(fd)
    return cleaned


def _our_namespaces() -> list[str]:
    """The network namespaces named as patchkit names its targets'."""
    listing = run(["ip", "netns", "list"], check=False).stdout.decode(errors="replace")
    return [name for name in (line.split()[0] for line in listing.splitlines() if line.strip())
            if NETNS_NAME.fullmatch(name)]


def _remove_namespace(netns: str) -> None:
    """Kill what runs in ``netns``, then delete it."""
    for pid in run(["ip", "netns", "pids", netns], check=False).stdout.split():
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(pid), signal.SIGKILL)
    with contextlib.suppress(CommandError):
        run(["ip", "netns", "delete", netns])


@contextlib.contextmanager
def aoe_target(disk: Path, run_dir: Path, shelf: int = 0, slot: int = 0) -> Iterator[AoeTarget]:
    """Serve ``disk`` read-write as AoE ``shelf``.``slot`` until the block ends; vblade logs to run_dir.

    First removes what targets of killed patchkit runs left (clean_stale_targets).
    """
    if (reason := aoe_unavailable()) is not None:
        raise BootError(f"cannot make an AoE target: {reason}",
                        hint="AoE is the only boot that needs root: run it as root, from a checkout root "
                             "set up with `bash ci/setup.sh` (root has its own cache)")
    for netns in clean_stale_targets():
        log.warning("removed network namespace %s left by a killed patchkit run", netns)
    netns = f"patchkit-{secrets.token_hex(NETNS_TOKEN_BYTES)}"
    with _owned(netns), _namespace(netns):
        argv = ["ip", "netns", "exec", netns, "vblade", str(shelf), str(slot), TAP, str(disk)]
        with spawned(argv, stderr_file=run_dir / VBLADE_LOG, cwd=run_dir):
            yield AoeTarget(netns, TAP, shelf, slot)


@contextlib.contextmanager
def _namespace(netns: str) -> Iterator[None]:
    """A network namespace with a tap device ``TAP`` (up), deleted after the block."""
    run(["ip", "netns", "add", netns])
    try:
        for command in (["link", "set", "lo", "up"], ["tuntap", "add", "dev", TAP, "mode", "tap"],
                        ["link", "set", TAP, "up"]):
            run(["ip", "-n", netns, *command])
        yield
    finally:
        with contextlib.suppress(CommandError):
            run(["ip", "netns", "delete", netns])
