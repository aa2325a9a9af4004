"""Faults a configuration puts on the guest disk through QEMU: an injected error and a held request.

The series model's configurations carry them and the boot layer (layout, session) and the guests
(a probe declaring its own hold) act on them: they live here, below all three.
"""

from __future__ import annotations

from dataclasses import dataclass

HOLD_VIAS = ("throttle", "blkdebug")
HOLD_TAG = "patchkit-hold"  # the blkdebug breakpoint of a held request


@dataclass(frozen=True)
class InjectError:
    """A device fault through QEMU's blkdebug driver: ``event`` requests (touching ``sector``,
    when given) fail with ``errno``; ``once``: only the first."""

    event: str = "read_aio"
    errno: int = 5  # EIO
    sector: int | None = None
    once: bool = False

    def describe(self) -> str:
        where = f" at sector {self.sector}" if self.sector is not None else ""
        return f"{self.event} fails with errno {self.errno}{where}{' once' if self.once else ''}"


@dataclass(frozen=True)
class Hold:
    """A request held back: when the guest prints ``at`` the harness holds the disk's next request
    and presses ``key``; when it prints ``release`` it lets the request go and presses ``key`` again.
    The guest waits for each key, so its request never races the hold.

    ``via`` "throttle" limits the drive's reads to a byte per second (a request after a one-sector
    primer waits; a device reset drains it at once); "blkdebug" breaks on the next ``event``
    (exact, but a device reset while it is held deadlocks QEMU 7.2: the drain waits for it and
    the monitor that would resume it stops answering).
    """

    at: str
    release: str
    via: str = "throttle"
    event: str = "read_aio"  # blkdebug only
    key: str = "spc"  # a QEMU key code

    def monitor_commands(self, drive: str) -> tuple[str, str, tuple[str, ...]]:
        """Human-monitor commands on ``drive``: to hold, to release, and to release at the run's end."""
        if self.via == "blkdebug":
            resume = f'qemu-io {drive} "resume {HOLD_TAG}"'
            return f'qemu-io {drive} "break {self.event} {HOLD_TAG}"', resume, (
                f'qemu-io {drive} "remove_break {HOLD_TAG}"', resume)
        lift = f"block_set_io_throttle {drive} 0 0 0 0 0 0"
        return f"block_set_io_throttle {drive} 0 1 0 0 0 0", lift, (lift,)

    def describe(self) -> str:
        what = f"the first {self.event}" if self.via == "blkdebug" else "reads throttled"
        return f"{what} after \"{self.at}\" held until \"{self.release}\" ({self.via})"
