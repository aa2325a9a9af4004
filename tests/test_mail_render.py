"""Rendering against the real `git format-patch`: same bodies and headers, threading, cover letter."""

from __future__ import annotations

import email
import email.policy
from email.message import EmailMessage
from pathlib import Path

from fixtures.mail import SENDER, FixtureApplied, format_patch, make_series

from patchkit.mailer.render import Envelope, cover_text, git_signature, new_message_ids, render_series


def _parse(data: bytes) -> EmailMessage:
    msg = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    return msg


def _split_body(data: bytes) -> bytes:
    return data.split(b"\n\n", 1)[1]


def test_patch_mails_match_git_format_patch(mail_repo: FixtureApplied, tmp_path: Path) -> None:
    series = make_series(tmp_path / "project", mail_repo, version=2)
    envelope = Envelope(SENDER, (), ())
    ids = new_message_ids(series, SENDER)
    mails = render_series(series, mail_repo, envelope, ids, "")
    git_files = format_patch(mail_repo, tmp_path / "git", 2)
    assert len(mails) == len(git_files) == 3
    for mail, path in zip(mails[1:], git_files[1:], strict=True):
        ours, theirs = mail.as_bytes(), path.read_bytes().split(b"\n", 1)[1]  # drop git's "From <sha>" line
        # Patch 2's author is not the sender: its body starts with the in-body From (as send-email does).
        if mail.index == 2:
            assert _split_body(ours).startswith("From: Zoë Ünïcode <zoe@example.net>\n\n".encode())
            ours_body = _split_body(ours).split(b"\n\n", 1)[1]
        else:
            ours_body = _split_body(ours)
        assert ours_body == _split_body(theirs)
        a, b = _parse(ours), _parse(theirs)
        for name in ("Subject", "Date", "MIME-Version", "Content-Type", "Content-Transfer-Encoding"):
            assert a[name] == b[name], name
        assert a["In-Reply-To"] == a["References"] == ids[0]
        assert a["Message-ID"] == ids[mail.index]
    assert _parse(mails[1].as_bytes())["From"] == _parse(git_files[1].read_bytes())["From"]
    assert mails[2].subject.startswith("[PATCH v2 2/2] [virtio] Add virtio block")


def test_mails_from_author_match_git_headers_too(mail_repo: FixtureApplied, tmp_path: Path) -> None:
    """Sent by patch 2's author, its mail is byte-identical in body and equal in From too."""
    series = make_series(tmp_path / "project", mail_repo, version=1)
    sender = "Zoë Ünïcode <zoe@example.net>"
    mails = render_series(series, mail_repo, Envelope(sender, (), ()), new_message_ids(series, sender), "")
    theirs = format_patch(mail_repo, tmp_path / "git", 1)[2].read_bytes().split(b"\n", 1)[1]
    ours = mails[2].as_bytes()
    assert _split_body(ours) == _split_body(theirs)
    a, b = _parse(ours), _parse(theirs)
    assert a["From"] == b["From"] == "Zoë Ünïcode <zoe@example.net>"
    assert a["Subject"] == "[PATCH 2/2] [virtio] Add virtio block device sanboot support with a rather long subject"


def test_cover_letter_tail_matches_git(mail_repo: FixtureApplied, tmp_path: Path) -> None:
    series = make_series(tmp_path / "project", mail_repo, version=3)
    mails = render_series(series, mail_repo, Envelope(SENDER, ("devel@example.org",), ()),
                          new_message_ids(series, SENDER), "Tested:\n  freedos  pass")
    cover = mails[0].as_bytes()
    git_cover = format_patch(mail_repo, tmp_path / "git", 3)[0].read_bytes()
    # git's blurb is a placeholder; everything from the shortlog on must be identical.
    tail = _split_body(git_cover).split(b"*** BLURB HERE ***\n\n", 1)[1]
    assert _split_body(cover).endswith(tail)
    assert f"base-commit: {mail_repo.base}\n-- \n{git_signature()}\n\n".encode() in cover
    msg = _parse(cover)
    assert msg["Subject"] == "[PATCH v3 0/2] virtio-blk sanboot for gPXE"
    assert msg["From"] == SENDER and msg["To"] == "devel@example.org"
    assert "In-Reply-To" not in msg
    text = msg.get_content()
    assert text.startswith("This series lets gPXE sanboot from virtio-blk disks.\n\n"
                           "Tested:\n  freedos  pass\n\n"
                           "Please review.\n\n"
                           "Changes in v3:\n- change number 3\n\nChanges in v2:\n- change number 2\n\n")


def test_cover_text_appends_tested_without_placeholder(mail_repo: FixtureApplied, tmp_path: Path) -> None:
    series = make_series(tmp_path / "project", mail_repo, version=1)
    series.cover_body = "Just a body."
    assert cover_text(series, "Tested: yes") == "Just a body.\n\nTested: yes"
