"""Review comments in a reply, each with the quoted part of the patch it answers.

A reply is read as blocks: quoted lines (``>``, any depth) and the reply's own text.
Each own-text block is a comment on the quote right above it; text before any quote
(a top-posted reply) is a comment on the whole patch. Trailer lines, the
"On ..., X wrote:" attribution line and everything below the ``-- `` signature are not
comment text. The last quoted line that is a line of the patch's diff gives the place:
file, line number (new side for added and context lines, old side for removed ones)
and the hunk; a quote of the commit message maps to "commit message".
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from dataclasses import dataclass

from patchkit.review.trailers import find_trailers

_QUOTE = re.compile(r"^\s*(?:>\s?)+")
_HUNK = re.compile(r"^@@ -(\d+)(?:,\d+)? \+(\d+)(?:,\d+)? @@")
_DIFF_FILE = re.compile(r"^diff --git a/(.+) b/(.+)$")
_WROTE = re.compile(r"(wrote|schrieb|a écrit|escribió)\s*:\s*$", re.IGNORECASE)
QUOTE_CONTEXT = 6  # quoted lines kept with a comment


@dataclass(frozen=True)
class Place:
    """Where in a patch a quote points: a diff line, the commit message, or nothing in particular."""

    file: str | None = None
    line: int | None = None
    side: str = "+"  # "+" new file's numbering, "-" old file's
    hunk: str = ""

    def describe(self) -> str:
        if self.file is None:
            return "commit message" if self.hunk == "message" else "whole patch"
        where = f"{self.file}:{self.line}" if self.line is not None else self.file
        return where + (" (old side)" if self.side == "-" else "")


@dataclass(frozen=True)
class Comment:
    """A reviewer's text and the quote it answers."""

    text: str
    quote: tuple[str, ...]  # the last quoted lines above it, unquoted
    place: Place


@dataclass(frozen=True)
class DiffLine:
    file: str
    old: int | None
    new: int | None
    hunk: str
    norm: str


def diff_lines(diff: str) -> list[DiffLine]:
    """Each line of a git diff with its file, old/new line numbers and hunk header."""
    out: list[DiffLine] = []
    file, hunk = "", ""
    old = new = 0
    for line in diff.split("\n"):
        m = _DIFF_FILE.match(line)
        if m:
            file, hunk = m.group(2), ""
            out.append(DiffLine(file, None, None, "", _norm(line)))
            continue
        h = _HUNK.match(line)
        if h:
            old, new, hunk = int(h.group(1)), int(h.group(2)), line
            out.append(DiffLine(file, None, None, hunk, _norm(line)))
            continue
        if not hunk:
            out.append(DiffLine(file, None, None, "", _norm(line)))
            continue
        tag = line[:1]
        if tag == "+":
            out.append(DiffLine(file, None, new, hunk, _norm(line)))
            new += 1
        elif tag == "-":
            out.append(DiffLine(file, old, None, hunk, _norm(line)))
            old += 1
        elif tag in (" ", ""):
            out.append(DiffLine(file, old, new, hunk, _norm(line)))
            old += 1
            new += 1
        else:
            out.append(DiffLine(file, None, None, hunk, _norm(line)))
    return out


@functools.lru_cache(maxsize=32)
def _table(diff: str) -> tuple[DiffLine, ...]:
    """diff_lines of a patch, made once for all the replies to it (a reply costs its own length only)."""
    return tuple(diff_lines(diff))


def comments(body: str, diff: str | None, message: str = "") -> list[Comment]:
    """The comments of a reply's ``body``; quotes are placed in ``diff`` (None for a cover letter)."""
    text = body.split("\n-- \n", 1)[0]
    lines = text.split("\n")
    table = _table(diff) if diff else ()
    message_lines = {_norm(line) for line in message.split("\n") if line.strip()}
    out: list[Comment] = []
    quote: list[str] = []
    own: list[str] = []

    def flush() -> None:
        words = _own_text(own)
        if words:
            place = _place(quote, table, message_lines) if quote else Place()
            out.append(Comment(words, tuple(q for q in quote if q.strip())[-QUOTE_CONTEXT:], place))
        own.clear()

    for i, line in enumerate(lines):
        if _QUOTE.match(line):
            if own:
                flush()
                quote = []
            quote.append(_QUOTE.sub("", line, count=1))
        elif line.strip() and _WROTE.search(line) and _next_quoted(lines, i):
            continue
        else:
            own.append(line)
    flush()
    return out


def _next_quoted(lines: list[str], i: int) -> bool:
    for line in lines[i + 1:]:
        if line.strip():
            return bool(_QUOTE.match(line))
    return False


def _own_text(lines: list[str]) -> str:
    trailers = {t.text() for t in find_trailers("\n".join(lines))}
    kept = [line.rstrip() for line in lines if not (line.strip() and _is_trailer(line, trailers))]
    return "\n".join(kept).strip("\n")


def _is_trailer(line: str, trailers: set[str]) -> bool:
    name, _, value = line.strip().partition(":")
    return f"{name}: {' '.join(value.split())}" in trailers


def _norm(line: str) -> str:
    return " ".join(line.split())


def _place(quote: list[str], table: Sequence[DiffLine], message_lines: set[str]) -> Place:
    """The diff line the quote ends on, disambiguated by the quoted lines above it."""
    quoted = [_norm(q) for q in quote if q.strip()]
    if not quoted:
        return Place()
    for end in range(len(quoted) - 1, -1, -1):
        best, score = None, 0
        for idx, entry in enumerate(table):
            if entry.norm != quoted[end] or not entry.norm:
                continue
            run = 1
            while end - run >= 0 and idx - run >= 0 and table[idx - run].norm == quoted[end - run]:
                run += 1
            if run > score:
                best, score = entry, run
        if best is not None:
            if best.new is not None:
                return Place(best.file, best.new, "+", best.hunk)
            if best.old is not None:
                return Place(best.file, best.old, "-", best.hunk)
            return Place(best.file, None, "+", best.hunk)
        if quoted[end] in message_lines:
            return Place(hunk="message")
    return Place()
