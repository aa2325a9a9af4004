"""A QEMU binary that hangs or answers nonsense to --version: a clear error, no hang, nothing left running."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from patchkit.errors import BootError
from patchkit.qemu import machine
from patchkit.qemu.machine import qemu_version


def fake_qemu(tmp_path: Path, body: str) -> Path:
    script = tmp_path / "qemu-system-x86_64"
    script.write_text(f"#!/bin/sh\n{body}\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return script


def pids_running(path: Path) -> list[int]:
    """Processes whose command line names ``path``."""
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if str(path).encode() in (proc / "cmdline").read_bytes():
                    found.append(int(proc.name))
            except OSError:
                continue
    return found


def test_a_hanging_qemu_version_is_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(machine, "VERSION_TIMEOUT", 1.0)
    qemu = fake_qemu(tmp_path, f"echo $$ > {tmp_path / 'pid'}\nexec sleep 600")
    with pytest.raises(BootError) as caught:
        qemu_version(str(qemu))
    assert f"{qemu} --version did not answer within 1 s" in str(caught.value)
    assert pids_running(qemu) == [] and not Path(f"/proc/{(tmp_path / 'pid').read_text().strip()}").exists()


def test_a_qemu_that_says_nothing_is_an_error(tmp_path: Path) -> None:
    qemu = fake_qemu(tmp_path, "exit 0")
    with pytest.raises(BootError, match="printed no version"):
        qemu_version(str(qemu))


def test_the_real_qemu_answers() -> None:
    if not any((Path(d) / "qemu-system-x86_64").exists() for d in os.environ.get("PATH", "").split(":")):
        pytest.skip("qemu-system-x86_64 is not installed: run ci/setup.sh")
    assert qemu_version()[0].isdigit()
