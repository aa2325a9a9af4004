"""reproduce.sh: a run directory's boot started by hand (here by the test, typing on serial as a user
would) reaches what the run reached, on overlays that leave the cached images and the run's files as
they were; a passing run's script passes with the run's own token (the negative control)."""

from __future__ import annotations

import os
import re
import select
import signal
import subprocess
import time
from pathlib import Path

import pytest
from fixtures.guests import guest_or_skip

from patchkit.boot.reproduce import REPRODUCER, START_DISK
from patchkit.boot.run import boot_planned
from patchkit.guests import Guest
from patchkit.qemu.faults import InjectError
from patchkit.series.model import Config
from patchkit.store import Store, sha256_file

pytestmark = pytest.mark.boot

STEP = 120.0  # seconds for each thing awaited on the terminal (TCG on a loaded machine)
# SeaBIOS's serial console redraws: cursor moves (and the characters written again after one) come and go
ESCAPES = re.compile(rb"\x1b\[[0-9;?]*[A-Za-z]|\x1b[()c][A-Z0-9]?")


@pytest.fixture
def probe(inputs_cache: Path, store: Store) -> Guest:
    return guest_or_skip("probe", store)


def by_hand(script: Path, typed: str, until: str) -> str:
    """Start ``script`` as a user would, press Ctrl-B at gPXE's banner, type ``typed``; the terminal's
    text once ``until`` showed (or the time ran out), after quitting with Ctrl-A x."""
    proc = subprocess.Popen([script], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)
    assert proc.stdin is not None and proc.stdout is not None
    out = proc.stdout
    seen = b""

    def wait(text: str) -> bool:
        nonlocal seen
        end = time.monotonic() + STEP
        while text.encode() not in ESCAPES.sub(b"", seen) and time.monotonic() < end and proc.poll() is None:
            if select.select([out], [], [], 1)[0]:
                seen += os.read(out.fileno(), 65536)
        return text.encode() in ESCAPES.sub(b"", seen)

    try:
        if wait("for the gPXE command line"):
            proc.stdin.write(b"\x02")
            proc.stdin.flush()
            if wait("gPXE>"):
                for char in typed.encode() + b"\r":
                    proc.stdin.write(bytes([char]))
                    proc.stdin.flush()
                    time.sleep(0.03)
                wait(until)
        proc.stdin.write(b"\x01x")  # QEMU's quit key on a multiplexed terminal
        proc.stdin.close()
        proc.wait(30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return ESCAPES.sub(b"", seen).decode("utf-8", "replace")


def test_a_failing_runs_reproducer_reaches_the_same_failure(probe: Guest, series_rom: Path) -> None:
    broken = Config(name="boot-sector-error", guests=("probe",), inject_error=InjectError("read_aio", 5, 0, False))
    base = probe.base_image()
    before = sha256_file(base)
    outcome = boot_planned(probe, rom=series_rom, config=broken)
    assert not outcome.passed and "Input/output error" in outcome.reason
    script = outcome.run_dir / REPRODUCER
    start = sha256_file(outcome.run_dir / START_DISK)
    text = script.read_text()
    assert "sanboot virtio_blk:PCI00:04.0" in text and "fd=" not in text and str(series_rom) in text
    shown = by_hand(script, "sanboot virtio_blk:PCI00:04.0", "Input/output")
    assert "Could not boot from virtio_blk:PCI00:04.0: Input/output" in shown, shown[-2000:]
    assert "PATCHKIT-PASS" not in shown
    assert sha256_file(base) == before and sha256_file(outcome.run_dir / START_DISK) == start


def test_a_passing_runs_reproducer_passes_with_the_runs_token(probe: Guest, series_rom: Path) -> None:
    outcome = boot_planned(probe, rom=series_rom)
    assert outcome.passed, outcome.reason
    token = (outcome.run_dir / "serial.log").read_text(errors="replace").split("PATCHKIT-PASS ")[1][:12]
    shown = by_hand(outcome.run_dir / REPRODUCER, "sanboot virtio_blk:PCI00:04.0", f"PATCHKIT-PASS {token}")
    assert f"PATCHKIT-PASS {token}" in shown, shown[-2000:]
