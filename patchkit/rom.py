"""Checks that a file is a well-formed PCI option ROM for a given device.

What is checked (PCI Firmware spec, legacy x86 images): the 0x55AA signature, the
size byte (512-byte units) against the file size, the checksum (all bytes of the
image sum to 0 mod 256), and the PCI data structure ("PCIR", found through the word
at 0x18): vendor, device, image length and code type (0 = x86 PC-AT).
"""

from __future__ import annotations

import re
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from patchkit.errors import BuildError

UNIT = 512
CODE_TYPE_X86 = 0
_PCIR_MIN_LENGTH = 0x18
_ID_TARGET = re.compile(r"(?:^|/)([0-9a-f]{4})([0-9a-f]{4})\.rom$")


@dataclass(frozen=True)
class RomInfo:
    """What the header of a checked ROM says."""

    path: Path
    size: int  # bytes, == size byte * 512
    vendor: int
    device: int
    code_type: int
    last_image: bool


def ids_for_target(target: str) -> tuple[int, int] | None:
    """The PCI vendor and device a ``bin/VVVVDDDD.rom`` target is built for, else None."""
    m = _ID_TARGET.search(target)
    if m is None:
        return None
    return int(m.group(1), 16), int(m.group(2), 16)


REBUILD = "rebuild it (`patchkit build`); if it persists the build settings or the tree are broken"


def check_rom(path: Path, vendor: int = 0x1AF4, device: int = 0x1001) -> RomInfo:
    """Check ``path`` is an option ROM for PCI ``vendor``:``device``; raise BuildError naming the first failure."""
    return check_rom_for(path, [(vendor, device)], REBUILD)


def check_rom_for(path: Path, ids: Sequence[tuple[int, int]], hint: str) -> RomInfo:
    """Check ``path`` is an option ROM for one of the PCI ``ids``; BuildError naming the first failure and ``hint``."""
    data = path.read_bytes()
    where = f"ROM {path}"
    rebuild = hint
    if len(data) < UNIT:
        raise BuildError(f"{where} is {len(data)} bytes: too small for an option ROM (at least {UNIT})", hint=rebuild)
    if data[0:2] != b"\x55\xaa":
        raise BuildError(f"{where} has no option ROM signature (expected 55 AA, found {data[0:2].hex(' ')})",
                         hint=rebuild)
    size = data[2] * UNIT
    if size != len(data):
        raise BuildError(
            f"{where}: the size byte says {data[2]} x 512 = {size} bytes but the file has {len(data)}", hint=rebuild
        )
    checksum = sum(data) % 256
    if checksum != 0:
        raise BuildError(f"{where}: bad checksum (the bytes sum to {checksum:#04x} mod 256, expected 0)", hint=rebuild)
    pcir = struct.unpack_from("<H", data, 0x18)[0]
    if pcir + _PCIR_MIN_LENGTH > size or data[pcir : pcir + 4] != b"PCIR":
        raise BuildError(f"{where}: no PCI data structure (\"PCIR\") at offset {pcir:#x} given by the word at 0x18",
                         hint=rebuild)
    found_vendor, found_device = struct.unpack_from("<HH", data, pcir + 4)
    if (found_vendor, found_device) not in ids:
        expected = " or ".join(f"{v:04x}:{d:04x}" for v, d in ids)
        raise BuildError(
            f"{where} is for PCI {found_vendor:04x}:{found_device:04x}, expected {expected}",
            hint="build the target named after the device (bin/VVVVDDDD.rom)" if hint == REBUILD else hint,
        )
    image_units = struct.unpack_from("<H", data, pcir + 0x10)[0]
    if image_units * UNIT != size:
        raise BuildError(
            f"{where}: the PCI data structure gives an image length of {image_units} x 512 bytes, the header {size}",
            hint=rebuild,
        )
    code_type = data[pcir + 0x14]
    if code_type != CODE_TYPE_X86:
        raise BuildError(f"{where}: code type {code_type} is not x86 PC-AT (0)", hint=rebuild)
    return RomInfo(
        path=path, size=size, vendor=found_vendor, device=found_device, code_type=code_type,
        last_image=bool(data[pcir + 0x15] & 0x80),
    )
