"""Render a series revision as the mails `git format-patch --cover-letter --thread=shallow -vN --base` writes.

Patch mails: From/Date/Subject of the patch, ``[PREFIX vN i/n]`` subjects, Message-ID,
In-Reply-To and References pointing at the cover letter, and a body of message,
``---``, diffstat, diff and signature, byte for byte as git writes it. Diffstats and
the shortlog are computed by git on the applied commits so they stay identical to
git's. The cover letter carries the series' cover text, the changelogs, the Tested
section, the shortlog, the diffstat and ``base-commit:``.
"""

from __future__ import annotations

import email.policy
import io
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.generator import BytesGenerator
from email.message import EmailMessage
from email.utils import make_msgid, parseaddr
from pathlib import Path
from typing import Protocol

from patchkit.errors import MailError
from patchkit.git.cmd import git
from patchkit.mailer.text import set_text_body
from patchkit.series.model import Series, format_git_date

TESTED_PLACEHOLDER = "{tested}"
MAIL_WRAP = 72  # git's MAIL_DEFAULT_WRAP: diffstat and shortlog width in mails
ZERO_SHA = "0" * 40
# Header lines are not folded below RFC 5322's hard limit: git does not fold ASCII
# subjects either, and Python's folding at 78 can break before the first word.
POLICY = email.policy.SMTP.clone(max_line_length=998)


class Applied(Protocol):
    """What rendering needs from an applied series (patchkit.git.apply.ApplyResult has these)."""

    @property
    def tree(self) -> Path: ...
    @property
    def base(self) -> str: ...
    @property
    def commits(self) -> list[str]: ...


@dataclass(frozen=True)
class Envelope:
    """Who a series goes to and how its subjects are prefixed."""

    sender: str  # "Name <addr>": the cover letter's From, and the sender of every mail
    to: tuple[str, ...]
    cc: tuple[str, ...]
    subject_prefix: str = "PATCH"

    @property
    def recipients(self) -> list[str]:
        """Bare addresses of To and Cc, without duplicates, in order."""
        seen: list[str] = []
        for entry in (*self.to, *self.cc):
            addr = parseaddr(entry)[1]
            if addr and addr not in seen:
                seen.append(addr)
        return seen


@dataclass(frozen=True)
class Mail:
    """One rendered message of the series (index 0 is the cover letter)."""

    index: int
    commit: str  # the applied commit (ZERO_SHA for the cover), for the mbox "From " line
    message: EmailMessage

    @property
    def message_id(self) -> str:
        return str(self.message["Message-ID"])

    @property
    def subject(self) -> str:
        return str(self.message["Subject"])

    def as_bytes(self, linesep: str = "\n") -> bytes:
        """The message as bytes with ``linesep`` line ends ("\\r\\n" for SMTP)."""
        buf = io.BytesIO()
        BytesGenerator(buf, mangle_from_=False, policy=POLICY.clone(linesep=linesep)).flatten(self.message)
        return buf.getvalue()


def new_message_ids(series: Series, sender: str) -> list[str]:
    """Fresh Message-IDs for the cover letter and each patch, in the sender's domain."""
    domain = parseaddr(sender)[1].rpartition("@")[2] or "localhost"
    tag = f"{series.name}-v{series.version}"
    return [make_msgid(f"{tag}.{i}", domain=domain) for i in range(len(series.patches) + 1)]


def git_signature() -> str:
    """The signature git format-patch uses by default: git's version number."""
    out = git("--version").stdout.decode().strip()
    return out.removeprefix("git version ")


def subject_tag(prefix: str, version: int, index: int, total: int) -> str:
    """``[PATCH v2 1/2]`` (no ``v1`` for the first version)."""
    v = f" v{version}" if version > 1 else ""
    return f"[{prefix}{v} {index}/{total}]"


def render_series(
    series: Series,
    applied: Applied,
    envelope: Envelope,
    message_ids: Sequence[str],
    tested: str,
    sent_at: datetime | None = None,
) -> list[Mail]:
    """The cover letter and one mail per patch, threaded shallowly under the cover.

    ``tested`` is the Tested section text (see gate.tested_section); ``message_ids``
    has one ID per mail (cover first), fixed in the journal before sending. With
    ``sent_at`` (a send), the Dates are that time, one second apart in series order, as
    git send-email dates them; without (an mbox), format-patch's: the patches' author dates.
    """
    total = len(series.patches)
    if len(applied.commits) != total:
        raise MailError(f"{total} patches but {len(applied.commits)} applied commits",
                        hint="re-apply the series (`patchkit apply`) and try again")
    if len(message_ids) != total + 1:
        raise MailError(f"the journal fixed {len(message_ids)} Message-IDs for {total + 1} mails",
                        hint="the series changed since the interrupted send: start a new send without --resume")
    sig = git_signature()
    cover_id = message_ids[0]
    dates = [format_git_date(sent_at + timedelta(seconds=i)) for i in range(total + 1)] if sent_at else None
    cover_date = dates[0] if dates else format_git_date(datetime.now(UTC))
    mails = [Mail(0, ZERO_SHA, _cover(series, applied, envelope, cover_id, tested, sig, cover_date))]
    parent = applied.base
    for i, (patch, commit) in enumerate(zip(series.patches, applied.commits, strict=True), 1):
        body = patch_body(patch.message, diffstat(applied.tree, parent, commit), patch.diff, sig)
        author = patch.author
        if parseaddr(envelope.sender)[1].lower() != patch.author_email.lower():
            body = f"From: {author}\n\n{body}"  # as git send-email: the author survives `git am`
            author = envelope.sender
        headers = {
            "Message-ID": message_ids[i], "In-Reply-To": cover_id, "References": cover_id,
            "From": author, "Date": dates[i] if dates else patch.date,
            "Subject": f"{subject_tag(envelope.subject_prefix, series.version, i, total)} {patch.subject}",
        }
        mails.append(Mail(i, commit, _message(headers, envelope, body)))
        parent = commit
    return mails


def patch_body(message: str, stat: str, diff: str, signature: str) -> str:
    """A patch mail's body exactly as git format-patch writes it."""
    text = f"{message}\n" if message else ""
    return f"{text}---\n{stat}\n{diff}-- \n{signature}\n\n"


def diffstat(tree: Path, old: str, new: str) -> str:
    """git's mail diffstat and summary (``--stat=72 --summary``) between two commits."""
    out = git("diff", f"--stat={MAIL_WRAP}", "--summary", old, new, "--", cwd=tree).stdout
    return out.decode("utf-8")


def shortlog(tree: Path, base: str, tip: str) -> str:
    """git's shortlog of ``base..tip`` wrapped like format-patch's cover letter."""
    out = git("shortlog", f"-w{MAIL_WRAP},2,4", f"{base}..{tip}", "--", cwd=tree).stdout
    return out.decode("utf-8")


def changes_section(series: Series) -> str:
    """"Changes in vN:" paragraphs from the changelogs of versions 2..N, newest first."""
    parts = []
    for info in sorted(series.versions, key=lambda v: v.number, reverse=True):
        if 1 < info.number <= series.version and info.changelog.strip():
            parts.append(f"Changes in v{info.number}:\n{info.changelog.strip()}\n")
    return "\n".join(parts)


def cover_text(series: Series, tested: str) -> str:
    """The cover letter's own text: body (Tested at ``{tested}`` or appended) and changes."""
    body = series.cover_body.strip("\n")
    tested = tested.strip("\n")
    lines = body.split("\n") if body else []
    if TESTED_PLACEHOLDER in (line.strip() for line in lines):
        body = "\n".join(tested if line.strip() == TESTED_PLACEHOLDER else line for line in lines)
    elif tested:
        body = f"{body}\n\n{tested}" if body else tested
    changes = changes_section(series)
    return "\n\n".join(part for part in (body, changes.strip("\n")) if part)


def _cover(series: Series, applied: Applied, envelope: Envelope, message_id: str,
           tested: str, signature: str, date: str) -> EmailMessage:
    total = len(series.patches)
    title = series.cover_title or series.name
    tip = applied.commits[-1] if applied.commits else applied.base
    body = (
        f"{cover_text(series, tested)}\n\n"
        f"{shortlog(applied.tree, applied.base, tip)}"
        f"{diffstat(applied.tree, applied.base, tip)}\n\n"
        f"base-commit: {applied.base}\n-- \n{signature}\n\n"
    )
    headers = {
        "Message-ID": message_id, "From": envelope.sender,
        "Date": date,
        "Subject": f"{subject_tag(envelope.subject_prefix, series.version, 0, total)} {title}",
    }
    return _message(headers, envelope, body)


def _message(headers: dict[str, str], envelope: Envelope, body: str) -> EmailMessage:
    msg = EmailMessage(policy=POLICY)
    for name, value in headers.items():
        msg[name] = value
    if envelope.to:
        msg["To"] = ", ".join(envelope.to)
    if envelope.cc:
        msg["Cc"] = ", ".join(envelope.cc)
    set_text_body(msg, body)
    return msg
