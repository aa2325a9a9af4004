"""A machine's serial console: raw log, rendered screen, and pattern waits.

Markers are matched as substrings of the serial stream with its terminal escape
sequences taken out (SeaBIOS's screen mirror sprinkles cursor moves into text, even
mid-word), one character per byte. A cursor move back along the current line drops
the characters it moves over from that text, as the screen overwrites them: the
mirror re-sends a character that way ("image (0\\e[23;69H0x2e85"). serial.log keeps the raw bytes. The screen is
rendered with pyte (80x25) for people; when the guest clears it, the rendered
screen is kept first.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Literal

import pyte

COLUMNS, LINES = 80, 25

# ESC [ params intermediates final | ESC ( or ) charset | ESC + one character (e.g. ESC c).
_ESCAPE = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|[()][0-9A-Za-z]|[0-9A-Za-z=<>@\\\]^_`|~])")
# ESC [ row ; column H: move the cursor (1-based; a missing number is 1).
_CURSOR_POSITION = re.compile(r"\x1b\[(\d*)(?:;(\d*))?[Hf]")
# An escape sequence cut off at the end of a chunk.
_ESCAPE_START = re.compile(r"\x1b(?:\[[0-?]*[ -/]*|[()])?\Z")

Outcome = Literal["match", "timeout", "stall", "eof", "aborted"]
Pattern = str | re.Pattern[str]  # a substring, or a regular expression (a user's --expect / --fail)


@dataclass(frozen=True)
class Wait:
    """How a wait ended: the pattern that matched (and where its match ends), or why none did."""

    outcome: Outcome
    pattern: Pattern | None = None
    end: int = 0  # offset just after the match in Console.text
    reason: str = ""

    @property
    def matched(self) -> bool:
        return self.outcome == "match"


class _Screen(pyte.Screen):
    """A pyte screen that keeps a copy of its text before every full clear."""

    def __init__(self, columns: int, lines: int) -> None:
        self.snapshots: list[str] = []
        super().__init__(columns, lines)

    def text(self) -> str:
        return "\n".join(line.rstrip() for line in self.display).rstrip("\n")

    def _keep(self) -> None:
        text = self.text()
        if text.strip() and (not self.snapshots or self.snapshots[-1] != text):
            self.snapshots.append(text)

    def erase_in_display(self, how: int = 0, *args: object, **kwargs: object) -> None:
        # ESC[2J / ESC[3J clear everything; ESC[H ESC[J clears from the top-left corner.
        if how in (2, 3) or (how == 0 and self.cursor.x == 0 and self.cursor.y == 0):
            self._keep()
        super().erase_in_display(how, *args, **kwargs)

    def reset(self) -> None:
        if hasattr(self, "mode"):  # pyte's __init__ resets before the screen exists
            self._keep()
        super().reset()


class Console:
    """Everything one machine printed on its serial port, as it arrives."""

    def __init__(self, log_path: Path | None = None) -> None:
        self._chunks: list[str] = []
        self._text = ""
        self._cut = ""  # the start of an escape sequence the next chunk completes
        self._screen = _Screen(COLUMNS, LINES)
        self._stream = pyte.Stream(self._screen)
        # Open for the console's lifetime: close() closes it.
        self._log: IO[bytes] | None = open(log_path, "wb") if log_path else None  # noqa: SIM115
        self._changed = asyncio.Event()
        self._abort_reason = ""
        self.eof = False
        self.last_output = time.monotonic()

    @property
    def text(self) -> str:
        """The serial stream so far without escape sequences, one character per byte (latin-1)."""
        if self._chunks:
            self._text += "".join(self._chunks)
            self._chunks.clear()
        return self._text

    def feed(self, data: bytes) -> None:
        """Take ``data`` from the serial port: log it, render it, wake waiters."""
        if self._log:
            self._log.write(data)
            self._log.flush()
        text = self._cut + data.decode("latin-1")
        cut = _ESCAPE_START.search(text)
        self._cut = text[cut.start():] if cut else ""
        complete = text[:cut.start()] if cut else text
        at = 0
        for escape in _ESCAPE.finditer(complete):
            self._print(complete[at:escape.start()])
            self._move_back(escape.group())
            self._render(escape.group())
            at = escape.end()
        self._print(complete[at:])
        self.last_output = time.monotonic()
        self._changed.set()

    def _print(self, text: str) -> None:
        self._chunks.append(text)
        self._render(text)

    def _render(self, text: str) -> None:
        # BIOS and DOS text is code page 437; it is ASCII below 0x80, like Linux's output.
        self._stream.feed(text.encode("latin-1").decode("cp437"))

    def _move_back(self, escape: str) -> None:
        """Drop from the text what a cursor move back along the current screen line will overwrite."""
        move = _CURSOR_POSITION.fullmatch(escape)
        if not move:
            return
        row, column = (int(n or 1) - 1 for n in (move[1], move[2]))
        cursor = self._screen.cursor
        if row != cursor.y or column >= cursor.x:
            return
        text = self.text
        line_start = max(text.rfind("\n"), text.rfind("\r")) + 1
        keep = max(len(text) - (cursor.x - column), line_start)
        self._text = text[:keep]

    def close(self) -> None:
        """The port is closed (QEMU exited): waits end with ``eof``."""
        self.eof = True
        if self._log:
            self._log.close()
            self._log = None
        self._changed.set()

    def abort(self, reason: str) -> None:
        """End current and future waits with ``aborted`` and ``reason`` (e.g. the VM stopped)."""
        self._abort_reason = reason
        self._changed.set()

    def screen(self) -> str:
        """The rendered 80x25 screen now."""
        return self._screen.text()

    def screens(self) -> list[str]:
        """Every screen kept before a clear, then the current one."""
        current = self.screen()
        kept = self._screen.snapshots
        return [*kept, current] if current.strip() and (not kept or kept[-1] != current) else list(kept)

    def lines_between(self, start: int, end: int) -> list[str]:
        """The non-empty text lines printed between two offsets, rendered without escape codes."""
        scratch = _Screen(COLUMNS, 200)
        pyte.Stream(scratch).feed(self.text[start:end].replace("\r\n", "\n").replace("\n", "\r\n"))
        return [line.strip() for line in scratch.text().splitlines() if line.strip()]

    async def read_from(self, pipe: IO[bytes]) -> None:
        """Feed everything read from ``pipe`` until it closes, then close."""
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader()
        transport, _ = await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), pipe)
        try:
            while chunk := await reader.read(65536):
                self.feed(chunk)
        finally:
            transport.close()
            self.close()

    def cursor_line(self) -> str:
        """The rendered screen line the cursor is on (where a prompt waits for input)."""
        return self._screen.display[self._screen.cursor.y].rstrip()

    def screen_below(self, line_marker: str) -> str:
        """The rendered screen below its last line containing ``line_marker`` (all of it when none does)."""
        lines = self.screen().splitlines()
        at = max((n for n, line in enumerate(lines) if line_marker in line), default=-1)
        return "\n".join(lines[at + 1:])

    async def wait_for(
        self,
        patterns: Sequence[Pattern],
        *,
        timeout: float,
        stall_timeout: float | None = None,
        since: int = 0,
        on_cursor_line: bool = False,
        screen_below: str = "",
        screen_patterns: Sequence[Pattern] = (),
    ) -> Wait:
        """Wait until one of ``patterns`` appears in the text at or after offset ``since``.

        With ``on_cursor_line`` a pattern also matches when the rendered line the
        cursor is on contains it (for prompts: SeaBIOS's mirror may repeat characters
        in the stream that the screen overwrites); ``end`` is then the text's length.
        ``screen_patterns`` (some of ``patterns``) also match the rendered screen below the
        last line containing ``screen_below`` (see screen_below()); ``end`` is again the text's
        length. Give only patterns that end the waiting: the screen matches every time.
        Ends with ``timeout`` after ``timeout`` seconds, ``stall`` when nothing was
        printed for ``stall_timeout`` seconds during the wait, ``eof`` when the port
        closed, ``aborted`` after abort(). When several patterns match, the earliest wins.
        """
        start = time.monotonic()
        deadline = start + timeout
        regex = any(not isinstance(p, str) for p in patterns)
        longest = max((len(p) for p in patterns if isinstance(p, str)), default=1)
        scan_from = since
        while True:
            text = self.text
            found = _earliest(text, patterns, scan_from)
            if found:
                return Wait("match", pattern=found[2], end=found[1])
            screens = [(self.cursor_line(), patterns)] if on_cursor_line else []
            if screen_patterns:
                screens.append((self.screen_below(screen_below), screen_patterns))
            for screen, candidates in screens:
                for pattern in candidates:
                    if _search(screen, pattern, 0):
                        return Wait("match", pattern=pattern, end=len(text))
            if not regex:  # a regular expression may match text that starts anywhere: scan all again
                scan_from = max(since, len(text) - longest + 1)
            if self._abort_reason:
                return Wait("aborted", reason=self._abort_reason)
            if self.eof:
                return Wait("eof", reason="the serial port closed (QEMU exited)")
            now = time.monotonic()
            if now >= deadline:
                return Wait("timeout", reason=f"nothing matched {list(patterns)} within {timeout:g} s")
            wake = deadline
            if stall_timeout is not None:
                quiet_since = max(self.last_output, start)
                if now - quiet_since >= stall_timeout:
                    return Wait("stall", reason=f"no serial output for {stall_timeout:g} s")
                wake = min(wake, quiet_since + stall_timeout)
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), timeout=max(wake - now, 0.001))


def _search(text: str, pattern: Pattern, start: int) -> tuple[int, int] | None:
    """(start, end) of the first match of ``pattern`` in ``text`` at or after ``start``."""
    if isinstance(pattern, str):
        at = text.find(pattern, start)
        return (at, at + len(pattern)) if at >= 0 else None
    match = pattern.search(text, start)
    return match.span() if match else None


def _earliest(text: str, patterns: Sequence[Pattern], start: int) -> tuple[int, int, Pattern] | None:
    """(start, end, pattern) of the first match of any pattern at or after ``start``."""
    best: tuple[int, int, Pattern] | None = None
    for pattern in patterns:
        span = _search(text, pattern, start)
        if span and (best is None or span[0] < best[0]):
            best = (*span, pattern)
    return best
