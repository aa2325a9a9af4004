"""How long operations report progress: a callback taking one line of text per step, and Steps for the
"[7/24] ..., about 1 min left" lines of long work on a terminal.

The CLI passes one that prints; library callers and tests may pass ``quiet``. Text from
others (mail) goes to the terminal through ``shown``.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable

Progress = Callable[[str], None]

# What a terminal acts on rather than shows: C0 and C1 controls but newline and tab (ESC starts OSC and
# CSI sequences, BEL rings), and the bidirectional overrides that reorder what is shown.
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def shown(text: str) -> str:
    """``text`` safe for a terminal, also when piped: control characters written as escapes (ESC as \\x1b).
    Whatever comes from mail (a reply's trailers, comments, a sender's name) is printed through it."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m[0]):02x}" if ord(m[0]) < 0x100 else f"\\u{ord(m[0]):04x}", text)


def quiet(_message: str) -> None:
    """A progress callback that shows nothing."""


def about(seconds: float) -> str:
    """A time left as a person reads it: "about 40 s", "about 3 min 10 s"."""
    whole = max(1, round(seconds))
    if whole < 60:
        return f"about {whole} s"
    minutes, rest = divmod(whole, 60)
    return f"about {minutes} min {rest:02d} s" if minutes < 10 else f"about {minutes} min"


class Steps:
    """Where long work stands, one line per finished step: "[7/24] TEXT, about 1 min 20 s left".

    The time left is the caller's estimate (``left``), else the mean of the steps so far times
    the steps still to do. A caller that is not on a terminal passes ``quiet`` as ``say``.
    """

    def __init__(self, total: int, say: Progress) -> None:
        self.total = total
        self.done = 0
        self.say = say
        self.started = time.monotonic()

    def step(self, text: str, left: float | None = None) -> None:
        self.done += 1
        to_do = self.total - self.done
        if left is None and to_do:
            left = (time.monotonic() - self.started) / self.done * to_do
        tail = f", {about(left)} left" if to_do and left else ""
        self.say(f"[{self.done}/{self.total}] {text}{tail}")
