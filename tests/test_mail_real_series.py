"""The real gpxe-virtio-blk series on the vendored gPXE mirror: format-patch identity, git am, b4."""

from __future__ import annotations

import shutil
from pathlib import Path

import git
import pytest
from fixtures.mail import Recorder, Server, b4_am, git_am_tree

from patchkit.mailer.send import SendOptions, send_email
from patchkit.project import Project
from patchkit.run import run

SERIES = "gpxe-virtio-blk"


@pytest.mark.needs_gpxe
def test_real_series_mbox_matches_git_and_round_trips(gpxe_mirror: Path, inputs_cache: Path, project: Project,
                                                       tmp_path: Path) -> None:
    if not (project.series_root / SERIES / "series.toml").is_file():
        pytest.skip(f"series/{SERIES}/series.toml missing: it is project content, restore it with "
                    f"`git checkout -- series/{SERIES}` (or write it with the series commands)")
    mbox = tmp_path / "series.mbox"
    report = send_email(project, SERIES, SendOptions(mbox=mbox, sender="Tester <tester@example.org>"))
    tree = project.store.tree(SERIES)
    tip = git.Repo(tree).head.commit
    n, base = len(report.mails) - 1, report.base
    out = tmp_path / "fp"
    # An identity of its own: the cover letter needs one, and a fresh user has none configured.
    run(["git", "-c", "user.name=Tester", "-c", "user.email=tester@example.org", "format-patch", "-q", "--cover-letter",
         "--thread=shallow", f"-v{report.version}", f"--base={base}", "-o", out, f"{base}..{tip.hexsha}"], cwd=tree)
    files = sorted(out.glob("*.patch"))
    for mail, path in zip(report.mails[1:], files[1:], strict=True):
        ours = mail.as_bytes().split(b"\n\n", 1)[1]
        if ours.startswith(b"From: "):  # patch authors are not the sender here: in-body From
            ours = ours.split(b"\n\n", 1)[1]
        assert ours == path.read_bytes().split(b"\n\n", 1)[1], path.name
    am_tree, _ = git_am_tree(gpxe_mirror, base, mbox, tmp_path / "am", True)
    assert am_tree == tip.tree.hexsha
    b4_out = b4_am(mbox, report.mails[0].message_id, tmp_path / "b4", tmp_path / "home")
    assert f"Total patches: {n}" in b4_out and "WARNING" not in b4_out, b4_out


@pytest.mark.needs_gpxe
def test_real_series_forced_reaches_a_strict_server_and_msmtp(gpxe_mirror: Path, inputs_cache: Path, project: Project,
                                                              tmp_path: Path) -> None:
    """issue 20's done-when: every cell untested, --force: a strict server and an msmtp pipe take all of it."""
    if not (project.series_root / SERIES / "series.toml").is_file():
        pytest.skip(f"series/{SERIES}/series.toml missing: restore it with `git checkout -- series/{SERIES}`")
    root = tmp_path / "project"  # a copy: a send writes sent/tag into series.toml
    shutil.copytree(project.root / "gpxe-tree", root / "gpxe-tree")
    shutil.copytree(project.series_root / SERIES, root / "series" / SERIES)
    copy = Project(root, project.store)
    manifest = (root / "series" / SERIES / "series.toml").read_bytes()
    with Server(Recorder()) as srv:
        smtp: dict[str, str | None] = {"server": "127.0.0.1", "port": str(srv.port)}
        report = send_email(copy, SERIES, SendOptions(sender="Tester <tester@example.org>", force=True,
                                                      reason="no lab this week", smtp=smtp))
        assert len(srv.recorder.messages) == len(report.mails) and report.gate.forced
        if shutil.which("/usr/bin/msmtp"):
            send_email(Project(root, project.store), SERIES, SendOptions(
                sender="Tester <tester@example.org>", force=True, reason="no lab this week", resend=True,
                smtp={"server": "/usr/bin/msmtp"}, server_options=["--host=127.0.0.1", f"--port={srv.port}"]))
            assert len(srv.recorder.messages) == 2 * len(report.mails)
    for envelope in srv.recorder.messages:
        assert envelope.original_content is not None
        assert max(len(line) for line in envelope.original_content.split(b"\r\n")) <= 998
    after = (root / "series" / SERIES / "series.toml").read_bytes()
    added = [line for line in after.splitlines() if line not in manifest.splitlines()]
    assert [line.split(b" = ")[0] for line in added] == [b"sent", b"tag"]  # the rest byte for byte
