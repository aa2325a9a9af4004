"""One mail decoded for review: ids, sender, subject, date and the text a reader sees.

Headers are decoded (RFC 2047 encoded words, non-ASCII names), the body is the first
text/plain part with its transfer encoding (quoted-printable, base64) and charset
undone; a mail without a text/plain part is read through its HTML part as text.
Problems the parser noticed (bad base64, unknown charsets, broken headers) are kept
as ``defects`` so the import can report them.
"""

from __future__ import annotations

import email
import email.header
import email.policy
import email.utils
import hashlib
import re
from dataclasses import dataclass, field
from email.message import Message
from html.parser import HTMLParser
from typing import ClassVar

_MSGID = re.compile(r"<[^<>\s]+>")


class MalformedMail(ValueError):
    """A message that cannot be used at all (the reason is the text)."""


@dataclass(frozen=True)
class Mail:
    """The parts of a mail that review needs."""

    message_id: str  # with angle brackets, as in the header
    in_reply_to: str | None
    references: tuple[str, ...]
    from_name: str
    from_email: str
    subject: str
    date: str
    body: str
    defects: tuple[str, ...] = field(default=())

    @property
    def parents(self) -> list[str]:
        """Message-IDs this mail answers, the closest first (In-Reply-To, then References backwards)."""
        out = [self.in_reply_to] if self.in_reply_to else []
        out += [ref for ref in reversed(self.references) if ref not in out]
        return [m for m in out if m != self.message_id]

    @property
    def sender(self) -> str:
        return f"{self.from_name} <{self.from_email}>" if self.from_name else self.from_email


def parse_mail(data: bytes) -> Mail:
    """Decode one message; raises MalformedMail when it is empty or has no headers."""
    if not data.strip():
        raise MalformedMail("empty message")
    msg = email.message_from_bytes(data, policy=email.policy.compat32)
    if not msg.keys():
        raise MalformedMail("no mail headers at the start")
    defects = [type(d).__name__ for d in msg.defects]
    message_id = _first_id(_header(msg, "Message-ID"))
    if not message_id:
        # `git format-patch` without --thread writes none: name the mail by its content instead.
        message_id = f"<{hashlib.sha256(data).hexdigest()[:32]}@no-message-id.invalid>"
        defects.append("no Message-ID header (named by a hash of its content)")
    in_reply_to = _first_id(_header(msg, "In-Reply-To"))
    references = tuple(_MSGID.findall(_header(msg, "References")))
    # Split before decoding: an encoded display name may hide a comma or angle brackets.
    raw_from = str(msg.get("From", ""))
    raw_name, addr = email.utils.parseaddr(raw_from)
    name = decode_header(raw_name)
    if "@" not in addr:
        defects.append(f"From: has no address ({raw_from!r})")
    body, body_defects = _body(msg)
    return Mail(message_id=message_id, in_reply_to=in_reply_to, references=references, from_name=name.strip(),
                from_email=addr.strip(), subject=" ".join(_header(msg, "Subject").split()),
                date=_header(msg, "Date"), body=body, defects=tuple(defects + body_defects))


def decode_header(value: str) -> str:
    """RFC 2047 encoded words decoded; undecodable bytes replaced, never an exception."""
    if "=?" not in value:
        return value
    try:
        return str(email.header.make_header(email.header.decode_header(value)))
    except (LookupError, UnicodeError, ValueError, email.errors.HeaderParseError):
        return value


def _header(msg: Message, name: str) -> str:
    raw = msg.get(name)
    if raw is None:
        return ""
    return decode_header(str(raw))  # str() also for the Header objects compat32 parsing gives


def _first_id(value: str) -> str | None:
    m = _MSGID.search(value)
    if m:
        return m.group(0)
    bare = value.strip()
    return f"<{bare}>" if bare and " " not in bare and "@" in bare else None


def _body(msg: Message) -> tuple[str, list[str]]:
    """The text of the first text/plain part, else of the first text/html part; with problems found."""
    defects: list[str] = []
    plain = html_part = None
    for part in msg.walk():
        if part.is_multipart():
            continue
        if part.get("Content-Disposition", "").lower().startswith("attachment"):
            continue
        kind = part.get_content_type()
        if kind == "text/plain" and plain is None:
            plain = part
        elif kind == "text/html" and html_part is None:
            html_part = part
    chosen = plain or html_part
    if chosen is None:
        return "", ["no text/plain or text/html part"]
    text = _decode_part(chosen, defects)
    if chosen is html_part:
        text = html_to_text(text)
    return text.replace("\r\n", "\n").replace("\r", "\n"), defects


def _decode_part(part: Message, defects: list[str]) -> str:
    payload = part.get_payload(decode=True)
    defects.extend(type(d).__name__ for d in part.defects)
    if not isinstance(payload, bytes):
        return ""
    charset = part.get_content_charset() or "utf-8"
    try:
        return payload.decode(charset)
    except LookupError:
        defects.append(f"unknown charset {charset!r}, read as UTF-8")
    except UnicodeDecodeError:
        defects.append(f"text is not valid {charset}; bad bytes replaced")
        return payload.decode(charset, errors="replace")
    return payload.decode("utf-8", errors="replace")


class _TextOf(HTMLParser):
    """The visible text of an HTML mail: block elements become line breaks, blockquotes '> ' quotes."""

    _BLOCKS: ClassVar[set[str]] = {"p", "div", "br", "tr", "li", "pre", "h1", "h2", "h3", "h4", "table"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.lines: list[str] = [""]
        self.depth = 0  # blockquote nesting
        self.skip = 0  # inside <style>/<script>/<head>
        self.pre = 0

    def _newline(self) -> None:
        if self.lines[-1].strip(" >") or self.pre:
            self.lines.append("")

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("style", "script", "head", "title"):
            self.skip += 1
        elif tag == "blockquote":
            self._newline()
            self.depth += 1
        elif tag == "br":
            self.lines.append("")
        elif tag in self._BLOCKS:
            self._newline()
            if tag == "pre":
                self.pre += 1

    def handle_endtag(self, tag: str) -> None:
        if tag in ("style", "script", "head", "title"):
            self.skip = max(0, self.skip - 1)
        elif tag == "blockquote":
            self._newline()
            self.depth = max(0, self.depth - 1)
        elif tag in self._BLOCKS:
            if tag == "pre":
                self.pre = max(0, self.pre - 1)
            self._newline()

    def handle_data(self, data: str) -> None:
        if self.skip:
            return
        chunks = data.split("\n") if self.pre else [" ".join(data.split()) if data.strip() else ""]
        for i, chunk in enumerate(chunks):
            if i:
                self.lines.append("")
            if not chunk:
                continue
            if not self.lines[-1]:
                self.lines[-1] = "> " * self.depth
            elif not self.pre and not self.lines[-1].endswith(" "):
                chunk = " " + chunk
            self.lines[-1] += chunk


def html_to_text(text: str) -> str:
    """Plain text of an HTML body (tags dropped, entities decoded, blockquotes as '> ')."""
    parser = _TextOf()
    parser.feed(text)
    parser.close()
    lines = [line.rstrip() for line in parser.lines]
    return "\n".join(lines).strip("\n") + "\n"

