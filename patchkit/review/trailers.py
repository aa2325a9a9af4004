"""Trailers in replies, read the way b4 reads follow-up trailers, and written into patch messages.

What counts (b4 0.14's ``LoreMessage.find_trailers(followup=True)``): a line
``Name: value`` at the start of a line (leading blanks allowed) with an ASCII name of at
least two characters; quoted lines (``>``) never match. A person trailer (any
``Xxx-by:``, ``Cc:`` ...) must carry an e-mail address; a value with a URL counts only
for ``Link:``, ``BugLink:`` and ``Closes:``; ``Fixes:`` needs a commit hash; mail headers
pasted into a reply (From, To, Cc, Date, Subject, Message-ID, ...) are not trailers;
nothing below the ``-- `` signature line counts. A reviewer gives trailers for
themself: a person trailer is collected only with the reply's own From address (b4 also
takes a matching name), and a Signed-off-by never (see ``refusal``); the others are
reported, with why.

Duplicates (same name, same value ignoring case) are merged, keeping the first.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_LINE = re.compile(r"^\s*(\w\S+):\s+(\S.*)$")
_ADDRESS = re.compile(r"\S+@\S+\.\S+")
_NAME_ADDR = re.compile(r"^(.*?)\s*<([^<>]+)>\s*$")
_IGNORED = {"phone", "mail", "email", "e-mail", "prerequisite-message-id"}
_HEADERS = {"from", "author", "cc", "to", "date", "subject", "subscribe", "unsubscribe", "base-commit",
            "change-id", "message-id", "in-reply-to", "references"}
_LINKS = {"link", "buglink", "closes"}
_NON_PERSON = _LINKS | {"fixes", "obsoleted-by"}
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_QP = re.compile(r"=[0-9A-F]{2}|=$")  # quoted-printable left undecoded: =40 for @, =3D, a soft break


@dataclass(frozen=True)
class Trailer:
    """``name: value``; equal to another with the same name and value ignoring case."""

    name: str
    value: str

    @property
    def key(self) -> tuple[str, str]:
        return self.name.lower(), " ".join(self.value.lower().split())

    @property
    def address(self) -> tuple[str, str] | None:
        """(name, e-mail) of a person trailer, else None."""
        m = _NAME_ADDR.match(self.value)
        if m:
            return m.group(1).strip().strip('"'), m.group(2).strip()
        bare = _ADDRESS.search(self.value)
        return ("", bare.group(0).strip("<>")) if bare else None

    def text(self) -> str:
        return f"{self.name}: {self.value}"


@dataclass
class Collected:
    """A trailer and the replies that gave it (Message-IDs, in order)."""

    trailer: Trailer
    sources: list[str] = field(default_factory=list)
    given_by: str = ""  # the first reply's sender


def find_trailers(body: str) -> list[Trailer]:
    """The follow-up trailers of a reply's text, in order (none holding a control character: see unsafe_trailers)."""
    return [t for t in _candidates(body) if not _CONTROL.search(t.text())]


def unsafe_trailers(body: str) -> list[Trailer]:
    """Trailers of a reply that hold a control character (a NUL would end up in the patch and break git)."""
    return [t for t in _candidates(body) if _CONTROL.search(t.text())]


def _candidates(body: str) -> list[Trailer]:
    text = body.split("\n-- \n", 1)[0]
    # Unwrap "Reviewed-by: Long Name\n<addr>" as b4 does.
    text = re.sub(r"^(\S+:\s+[^<\n]+)\n(<[^>\n]+>)$", r"\1 \2", text, flags=re.MULTILINE)
    found: list[Trailer] = []
    for line in text.split("\n"):
        m = _LINE.match(line.rstrip("\r"))
        if not m:
            continue
        name, value = m.group(1), m.group(2).strip()
        lname = name.lower()
        if lname in _IGNORED or lname in _HEADERS or not name.isascii():
            continue
        if not _ADDRESS.search(value) and lname not in _NON_PERSON:
            continue
        if re.search(r"https?://", value) and lname not in _LINKS:
            continue
        if lname == "fixes" and not re.match(r"[0-9a-f]{6,}", value):
            continue
        found.append(Trailer(name, " ".join(value.split())))
    return found


def refusal(trailer: Trailer, from_name: str, from_email: str) -> str | None:
    """Why a reply from ``from_name <from_email>`` may not give ``trailer``; None when it may.

    Stricter than b4: a Signed-off-by is never collected from a reply (it is a DCO line: whoever
    sends the patch adds their own), and a person trailer must carry the sender's own address (a
    matching display name with another address is flagged, not collected).
    """
    if trailer.name.lower() == "signed-off-by":
        return "a Signed-off-by is added by whoever sends the patch (the DCO), never taken from a reply"
    if _QP.search(trailer.value):
        return "still quoted-printable encoded (the mail's encoding is broken): check the reply"
    addr = trailer.address
    if addr is None or not _ADDRESS.search(trailer.value):
        return None  # not a person trailer (Link:, Fixes:)
    if addr[1].lower() == from_email.lower():
        return None
    if addr[0] and addr[0].lower() == from_name.lower():
        return f"its address is not the sender's ({from_email}): only the sender's own address is collected"
    return "names someone else"


def merge(items: list[tuple[Trailer, str, str]]) -> list[Collected]:
    """``(trailer, message_id, sender)`` triples merged by trailer, first spelling and order kept."""
    out: dict[tuple[str, str], Collected] = {}
    for trailer, source, sender in items:
        entry = out.setdefault(trailer.key, Collected(trailer, [], sender))
        if source not in entry.sources:
            entry.sources.append(source)
    return list(out.values())


def message_trailers(message: str) -> tuple[str, list[Trailer]]:
    """A commit message split into its text and its trailer block (the last paragraph when all trailers)."""
    paragraphs = message.strip("\n").split("\n\n")
    last = paragraphs[-1].split("\n") if paragraphs and paragraphs[-1].strip() else []
    parsed = [_LINE.match(line) for line in last]
    if not last or not all(parsed):
        return message.strip("\n"), []
    trailers = [Trailer(m.group(1), m.group(2).strip()) for m in parsed if m]
    return "\n\n".join(paragraphs[:-1]).strip("\n"), trailers


def with_trailers(message: str, add: list[Trailer], remove: list[Trailer], own_email: str) -> str:
    """``message`` with ``add`` appended to its trailers and ``remove`` taken out, as b4's ``trailers -u``.

    Existing trailers keep their order; new ones (not already there) follow in the
    order given; the Signed-off-by of ``own_email`` (the sender's) moves to the bottom,
    so collected trailers sit before it.
    """
    text, trailers = message_trailers(message)
    gone = {t.key for t in remove}
    kept = [t for t in trailers if t.key not in gone]
    have = {t.key for t in kept}
    mine = [t for t in kept if own_email and t.name.lower() == "signed-off-by"
            and (t.address or ("", ""))[1].lower() == own_email.lower()]
    out = [t for t in kept if t not in mine]
    for t in add:
        if t.key not in have:
            out.append(t)
            have.add(t.key)
    out += mine[:1]
    block = "\n".join(t.text() for t in out)
    return "\n\n".join(part for part in (text, block) if part)
