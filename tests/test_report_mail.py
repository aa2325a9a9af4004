"""`patchkit report --mail`: a Patchew-style test report threaded under the cover letter, over real SMTP."""

from __future__ import annotations

import asyncio
import email
import email.policy
import json
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.smtp import SMTP, Envelope as SmtpEnvelope, Session
from fixtures.cli import start_patchkit
from fixtures.mail import MailProject, Recorder, Rejecting, Server, smtp_options
from fixtures.processes import reaped, wait_until
from fixtures.review import SentSeries

from patchkit.errors import MailError
from patchkit.mailer.journal import report_journal_path
from patchkit.mailer.send import send_email
from patchkit.report.mail import mail_report
from patchkit.review.thread import import_replies, reviews

WHEN = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00"  # a send's start as status shows it (UTC)


def test_report_reply_goes_to_the_list_under_the_cover(sent_series: SentSeries, tmp_path: Path) -> None:
    ss = sent_series
    before = len(ss.server.recorder.messages)
    status, out = ss.mp.cli("report", "--mail", "--smtp-server", "127.0.0.1", "--smtp-port", str(ss.server.port))
    assert status == 0, out
    assert len(ss.server.recorder.messages) == before + 1
    got = ss.server.recorder.messages[-1]
    assert got.rcpt_tos == ["devel@example.org", "reviewer@example.com"]
    msg = email.message_from_bytes(ss.received()[-1], policy=email.policy.default)
    assert msg["In-Reply-To"] == ss.ids[0] and msg["References"] == ss.ids[0]
    assert msg["Subject"] == f"Re: {ss.sent[0]['Subject']}"
    body = msg.get_content()
    assert "found no problems" in body and "freedos  pass (tcg, marker at 0.5 s)" in body
    assert "1/2 [sanboot] Prevent leaking" in body and ": not recorded" in body
    # The reply threads like any other: imported back, it is the series' own answer (no trailers, no comments).
    box = ss.mbox(tmp_path / "all.mbox")
    report = import_replies(ss.mp.store, [box], ["demo"])
    assert report.unmatched == [] and len(report.stored["demo"]) == 1
    review = reviews(ss.mp.store, ss.mp.series())[2]
    assert all(not p.trailers and not p.comments for p in review.patches)


def test_report_names_failures_and_untested_cells(sent_series: SentSeries) -> None:
    ss = sent_series
    ss.mp.record(["freedos"], passed=False, rom="cd" * 32)  # a new ROM: its first boot failed
    mail = mail_report(ss.mp.project, ss.mp.series(), None, dry_run=True, smtp={})
    body = mail.message.get_content()
    assert "found 1 problem(s):\n  - freedos on pc FAILED: no marker" in body
    assert mail.server is None


def test_report_is_gated_on_a_sent_version_with_results(mail_project: MailProject) -> None:
    with pytest.raises(MailError, match="v2 was never sent"):
        mail_report(mail_project.project, mail_project.series(), None, dry_run=True, smtp={})
    with Server(Recorder()) as srv:  # sent past the gate, so no run was ever recorded
        send_email(mail_project.project, "demo", smtp_options(srv, force=True, reason="no test machine"))
    with pytest.raises(MailError, match=r"no test results for demo v2 \(revision [0-9a-f]{12}\)"):
        mail_report(mail_project.project, mail_project.series(), None, dry_run=True, smtp={})


# --- the report's journal: once per revision, interruptions visible -------------------------------


def report_args(port: int, *args: str) -> list[str]:
    return ["report", "--mail", "--smtp-server", "127.0.0.1", "--smtp-port", str(port), *args]


def report_events(ss: SentSeries) -> list[dict[str, Any]]:
    path = report_journal_path(ss.mp.store, "demo", 2)
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def message_id(data: bytes | None) -> str:
    assert data is not None
    return str(email.message_from_bytes(data, policy=email.policy.default)["Message-ID"])


def test_a_report_goes_out_once_per_revision_unless_resent(sent_series: SentSeries) -> None:
    ss = sent_series
    send_journal = ss.mp.journal().read_bytes()
    status, out = ss.mp.cli(*report_args(ss.server.port))
    assert status == 0, out
    first = message_id(ss.received()[-1])
    assert [e["event"] for e in report_events(ss)] == ["start", "sending", "accepted"]
    start = report_events(ss)[0]
    assert start["message_ids"] == [first] and start["revision"] == ss.mp.series().revision_hash()
    assert report_events(ss)[2]["recipients"] == ["devel@example.org", "reviewer@example.com"]
    status, out = ss.mp.cli("status", "demo")
    assert re.search(rf"^  report mail v2: sent {WHEN} as {re.escape(first)}$", out, re.M), out

    status, out = ss.mp.cli(*report_args(ss.server.port))  # the same revision again: refused
    assert status == 1, out
    assert re.search(rf"a report on demo v2 \(revision [0-9a-f]{{12}}\) was already sent on {WHEN} as "
                     + re.escape(first), out), out
    assert "--resend" in out
    with pytest.raises(MailError, match="already sent"):  # a dry run shows what would go out: nothing
        mail_report(ss.mp.project, ss.mp.series(), None, dry_run=True, smtp={})
    assert len(ss.server.recorder.messages) == 4

    status, out = ss.mp.cli(*report_args(ss.server.port, "--resend"))
    assert status == 0, out
    assert len(ss.server.recorder.messages) == 5
    second = message_id(ss.received()[-1])
    assert second != first  # another report: a new message
    status, out = ss.mp.cli("status", "demo")
    assert re.search(rf"^  report mail v2: sent {WHEN} as {re.escape(second)} \(2 reports sent\)$", out, re.M), out
    assert ss.mp.journal().read_bytes() == send_journal  # the series' own journal is left alone


@dataclass
class Hanging(Recorder):
    """Takes the first message, then holds its answer until ``release`` (the sender may be gone by then)."""

    got: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: SmtpEnvelope) -> str:
        answer = await super().handle_DATA(server, session, envelope)
        if not self.got.is_set():
            self.got.set()
            while not self.release.is_set():
                await asyncio.sleep(0.02)
        return answer


def test_an_interrupted_report_is_in_doubt_and_needs_resend(sent_series: SentSeries) -> None:
    ss = sent_series
    with Server(Hanging()) as srv:
        hanging = srv.recorder
        assert isinstance(hanging, Hanging)
        try:
            with reaped(start_patchkit("-C", ss.mp.root, *report_args(srv.port))) as proc:
                wait_until(hanging.got.is_set, "the server to take the report")
                proc.kill()  # patchkit dies after the server took the report, before it heard the answer
        finally:
            hanging.release.set()
        assert len(srv.recorder.messages) == 1
        sent = message_id(srv.recorder.messages[0].original_content)
        assert [e["event"] for e in report_events(ss)] == ["start", "sending"]
        status, out = ss.mp.cli("status", "demo")
        assert re.search(rf"report mail v2: IN DOUBT: {re.escape(sent)} went to the server on {WHEN} ", out), out
        assert "`patchkit report --mail --resend`" in out

        status, out = ss.mp.cli(*report_args(srv.port))
        assert status == 1 and "may have been delivered" in out and "--resend" in out, out
        assert len(srv.recorder.messages) == 1
        status, out = ss.mp.cli(*report_args(srv.port, "--resend"))
        assert status == 0, out
        assert len(srv.recorder.messages) == 2
        resent = message_id(srv.recorder.messages[1].original_content)
    status, out = ss.mp.cli("status", "demo")
    assert re.search(rf"^  report mail v2: sent {WHEN} as {re.escape(resent)}$", out, re.M), out


def test_a_refused_report_is_journaled_and_may_be_sent_again(sent_series: SentSeries) -> None:
    ss = sent_series
    with Server(Rejecting(reject_at=1)) as srv:
        status, out = ss.mp.cli(*report_args(srv.port))
        assert status == 1 and "the report was not sent: " in out and "554" in out, out
        assert "--resume" not in out  # send-email's way on does not apply to a report
        assert srv.recorder.messages == []
    assert [e["event"] for e in report_events(ss)] == ["start", "sending", "failed"]
    status, out = ss.mp.cli("status", "demo")
    assert "report mail v2: not sent: " in out and "554" in out, out
    status, out = ss.mp.cli(*report_args(ss.server.port))  # nothing reached the list: no --resend needed
    assert status == 0, out
    status, out = ss.mp.cli("status", "demo")
    assert re.search(rf"^  report mail v2: sent {WHEN} as <\S+>$", out, re.M), out


def test_a_dry_run_report_journals_nothing(sent_series: SentSeries) -> None:
    """Negative control: nothing sent, nothing journaled, nothing shown in status."""
    ss = sent_series
    status, out = ss.mp.cli("report", "--mail", "--dry-run")
    assert status == 0 and "In-Reply-To: " + ss.ids[0] in out, out
    assert not report_journal_path(ss.mp.store, "demo", 2).exists()
    status, out = ss.mp.cli("status", "demo")
    assert "report mail" not in out, out

