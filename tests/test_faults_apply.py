"""An apply interrupted while it switches the work tree: status tells the truth, the next apply finishes it.

The checkout is held at a controlled point (a git smudge filter waiting on the test's
gate, after src/version.txt and before src/zz.txt are written), then the apply's whole
process group gets the signal, as a terminal's ^C (or a kill of the group) does.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import git
import pytest
from fixtures.gated import GatedProject, hold_checkouts_of

STATE = Path(".git") / "patchkit-applied.json"


@pytest.fixture
def gated(gated: GatedProject) -> GatedProject:
    """The gated project with its series applied."""
    applied = gated.run("apply", "demo")  # v2 ("two") checked out
    assert applied.returncode == 0, applied.stdout
    return gated


def tree(gated: GatedProject) -> Path:
    return gated.cache / "trees" / "demo"


def interrupt_switch(gated: GatedProject, sig: signal.Signals) -> None:
    """`apply --rev 1`, signalled with ``sig`` (its whole group) while git writes the files."""
    hold_checkouts_of(tree(gated), "src/zz.txt", gated.gate.parent)
    proc = gated.start("apply", "demo", "--rev", "1", gated=True, session=True)
    try:
        gated.wait_started(proc)
        os.killpg(proc.pid, sig)
        out = proc.communicate(timeout=60)[0]
    finally:
        gated.release()
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode != 0, out
    assert (tree(gated) / "src" / "version.txt").read_text() == "one\n"  # the switch stopped half done
    zz = tree(gated) / "src" / "zz.txt"
    assert not zz.exists() or zz.read_text() == "two\n"  # git had not written it yet


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL])
def test_an_interrupted_switch_is_reported_and_finished(gated: GatedProject, sig: signal.Signals) -> None:
    interrupt_switch(gated, sig)
    status = gated.run("status", "demo")
    assert "up to date" not in status.stdout
    assert f"applied: INTERRUPTED while switching {tree(gated)} to patchkit/demo/v1" in status.stdout
    assert "run `patchkit apply demo` to finish the switch" in status.stdout
    refresh = gated.run("refresh", "demo")
    assert refresh.returncode == 1 and "commit them" not in refresh.stdout
    assert "an apply was interrupted while switching" in refresh.stdout

    finished = gated.run("apply", "demo")  # the current version: finishes the switch to v1, then switches back
    assert finished.returncode == 0, finished.stdout
    assert "finishing the switch to patchkit/demo/v1 that an interrupted apply left half done" in finished.stdout
    repo = git.Repo(tree(gated))
    assert not repo.is_dirty(untracked_files=True)
    assert repo.active_branch.name == "patchkit/demo/v2"
    assert [(tree(gated) / p).read_text() for p in ("src/version.txt", "src/zz.txt")] == ["two\n", "two\n"]
    assert "[up to date]" in gated.run("status", "demo").stdout


def test_the_interrupted_version_itself_can_be_applied(gated: GatedProject) -> None:
    interrupt_switch(gated, signal.SIGKILL)
    finished = gated.run("apply", "demo", "--rev", "1")
    assert finished.returncode == 0, finished.stdout
    repo = git.Repo(tree(gated))
    assert not repo.is_dirty(untracked_files=True) and repo.active_branch.name == "patchkit/demo/v1"
    assert (tree(gated) / "src" / "zz.txt").read_text() == "one\n"


@pytest.mark.parametrize("content", ["", "{\"patchkit/demo/v2\": {\"ba", "[]"])
def test_a_damaged_apply_record_is_a_clear_error(gated: GatedProject, content: str) -> None:
    record = tree(gated) / STATE
    record.write_text(content)
    for args in (("status", "demo"), ("apply", "demo"), ("refresh", "demo")):
        done = gated.run(*args)
        assert done.returncode == 1, done.stdout
        assert str(record) in done.stdout and "crashed" not in done.stdout
