"""Flakes: a cell that both failed and passed on the same ROM.

The rule (README, "When a cell fails"): `patchkit test` boots a failing cell again, up to
``reruns`` times (default 2), until a boot passes. Every boot is recorded with its own run
directory. A cell's verdict is taken over every recorded run with the same key as its
newest one (series, revision, ROM, guest image, QEMU, accelerator, configuration):
all passed = pass, all failed = FAIL (confident once it failed 1 + reruns times in a row),
both = FLAKY, never pass or FAIL. send-email refuses a FLAKY cell unless --force --reason.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from patchkit.store import TestResult

RERUNS = 2  # boots after a failing one, until one passes

Cell = tuple[str, str]  # (configuration, guest)


@dataclass(frozen=True)
class Flake:
    """A cell's runs on one ROM (same key as its newest run), oldest first, when they disagree."""

    cell: Cell
    history: tuple[TestResult, ...]

    @property
    def passes(self) -> int:
        return sum(r.passed for r in self.history)

    @property
    def fails(self) -> int:
        return len(self.history) - self.passes

    def describe(self) -> str:
        """One line: the counts, the ROM and the verdicts in order ("FLAKY: 1 pass, 2 FAIL on ROM ...: FAIL pass")."""
        order = " ".join("pass" if r.passed else "FAIL" for r in self.history)
        rom = self.history[-1].key.rom_sha256[:12] or "-"
        return f"FLAKY: {self.passes} pass, {self.fails} FAIL on ROM {rom} ({order})"


def flakes(results: Iterable[TestResult]) -> dict[Cell, Flake]:
    """The flaky cells among ``results`` (one revision's, any order)."""
    by_cell: dict[Cell, list[TestResult]] = {}
    for r in sorted(results, key=lambda r: r.created):
        by_cell.setdefault((r.key.config, r.key.guest), []).append(r)
    found = {}
    for cell, runs in by_cell.items():
        same = tuple(r for r in runs if r.key == runs[-1].key)
        if any(r.passed for r in same) and not all(r.passed for r in same):
            found[cell] = Flake(cell, same)
    return found


def verdict(result: TestResult, flake: Flake | None) -> str:
    """The word a table shows for a cell: pass, FAIL or FLAKY."""
    if flake is not None:
        return "FLAKY"
    return "pass" if result.passed else "FAIL"
