"""`patchkit test --rom FILE` checks the file like a built ROM before booting anything."""

from __future__ import annotations

from pathlib import Path

import pytest
from fixtures.cli import run_patchkit
from fixtures.optionrom import make_rom

from patchkit.rom import check_rom_for


def bad_checksum() -> bytes:
    """A valid ROM but for its checksum byte."""
    data = make_rom()
    data[-1] ^= 0x01
    return bytes(data)


@pytest.mark.parametrize(("content", "said"), [
    (b"#!/bin/sh\necho not a rom\n" * 40, "no option ROM signature"),
    (bad_checksum(), "bad checksum"),
    (bytes(make_rom(vendor=0x8086, device=0x100E)), "is for PCI 8086:100e, expected 1af4:1001 or 1af4:1000"),
])
def test_a_rom_given_by_path_is_checked_before_booting(tmp_path: Path, inputs_cache: Path, content: bytes,
                                                       said: str) -> None:
    rom = tmp_path / "given.rom"
    rom.write_bytes(content)
    done = run_patchkit("test", "--rom", rom, "--guest", "probe", cache=inputs_cache)
    assert done.returncode == 1, done.stdout
    assert f"ROM {rom}" in done.stdout and said in done.stdout
    assert "pass a ROM built for 1af4:1001 or 1af4:1000" in done.stdout and "rebuild it" not in done.stdout
    assert not (inputs_cache / "runs").exists()  # nothing was booted


def test_either_of_the_pins_roms_is_accepted(tmp_path: Path) -> None:
    rom = tmp_path / "nic.rom"
    rom.write_bytes(make_rom(device=0x1000))
    assert check_rom_for(rom, [(0x1AF4, 0x1001), (0x1AF4, 0x1000)], hint="x").device == 0x1000
