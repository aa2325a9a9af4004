"""QEMU's record of the guest code it ran: the translation log (``-d in_asm``).

Debian 12's QEMU 7.2 is built with TCG plugin support but ships no plugin (and no
plugin header to build one), so the trace is QEMU's own log: every translation block
is logged once when it is translated (again after a flush), with each instruction's
address and bytes. A block is translated when the CPU enters it, so the addresses
logged are the code that ran. The log is limited (``-dfilter``) to guest-physical
memory above 1 MiB and below the top of RAM, where gPXE runs its protected-mode code
(decompressed into high memory at POST, relocated near the top of RAM at boot): the
BIOS, real-mode code and an OS kernel's high virtual addresses stay out of it.
"""

from __future__ import annotations

import re
from pathlib import Path

TRACE_LOG = "translated.log"
_LOW = 0x100000
_INSTRUCTION = re.compile(rb"^0x([0-9a-f]+):  ((?:[0-9a-f]{2} )+)", re.MULTILINE)


def trace_args(memory_mib: int) -> list[str]:
    """QEMU options that write the translation log to ``TRACE_LOG`` in QEMU's working directory."""
    top = memory_mib * 1024 * 1024 - 1
    return ["-d", "in_asm", "-D", TRACE_LOG, "-dfilter", f"0x{_LOW:x}..0x{top:x}"]


def read_trace(path: Path) -> dict[int, bytes]:
    """Every logged instruction: guest address -> its bytes (a block translated twice counts once)."""
    return {int(m[1], 16): bytes.fromhex(m[2].decode()) for m in _INSTRUCTION.finditer(path.read_bytes())}
