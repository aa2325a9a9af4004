"""What killed AoE runs leave behind is removed by the next target; a live run's namespace is not."""

from __future__ import annotations

import fcntl
import os
import subprocess
from collections.abc import Iterator

import pytest

from patchkit.qemu import aoe

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or aoe.aoe_unavailable() is not None,
                                reason=f"network namespaces need root and ip: {aoe.aoe_unavailable()}")


def namespaces() -> set[str]:
    listing = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    return {line.split()[0] for line in listing.splitlines() if line.strip()}


@pytest.fixture
def netns_names() -> Iterator[list[str]]:
    """Names for this test's namespaces (ours by their shape); any left at the end is deleted."""
    names = [f"patchkit-{os.urandom(aoe.NETNS_TOKEN_BYTES).hex()}" for _ in range(3)]
    yield names
    for name in names:
        subprocess.run(["ip", "netns", "delete", name], capture_output=True, check=False)
        (aoe.LOCK_DIR / f"{name}.lock").unlink(missing_ok=True)


def test_stale_namespaces_go_and_a_live_one_stays(netns_names: list[str]) -> None:
    unlocked, abandoned, live = netns_names
    for name in netns_names:
        subprocess.run(["ip", "netns", "add", name], check=True)
    sleeper = subprocess.Popen(["ip", "netns", "exec", unlocked, "sleep", "600"])  # what a killed run left running
    aoe.LOCK_DIR.mkdir(parents=True, exist_ok=True)
    (aoe.LOCK_DIR / f"{abandoned}.lock").touch()  # its owner was killed: nobody holds the lock
    with open(aoe.LOCK_DIR / f"{live}.lock", "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # a run in progress
        try:
            cleaned = aoe.clean_stale_targets()
            left = namespaces()
        finally:
            fcntl.flock(held, fcntl.LOCK_UN)
    assert {unlocked, abandoned} <= set(cleaned) and live not in cleaned
    assert unlocked not in left and abandoned not in left
    assert live in left
    assert sleeper.wait(timeout=30) != 0  # killed with its namespace


def test_other_namespaces_are_never_touched(netns_names: list[str]) -> None:
    foreign = netns_names[0].replace("patchkit-", "patchkitx-")
    netns_names.append(foreign)
    subprocess.run(["ip", "netns", "add", foreign], check=True)
    aoe.clean_stale_targets()
    assert foreign in namespaces()
