"""How long operations report progress: a callback taking one line of text per step.

The CLI passes one that prints; library callers and tests may pass ``quiet``. Text from
others (mail) goes to the terminal through ``shown``.
"""

from __future__ import annotations

import re
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
