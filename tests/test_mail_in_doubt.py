"""A message the server took whole but never answered is IN DOUBT, never resent without the user's word.

Real aiosmtpd servers on 127.0.0.1: one keeps a message and closes the connection instead of
answering, one never answers at all.
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from aiosmtpd.smtp import SMTP, Envelope as SmtpEnvelope, Session
from fixtures.mail import MailProject, Recorder, Server, Vanishing, smtp_options
from fixtures.review import SentSeries

from patchkit.errors import MailError
from patchkit.mailer.journal import Journal, report_journal_path
from patchkit.mailer.send import send_email
from patchkit.mailer.smtp import DeliveryInDoubt, SmtpConnection, SmtpSettings


def events(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def ids(messages: list[SmtpEnvelope]) -> list[str]:
    out = []
    for m in messages:
        assert m.original_content is not None
        found = re.search(rb"^Message-ID: (\S+)\r$", m.original_content, re.M | re.I)
        assert found
        out.append(found.group(1).decode())
    return out


def test_a_closed_connection_after_data_is_in_doubt_and_never_resent_silently(mail_project: MailProject) -> None:
    mail_project.record()
    with Server(Vanishing(vanish_at=1)) as srv:
        with pytest.raises(MailError, match=r"\[1/3\] .* may have been delivered") as caught:
            send_email(mail_project.project, "demo", smtp_options(srv))
        said = str(caught.value)
        assert "nothing of it was delivered" not in said and "--in-doubt sent" in said
        assert [e["event"] for e in events(mail_project.journal())] == ["start", "sending", "no-answer"]
        with pytest.raises(MailError, match="--in-doubt"):
            send_email(mail_project.project, "demo", smtp_options(srv, resume=True))
        assert len(srv.recorder.messages) == 1
        report = send_email(mail_project.project, "demo", smtp_options(srv, resume=True, in_doubt="sent"))
    planned = events(mail_project.journal())[0]["message_ids"]
    assert report.sent == planned[1:]
    assert ids(srv.recorder.messages) == planned  # the cover letter reached the server once


def test_a_report_without_an_answer_is_in_doubt(sent_series: SentSeries) -> None:
    ss = sent_series
    with Server(Vanishing(vanish_at=1)) as srv:
        args = ["report", "--mail", "--smtp-server", "127.0.0.1", "--smtp-port", str(srv.port)]
        status, out = ss.mp.cli(*args)
        assert status == 1 and "may have been delivered" in out and "nothing of it was delivered" not in out, out
        journal = report_journal_path(ss.mp.store, "demo", 2)
        assert [e["event"] for e in events(journal)] == ["start", "sending", "no-answer"]
        status, out = ss.mp.cli(*args)  # a second report is refused: the first one may be on the list
        assert status == 1 and "may have been delivered" in out and "--resend" in out, out
        assert len(srv.recorder.messages) == 1
        status, out = ss.mp.cli("status", "demo")
        assert "report mail v2: IN DOUBT" in out, out


@dataclass
class Silent(Recorder):
    """Keeps the message and never answers its DATA (until ``release``)."""

    release: threading.Event = field(default_factory=threading.Event)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: SmtpEnvelope) -> str:
        answer = await super().handle_DATA(server, session, envelope)
        while not self.release.is_set():
            await asyncio.sleep(0.05)
        return answer


def test_journal_attempt_leaves_a_silent_server_in_doubt(mail_project: MailProject) -> None:
    journal = Journal(mail_project.store.mail("demo") / "probe.journal")
    journal.start("rev", ["<a@x>"], ["s"], None)
    with Server(Silent()) as srv:
        silent = srv.recorder
        assert isinstance(silent, Silent)
        try:
            with (SmtpConnection(SmtpSettings("127.0.0.1", srv.port, timeout=1.0)) as conn,
                  pytest.raises(DeliveryInDoubt)):
                journal.attempt(conn, "jane@example.org", ["devel@example.org"], "<a@x>",
                                b"Message-ID: <a@x>\r\nSubject: s\r\n\r\nbody\r\n")
        finally:
            silent.release.set()
    state = journal.last_send()
    assert state is not None and list(state.in_doubt) == ["<a@x>"] and not state.failures
