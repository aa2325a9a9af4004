"""send-email asks before a real send on a terminal (recipients and message count), as git send-email's
sendemail.confirm does; --yes and sendemail.confirm decide otherwise; without a terminal it follows the setting."""

from __future__ import annotations

import os
import select
import subprocess
import sys

from fixtures.mail import MailProject, Recorder, Server

from patchkit.run import CHILD_LOCALE, run


def on_terminal(mp: MailProject, answer: str | None, *args: str) -> tuple[int, str]:
    """`patchkit send-email ARGS` with a pseudo-terminal as stdin, stdout and stderr; ``answer`` is typed when it
    asks (None: it must not ask). Exit status and everything it wrote."""
    master, slave = os.openpty()
    argv = [sys.executable, "-m", "patchkit", "-C", str(mp.root), "send-email", *args]
    out = b""
    proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, env={**os.environ, **CHILD_LOCALE},
                            start_new_session=True)
    os.close(slave)
    try:
        while True:
            ready, _, _ = select.select([master], [], [], 120)
            assert ready, f"no output for 120 s: {out!r}"
            try:
                chunk = os.read(master, 4096)
            except OSError:  # the terminal closed: the process is gone
                break
            if not chunk:
                break
            out += chunk
            if out.rstrip().endswith(b"[y/N]:"):
                assert answer is not None, f"asked although it must not: {out!r}"
                os.write(master, answer.encode() + b"\n")
        status = proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        os.close(master)
    return status, out.decode("utf-8", "replace").replace("\r\n", "\n")


def smtp_args(srv: Server) -> list[str]:
    return ["--smtp-server", "127.0.0.1", "--smtp-port", str(srv.port)]


def test_on_a_terminal_it_shows_recipients_and_count_and_asks(mail_project: MailProject) -> None:
    mail_project.record()
    with Server(Recorder()) as srv:
        status, out = on_terminal(mail_project, "n", *smtp_args(srv))
        assert status == 1, out
        assert "Send 3 message(s) of demo v2 through 127.0.0.1:" in out
        assert "  To: Devel List <devel@example.org>\n  Cc: reviewer@example.com\n" in out
        assert "nothing sent: the send was not confirmed" in out
        assert srv.recorder.messages == [] and not mail_project.journal().exists()
        status, out = on_terminal(mail_project, "y", *smtp_args(srv))
        assert status == 0, out
        assert len(srv.recorder.messages) == 3


def test_yes_and_never_do_not_ask(mail_project: MailProject) -> None:
    mail_project.record()
    with Server(Recorder()) as srv:
        status, out = on_terminal(mail_project, None, *smtp_args(srv), "--yes")
        assert status == 0, out
        run(["git", "config", "--global", "sendemail.confirm", "never"], cwd=mail_project.root)
        status, out = on_terminal(mail_project, None, *smtp_args(srv), "--resend")
        assert status == 0, out
    assert len(srv.recorder.messages) == 6


def test_without_a_terminal_only_always_stops_it(mail_project: MailProject) -> None:
    mail_project.record()
    with Server(Recorder()) as srv:
        run(["git", "config", "--global", "sendemail.confirm", "always"], cwd=mail_project.root)
        status, out = mail_project.cli("send-email", *smtp_args(srv))
        assert status == 1 and "no terminal to ask on" in out and "--yes" in out, out
        assert srv.recorder.messages == []
        status, out = mail_project.cli("send-email", *smtp_args(srv), "--yes")
        assert status == 0, out
        run(["git", "config", "--global", "sendemail.confirm", "auto"], cwd=mail_project.root)
        status, out = mail_project.cli("send-email", *smtp_args(srv), "--resend")  # the default: no question
        assert status == 0, out
    assert len(srv.recorder.messages) == 6
