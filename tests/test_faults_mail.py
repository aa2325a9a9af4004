"""send-email against a misbehaving server and a full disk: no message lost, none sent twice.

The servers are real aiosmtpd servers on 127.0.0.1 whose handler injects the fault
(a 554 at the end of DATA, a full journal disk at the moment a message is accepted).
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from pathlib import Path

import git
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope as SmtpEnvelope, Session
from fixtures.disks import PAGE, fill, small_tmpfs
from fixtures.mail import MailProject, Recorder, Rejecting, Server, authenticator, free_port, smtp_options

from patchkit.errors import MailError
from patchkit.mailer.send import SendOptions, send_email


def events(mp: MailProject, version: int = 2) -> list[dict]:
    path = mp.journal(version)
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def message_ids(messages: list[SmtpEnvelope]) -> list[str]:
    ids = []
    for m in messages:
        assert m.original_content is not None
        for line in m.original_content.split(b"\r\n"):
            if line.lower().startswith(b"message-id:"):
                ids.append(line.split(b":", 1)[1].strip().decode())
    return ids


def frozen(mp: MailProject) -> bool:
    """Whether v2 was tagged or marked sent."""
    info = mp.series().version_info(2)
    tags = [t.name for t in git.Repo(mp.tree()).tags] if (mp.tree() / ".git").exists() else []
    return bool(info and (info.sent or info.tag)) or "demo-v2" in tags


def test_a_554_at_the_end_of_data_is_not_sent(mail_project: MailProject) -> None:
    mail_project.record()
    progress: list[str] = []
    with Server(Rejecting(reject_at=2)) as srv:
        with pytest.raises(MailError, match="554") as caught:
            send_email(mail_project.project, "demo", smtp_options(srv), progress=progress.append)
        assert "[2/3]" in str(caught.value) and "--resume" in str(caught.value)
        assert len(srv.recorder.messages) == 1
        assert not any("[2/3] sent" in line for line in progress)
        planned = events(mail_project)[0]["message_ids"]
        accepted = [e["message_id"] for e in events(mail_project) if e["event"] == "accepted"]
        assert accepted == planned[:1]
        assert "done" not in [e["event"] for e in events(mail_project)]
        assert not frozen(mail_project)
        report = send_email(mail_project.project, "demo", smtp_options(srv, resume=True))
    assert report.sent == planned[1:]
    assert message_ids(srv.recorder.messages) == planned  # each once
    assert frozen(mail_project)


# --- the journal cannot be written once the server accepted a message ---------------------------


def end_page(journal: Path) -> None:
    """Pad ``journal`` with a blank line to the end of its last page, as if its records had filled it.

    Only then does the next record need new space (on a full disk a write into an
    allocated page still succeeds). Readers skip blank lines.
    """
    pad = -journal.stat().st_size % PAGE
    if pad:
        with open(journal, "ab") as f:
            f.write(b" " * (pad - 1) + b"\n")


@dataclass
class FillingDisk(Recorder):
    """Accepts every message; when accepting message ``fill_at``, fills the disk of ``journal`` first."""

    fill_at: int = 0
    disk: Path | None = None
    journal: Path | None = None

    async def handle_DATA(self, server: SMTP, session: Session, envelope: SmtpEnvelope) -> str:
        if len(self.messages) + 1 == self.fill_at and self.disk is not None and self.journal is not None:
            self.fill_at = 0  # once
            end_page(self.journal)
            fill(self.disk)
        return await super().handle_DATA(server, session, envelope)


def test_a_journal_write_failing_after_acceptance_never_resends(mail_project: MailProject,
                                                                isolated_cache: Path) -> None:
    mail_project.record()
    with (small_tmpfs(isolated_cache / "mail") as disk,
          Server(FillingDisk(fill_at=1, disk=disk, journal=mail_project.journal())) as srv):
        with pytest.raises(MailError) as caught:
            send_email(mail_project.project, "demo", smtp_options(srv))
        said = str(caught.value)
        assert "[1/3]" in said and "accepted by the server" in said and "No space left" in said
        assert str(mail_project.journal()) in said
        assert len(srv.recorder.messages) == 1 and not frozen(mail_project)
        (disk / "filler").unlink()
        # The journal shows the cover letter sent but not answered: --resume must not send it again blindly.
        with pytest.raises(MailError, match="--in-doubt") as doubt:
            send_email(mail_project.project, "demo", smtp_options(srv, resume=True))
        assert "[1/3]" in str(doubt.value)
        assert len(srv.recorder.messages) == 1
        report = send_email(mail_project.project, "demo", smtp_options(srv, resume=True, in_doubt="sent"))
        planned = events(mail_project)[0]["message_ids"]
    assert report.skipped == planned[:1] and report.sent == planned[1:]
    assert message_ids(srv.recorder.messages) == planned  # the cover letter exactly once
    assert frozen(mail_project)


def test_in_doubt_resend_sends_it_again_on_the_users_word(mail_project: MailProject, isolated_cache: Path) -> None:
    mail_project.record()
    with (small_tmpfs(isolated_cache / "mail") as disk,
          Server(FillingDisk(fill_at=2, disk=disk, journal=mail_project.journal())) as srv):
        with pytest.raises(MailError, match=r"\[2/3\]"):
            send_email(mail_project.project, "demo", smtp_options(srv))
        (disk / "filler").unlink()
        srv.recorder.messages.pop()  # as if the server had lost it
        send_email(mail_project.project, "demo", smtp_options(srv, resume=True, in_doubt="resend"))
        assert message_ids(srv.recorder.messages) == events(mail_project)[0]["message_ids"]


def test_a_full_journal_disk_before_sending_sends_nothing(mail_project: MailProject, isolated_cache: Path) -> None:
    mail_project.record()
    with small_tmpfs(isolated_cache / "mail") as disk, Server(Recorder()) as srv:
        filler = fill(disk)
        with pytest.raises(MailError, match="No space left") as caught:
            send_email(mail_project.project, "demo", smtp_options(srv))
        assert str(mail_project.journal().parent) in str(caught.value)
        filler.unlink()
        assert srv.recorder.messages == []
        send_email(mail_project.project, "demo", smtp_options(srv))
    assert len(srv.recorder.messages) == 3


# --- resuming to other recipients ----------------------------------------------------------------


def test_resume_to_other_recipients_is_refused_without_the_override(mail_project: MailProject) -> None:
    mail_project.record()
    with Server(Recorder(drop_after=1)) as srv:
        with pytest.raises(MailError):
            send_email(mail_project.project, "demo", smtp_options(srv))
        with pytest.raises(MailError, match="other recipients") as caught:
            send_email(mail_project.project, "demo",
                       smtp_options(srv, resume=True, to=["other@example.org"], no_to=True))
        assert "devel@example.org" in str(caught.value) and "--new-recipients" in str(caught.value)
        assert len(srv.recorder.messages) == 1
        send_email(mail_project.project, "demo",
                   smtp_options(srv, resume=True, to=["other@example.org"], no_to=True, new_recipients=True))
    assert [m.rcpt_tos[0] for m in srv.recorder.messages] == ["devel@example.org", "other@example.org",
                                                               "other@example.org"]


# --- a wrong password is said at once ---------------------------------------------------------


class OneLoginAttempt(SMTP):
    """A server that answers a failed AUTH with 535, then never answers another AUTH on that connection
    (as servers that tarpit or drop repeated failures do). aiosmtpd makes one per connection."""

    auth_failed = False

    async def smtp_AUTH(self, arg: str) -> None:
        if self.auth_failed:
            await asyncio.sleep(3600)
        await super().smtp_AUTH(arg)
        if self.session is not None and not self.session.authenticated:
            self.auth_failed = True


class OneLoginController(Controller):
    def factory(self) -> SMTP:
        return OneLoginAttempt(self.handler, **self.SMTP_kwargs)


def test_a_wrong_password_is_said_at_once(mail_project: MailProject) -> None:
    mail_project.record()
    recorder = Recorder()
    port = free_port()
    controller = OneLoginController(recorder, hostname="127.0.0.1", port=port, authenticator=authenticator,
                                    auth_require_tls=False)
    controller.start()
    try:
        options = SendOptions(smtp={"server": "127.0.0.1", "port": str(port), "user": "jane"})
        with pytest.raises(MailError) as caught:
            send_email(mail_project.project, "demo", options, environ={"PATCHKIT_SMTP_PASS": "wrong"})
    finally:
        controller.stop()
    said = str(caught.value)
    assert "rejected the login: 535" in said and "timed out" not in said
    assert recorder.messages == []
