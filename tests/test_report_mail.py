"""`patchkit report --mail`: a Patchew-style test report threaded under the cover letter, over real SMTP."""

from __future__ import annotations

import email
import email.policy
import sys
from pathlib import Path

import pytest
from test_mail_fixtures import MailProject, Recorder, Server, smtp_options
from test_review_fixtures import SentSeries

from patchkit.errors import MailError
from patchkit.mailer.send import send_email
from patchkit.report.mail import mail_report
from patchkit.review.thread import import_replies, reviews
from patchkit.run import run

pytest_plugins = ("test_review_fixtures",)


def test_report_reply_goes_to_the_list_under_the_cover(sent_series: SentSeries, tmp_path: Path) -> None:
    ss = sent_series
    before = len(ss.server.recorder.messages)
    proc = run([sys.executable, "-m", "patchkit", "-C", ss.mp.root, "report", "--mail", "--smtp-server",
                "127.0.0.1", "--smtp-port", str(ss.server.port)], check=False)
    assert proc.returncode == 0, proc.stdout.decode()
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
    ss.mp.record(["freedos"], passed=False)
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
