"""What changed in the logs: a failing run's serial and screen text against the last passing run of the
same cell (another revision's, or a bisection's parent step), volatile parts normalised.

Normalised away: terminal escapes and carriage returns, hexadecimal numbers and long hex words
(addresses, run tokens, hashes), numbers with a fraction (times) and numbers of four digits or
more (tick counts, throughputs); blank lines are dropped. The texts are then aligned line by
line as diff aligns them, and the first line of the failing run that has no equal (or nearly
equal: a serial glitch) in the passing one is the divergence shown in the terminal and the
HTML report.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from difflib import SequenceMatcher
from itertools import zip_longest
from pathlib import Path

from patchkit.progress import Progress
from patchkit.store import TestResult

NEAR = 0.9  # lines at least this similar (difflib's ratio) count as the same line
TEXTS = ("serial.log", "screen.txt")  # compared in this order: serial first, in the order things happened
_VOLATILE = [
    (re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b[()][A-Z0-9]|\r"), ""),
    (re.compile(r"\b0x[0-9A-Fa-f]+\b"), "0x#"),
    (re.compile(r"\b[0-9a-f]*[a-f][0-9a-f]*\d[0-9a-f]*\b|\b[0-9a-f]*\d[0-9a-f]*[a-f][0-9a-f]*\b"), "#"),
    (re.compile(r"\b\d+\.\d+\b"), "#.#"),
    (re.compile(r"\b\d{4,}\b"), "#"),
]


@dataclass(frozen=True)
class Divergence:
    """The first line (1-based, after normalisation) where ``text`` of a failing run differs from a passing one."""

    text: str
    line: int
    passing: str  # "" when the passing run's text ended there
    failing: str

    def describe(self) -> str:
        return (f"{self.text} line {self.line}: passing run {self.passing!r}, this run "
                f"{self.failing if self.failing else '(ended)'!r}")


def normalise(text: str) -> list[str]:
    """``text``'s non-blank lines with the volatile parts replaced."""
    lines = []
    for line in text.splitlines():
        for pattern, replacement in _VOLATILE:
            line = pattern.sub(replacement, line)
        if line.strip():
            lines.append(line.rstrip())
    return lines


def first_divergence(passing: list[str], failing: list[str], text: str) -> Divergence | None:
    """Where two normalised texts first differ (None: the same), the lines aligned as diff aligns them; a line
    that differs by a character or two (a serial glitch, a redrawn screen) is not a difference."""
    for tag, i1, i2, j1, j2 in SequenceMatcher(None, passing, failing, autojunk=False).get_opcodes():
        if tag == "equal":
            continue
        for k, (old, new) in enumerate(zip_longest(passing[i1:i2], failing[j1:j2], fillvalue="")):
            if old and new and SequenceMatcher(None, old, new).ratio() >= NEAR:
                continue
            return Divergence(text, j1 + k + 1, old, new)
    return None


def compare_runs(passing: Path, failing: Path) -> list[Divergence]:
    """The first divergence of each of TEXTS that both run directories hold."""
    found = []
    for name in TEXTS:
        old, new = passing / name, failing / name
        if old.is_file() and new.is_file():
            divergence = first_divergence(normalise(old.read_text(errors="replace")),
                                          normalise(new.read_text(errors="replace")), name)
            if divergence is not None:
                found.append(divergence)
    return found


def last_pass(history: Iterable[TestResult], failed: TestResult) -> TestResult | None:
    """The newest passing run of ``failed``'s cell before it (any revision of the series), if any."""
    earlier = [r for r in history if r.passed and r.created < failed.created and r.run_dir
               and (r.key.config, r.key.guest) == (failed.key.config, failed.key.guest)]
    return max(earlier, key=lambda r: r.created, default=None)


def what_changed(history: Sequence[TestResult], results: Sequence[TestResult], progress: Progress) -> None:
    """For each cell of ``results`` that failed every boot: its logs' first divergences from the last pass."""
    passed = {(r.key.config, r.key.guest) for r in results if r.passed}
    for failed in {(r.key.config, r.key.guest): r for r in results if not r.passed}.values():
        if (failed.key.config, failed.key.guest) in passed:
            continue
        before = last_pass(history, failed)
        if before is None:
            continue
        found = compare_runs(Path(before.run_dir), Path(failed.run_dir))
        cell = f"{failed.key.config}/{failed.key.guest}"
        progress(f"{cell}: what changed since the last pass ({before.run_dir}):"
                 + ("".join(f"\n  {d.describe()}" for d in found) or " no difference in the logs"))
