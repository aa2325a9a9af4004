"""Driving gPXE fast: keys are typed at a quick pace and the echo is checked; a command line that comes
out wrong (a key lost or garbled on the way) is cleared and typed again at the careful pace.

The garbled key is made at patchkit's own edge (the first command goes out with one character
changed, as a lost shift release would change it); QEMU, SeaBIOS and the ROM are real.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from fixtures.guests import guest_or_skip, transcript

from patchkit.boot import session
from patchkit.boot.run import boot_guest
from patchkit.qemu.machine import KEY_HOLD_MS, Machine
from patchkit.series.model import DEFAULT_ROOT_PATH
from patchkit.store import Store

pytestmark = pytest.mark.boot

COMMAND = f"sanboot {DEFAULT_ROOT_PATH}"
GARBLED = COMMAND[:11] + "T" + COMMAND[12:]  # "sanboot virTio_blk:...", as a stuck shift types it


@pytest.fixture
def garbled_first_line(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Machine.type_text sends the first text with one character changed; returns what was asked for."""
    asked: list[str] = []
    real = Machine.type_text

    async def type_text(self: Machine, text: str, hold_ms: int = KEY_HOLD_MS) -> None:
        asked.append(text)
        await real(self, GARBLED if len(asked) == 1 else text, hold_ms)

    monkeypatch.setattr(Machine, "type_text", type_text)
    return asked


def test_a_garbled_command_line_is_cleared_and_typed_again(inputs_cache: Path, store: Store, series_rom: Path,
                                                           garbled_first_line: list[str]) -> None:
    outcome = boot_guest(guest_or_skip("freedos", store), rom=series_rom)
    assert outcome.passed, f"{outcome.reason} (see {outcome.run_dir})"
    assert garbled_first_line == [COMMAND, COMMAND]
    assert outcome.timings["gpxe_prompt"] < outcome.timings["retyped"] < outcome.timings["sanboot"]
    text = transcript(outcome)
    assert text.index(f"gPXE> {GARBLED[:12]}") < text.rindex(COMMAND)


def test_without_clearing_the_line_the_garbled_command_never_echoes(inputs_cache: Path, store: Store, series_rom: Path,
                                                                    garbled_first_line: list[str],
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(session, "CLEAR_LINE", ())
    monkeypatch.setattr(session, "STEP_TIMEOUT", 5.0)
    outcome = boot_guest(guest_or_skip("freedos", store), rom=series_rom)
    assert not outcome.passed
    assert f"while waiting for gPXE to echo `{COMMAND}`" in outcome.reason
    assert "boot_sector" not in outcome.timings
