"""A revision whose ROM is byte-identical to a tested one needs no new boots: the earlier passes carry over."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from patchkit import store as stored
from patchkit.guests import get_guest
from patchkit.matrix import Cell
from patchkit.series.model import Config
from patchkit.store import ResultKey, Store
from patchkit.validate import Subject, carry_over

KEY = ResultKey("demo", "r1" * 32, "a" * 64, "freedos", "i" * 64, "7.2.22", "tcg", "pc")


def carried(store: Store, earlier: stored.TestResult, rom: str = "a" * 64,
            qemu: str = "7.2.22") -> list[stored.TestResult]:
    cell = Cell(Config(name="pc", guests=("freedos",)), get_guest("freedos", store))
    subject = Subject("demo", "r2" * 32, 2, None, rom, 1024)
    with store.results() as db:
        db.record(earlier)
        return list(carry_over(db, [cell], {id(cell): subject}, {id(cell): "i" * 64}, qemu).values())


def test_a_pass_with_the_same_rom_image_configuration_and_qemu_carries_over(store: Store) -> None:
    earlier = stored.TestResult(key=KEY, passed=True, reason="marker seen after 2.0 s", run_dir="/runs/1", version=1,
                         created=1_700_000_000)
    [result] = carried(store, earlier)
    assert result.key == replace(KEY, revision="r2" * 32) and result.passed and result.version == 2
    assert result.reason.startswith("same ROM as v1, tested 2023-11-") and "(marker seen after 2.0 s)" in result.reason
    assert result.run_dir == "/runs/1"


def test_anything_else_booted_differently_boots_again(tmp_path: Path) -> None:
    earlier = stored.TestResult(key=KEY, passed=True, reason="ok", run_dir="/runs/1", version=1)
    stores = (Store(tmp_path / str(n)) for n in range(5))  # each check on a database of its own
    assert carried(next(stores), earlier, rom="b" * 64) == []  # another ROM
    assert carried(next(stores), earlier, qemu="8.0.0") == []  # another QEMU
    assert carried(next(stores), replace(earlier, key=replace(KEY, image_sha256="j" * 64))) == []  # another image
    assert carried(next(stores), replace(earlier, passed=False)) == []  # a failure is looked at again
    assert carried(next(stores), replace(earlier, key=replace(KEY, revision="rom-" + "a" * 12))) == []  # --rom
