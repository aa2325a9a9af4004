"""The ``warning:`` lines of a build log, compared by file and message (line, column and temporary names dropped)."""

from __future__ import annotations

import re
from collections.abc import Iterable

_WARNING = re.compile(r"^(?P<file>[^\s:]+):(?:\d+:)?(?:\d+:)?\s*warning:\s*(?P<message>.*)$")
_TMP_OUTPUT = re.compile(r"bin/[\w.-]+\.tmp\b")


def warning_lines(text: str) -> list[str]:
    """The ``warning:`` lines of a build log, in order."""
    return [line for line in text.splitlines() if "warning:" in line]


def normalise_warning(line: str) -> tuple[str, str]:
    """(file, message) of a warning line: line and column dropped, temporary link outputs unnamed."""
    line = _TMP_OUTPUT.sub("bin/<output>.tmp", line.strip())
    m = _WARNING.match(line)
    if m is None:
        return ("", line)
    return (m.group("file"), m.group("message"))


def new_warnings(lines: Iterable[str], known: set[tuple[str, str]]) -> list[str]:
    """The ``warning:`` lines among ``lines`` whose (file, message) is not in ``known``, each once."""
    found: list[str] = []
    seen: set[tuple[str, str]] = set()
    for line in lines:
        if "warning:" not in line:
            continue
        norm = normalise_warning(line)
        if norm not in known and norm not in seen:
            seen.add(norm)
            found.append(line)
    return found
