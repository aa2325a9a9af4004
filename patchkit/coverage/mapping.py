"""Where gPXE's code sat in the guest: the offsets from link addresses to the addresses QEMU logged.

gPXE runs its code at more than one place in a boot (decompressed into memory the BIOS
gave it at POST, then relocated near the top of RAM), so a run has one offset per place.
An offset is found by looking up runs of logged instructions (a translation block's
bytes) in the ELF's code: each run found once votes for ``logged - link``. An offset is
kept only when the bytes of the logged instructions in its window are the ELF's at
least ``MIN_MATCH`` of the time: that is the check that the mapping is right (a wrong
offset matches almost nothing). Instructions that match no kept offset are not gPXE's.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass

from patchkit.coverage.debuginfo import DebugInfo
from patchkit.errors import PatchkitError

MIN_RUN_BYTES = 12  # shorter runs of code occur too often in the ELF to vote
MIN_MATCH = 0.95
MIN_INSTRUCTIONS = 20


@dataclass(frozen=True)
class Placement:
    """gPXE's code at ``offset`` (guest address = link address + offset): ``matched`` of the ``logged``
    instructions in its window carry the ELF's bytes."""

    offset: int
    logged: int
    matched: int


def find_placements(trace: Mapping[int, bytes], debug: DebugInfo) -> list[Placement]:
    """The offsets at which the traced run executed the ELF's code, most instructions first."""
    votes = _votes(trace, debug)
    placements: list[Placement] = []
    taken: set[int] = set()
    for offset, _ in votes.most_common():
        low = debug.text_base + offset
        window = [a for a in trace if low <= a < low + len(debug.text) and a not in taken]
        matched = [a for a in window if _same(trace[a], debug, a - offset)]
        if len(matched) >= MIN_INSTRUCTIONS and len(matched) >= MIN_MATCH * len(window):
            placements.append(Placement(offset, len(window), len(matched)))
            taken.update(matched)
    if not placements:
        raise PatchkitError(f"the translation log holds no code of this ROM ({len(trace)} instructions logged, "
                            "none placed at one offset)",
                            hint="the ROM did not run, or it is not the ROM the ELF was linked for")
    return placements


def link_addresses(trace: Mapping[int, bytes], debug: DebugInfo, placements: list[Placement]) -> set[int]:
    """The link addresses of the logged instructions that carry the ELF's bytes at one of ``placements``."""
    found: set[int] = set()
    for p in placements:
        low = debug.text_base + p.offset
        for address, code in trace.items():
            if low <= address < low + len(debug.text) and _same(code, debug, address - p.offset):
                found.add(address - p.offset)
    return found


def _votes(trace: Mapping[int, bytes], debug: DebugInfo) -> Counter[int]:
    """Offsets voted for by runs of consecutive logged instructions found exactly once in the ELF's code."""
    votes: Counter[int] = Counter()
    addresses = sorted(trace)
    i = 0
    while i < len(addresses):
        start, code = addresses[i], bytearray(trace[addresses[i]])
        i += 1
        while i < len(addresses) and addresses[i] == start + len(code):
            code += trace[addresses[i]]
            i += 1
        if len(code) < MIN_RUN_BYTES:
            continue
        found = debug.text.find(code)
        if found >= 0 and debug.text.find(code, found + 1) < 0:
            votes[start - (debug.text_base + found)] += 1
    return votes


def _same(code: bytes, debug: DebugInfo, link: int) -> bool:
    at = link - debug.text_base
    return debug.text[at:at + len(code)] == code
