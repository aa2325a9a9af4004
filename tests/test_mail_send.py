"""send-email against real aiosmtpd servers on 127.0.0.1: plain, STARTTLS, TLS, AUTH, drops, refusals."""

from __future__ import annotations

import email
import email.message
import email.policy
import json
import ssl
from pathlib import Path

import git
import pytest
from aiosmtpd.smtp import Envelope as SmtpEnvelope
from fixtures.mail import ROM_SHA, USERS, MailProject, Recorder, Server, authenticator, smtp_options

from patchkit.errors import MailError
from patchkit.mailer.send import send_email
from patchkit.run import run


def _msg(envelope: SmtpEnvelope) -> email.message.EmailMessage:
    """A received message parsed as a mail store would keep it (LF line ends)."""
    assert envelope.original_content is not None
    data = envelope.original_content.replace(b"\r\n", b"\n")
    return email.message_from_bytes(data, policy=email.policy.default)


def _ids(messages: list[SmtpEnvelope]) -> list[str]:
    return [_msg(m)["Message-ID"] for m in messages]


def _events(mp: MailProject, version: int = 2) -> list[dict]:
    path = mp.journal(version)
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_plain_send_threads_journals_and_freezes(mail_project: MailProject) -> None:
    mail_project.record()
    progress: list[str] = []
    with Server(Recorder()) as srv:
        report = send_email(mail_project.project, "demo", smtp_options(srv), progress=progress.append)
    got = srv.recorder.messages
    assert len(got) == 3 and _ids(got) == report.sent
    for env in got:
        assert env.mail_from == "jane@example.org"
        assert env.rcpt_tos == ["devel@example.org", "reviewer@example.com"]
    msgs = [_msg(m) for m in got]
    assert msgs[0]["Subject"] == "[PATCH v2 0/2] virtio-blk sanboot for gPXE"
    assert [m["In-Reply-To"] for m in msgs[1:]] == [msgs[0]["Message-ID"]] * 2
    cover = msgs[0].get_content()
    assert "freedos" in cover and "tcg" in cover and "0.5 s" in cover and "65536 bytes" in cover
    assert "Changes in v2:\n- change number 2" in cover
    assert any("[3/3] sent" in line for line in progress)
    # What arrived is byte for byte what was rendered (dot-stuffing undone, CRLF as sent).
    assert [m.original_content for m in got] == [mail.as_bytes("\r\n") for mail in report.mails]
    # Journal: start, three accepted, done; manifest and tag frozen.
    events = _events(mail_project)
    assert [e["event"] for e in events] == ["start", *["sending", "accepted"] * 3, "done"]
    assert [e["message_id"] for e in events[2:7:2]] == events[0]["message_ids"] == report.sent
    info = mail_project.series().version_info(2)
    assert info is not None and info.sent and info.tag == "demo-v2"
    repo = git.Repo(mail_project.tree())
    message = repo.commit("demo-v2").message
    assert isinstance(message, str) and message.startswith("[virtio] Add virtio block device")
    assert report.tag == "demo-v2"


def test_starttls_with_test_ca(mail_project: MailProject, tls_ca: tuple[Path, ssl.SSLContext]) -> None:
    ca_file, server_ctx = tls_ca
    mail_project.record()
    with Server(Recorder(), tls_context=server_ctx, require_starttls=True) as srv:
        with pytest.raises(MailError, match=r"certificate .* failed verification"):
            send_email(mail_project.project, "demo", smtp_options(srv, smtp={"encryption": "tls"}))
        assert srv.recorder.messages == []
        send_email(mail_project.project, "demo",
                   smtp_options(srv, smtp={"encryption": "tls", "ca": str(ca_file)}))
    assert len(srv.recorder.messages) == 3


def test_implicit_tls_with_test_ca(mail_project: MailProject, tls_ca: tuple[Path, ssl.SSLContext]) -> None:
    ca_file, server_ctx = tls_ca
    mail_project.record()
    with Server(Recorder(), ssl_context=server_ctx) as srv:
        send_email(mail_project.project, "demo", smtp_options(srv, smtp={"encryption": "ssl", "ca": str(ca_file)}))
    assert len(srv.recorder.messages) == 3


def test_plain_client_against_starttls_only_server(mail_project: MailProject,
                                                   tls_ca: tuple[Path, ssl.SSLContext]) -> None:
    _, server_ctx = tls_ca
    mail_project.record()
    with (Server(Recorder(), tls_context=server_ctx, require_starttls=True) as srv,
          pytest.raises(MailError, match=r"530.*\n.*--smtp-encryption tls")):
        send_email(mail_project.project, "demo", smtp_options(srv))
    assert srv.recorder.messages == []


def test_auth_over_starttls_password_from_environment(mail_project: MailProject, tls_ca: tuple[Path, ssl.SSLContext],
                                                      caplog: pytest.LogCaptureFixture) -> None:
    ca_file, server_ctx = tls_ca
    mail_project.record()
    secret = USERS["jane"]
    smtp = {"encryption": "tls", "ca": str(ca_file), "user": "jane"}
    kwargs = {"tls_context": server_ctx, "require_starttls": True, "authenticator": authenticator,
              "auth_require_tls": True}
    caplog.set_level("DEBUG")
    with Server(Recorder(), **kwargs) as srv:
        with pytest.raises(MailError) as wrong:
            send_email(mail_project.project, "demo", smtp_options(srv, smtp=smtp),
                       environ={"PATCHKIT_SMTP_PASS": "not-" + secret})
        assert "rejected the login" in str(wrong.value) and secret not in str(wrong.value)
        report = send_email(mail_project.project, "demo", smtp_options(srv, smtp=smtp),
                            environ={"PATCHKIT_SMTP_PASS": secret})
    assert len(srv.recorder.messages) == 3
    assert secret not in repr(report) and secret not in caplog.text
    assert secret not in mail_project.journal().read_text()


def test_auth_password_from_a_git_credential_helper(mail_project: MailProject, tls_ca: tuple[Path, ssl.SSLContext],
                                                    tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Like git send-email: no smtpPass, so `git credential fill`; approve what worked, reject what did not.
    ca_file, server_ctx = tls_ca
    mail_project.record()
    monkeypatch.setenv("GIT_TERMINAL_PROMPT", "0")  # never wait on a terminal prompt in a test
    store = tmp_path / "credentials"
    kwargs = {"tls_context": server_ctx, "require_starttls": True, "authenticator": authenticator,
              "auth_require_tls": True}
    with Server(Recorder(), **kwargs) as srv:
        smtp = {"encryption": "tls", "ca": str(ca_file), "user": "jane"}
        with pytest.raises(MailError, match="no credential helper gave one") as none:
            send_email(mail_project.project, "demo", smtp_options(srv, smtp=smtp))
        assert "git credential helper" in str(none.value)

        run(["git", "config", "--global", "credential.helper", f"store --file={store}"], cwd=mail_project.root)
        seed = f"protocol=smtp\nhost=127.0.0.1:{srv.port}\nusername=jane\npassword=not-{USERS['jane']}\n\n"
        run(["git", "credential", "approve"], cwd=mail_project.root, input=seed.encode())
        with pytest.raises(MailError, match="rejected the login"):
            send_email(mail_project.project, "demo", smtp_options(srv, smtp=smtp))
        assert store.read_text().strip() == ""  # the refused password was rejected (erased)

        seed = seed.replace(f"not-{USERS['jane']}", USERS["jane"])
        run(["git", "credential", "approve"], cwd=mail_project.root, input=seed.encode())
        send_email(mail_project.project, "demo", smtp_options(srv, smtp=smtp))
    assert len(srv.recorder.messages) == 3
    assert f"jane:{USERS['jane']}@127.0.0.1" in store.read_text()  # approved: still stored


def test_auth_refused_without_tls(mail_project: MailProject, tls_ca: tuple[Path, ssl.SSLContext]) -> None:
    _, server_ctx = tls_ca
    mail_project.record()
    with (Server(Recorder(), tls_context=server_ctx, authenticator=authenticator, auth_require_tls=True) as srv,
          pytest.raises(MailError, match="STARTTLS")):
        send_email(mail_project.project, "demo", smtp_options(srv, smtp={"user": "jane"}),
                   environ={"PATCHKIT_SMTP_PASS": USERS["jane"]})
    assert srv.recorder.messages == []


def test_dropped_connection_then_resume_delivers_each_once(mail_project: MailProject) -> None:
    mail_project.record()
    with Server(Recorder(drop_after=1)) as srv:
        with pytest.raises(MailError, match="--resume"):
            send_email(mail_project.project, "demo", smtp_options(srv))
        assert len(srv.recorder.messages) == 1
        events = _events(mail_project)
        assert [e["event"] for e in events] == ["start", "sending", "accepted", "sending", "failed"]
        planned = events[0]["message_ids"]
        with pytest.raises(MailError, match="--resume"):
            send_email(mail_project.project, "demo", smtp_options(srv))  # a fresh send would duplicate
        report = send_email(mail_project.project, "demo", smtp_options(srv, resume=True))
    assert report.skipped == planned[:1] and report.sent == planned[1:]
    assert _ids(srv.recorder.messages) == planned  # each exactly once, same IDs, in order
    threaded = _msg(srv.recorder.messages[2])
    assert threaded["In-Reply-To"] == planned[0]
    assert _events(mail_project)[-1]["event"] == "done"


def test_refused_recipient_is_clear_and_journal_stays_correct(mail_project: MailProject) -> None:
    mail_project.record()
    with Server(Recorder(refuse={"reviewer@example.com"})) as srv:
        with pytest.raises(MailError, match=r"reviewer@example\.com: 550"):
            send_email(mail_project.project, "demo", smtp_options(srv))
        assert srv.recorder.messages == []
        events = _events(mail_project)
        assert [e["event"] for e in events] == ["start", "sending", "failed"]
        assert events[2]["message_id"] == events[0]["message_ids"][0]
        # Fix the Cc on the command line and finish the same send.
        send_email(mail_project.project, "demo",
                   smtp_options(srv, resume=True, cc=["reviewer@example.net"], no_cc=True))
    assert _ids(srv.recorder.messages) == events[0]["message_ids"]
    assert srv.recorder.messages[0].rcpt_tos == ["devel@example.org", "reviewer@example.net"]


def test_server_down_is_a_clear_error(mail_project: MailProject) -> None:
    mail_project.record()
    with Server(Recorder()) as srv:
        port = srv.port
    with pytest.raises(MailError, match=r"cannot talk to 127\.0\.0\.1"):
        send_email(mail_project.project, "demo", smtp_options(srv, smtp={"port": str(port)}))
    assert ROM_SHA  # results were recorded; only the server was missing
