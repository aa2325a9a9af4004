"""The serial console: escape-free matching, screens kept before clears, waits on a real pipe."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from patchkit.qemu.console import Console, Wait
from patchkit.run import spawned


def feed_all(console: Console, *chunks: bytes) -> None:
    for chunk in chunks:
        console.feed(chunk)


def test_escape_sequences_are_removed_even_across_chunks() -> None:
    console = Console()
    feed_all(console, b"\x1bc\x1b[?7l\x1b", b"[2J\x1b[0mPr\x1b[1", b"4;53Hess\x1b", b"[0m Ctrl-B", b"\x1b(B!")
    assert console.text == "Press Ctrl-B!"


def test_serial_log_keeps_the_raw_bytes(tmp_path: Path) -> None:
    log = tmp_path / "serial.log"
    console = Console(log)
    feed_all(console, b"\x1b[2Jone\r\n", b"\xb3two")
    console.close()
    assert log.read_bytes() == b"\x1b[2Jone\r\n\xb3two"
    assert console.text == "one\r\n\xb3two"
    assert console.screen() == "one\n\u2502two"  # code page 437 box drawing on the screen


def test_screens_are_kept_before_clears() -> None:
    console = Console()
    feed_all(console, b"SYSLINUX 6.04\r\nLoading /VMLINUZ... ok\r\n", b"\x1b[2J\x1b[HLinux version 6.1\r\n",
             b"\x1b[H\x1b[Jlogin done\r\n", b"\x1bcafter reset")
    assert console.screens() == [
        "SYSLINUX 6.04\nLoading /VMLINUZ... ok",
        "Linux version 6.1",
        "login done",
        "after reset",
    ]


def test_lines_between_renders_a_stretch_of_output() -> None:
    console = Console()
    feed_all(console, b"gPXE> sanboot x\r\nCould not boot from x: Not supported\r\ngPXE> ")
    start = console.text.index("\n") + 1
    assert console.lines_between(start, len(console.text)) == ["Could not boot from x: Not supported", "gPXE>"]


def test_cursor_line_matches_what_the_stream_garbles() -> None:
    # A line finished after a move to another row is split in the stream, whole on the screen.
    console = Console()
    console.feed(b"gPXE> sanboot\r\n\x1b[1;14H virtio_blk:")
    assert "sanboot virtio_blk:" not in console.text
    assert console.cursor_line() == "gPXE> sanboot virtio_blk:"
    wait = asyncio.run(console.wait_for(["gPXE> sanboot virtio_blk:"], timeout=0, on_cursor_line=True))
    assert wait.matched and wait.end == len(console.text)


def test_the_earliest_pattern_after_since_wins() -> None:
    console = Console()
    console.feed(b"gPXE> one\r\nBoot failed\r\nPATCHKIT-PASS abc\r\ngPXE> ")
    wait = asyncio.run(console.wait_for(["PATCHKIT-PASS abc", "Boot failed"], timeout=0))
    assert (wait.outcome, wait.pattern) == ("match", "Boot failed")
    later = asyncio.run(console.wait_for(["gPXE>"], timeout=0, since=wait.end))
    assert later.matched and console.text[later.end:] == " "
    none = asyncio.run(console.wait_for(["PATCHKIT-PASS xyz"], timeout=0))
    assert none.outcome == "timeout" and "PATCHKIT-PASS xyz" in none.reason


def test_a_cursor_move_back_drops_what_the_screen_overwrites() -> None:
    # Seen from SeaBIOS's screen mirror: a character re-sent after moving back over it.
    console = Console()
    console.feed(b"\x1b[2J\x1b[1;1HBoot failed\r\nUnregistering \x1b[2;14H BIOS drive 0x80\r\n"
                 b"image (0\x1b[3;8H0x2e85\r\n\x1b[1;5H")  # the last move goes up a line: nothing dropped
    assert console.text == "Boot failed\r\nUnregistering BIOS drive 0x80\r\nimage (0x2e85\r\n"
    wait = asyncio.run(console.wait_for(["Unregistering BIOS drive 0x80"], timeout=0))
    assert wait.matched and console.text[wait.end:].startswith("\r\nimage")
    assert console.screen().splitlines()[1:3] == ["Unregistering BIOS drive 0x80", "image (0x2e85"]


async def _read_while(argv: list[str], tmp_path: Path, waits: list[dict]) -> list[Wait]:
    """Run ``argv`` with its stdout on a console and do ``waits`` in turn."""
    console = Console(tmp_path / "serial.log")
    with spawned(argv, stderr_file=tmp_path / "stderr.log") as proc:
        assert proc.stdout is not None
        reader = asyncio.create_task(console.read_from(proc.stdout))
        results = [await console.wait_for(**w) for w in waits]
        proc.terminate()
        await asyncio.wait_for(reader, 30)  # the writer is gone: the reader sees end of file
    return results


def py(code: str) -> list[str]:
    return [sys.executable, "-u", "-c", code]


def test_a_pattern_from_a_real_pipe_is_found(tmp_path: Path) -> None:
    code = "import time\nprint('booting')\ntime.sleep(0.2)\nprint('PATCHKIT-PASS t1', end='')\ntime.sleep(30)"
    [wait] = asyncio.run(_read_while(py(code), tmp_path, [dict(patterns=["PATCHKIT-PASS t1"], timeout=20)]))
    assert wait.matched
    assert (tmp_path / "serial.log").read_bytes().startswith(b"booting\nPATCHKIT-PASS t1")


def test_silence_is_a_stall_not_a_timeout(tmp_path: Path) -> None:
    code = "import time\nprint('started')\ntime.sleep(60)"
    waits = [dict(patterns=["started"], timeout=20), dict(patterns=["never"], timeout=30, stall_timeout=0.5)]
    started, stalled = asyncio.run(_read_while(py(code), tmp_path, waits))
    assert started.matched
    assert stalled.outcome == "stall" and "no serial output for 0.5 s" in stalled.reason


def test_steady_output_without_the_pattern_is_a_timeout(tmp_path: Path) -> None:
    code = "import time\nwhile True:\n    print('tick')\n    time.sleep(0.05)"
    [wait] = asyncio.run(_read_while(py(code), tmp_path, [dict(patterns=["never"], timeout=1, stall_timeout=10)]))
    assert wait.outcome == "timeout"


def test_the_writer_exiting_ends_the_wait(tmp_path: Path) -> None:
    [wait] = asyncio.run(_read_while(py("print('bye')"), tmp_path, [dict(patterns=["never"], timeout=30)]))
    assert wait.outcome == "eof"


def test_abort_ends_waits_with_its_reason() -> None:
    async def scenario() -> Wait:
        console = Console()
        asyncio.get_running_loop().call_later(0.1, console.abort, "the guest stopped")
        return await console.wait_for(["never"], timeout=30)

    wait = asyncio.run(scenario())
    assert (wait.outcome, wait.reason) == ("aborted", "the guest stopped")
