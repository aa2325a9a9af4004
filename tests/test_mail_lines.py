"""What patchkit mails fits a strict SMTP server and a 78-column reader; report --mail answers where v2 went.

The servers are aiosmtpd's defaults on 127.0.0.1, which refuse any DATA line over 998
octets ("500 Line too long"), as RFC 5321 allows.
"""

from __future__ import annotations

import email
import email.message
import email.policy
import email.utils
import re
import time
from pathlib import Path

from aiosmtpd.smtp import Envelope as SmtpEnvelope
from fixtures.mail import MailProject, Recorder, Server, smtp_options

from patchkit.mailer.send import SendOptions, send_email
from patchkit.mailer.smtp import SmtpConnection, SmtpSettings
from patchkit.mailer.text import set_text_body
from patchkit.report.mail import mail_report
from patchkit.store import ResultKey, TestResult as StoredResult

LONG = "a-configuration-name-as-long-as-a-careful-maintainer-might-write"
CONFIGS = [f"{LONG}-{n:02d}" for n in range(12)]  # 12 configurations x 2 guests = 24 cells
REASON = ("the lab's QEMU host is down for the week; the series was booted by hand on a laptop "
          "(Zoë's), which is not recorded — ") * 4


def worst_case(mp: MailProject) -> None:
    """24 cells, long configuration names, non-ASCII names in the cover, recipients and authors."""
    path = mp.root / "series" / "demo"
    manifest = path / "series.toml"
    text = manifest.read_text().replace('"Devel List <devel@example.org>"', '"Dévél Lïst <devel@example.org>"')
    text += "".join(f'\n[[configs]]\nname = "{name}"\n' for name in CONFIGS)
    manifest.write_text(text)
    (path / "cover.txt").write_text("virtio-blk sanboot für gPXE — ünïcode in the title\n\n"
                                    "Zoë and Carolë tested this series.\n\n{tested}\n\nPlease review.\n")


def lines_of(envelope: SmtpEnvelope) -> list[bytes]:
    assert envelope.original_content is not None
    return envelope.original_content.split(b"\r\n")


def parsed(envelope: SmtpEnvelope) -> email.message.EmailMessage:
    assert envelope.original_content is not None
    msg = email.message_from_bytes(envelope.original_content.replace(b"\r\n", b"\n"), policy=email.policy.default)
    assert isinstance(msg, email.message.EmailMessage)
    return msg


def test_a_forced_send_of_the_worst_case_reaches_a_strict_server(mail_project: MailProject, tmp_path: Path) -> None:
    worst_case(mail_project)
    before = int(time.time())
    with Server(Recorder()) as srv:
        report = send_email(mail_project.project, "demo", smtp_options(srv, force=True, reason=REASON))
    got = srv.recorder.messages
    assert len(got) == 3 and report.sent == [str(parsed(m)["Message-ID"]) for m in got]
    assert all(len(line) <= 998 for m in got for line in lines_of(m))
    cover = parsed(got[0]).get_content()
    tested = cover[cover.index("Tested with"):cover.index("Please review.")]
    assert all(len(line) <= 78 for line in tested.splitlines()), tested  # the matrix too: a row per configuration
    assert f"\n  {CONFIGS[0]}\n{' ' * 28}not tested: freedos, probe\n" in tested
    said = " ".join(tested[tested.index("Configurations:"):].split())
    for name in CONFIGS:  # every untested cell named in full: wrapped, never cut
        assert f"{name}/freedos: not tested on this revision" in said
        assert f"{name}/probe: not tested on this revision" in said
    assert f"Reason: {' '.join(REASON.split())}" in said
    # Dated as git send-email dates a send: now, one second apart in series order (not the 2010 author dates).
    dates = [email.utils.parsedate_to_datetime(str(parsed(m)["Date"])).timestamp() for m in got]
    assert dates == [dates[0], dates[0] + 1, dates[0] + 2]
    assert before - 3 <= dates[0] <= time.time()

    # The mbox of the same revision is format-patch's (author dates), and no line is too long either.
    mbox = tmp_path / "worst.mbox"
    send_email(mail_project.project, "demo", SendOptions(mbox=mbox))
    assert all(len(line) <= 998 for line in mbox.read_bytes().split(b"\n"))
    assert b"Date: Tue, 26 Jan 2010 12:00:00 +0000" in mbox.read_bytes()


def test_a_line_over_998_octets_is_encoded_never_cut(tmp_path: Path) -> None:
    body = "A diff may hold a long line:\n+" + "ünïcode-and-ascii " * 120 + "\nend\n"
    msg = email.message.EmailMessage(policy=email.policy.SMTP)
    msg["From"], msg["To"], msg["Subject"] = "jane@example.org", "devel@example.org", "long"
    set_text_body(msg, body)
    with Server(Recorder()) as srv, SmtpConnection(SmtpSettings("127.0.0.1", srv.port)) as conn:
        conn.send("jane@example.org", ["devel@example.org"], msg.as_bytes(policy=email.policy.SMTP))
    (got,) = srv.recorder.messages
    assert all(len(line) <= 78 for line in lines_of(got))
    assert parsed(got)["Content-Transfer-Encoding"] == "quoted-printable"
    assert parsed(got).get_content() == body


def record_untested_and_failing(mp: MailProject) -> None:
    """v2's results: every cell of the first configuration failed with a long non-ASCII reason."""
    s = mp.series()
    with mp.store.results() as results:
        for guest in ("freedos", "probe"):
            key = ResultKey(s.name, s.revision_hash(), "ab" * 32, guest, "cd" * 32, "7.2.0", "tcg", CONFIGS[0])
            results.record(StoredResult(key, False, "PROBE FAIL — " + "read-beyond-end status 0x04 " * 60, "",
                                        {}, 65536, s.version))


def test_report_mail_replies_where_v2_went_in_78_columns(mail_project: MailProject) -> None:
    worst_case(mail_project)
    with Server(Recorder()) as srv:
        send_email(mail_project.project, "demo", smtp_options(srv, force=True, reason="no lab",
                                                              cc=["Ärnold <arnold@example.com>"]))
        cover = parsed(srv.recorder.messages[0])
        # The manifest's list changes after the send: the report still answers where v2 went.
        manifest = mail_project.root / "series" / "demo" / "series.toml"
        manifest.write_text(manifest.read_text().replace("devel@example.org", "elsewhere@example.org"))
        record_untested_and_failing(mail_project)
        mail_report(mail_project.project, mail_project.series(), None, dry_run=False,
                    smtp={"server": "127.0.0.1", "port": str(srv.port)})
    got = srv.recorder.messages[-1]
    assert got.rcpt_tos == srv.recorder.messages[0].rcpt_tos
    assert "elsewhere@example.org" not in got.rcpt_tos and "arnold@example.com" in got.rcpt_tos
    msg = parsed(got)
    assert msg["To"] == cover["To"] and msg["Cc"] == cover["Cc"]
    assert msg["In-Reply-To"] == cover["Message-ID"]
    body = msg.get_content()
    assert all(len(line) <= 78 for line in body.splitlines()), body
    assert "read-beyond-end status 0x04 " * 60 in " ".join(body.split()) + " "  # wrapped, never cut
    matrix = body[body.index("=== TEST MATRIX"):body.index("=== BUILD")]
    # Configurations as rows: each configuration named once, then a line per guest.
    for name in CONFIGS:
        assert re.search(rf"^{name}:$", matrix, re.M), matrix
    assert re.search(r"^  freedos +FAIL \(tcg\)$", matrix, re.M) and re.search(r"^  probe +not tested$", matrix, re.M)
