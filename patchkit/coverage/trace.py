"""QEMU's record of the guest code it ran: the translation log (``-d in_asm``).

Debian 12's QEMU 7.2 is built with TCG plugin support but ships no plugin (and no
plugin header to build one), so the trace is QEMU's own log: every translation block
is logged once when it is translated (again after a flush), with each instruction's
address and bytes. A block is translated when the CPU enters it, so the addresses
logged are the code that ran. The log is limited (``-dfilter``) to the top
``WINDOW_MIB`` of RAM, where gPXE runs its protected-mode code: measured on 128 and
512 MiB guests, the copy SeaBIOS's PMM gave it at POST sits 18 MiB below the top and
the relocated copy within the top 2 MiB. The BIOS, real-mode code, boot loaders and
most of an OS stay out of it (a Debian system's boot logs 1 MB instead of 24). Should
gPXE ever run below the window, the mapping finds no placement there and says so.
"""

from __future__ import annotations

import re
from pathlib import Path

TRACE_LOG = "translated.log"
WINDOW_MIB = 32
_LOW = 0x100000  # never below 1 MiB (real mode's memory)
_INSTRUCTION = re.compile(rb"^0x([0-9a-f]+):  ((?:[0-9a-f]{2} )+)", re.MULTILINE)


def trace_args(memory_mib: int) -> list[str]:
    """QEMU options that write the translation log to ``TRACE_LOG`` in QEMU's working directory."""
    top = memory_mib << 20
    low = max(_LOW, top - (WINDOW_MIB << 20))
    return ["-d", "in_asm", "-D", TRACE_LOG, "-dfilter", f"0x{low:x}..0x{top - 1:x}"]


def read_trace(path: Path) -> dict[int, bytes]:
    """Every logged instruction: guest address -> its bytes (a block translated twice counts once)."""
    return {int(m[1], 16): bytes.fromhex(m[2].decode()) for m in _INSTRUCTION.finditer(path.read_bytes())}
