"""Builds racing other commands: a ROM is stored under the key of what make actually compiled.

A real second process switches the work tree while the first one's make is held at
a controlled point (tests/fixtures/gated.py), as a user running `patchkit apply` in
another terminal would.
"""

from __future__ import annotations

import os
import re
import signal
from pathlib import Path

from fixtures.gated import OBJECT_GATE_ENV, GatedProject, blocked_on_lock
from fixtures.processes import wait_until


def rom_of(output: str) -> bytes:
    """The bytes of the ROM `patchkit build` printed."""
    found = re.search(r"^ROM:\s+(\S+)$", output, re.MULTILINE)
    assert found, output
    return Path(found.group(1)).read_bytes()


def test_apply_during_a_build_does_not_store_the_other_versions_rom(gated: GatedProject) -> None:
    building = gated.start("build", "demo", gated=True)  # v2: version.txt "two"
    switching = None
    try:
        gated.wait_started(building)
        switching = gated.start("apply", "demo", "--rev", "1")
        wait_until(lambda: switching.poll() is not None or blocked_on_lock(switching.pid),
                   "the second apply to finish or to wait for the tree")
        gated.release()
        built_out = building.communicate(timeout=120)[0]
        switch_out = switching.communicate(timeout=120)[0]
    finally:
        gated.release()
        for proc in (building, switching):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()
    assert building.returncode == 0, built_out
    assert switching.returncode == 0, switch_out
    assert "another patchkit command is using it" in switch_out  # it waited for the build
    assert b"two" in rom_of(built_out)
    # Back on v2, the build with v2's key must hold v2's ROM.
    assert gated.run("apply", "demo").returncode == 0
    again = gated.run("build", "demo")
    assert again.returncode == 0, again.stdout
    assert b"two" in rom_of(again.stdout) and b"one" not in rom_of(again.stdout)


def test_a_tree_edited_during_make_is_not_stored(gated: GatedProject) -> None:
    # --tree builds a tree patchkit does not own: nothing locks it, the content is checked again after make.
    assert gated.run("apply", "demo").returncode == 0
    tree = gated.cache / "trees" / "demo"
    building = gated.start("build", "--tree", str(tree), gated=True)
    try:
        gated.wait_started(building)
        (tree / "src" / "version.txt").write_text("edited\n")
        gated.release()
        out = building.communicate(timeout=120)[0]
    finally:
        gated.release()
        if building.poll() is None:
            building.kill()
            building.wait()
    assert building.returncode == 1, out
    assert "changed while make ran" in out and "build it again" in out
    again = gated.run("build", "--tree", str(tree))
    assert again.returncode == 0, again.stdout
    assert b"edited" in rom_of(again.stdout) and "reused" not in again.stdout


def test_an_object_left_empty_by_a_killed_build_is_rebuilt(gated: GatedProject) -> None:
    # Killed with its children (a terminal closed, a kill of the group) while the object is being written.
    building = gated.start("build", "demo", gated=True, session=True, gate_env=OBJECT_GATE_ENV)
    try:
        gated.wait_started(building)
        os.killpg(building.pid, signal.SIGKILL)
        building.wait()
    finally:
        gated.release()
        if building.poll() is None:
            os.killpg(building.pid, signal.SIGKILL)
            building.wait()
    obj = gated.cache / "trees" / "demo" / "src" / "bin" / "v.o"
    assert obj.stat().st_size == 0  # what make would trust: it is newer than version.txt
    again = gated.run("build", "demo")
    assert again.returncode == 0, again.stdout
    assert "interrupted" in again.stdout and "fix the code" not in again.stdout
    assert b"two" in rom_of(again.stdout)


def test_make_dies_with_a_killed_patchkit(gated: GatedProject) -> None:
    building = gated.start("build", "demo", gated=True)
    try:
        gated.wait_started(building)
        held = int((gated.gate / "started").read_text())  # the ROM step make is running
        building.kill()  # patchkit alone: make and its children are not signalled by the test
        building.wait()
        wait_until(lambda: not Path(f"/proc/{held}").exists() or b"zombie" in _status(held),
                   "make's children to stop with patchkit", limit=30)
    finally:
        gated.release()


def _status(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/status").read_bytes().lower()
    except OSError:
        return b"zombie"
