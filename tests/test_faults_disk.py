"""A full disk: every command says "no space left" and where, never a traceback or "fix the code".

The full disk is a small tmpfs (mounting one needs root: the tests skip without it).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from fixtures.cli import run_patchkit
from fixtures.disks import PAGE, fill, small_tmpfs
from fixtures.gated import GatedProject
from fixtures.guests import guest_or_skip
from fixtures.mail import MailProject
from fixtures.processes import processes_in

from patchkit.store import Store


def assert_no_space(done: subprocess.CompletedProcess[str], where: Path) -> None:
    assert done.returncode == 1, done.stdout
    assert "no space left" in done.stdout.lower() and str(where) in done.stdout, done.stdout
    assert "Traceback" not in done.stdout and "crashed" not in done.stdout and "fix the code" not in done.stdout


def test_mbox_on_a_full_disk(mail_project: MailProject, tmp_path: Path) -> None:
    with small_tmpfs(tmp_path / "full") as disk:
        fill(disk)
        mbox = disk / "out.mbox"
        done = run_patchkit("-C", mail_project.root, "send-email", "--mbox", mbox)
        assert_no_space(done, disk)
        assert not mbox.exists()


def test_building_a_tree_on_a_full_disk(gated: GatedProject, tmp_path: Path) -> None:
    with small_tmpfs(tmp_path / "full", size="2m") as disk:
        tree = disk / "tree"
        subprocess.run(["git", "clone", "-q", str(gated.upstream), str(tree)], check=True)
        fill(disk)
        done = gated.run("build", "--tree", str(tree))
        assert_no_space(done, tree / "src")


def test_make_failing_for_want_of_space_is_not_blamed_on_the_code(gated: GatedProject, tmp_path: Path) -> None:
    with small_tmpfs(tmp_path / "full", size="2m") as disk:
        tree = disk / "tree"
        subprocess.run(["git", "clone", "-q", str(gated.upstream), str(tree)], check=True)
        reserve = disk / "reserve"
        reserve.write_bytes(bytes(PAGE))
        fill(disk)
        reserve.unlink()  # one page left: patchkit's record of the build fits, make's ROM does not
        done = gated.run("build", "--tree", str(tree))
        assert_no_space(done, tree / "src")
        assert "build.log" in done.stdout


def test_booting_with_a_full_cache_disk(inputs_cache: Path, store: Store) -> None:
    guest_or_skip("probe", store)
    with small_tmpfs(store.runs, size="4m") as runs:
        fill(runs)
        done = run_patchkit("test", "--reference", "--guest", "probe", cache=inputs_cache)
        assert_no_space(done, runs)
        for run_dir in runs.glob("*"):
            assert processes_in(run_dir) == []


def test_a_run_disk_that_does_not_fit_leaves_no_partial_copy(inputs_cache: Path, store: Store) -> None:
    # Issue 23, item 14: the NOT RUN cell kept a partial copy of the guest's disk in its run directory.
    guest_or_skip("freedos", store)  # about 550 KB of data
    with small_tmpfs(store.runs, size="300k") as runs:
        done = run_patchkit("test", "--reference", "--guest", "freedos", cache=inputs_cache)
        assert done.returncode == 1 and "NOT RUN pc/freedos" in done.stdout, done.stdout
        assert "No space left on device" in done.stdout and "never retrieved" not in done.stdout
        assert list(runs.glob("*/*.img")) == []
