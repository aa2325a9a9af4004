"""Shared pieces of the review tests: a series really sent over SMTP, and replies to it.

Replies come two ways: written by git's own tools (`git send-email --in-reply-to` to
the same SMTP server on 127.0.0.1) and hand-made as mail clients write them (for the
encodings). Imported by the other tests/test_review_*.py modules (no tests here).
"""

from __future__ import annotations

import email
import email.message
import email.policy
import email.utils
import itertools
import mailbox
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from test_mail_fixtures import MailProject, Recorder, Server, smtp_options

from patchkit.mailer.send import send_email
from patchkit.run import run

pytest_plugins = ("test_mail_fixtures",)

BOB = "Bob Reviewer <bob@example.com>"
CAROL = ("Carolë Ünïcode", "carol@example.net")
_LATER = itertools.count(1)


@dataclass
class SentSeries:
    """A series v2 sent to a recording SMTP server: the project, the server and the sent mails."""

    mp: MailProject
    server: Server
    sent: list[email.message.Message]  # cover first

    @property
    def ids(self) -> list[str]:
        return [str(m["Message-ID"]) for m in self.sent]

    def received(self) -> list[bytes]:
        """Every message the server accepted so far (LF line ends), in order."""
        return [_lf(m.original_content) for m in self.server.recorder.messages]

    def mbox(self, path: Path, extra: list[bytes] | None = None) -> Path:
        """An mbox (as a mail client exports a folder) of everything received plus ``extra``."""
        box = mailbox.mbox(path, create=True)
        for data in [*self.received(), *(extra or [])]:
            box.add(data)
        box.close()
        return path


def _lf(data: bytes | None) -> bytes:
    assert data is not None
    return data.replace(b"\r\n", b"\n")


def parse(data: bytes) -> email.message.Message:
    return email.message_from_bytes(data, policy=email.policy.compat32)


def reply(parent: email.message.Message | bytes, sender: str, body: str, *, message_id: str | None = None,
          date: str | None = None, top_post: bool = False) -> bytes:
    """A plain-text reply as a mail client writes it: Re: subject, In-Reply-To, References, 8-bit UTF-8."""
    p = parse(parent) if isinstance(parent, bytes) else parent
    subject = str(p["Subject"])
    refs = " ".join(filter(None, [str(p.get("References", "")).strip(), str(p["Message-ID"])]))
    mid = message_id or email.utils.make_msgid("reply", domain="example.com")
    date = date or email.utils.formatdate(time.time() + next(_LATER))  # each reply a second after the last
    head = (f"From: {sender}\nTo: devel@example.org\nSubject: Re: {subject.removeprefix('Re: ')}\n"
            f"Date: {date}\nMessage-ID: {mid}\nIn-Reply-To: {p['Message-ID']}\nReferences: {refs}\n"
            "MIME-Version: 1.0\nContent-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: 8bit\n\n")
    if top_post:
        body = body + "\n\n" + quote(p)
    return (head + body).encode("utf-8")


def quote(parent: email.message.Message, lines: slice | None = None) -> str:
    """The parent's text quoted with '> ' (a slice of its lines, or all)."""
    payload = parent.get_payload(decode=True)
    assert isinstance(payload, bytes)
    text = payload.decode("utf-8")
    chosen = text.split("\n")[lines] if lines else text.split("\n")
    return "\n".join(f"> {line}" if line else ">" for line in chosen)


def git_send_reply(ss: SentSeries, parent_id: str, sender: str, subject: str, body: str, tmp: Path) -> bytes:
    """Send a reply with `git send-email --in-reply-to` to the test server; the bytes it received."""
    if not (Path(run(["git", "--exec-path"]).stdout.decode().strip()) / "git-send-email").exists():
        pytest.skip("git send-email is missing: apt-get install git-email (ci/setup.sh installs it)")
    tmp.mkdir(parents=True, exist_ok=True)
    draft = tmp / f"reply-{len(ss.server.recorder.messages)}.txt"
    draft.write_text(f"From: {sender}\nSubject: {subject}\n\n{body}", encoding="utf-8")
    before = len(ss.server.recorder.messages)
    run(["git", "send-email", "--quiet", "--confirm=never", "--suppress-cc=all", "--no-validate",
         "--8bit-encoding=UTF-8", f"--from={sender}", "--to=devel@example.org", f"--in-reply-to={parent_id}",
         "--smtp-server=127.0.0.1", f"--smtp-server-port={ss.server.port}", "--smtp-encryption=none",
         "--no-chain-reply-to", str(draft)], cwd=tmp)
    assert len(ss.server.recorder.messages) == before + 1
    return ss.received()[-1]


@pytest.fixture
def sent_series(mail_project: MailProject) -> Iterator[SentSeries]:
    """``demo`` v2 (cover + 2 patches) sent through patchkit to a recording server (kept running)."""
    mail_project.record()
    server = Server(Recorder())
    server.__enter__()
    try:
        send_email(mail_project.project, "demo", smtp_options(server))
        sent = [parse(_lf(e.original_content)) for e in server.recorder.messages]
        yield SentSeries(mail_project, server, sent)
    finally:
        server.__exit__()
