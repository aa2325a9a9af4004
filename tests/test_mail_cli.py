"""`patchkit send-email` as a user runs it: a subprocess, settings from git config, exit codes."""

from __future__ import annotations

import ssl
from pathlib import Path

from fixtures.mail import USERS, MailProject, Recorder, Server, authenticator

from patchkit.mailer.smtp import read_settings
from patchkit.run import run


def git_config(cwd: Path, *pairs: tuple[str, str], scope: str = "--global") -> None:
    for key, value in pairs:
        run(["git", "config", scope, key, value], cwd=cwd)


def test_refused_send_exits_1_with_the_reason(mail_project: MailProject) -> None:
    status, out = mail_project.cli("send-email", "--smtp-server", "127.0.0.1", "--smtp-port", "1")
    assert status == 1
    assert "error: demo v2 may not be sent yet" in out and "freedos: not tested" in out
    assert "`patchkit test --matrix`" in out


def test_a_dry_run_of_an_untested_revision_shows_the_refusal_as_a_banner(mail_project: MailProject) -> None:
    status, out = mail_project.cli("send-email", "--dry-run")
    assert status == 0, out
    assert "* A real send would be REFUSED: demo v2 may not be sent yet" in out
    assert out.count("Subject: [PATCH v2 ") == 3 and "nothing sent" in out


def test_many_untested_cells_are_one_line_of_the_refusal(mail_project: MailProject) -> None:
    manifest = mail_project.root / "series" / "demo" / "series.toml"
    manifest.write_text(manifest.read_text() + "".join(f'\n[[configs]]\nname = "c{n}"\n' for n in range(12)))
    status, out = mail_project.cli("send-email", "--smtp-server", "127.0.0.1", "--smtp-port", "1")
    assert status == 1
    assert "  - 24 cells untested (`patchkit status` shows which)\n" in out
    assert "not tested on this revision" not in out
    assert "hint: run `patchkit test --matrix` for this revision, or pass --force --reason TEXT" in out


def test_dry_run_shows_recipients_and_mails(mail_project: MailProject) -> None:
    mail_project.record()
    status, out = mail_project.cli("send-email", "demo", "--dry-run", "--cc", "a@example.org",
                           "--cc", "B <b@example.org>", "--cc", "Reviewer <REVIEWER@example.com>")
    assert status == 0, out
    assert "To: Devel List <devel@example.org>" in out
    # As git send-email's: --cc adds to the manifest's Cc (an address already there is not added twice).
    assert "Cc: reviewer@example.com, a@example.org, B <b@example.org>\n" in out
    assert "Envelope recipients: devel@example.org, reviewer@example.com, a@example.org, b@example.org" in out
    assert out.count("Subject: [PATCH v2 ") == 3 and "nothing sent" in out
    status, out = mail_project.cli("send-email", "--dry-run", "--no-to", "--to", "x@example.org", "--no-cc")
    assert status == 0, out
    assert "Envelope recipients: x@example.org\n" in out and "reviewer@example.com" not in out


def test_send_with_settings_from_git_config(mail_project: MailProject, tls_ca: tuple[Path, ssl.SSLContext]) -> None:
    """git send-email's keys: global server/encryption/CA, repository user/password/port."""
    ca_file, server_ctx = tls_ca
    mail_project.record()
    run(["git", "init", "-q", mail_project.root])
    with Server(Recorder(), tls_context=server_ctx, require_starttls=True, authenticator=authenticator,
                auth_require_tls=True) as srv:
        git_config(mail_project.root, ("sendemail.smtpServer", "127.0.0.1"), ("sendemail.smtpEncryption", "tls"),
                   ("sendemail.smtpSslCertPath", str(ca_file)), ("sendemail.smtpServerPort", "1"))
        git_config(mail_project.root, ("sendemail.smtpServerPort", str(srv.port)), ("sendemail.smtpUser", "jane"),
                   ("sendemail.smtpPass", "wrong"), ("sendemail.from", "Jane D <jane@example.org>"), scope="--local")
        status, out = mail_project.cli("send-email")
        assert status == 1 and "rejected the login" in out and "wrong" not in out
        status, out = mail_project.cli("send-email", env={"PATCHKIT_SMTP_PASS": USERS["jane"]})
    assert status == 0, out
    assert "[1/3] sent" in out and "[3/3] sent" in out and "tagged demo-v2" in out
    assert USERS["jane"] not in out
    assert len(srv.recorder.messages) == 3
    assert srv.recorder.messages[0].mail_from == "jane@example.org"


def test_settings_precedence_options_over_environment_over_git(mail_project: MailProject) -> None:
    git_config(mail_project.root, ("sendemail.smtpServer", "git.example"), ("sendemail.smtpEncryption", "ssl"))
    s = read_settings(mail_project.root, {}, {})
    assert (s.server, s.port, s.encryption) == ("git.example", 465, "ssl")
    s = read_settings(mail_project.root, {}, {"PATCHKIT_SMTP_SERVER": "env.example", "PATCHKIT_SMTP_PORT": "2525",
                                                 "PATCHKIT_SMTP_USER": "u", "PATCHKIT_SMTP_PASS": "pw-123"})
    assert (s.server, s.port, s.user) == ("env.example", 2525, "u")
    assert "pw-123" not in repr(s) and "pw-123" not in s.describe()
    s = read_settings(mail_project.root, {"server": "opt.example", "encryption": "none"},
                      {"PATCHKIT_SMTP_SERVER": "env.example"})
    assert (s.server, s.port, s.encryption) == ("opt.example", 25, "")


def test_missing_server_says_how_to_configure(mail_project: MailProject) -> None:
    mail_project.record()
    status, out = mail_project.cli("send-email")
    assert status == 1 and "no SMTP server configured" in out and "sendemail.smtpServer" in out


def test_contradictory_options_are_usage_errors(mail_project: MailProject, tmp_path: Path) -> None:
    status, out = mail_project.cli("send-email", "--dry-run", "--mbox", str(tmp_path / "x.mbox"))
    assert status == 2 and "pick one" in out
    status, out = mail_project.cli("send-email", "--reason", "because")
    assert status == 2 and "--reason goes with --force" in out
