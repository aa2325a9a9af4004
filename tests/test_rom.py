"""ROM checks on synthetic images crafted byte by byte (no gPXE needed)."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
from fixtures.optionrom import PCIR, fix_checksum, make_rom

from patchkit.errors import BuildError
from patchkit.rom import check_rom, ids_for_target


def write(tmp_path: Path, data: bytes | bytearray) -> Path:
    path = tmp_path / "test.rom"
    path.write_bytes(bytes(data))
    return path


def test_valid_rom_passes(tmp_path: Path) -> None:
    info = check_rom(write(tmp_path, make_rom()))
    assert (info.vendor, info.device, info.size, info.code_type, info.last_image) == (0x1AF4, 0x1001, 2048, 0, True)


def test_other_device_passes_when_asked_for(tmp_path: Path) -> None:
    info = check_rom(write(tmp_path, make_rom(device=0x1000)), vendor=0x1AF4, device=0x1000)
    assert info.device == 0x1000


def test_too_small(tmp_path: Path) -> None:
    with pytest.raises(BuildError, match="too small"):
        check_rom(write(tmp_path, b"\x55\xaa\x01"))


def test_bad_signature(tmp_path: Path) -> None:
    data = make_rom()
    data[0] = 0x00
    fix_checksum(data)
    with pytest.raises(BuildError, match="no option ROM signature"):
        check_rom(write(tmp_path, data))


def test_size_byte_disagrees_with_file(tmp_path: Path) -> None:
    data = make_rom(units=4)
    data[2] = 3
    fix_checksum(data)
    with pytest.raises(BuildError, match=r"size byte says 3 x 512 = 1536 bytes but the file has 2048"):
        check_rom(write(tmp_path, data))


def test_truncated_file(tmp_path: Path) -> None:
    with pytest.raises(BuildError, match="size byte"):
        check_rom(write(tmp_path, make_rom(units=4)[:1536]))


def test_bad_checksum(tmp_path: Path) -> None:
    data = make_rom()
    data[0x100] ^= 0x01
    with pytest.raises(BuildError, match="bad checksum"):
        check_rom(write(tmp_path, data))


def test_missing_pcir(tmp_path: Path) -> None:
    data = make_rom()
    data[PCIR : PCIR + 4] = b"PCIX"
    fix_checksum(data)
    with pytest.raises(BuildError, match="no PCI data structure"):
        check_rom(write(tmp_path, data))


def test_pcir_pointer_outside_image(tmp_path: Path) -> None:
    data = make_rom()
    struct.pack_into("<H", data, 0x18, 0xFFF0)
    fix_checksum(data)
    with pytest.raises(BuildError, match="no PCI data structure"):
        check_rom(write(tmp_path, data))


def test_wrong_device(tmp_path: Path) -> None:
    with pytest.raises(BuildError, match="is for PCI 1af4:1000, expected 1af4:1001"):
        check_rom(write(tmp_path, make_rom(device=0x1000)))


def test_wrong_vendor(tmp_path: Path) -> None:
    with pytest.raises(BuildError, match="is for PCI 8086:1001"):
        check_rom(write(tmp_path, make_rom(vendor=0x8086)))


def test_pcir_image_length_disagrees(tmp_path: Path) -> None:
    with pytest.raises(BuildError, match="image length of 2 x 512"):
        check_rom(write(tmp_path, make_rom(units=4, image_units=2)))


def test_code_type_not_x86(tmp_path: Path) -> None:
    with pytest.raises(BuildError, match="code type 3"):
        check_rom(write(tmp_path, make_rom(code_type=3)))


def test_ids_for_target() -> None:
    assert ids_for_target("bin/1af41001.rom") == (0x1AF4, 0x1001)
    assert ids_for_target("bin/virtio-net.rom") is None
