"""--mbox output read back by real tools: `git am` reproduces the tree, b4 sees a complete vN series."""

from __future__ import annotations

import email
import email.policy
import mailbox
from pathlib import Path

import git
from fixtures.mail import MailProject, b4_am, git_am_tree

from patchkit.mailer.send import SendOptions, send_email


def test_mbox_round_trips_through_git_am_and_b4(mail_project: MailProject, tmp_path: Path) -> None:
    mbox = tmp_path / "series.mbox"
    report = send_email(mail_project.project, "demo", SendOptions(mbox=mbox))
    assert mbox.is_file() and len(mailbox.mbox(str(mbox))) == 3
    applied = git.Repo(mail_project.tree())
    tip = applied.head.commit

    tree, repo = git_am_tree(mail_project.upstream.tree, mail_project.upstream.base, mbox, tmp_path / "am", True)
    assert tree == tip.tree.hexsha
    # Authors and dates survive (patch 2's author is not the sender: in-body From).
    commits = list(repo.iter_commits(max_count=2))
    assert commits[0].author.name == "Zoë Ünïcode" and commits[0].author.email == "zoe@example.net"
    assert commits[0].authored_datetime == tip.authored_datetime
    assert commits[0].message == tip.message

    out = b4_am(mbox, report.mails[0].message_id, tmp_path / "b4", tmp_path / "home")
    assert "Total patches: 2" in out, out
    assert "[PATCH v2 1/2]" in out and "[PATCH v2 2/2]" in out, out
    assert "WARNING" not in out and "ERROR" not in out, out
    made = sorted((tmp_path / "b4").glob("*.mbx"))
    assert len(made) == 1 and made[0].name.startswith("v2_"), made
    tree_b4, _ = git_am_tree(mail_project.upstream.tree, mail_project.upstream.base, made[0], tmp_path / "am-b4", False)
    assert tree_b4 == tip.tree.hexsha
    cover = sorted((tmp_path / "b4").glob("*.cover"))
    assert cover and "virtio-blk sanboot for gPXE" in cover[0].read_text()


def test_mbox_first_line_and_headers_like_format_patch(mail_project: MailProject, tmp_path: Path) -> None:
    mbox = tmp_path / "series.mbox"
    report = send_email(mail_project.project, "demo", SendOptions(mbox=mbox, to=["x@example.org"], no_to=True))
    data = mbox.read_bytes()
    assert data.startswith(b"From 0000000000000000000000000000000000000000 Mon Sep 17 00:00:00 2001\n")
    assert f"\nFrom {report.mails[1].commit} Mon Sep 17 00:00:00 2001\n".encode() in data
    msgs = [email.message_from_bytes(m.as_bytes(), policy=email.policy.default) for m in mailbox.mbox(str(mbox))]
    assert [m["To"] for m in msgs] == ["x@example.org"] * 3
    assert msgs[2]["References"] == msgs[0]["Message-ID"]
