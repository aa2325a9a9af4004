"""Matrix cells on real QEMU (TCG), each with its negative control.

The base tree's ROM fails a q35 cell the series' ROM passes; an expected refusal
passes only on a matching message and fails when the guest boots instead; under
QEMU's default boot order a disk SeaBIOS boots itself fails the run; v2's ROM fails
the cells that show its queue-size and busy-device defects (issue 9, defects 4 and
6) while the same disks pass by explicit address, and lets a timed-out request write the
caller's buffer after the call returned (defect 2), which the current ROM does not; `patchkit test` runs cells in
parallel, records their configurations and stops every QEMU on SIGTERM.
"""

from __future__ import annotations

import re
import shutil
import signal
import tomllib
from dataclasses import replace
from pathlib import Path

import pytest
import tomli_w
from fixtures.cli import run_patchkit, start_patchkit
from fixtures.guests import guest_or_skip, transcript
from fixtures.processes import kill_processes_in, processes_in, reaped, signal_and_wait, wait_until
from fixtures.roms import PROJECT_ROOT, SERIES

from patchkit.boot.layout import Layout
from patchkit.boot.run import boot_guest, boot_planned
from patchkit.guests import Guest
from patchkit.project import Project
from patchkit.qemu.faults import Hold
from patchkit.series.io import load_series
from patchkit.series.model import Config
from patchkit.store import Store

pytestmark = pytest.mark.boot


def config(name: str) -> Config:
    """A configuration of the series' manifest."""
    return load_series(PROJECT_ROOT / "series" / SERIES).config(name)


@pytest.fixture
def probe(inputs_cache: Path, store: Store) -> Guest:
    return guest_or_skip("probe", store)


def test_q35_bare_boots_through_the_series_rom(probe: Guest, series_rom: Path) -> None:
    outcome = boot_planned(probe, rom=series_rom, config=config("q35-bare"))
    assert outcome.passed, f"{outcome.reason} (see {outcome.run_dir})"
    cmdline = (outcome.run_dir / "qemu-cmdline.txt").read_text()
    assert "-machine q35,graphics=off" in cmdline and "virtio-blk-pci,drive=disk0,bus=pcie.0,addr=04.0" in cmdline
    assert "gPXE> sanboot virtio_blk:" in transcript(outcome)


def test_q35_bare_fails_through_the_base_rom(probe: Guest, base_rom: Path) -> None:
    outcome = boot_planned(probe, rom=base_rom, config=config("q35-bare"))
    assert not outcome.passed
    assert outcome.reason.startswith("sanboot virtio_blk: returned to the gPXE prompt: Could not boot from")


def test_an_expected_refusal_passes_on_its_message_only(probe: Guest, series_rom: Path) -> None:
    refused = config("default-boot")
    outcome = boot_planned(probe, rom=series_rom, config=refused)
    assert outcome.passed, f"{outcome.reason} (see {outcome.run_dir})"
    assert outcome.reason.startswith("refused as expected after ")
    assert "-boot strict=on" not in (outcome.run_dir / "qemu-cmdline.txt").read_text()
    assert "refused" in outcome.timings and "success" not in outcome.timings
    other = boot_planned(probe, rom=series_rom, config=replace(refused, expect_refusal="(?i)block size"))
    assert not other.passed
    assert "which does not match the expected refusal /(?i)block size/" in other.reason


def test_an_expected_refusal_fails_when_the_guest_boots(probe: Guest, series_rom: Path) -> None:
    outcome = boot_planned(probe, rom=series_rom, config=replace(config("pc"), expect_refusal="(?i)in use"))
    assert not outcome.passed
    assert outcome.reason.startswith("the guest booted and passed, but sanboot virtio_blk:PCI00:04.0 should have "
                                     "refused the disk")


def test_under_the_default_boot_order_a_disk_seabios_boots_fails(probe: Guest, base_rom: Path) -> None:
    # The base ROM cannot sanboot; once gPXE exits, SeaBIOS boots the guest disk itself,
    # which would pass the probe without the ROM: the run must fail on SeaBIOS's own boot.
    outcome = boot_guest(probe, rom=base_rom, layout=Layout(strict_boot=False), exit_after_sanboot=True)
    assert not outcome.passed
    assert "SeaBIOS booted a disk itself" in outcome.reason
    assert re.search(r"gPXE> exit.*Booting from Hard Disk", transcript(outcome), re.DOTALL)


# --- v2's defects ----------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "defect"), [
    ("queue-1024", "ERROR: queue size 1024 > 512"),  # defect 4
    ("bios-busy-first", "PCI00:04.0 is in use by another driver"),  # defect 6: the bare path stops at the busy disk
])
def test_v2_fails_the_cells_that_show_its_defects(probe: Guest, v2_rom: Path, name: str,
                                                  defect: str) -> None:
    outcome = boot_planned(probe, rom=v2_rom, config=config(name))
    assert not outcome.passed
    assert "returned to the gPXE prompt" in outcome.reason and defect in outcome.reason


def test_v2_boots_the_disk_behind_a_busy_one_by_its_address(probe: Guest, v2_rom: Path) -> None:
    outcome = boot_planned(probe, rom=v2_rom, config=replace(config("bios-busy-first"),
                                                             root_path="virtio_blk:PCI00:05.0"))
    # The probe ran through: its one failure is v2's interrupt flag, its last check (issue 18, defect 10).
    assert "PROBE FAIL int13-returns-with-interrupts-enabled" in outcome.reason, f"{outcome.reason} ({outcome.run_dir})"
    assert transcript(outcome).count("PROBE FAIL") == 1 and "PROBE ok ext-write-64k-boundary-127" in transcript(outcome)
    assert "virtio-blk-pci,drive=disk0,addr=04.0,bootindex=1" in (outcome.run_dir / "qemu-cmdline.txt").read_text()


@pytest.fixture
def probe_hold(inputs_cache: Path, store: Store) -> Guest:
    return guest_or_skip("probe-hold", store)


def test_v2_lets_a_timed_out_request_write_the_buffer_after_returning(probe_hold: Guest, v2_rom: Path) -> None:
    # Defect 2: v2 gives up on the held read without resetting the device; once the drive is
    # released the device still writes the caller's buffer, after the INT 13h call returned.
    outcome = boot_planned(probe_hold, rom=v2_rom, config=config("request-timeout"), stall_timeout=150)
    assert not outcome.passed
    assert "held-read-buffer-unchanged-after-return changed-at-offset" in outcome.reason, outcome.reason


def test_the_series_rom_resets_the_device_before_a_timed_out_call_returns(probe_hold: Guest,
                                                                          current_rom: Path) -> None:
    outcome = boot_planned(probe_hold, rom=current_rom, config=config("request-timeout"), stall_timeout=150)
    assert outcome.passed, f"{outcome.reason} (see {outcome.run_dir})"


# --- the command -----------------------------------------------------------------------------


def test_command_runs_configurations_in_parallel(probe: Guest, series_rom: Path,
                                                 inputs_cache: Path, project: Project) -> None:
    done = run_patchkit("test", "--config", "q35", "--config", "disks-4", "--config", "block-4096", "--jobs", "2",
                        "--accel", "tcg", cache=inputs_cache, merged=False)
    out = done.stdout
    assert done.returncode == 0, out + done.stderr
    assert "booting q35/probe, disks-4/probe, block-4096/probe through " in done.stderr  # progress
    assert re.search(r"^PASS probe on q35 \(tcg\): marker seen", out, re.MULTILINE)
    assert re.search(r"^PASS probe on disks-4 \(tcg\): marker seen", out, re.MULTILINE)
    assert re.search(r"^PASS probe on block-4096 \(tcg\): refused as expected", out, re.MULTILINE)
    table = out[out.index("results (3 boots in"):].splitlines()
    assert "2 at a time" in table[0]
    assert [line.split() for line in table[1:]] == [["configuration", "probe"], ["q35", "pass"], ["disks-4", "pass"],
                                                    ["block-4096", "pass"]]
    revision = project.series(SERIES).revision_hash()
    with project.store.results() as db:
        cells = db.latest_by_cell(SERIES, revision)
    assert set(cells) == {("q35", "probe"), ("disks-4", "probe"), ("block-4096", "probe")}
    assert len({r.run_dir for r in cells.values()}) == 3


def test_sigterm_stops_every_parallel_boot(probe: Guest, series_rom: Path, inputs_cache: Path) -> None:
    running: list[Path] = []

    def both_up() -> bool:
        assert proc.poll() is None, proc.communicate()
        running[:] = [d for d in (inputs_cache / "runs").glob("*") if processes_in(d)]
        return len(running) == 2

    try:
        with reaped(start_patchkit("test", "--config", "q35", "--config", "disks-2", "--jobs", "2", "--accel", "tcg",
                                   cache=inputs_cache, merged=False)) as proc:
            wait_until(both_up, "two QEMUs to run")
            out, err = signal_and_wait(proc)
            assert proc.returncode == 128 + signal.SIGTERM, out + err
            assert "Terminated." in err and "Traceback" not in err
            assert [d for d in running if processes_in(d)] == []
    finally:
        kill_processes_in(running)


# --- device faults (blkdebug) ------------------------------------------------------------------

BLKDEBUG_SUSPENDED = "blkdebug: Suspended request"  # what QEMU prints (on its stdout: the serial stream)


def test_an_injected_read_error_is_reported_by_the_guest(probe: Guest, series_rom: Path) -> None:
    outcome = boot_planned(probe, rom=series_rom, config=config("read-error"))
    assert outcome.passed, f"{outcome.reason} (see {outcome.run_dir})"
    assert outcome.reason.startswith("the guest reported the failure as expected after ")
    assert '[inject-error]\nevent = "read_aio"\nerrno = "5"\nsector = "200"' in (
        outcome.run_dir / "blkdebug.conf").read_text()


def test_without_the_fault_the_guest_passes_and_the_cell_fails(probe: Guest, series_rom: Path) -> None:
    outcome = boot_planned(probe, rom=series_rom, config=replace(config("read-error"), inject_error=None))
    assert not outcome.passed
    assert outcome.reason.startswith("the guest passed, but it should have reported a failure")
    assert not (outcome.run_dir / "blkdebug.conf").exists()


def test_an_error_on_the_boot_sector_fails_sanboot_cleanly(probe: Guest, series_rom: Path,
                                                          base_rom: Path) -> None:
    outcome = boot_planned(probe, rom=series_rom, config=config("boot-sector-error"))
    assert outcome.passed, f"{outcome.reason} (see {outcome.run_dir})"
    control = boot_planned(probe, rom=base_rom, config=config("boot-sector-error"))  # refused for another reason
    assert not control.passed and "Not supported" in control.reason


def test_a_held_request_waits_for_its_release(probe: Guest, series_rom: Path) -> None:
    # The first read after sanboot is held; QEMU's own message that it is suspended is the release marker.
    held = replace(config("pc"), hold=Hold(at="gPXE> sanboot", release=BLKDEBUG_SUSPENDED, via="blkdebug"))
    outcome = boot_planned(probe, rom=series_rom, config=held)
    assert outcome.passed, f"{outcome.reason} (see {outcome.run_dir})"
    assert outcome.timings["held"] <= outcome.timings["released"] <= outcome.timings["success"]
    log = (outcome.run_dir / "monitor.log").read_text()
    assert 'qemu-io disk0 "break read_aio patchkit-hold": ok' in log and 'qemu-io disk0 "resume patchkit-hold"' in log


def test_a_request_never_released_stalls_the_boot(probe: Guest, series_rom: Path) -> None:
    held = replace(config("pc"), hold=Hold(at="gPXE> sanboot", release="never printed", via="blkdebug"))
    outcome = boot_planned(probe, rom=series_rom, config=held, stall_timeout=10)
    assert not outcome.passed
    assert outcome.reason.startswith("no serial output for 10 s")
    assert "released" not in outcome.timings
    assert '"remove_break patchkit-hold"' in (outcome.run_dir / "monitor.log").read_text()  # resumed, QEMU quit
    assert processes_in(outcome.run_dir) == []


@pytest.mark.parametrize("required", [False, True])
def test_an_optional_configuration_the_matrix_cannot_run_leaves_it_complete(
        inputs_cache: Path, store: Store, series_rom: Path, tmp_path: Path, required: bool) -> None:
    # keepsan-aoe is optional because it needs root: where it cannot run, the matrix still
    # succeeds, saying NOT RUN; a required configuration that cannot run fails it (the control).
    # A ROM given by path cannot run a guest embedded in the series' ROM, wherever the test runs.
    guest_or_skip("probe", store)
    root = tmp_path / "project"
    shutil.copytree(PROJECT_ROOT / "gpxe-tree", root / "gpxe-tree")
    shutil.copytree(PROJECT_ROOT / "series" / SERIES, root / "series" / SERIES)
    manifest = root / "series" / SERIES / "series.toml"
    data = tomllib.loads(manifest.read_text())
    data["guests"] = ["probe"]
    data["configs"] = [{"name": "pc"}, {"name": "embedded", "guests": ["keepsan-boot"], "required": required}]
    data.pop("images", None)
    manifest.write_text(tomli_w.dumps(data))
    done = run_patchkit("-C", root, "test", "--matrix", "--rom", series_rom, "--accel", "tcg", "--reruns", "0",
                        cache=inputs_cache, merged=False)
    assert "NOT RUN embedded/keepsan-boot: it boots bzloader" in done.stderr + done.stdout, done.stderr
    assert re.search(r"^PASS probe on pc\b", done.stdout, re.M), done.stdout
    assert done.returncode == (1 if required else 0), done.stderr
