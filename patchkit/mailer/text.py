"""Mail text that every mail client and server takes: prose wrapped, no line over RFC 5321's limit.

Prose is wrapped at 72 columns (git's own width for mail text); a word longer than a
line (a long configuration name, a path) gets a line of its own, whole, so it can be
copied. A body that still has a line over 998 octets
(a long line in a diff, say) is sent quoted-printable, as git send-email's
``--transfer-encoding=auto`` does: lines of at most 76 characters that every reader
(``git am``, b4, mail clients) decodes back to the same bytes.
"""

from __future__ import annotations

import email.quoprimime
import textwrap
from email.message import EmailMessage

WIDTH = 72
MAX_LINE = 998  # RFC 5321 4.5.3.1.6: octets per line, without the CRLF
QP_LINE = 76


def wrap(text: str, width: int = WIDTH, indent: str = "", hanging: str | None = None) -> list[str]:
    """``text`` as lines of at most ``width`` columns, the first starting with ``indent``, the others with
    ``hanging`` (default: ``indent``); nothing is dropped, a word longer than a line stays whole."""
    lines = textwrap.wrap(text, width, initial_indent=indent, subsequent_indent=indent if hanging is None else hanging,
                          break_on_hyphens=False, break_long_words=False)
    return lines or [indent.rstrip()]


def too_long(body: str) -> bool:
    """Whether any line of ``body`` is longer than SMTP allows (counted in UTF-8 octets)."""
    return any(len(line.encode("utf-8")) > MAX_LINE for line in body.split("\n"))


def set_text_body(msg: EmailMessage, body: str) -> None:
    """Make ``body`` the plain-text payload of ``msg``: as it is (7bit or 8bit UTF-8), or quoted-printable
    when a line is too long for SMTP. Headers are added only when needed, as git format-patch does."""
    if too_long(body):
        msg["MIME-Version"] = "1.0"
        msg["Content-Type"] = "text/plain; charset=UTF-8"
        msg["Content-Transfer-Encoding"] = "quoted-printable"
        # quoprimime works on code points 0-255: give it the UTF-8 bytes as latin-1 characters.
        encoded = email.quoprimime.body_encode(body.encode("utf-8").decode("latin-1"), QP_LINE)
        msg.set_payload(encoded if encoded.endswith("\n") else encoded + "\n")
        return
    if not body.isascii():
        msg["MIME-Version"] = "1.0"
        msg["Content-Type"] = "text/plain; charset=UTF-8"
        msg["Content-Transfer-Encoding"] = "8bit"
        # Bytes smuggled as surrogates: the generator writes them back unchanged (8bit).
        body = body.encode("utf-8").decode("ascii", "surrogateescape")
    msg.set_payload(body)
