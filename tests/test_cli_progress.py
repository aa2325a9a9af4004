"""Where long work stands: "[1/2] ..., about N s left" on a terminal's stderr, results alone on stdout."""

from __future__ import annotations

import os
import pty
import subprocess
from pathlib import Path

import pytest
from fixtures.cli import _argv, _env

from patchkit.build.make import _Counter
from patchkit.progress import Steps, about

TEST = ("test", "--config", "pc", "--guest", "freedos", "--guest", "probe", "--jobs", "1")


def run_with_terminal_stderr(*args: str) -> tuple[int, str, str]:
    """`patchkit ARGS` with stderr on a pseudo-terminal and stdout on a pipe: (status, stdout, the terminal's)."""
    main, other = pty.openpty()
    proc = subprocess.Popen(_argv(args), env=_env(None, None), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=other)
    os.close(other)
    shown = b""
    while True:
        try:
            chunk = os.read(main, 4096)
        except OSError:  # EIO: every writer closed the terminal
            break
        if not chunk:
            break
        shown += chunk
    out, _ = proc.communicate(timeout=600)
    os.close(main)
    return proc.returncode, out.decode(), shown.decode().replace("\r\n", "\n")


@pytest.mark.boot
@pytest.mark.needs_gpxe
def test_a_terminal_sees_steps_and_a_pipe_only_results(inputs_cache: Path) -> None:
    status, out, terminal = run_with_terminal_stderr(*TEST)
    assert status == 0, terminal
    assert "[1/2] PASS " in terminal and ", about " in terminal and " left" in terminal, terminal
    assert "[2/2] PASS " in terminal
    assert terminal.rstrip().splitlines()[-1].startswith("next: patchkit report"), terminal
    for lines in (out,):  # stdout: the verdicts and the table, nothing of the progress
        assert lines.startswith("PASS ") and "[1/2]" not in lines and "booting" not in lines, lines
        assert "results (2 boots" in lines
    piped = subprocess.run(_argv(TEST), env=_env(None, None), stdin=subprocess.DEVNULL, capture_output=True,
                           text=True, timeout=600, check=False)
    assert piped.returncode == 0 and "[1/2]" not in piped.stderr and "booting" in piped.stderr, piped.stderr
    assert piped.stdout.startswith("PASS ")


def test_steps_count_and_estimate_what_is_left() -> None:
    said: list[str] = []
    steps = Steps(3, said.append)
    steps.step("PASS pc/freedos", 80.0)
    steps.step("FAIL pc/probe", 3.0)
    steps.step("PASS pc/debian", 0.0)
    assert said == ["[1/3] PASS pc/freedos, about 1 min 20 s left", "[2/3] FAIL pc/probe, about 3 s left",
                    "[3/3] PASS pc/debian"]
    assert [about(s) for s in (0.2, 59.4, 600, 3599)] == ["about 1 s", "about 59 s", "about 10 min", "about 59 min"]


def test_make_progress_says_how_many_of_how_many() -> None:
    said: list[str] = []
    counter = _Counter(said.append, total=120)
    for n in range(110):
        counter(f"  [BUILD] bin/{n}.o")
    counter("  [LD] bin/1af41001.rom.tmp")
    assert said == ["compiled 50 of 120", "compiled 100 of 120", "linking (110 objects compiled)"]
    unknown: list[str] = []
    counter = _Counter(unknown.append)
    for n in range(50):
        counter(f"  [BUILD] bin/{n}.o")
    assert unknown == ["compiled 50 objects"]
