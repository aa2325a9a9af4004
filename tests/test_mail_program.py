"""sendemail.smtpServer naming a program: Debian's msmtp piped each message, journaled like SMTP.

msmtp (/usr/bin/msmtp, `ci/setup.sh` installs it) delivers to a strict aiosmtpd server on
127.0.0.1, told where by sendemail.smtpServerOption, as a kernel developer's set-up does.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from fixtures.mail import MailProject, Recorder, Server, free_port

from patchkit.run import run

MSMTP = "/usr/bin/msmtp"

pytestmark = pytest.mark.skipif(shutil.which(MSMTP) is None, reason=f"{MSMTP} missing: `bash ci/setup.sh` installs "
                                "msmtp (apt-get install msmtp)")


def use_msmtp(mp: MailProject, port: int) -> None:
    """git config as a user of msmtp writes it: the program, then its options (no msmtprc needed)."""
    for key, value in (("sendemail.smtpServer", MSMTP), ("sendemail.smtpServerOption", "--host=127.0.0.1"),
                       ("sendemail.smtpServerOption", f"--port={port}")):
        run(["git", "config", "--global", "--add", key, value], cwd=mp.root)


def events(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_a_send_through_msmtp_is_threaded_and_journaled_like_smtp(mail_project: MailProject) -> None:
    mail_project.record()
    with Server(Recorder()) as srv:
        use_msmtp(mail_project, srv.port)
        status, out = mail_project.cli("send-email")
        assert status == 0, out
        assert f"sending through {MSMTP} --host=127.0.0.1 --port={srv.port}" in out and "tagged demo-v2" in out
        got = srv.recorder.messages
        assert len(got) == 3
        for envelope in got:  # the envelope sender and recipients went on msmtp's command line
            assert envelope.mail_from == "jane@example.org"
            assert envelope.rcpt_tos == ["devel@example.org", "reviewer@example.com"]
        journal = events(mail_project.journal())
        assert [e["event"] for e in journal] == ["start", *["sending", "accepted"] * 3, "done"]
        planned = journal[0]["message_ids"]
        contents = [e.original_content or b"" for e in got]
        assert all(f"Message-ID: {mid}\r\n".encode() in c for mid, c in zip(planned, contents, strict=True))
        assert all(f"In-Reply-To: {planned[0]}\r\n".encode() in c for c in contents[1:])
        # report --mail goes the same way, under the cover letter.
        status, out = mail_project.cli("report", "--mail")
        assert status == 0, out
        assert len(got) == 4 and f"In-Reply-To: {planned[0]}\r\n".encode() in (got[3].original_content or b"")


def test_a_failing_program_leaves_the_message_in_doubt(mail_project: MailProject) -> None:
    mail_project.record()
    use_msmtp(mail_project, free_port())  # nothing listens there
    status, out = mail_project.cli("send-email")
    assert status == 1, out
    assert "[1/3]" in out and "may have been delivered" in out and "exited with status" in out, out
    assert "cannot connect" in out  # msmtp's own words, so the user can tell
    assert [e["event"] for e in events(mail_project.journal())] == ["start", "sending", "no-answer"]
    status, out = mail_project.cli("send-email", "--resume")
    assert status == 1 and "--in-doubt" in out, out
