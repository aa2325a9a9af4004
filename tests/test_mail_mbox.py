"""--mbox output read back by real tools: `git am` reproduces the tree, b4 sees a complete vN series."""

from __future__ import annotations

import email
import email.policy
import mailbox
from pathlib import Path

import git
from test_mail_fixtures import MailProject

from patchkit.mailer.send import SendOptions, send_email
from patchkit.run import run

pytest_plugins = ("test_mail_fixtures",)  # its fixtures: mail_project, tls_ca, mail_repo

GIT_ENV = {"GIT_CONFIG_NOSYSTEM": "1", "GIT_COMMITTER_NAME": "Maintainer", "GIT_COMMITTER_EMAIL": "m@example.org"}


def git_am_tree(mirror_src: Path, base: str, mbox: Path, workdir: Path, skip_cover: bool) -> tuple[str, git.Repo]:
    """Clone ``mirror_src``, `git am` ``mbox`` onto ``base``; the resulting tree id and the repo.

    The cover letter has no diff (git am would stop on it): with ``skip_cover`` the
    mbox is split with `git mailsplit` and every message but the first is applied.
    ``--keep-non-patch`` keeps gPXE's ``[area]`` subject tags (git am drops them otherwise).
    """
    run(["git", "clone", "-q", mirror_src, workdir], env=GIT_ENV)
    run(["git", "checkout", "-q", "--detach", base], cwd=workdir, env=GIT_ENV)
    if skip_cover:
        parts = workdir.parent / f"{workdir.name}-split"
        parts.mkdir()
        run(["git", "mailsplit", f"-o{parts}", mbox], env=GIT_ENV)
        run(["git", "am", "-q", "--keep-non-patch", *sorted(parts.iterdir())[1:]], cwd=workdir, env=GIT_ENV)
    else:
        run(["git", "am", "-q", "--keep-non-patch", mbox], cwd=workdir, env=GIT_ENV)
    repo = git.Repo(workdir)
    return repo.head.commit.tree.hexsha, repo


def b4_am(mbox: Path, cover_id: str, outdir: Path, home: Path) -> str:
    """Run `b4 am` on a local mbox (no network, no cache); its combined output."""
    env = {**GIT_ENV, "HOME": str(home), "XDG_CACHE_HOME": str(home / "cache"), "XDG_CONFIG_HOME": str(home / "cfg")}
    home.mkdir(exist_ok=True)
    out = run(["b4", "--offline-mode", "am", "-C", "-m", mbox, "-o", outdir, cover_id.strip("<>")], env=env)
    return out.stdout.decode("utf-8", "replace")


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
    report = send_email(mail_project.project, "demo", SendOptions(mbox=mbox, to=["x@example.org"]))
    data = mbox.read_bytes()
    assert data.startswith(b"From 0000000000000000000000000000000000000000 Mon Sep 17 00:00:00 2001\n")
    assert f"\nFrom {report.mails[1].commit} Mon Sep 17 00:00:00 2001\n".encode() in data
    msgs = [email.message_from_bytes(m.as_bytes(), policy=email.policy.default) for m in mailbox.mbox(str(mbox))]
    assert [m["To"] for m in msgs] == ["x@example.org"] * 3
    assert msgs[2]["References"] == msgs[0]["Message-ID"]
