"""How long operations report progress: a callback taking one line of text per step.

The CLI passes one that prints; library callers and tests may pass ``quiet``.
"""

from __future__ import annotations

from collections.abc import Callable

Progress = Callable[[str], None]


def quiet(_message: str) -> None:
    """A progress callback that shows nothing."""
