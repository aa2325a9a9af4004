"""`patchkit test` on real QEMU (TCG): each guest through the series' ROM, with negative controls.

Every boot test has a negative control: the base tree's ROM (a virtio-net ROM, no
virtio-blk sanboot) must fail each guest with gPXE's own reason; a guest must fail
when the run expects another token; `virtio_blk:` picks the first disk, which fails
when that disk is blank; the probe, booted from a floppy after sanboot returned,
passes on the SAN disk as drive 0x80 with keep-san, and finds no drive 0x80 without it.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from dataclasses import replace
from pathlib import Path

import pytest
from fixtures.cli import run_patchkit, start_patchkit
from fixtures.guests import PROBE_CHECKS, guest_or_skip, transcript
from fixtures.processes import processes_in, reaped, signal_and_wait
from fixtures.roms import SERIES

from patchkit.boot.accel import choose_accel
from patchkit.boot.layout import Layout
from patchkit.boot.run import BootOutcome, boot_guest, boot_planned
from patchkit.guests import GUEST_NAMES
from patchkit.guests.probe import AoeKeepSanProbeGuest, KeepSanProbeGuest, parse_probe_log
from patchkit.project import Project
from patchkit.qemu.aoe import aoe_unavailable
from patchkit.store import Store, sha256_file

pytestmark = pytest.mark.boot

ARTIFACTS = ("serial.log", "screen.txt", "end.png", "seabios.log", "qemu-cmdline.txt", "timings.json", "result.json")


def assert_artifacts(run_dir: Path) -> None:
    for name in ARTIFACTS:
        assert (run_dir / name).is_file(), name
    assert json.loads((run_dir / "timings.json").read_text())["total"] > 0


# --- the reference path (SeaBIOS boots the disk itself) -------------------------------------


@pytest.mark.parametrize("name", GUEST_NAMES)
def test_reference_boot_passes(inputs_cache: Path, store: Store, name: str) -> None:
    guest = guest_or_skip(name, store)
    outcome = boot_guest(guest, rom=None)
    assert outcome.passed, f"{outcome.reason} (see {outcome.run_dir})"
    assert outcome.accel == "tcg" or outcome.accel == choose_accel("auto")[0]
    assert {"boot_sector", "success"} <= outcome.timings.keys()
    assert_artifacts(outcome.run_dir)
    cmdline = (outcome.run_dir / "qemu-cmdline.txt").read_text()
    assert "bootindex=0" in cmdline and "-option-rom" not in cmdline


def test_a_guest_that_never_prints_the_expected_token_fails(inputs_cache: Path, store: Store) -> None:
    guest = guest_or_skip("freedos", store)
    outcome = boot_guest(guest, rom=None, expect_token="0000000000ff")
    assert not outcome.passed
    assert 'waiting for the guest\'s marker "PATCHKIT-PASS 0000000000ff"' in outcome.reason
    assert (outcome.run_dir / "failure.png").is_file()
    assert "PATCHKIT-PASS" in (outcome.run_dir / "serial.log").read_text(errors="replace")


# --- negative control: a ROM without the series' driver --------------------------------------


@pytest.mark.parametrize("name", GUEST_NAMES)
def test_a_rom_without_the_driver_fails_with_gpxes_reason(inputs_cache: Path, store: Store, base_rom: Path,
                                                          name: str) -> None:
    guest = guest_or_skip(name, store)
    outcome = boot_guest(guest, rom=base_rom)
    assert not outcome.passed
    assert outcome.reason.startswith("sanboot virtio_blk:PCI00:04.0 returned to the gPXE prompt: Could not boot from")
    assert "Not supported" in outcome.reason
    assert {"gpxe_banner", "gpxe_prompt"} <= outcome.timings.keys()
    assert "success" not in outcome.timings
    cmdline = (outcome.run_dir / "qemu-cmdline.txt").read_text()
    assert "-boot strict=on" in cmdline and f"-option-rom {base_rom},bootindex=0" in cmdline
    assert (outcome.run_dir / "failure.png").is_file()


# --- the series' ROM ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", GUEST_NAMES)
def test_series_rom_boots_each_guest(inputs_cache: Path, store: Store, series_rom: Path, name: str) -> None:
    guest = guest_or_skip(name, store)
    outcome = boot_guest(guest, rom=series_rom)
    assert outcome.passed, f"{outcome.reason} (see {outcome.run_dir})"
    timings = outcome.timings
    assert timings["gpxe_banner"] <= timings["gpxe_prompt"] <= timings["boot_sector"] <= timings["success"]
    assert_artifacts(outcome.run_dir)
    assert "Booting from ROM" in (outcome.run_dir / "seabios.log").read_text(errors="replace")
    assert sha256_file(guest.base_image()) == guest.image_sha256()  # the guest wrote its run copy only


def test_the_named_disk_is_booted(inputs_cache: Path, store: Store, series_rom: Path) -> None:
    guest = guest_or_skip("freedos", store)
    outcome = boot_guest(guest, rom=series_rom, root_path="virtio_blk:PCI00:05.0",
                         layout=Layout(guest_addr="05.0", blank_addrs=("04.0",)))
    assert outcome.passed, f"{outcome.reason} (see {outcome.run_dir})"


def test_bare_prefix_boots_the_first_disk(inputs_cache: Path, store: Store, series_rom: Path) -> None:
    guest = guest_or_skip("freedos", store)
    outcome = boot_guest(guest, rom=series_rom, root_path="virtio_blk:",
                         layout=Layout(guest_addr="04.0", blank_addrs=("05.0",)))
    assert outcome.passed, f"{outcome.reason} (see {outcome.run_dir})"


def test_bare_prefix_with_a_blank_first_disk_fails(inputs_cache: Path, store: Store, series_rom: Path) -> None:
    guest = guest_or_skip("freedos", store)
    outcome = boot_guest(guest, rom=series_rom, root_path="virtio_blk:",
                         layout=Layout(guest_addr="05.0", blank_addrs=("04.0",)))
    assert not outcome.passed
    assert "returned to the gPXE prompt" in outcome.reason


# --- keep-san: the SAN drive outlives sanboot ------------------------------------------------------


@pytest.fixture
def keepsan_probe(inputs_cache: Path, store: Store) -> KeepSanProbeGuest:
    """The probe on its keep-san floppy (it shares the probe's image and build command)."""
    guest_or_skip("probe", store)
    return KeepSanProbeGuest(store)


SANBOOT_REFUSED = "Not an executable image"  # gPXE's int13_boot: no boot signature


def assert_in_order(log: str, *lines: str) -> None:
    """Each of ``lines`` appears in ``log``, after the previous one."""
    at = 0
    for line in lines:
        found = log.find(line, at)
        assert found >= 0, f"{line!r} missing after offset {at}"
        at = found + len(line)


def token_of(outcome: BootOutcome) -> str:
    """The run token the boot used (from its result.json)."""
    return json.loads((outcome.run_dir / "result.json").read_text())["token"]


def without_keep_san(guest: KeepSanProbeGuest) -> KeepSanProbeGuest:
    """The same guest whose gPXE commands leave keep-san unset (the control)."""
    plan = guest.sanboot
    commands = tuple(c for c in plan.commands if c != "set keep-san 1")
    return type(f"No{type(guest).__name__}", (type(guest),), {"sanboot": replace(plan, commands=commands)})(guest.store)


def test_keep_san_leaves_the_virtio_disk_as_drive_0x80(series_rom: Path, keepsan_probe: KeepSanProbeGuest) -> None:
    # The installer case keep-san exists for: sanboot a disk that does not boot (it returns),
    # leave gPXE, boot something else from A:, and use the SAN disk as drive 0x80.
    outcome = boot_planned(keepsan_probe, rom=series_rom)
    assert outcome.passed, f"{outcome.reason} (see {outcome.run_dir})"
    report = parse_probe_log((outcome.run_dir / "serial.log").read_text(errors="replace"))
    assert report.failures == [] and report.checks == PROBE_CHECKS
    assert_in_order(transcript(outcome), "Preserving connection to SAN disk", SANBOOT_REFUSED, "gPXE> exit",
                    "Booting from Floppy", "PROBE start drive 0x00000080", f"PATCHKIT-PASS {token_of(outcome)}")


def test_without_keep_san_there_is_no_drive_0x80_after_sanboot(series_rom: Path,
                                                              keepsan_probe: KeepSanProbeGuest) -> None:
    outcome = boot_planned(without_keep_san(keepsan_probe), rom=series_rom)
    assert not outcome.passed
    assert "PROBE FAIL ah41-extensions status" in outcome.reason
    assert_in_order(transcript(outcome), "Unregistering BIOS drive 0x80", SANBOOT_REFUSED, "gPXE> exit",
                    "Booting from Floppy", "PROBE start drive 0x00000080", "PROBE FAIL ah41-extensions")


def test_without_keep_san_the_bios_boots_the_next_disk(inputs_cache: Path, store: Store, series_rom: Path) -> None:
    # sanboot unregistered its drive: the IDE disk is drive 0x80 again and boots.
    guest = guest_or_skip("freedos", store)
    outcome = boot_guest(guest, rom=series_rom, layout=Layout(guest_addr="ide", blank_addrs=("04.0",)),
                         exit_after_sanboot=True)
    assert outcome.passed, f"{outcome.reason} (see {outcome.run_dir})"


# --- keep-san over AoE: patch 1's case -------------------------------------------------------


@pytest.fixture
def aoe_probe(inputs_cache: Path, store: Store) -> AoeKeepSanProbeGuest:
    """The probe on its AoE keep-san floppy; skips where AoE targets cannot be made."""
    if (reason := aoe_unavailable()) is not None:
        pytest.skip(reason)
    guest_or_skip("probe", store)
    return AoeKeepSanProbeGuest(store)


AOE_UNCHECKED = ("read-past-end", "read-straddling-end", "chs-read-past-end")


def patchkit_namespaces() -> list[str]:
    listing = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    return [line.split()[0] for line in listing.splitlines() if line.startswith("patchkit-")]


def run_namespace(outcome: BootOutcome) -> str:
    """The network namespace an AoE run's QEMU ran in (other runs on the machine have their own)."""
    found = re.match(r"ip netns exec (patchkit-\S+) ", (outcome.run_dir / "qemu-cmdline.txt").read_text())
    assert found, f"no network namespace in {outcome.run_dir / 'qemu-cmdline.txt'}"
    return found.group(1)


def test_keep_san_leaves_the_aoe_disk_as_drive_0x80(series_nic_rom: Path, aoe_probe: AoeKeepSanProbeGuest) -> None:
    outcome = boot_planned(aoe_probe, rom=series_nic_rom)
    assert outcome.passed, f"{outcome.reason} (see {outcome.run_dir})"
    log = transcript(outcome)
    report = parse_probe_log(log)
    assert report.failures == []
    assert report.checks == [check for check in PROBE_CHECKS if check not in AOE_UNCHECKED]
    assert_in_order(log, "gPXE> sanboot aoe:e0.0", "Preserving connection to SAN disk", SANBOOT_REFUSED, "gPXE> exit",
                    "Booting from Floppy", "PROBE start drive 0x00000080", "PROBE note reads past the end not checked",
                    f"PATCHKIT-PASS {token_of(outcome)}")
    assert processes_in(outcome.run_dir) == []  # QEMU and vblade
    assert run_namespace(outcome) not in patchkit_namespaces()


def test_keep_san_aoe_without_patch_1_breaks_the_next_boot(base_rom: Path, aoe_probe: AoeKeepSanProbeGuest) -> None:
    # The negative control: upstream's aoeboot() leaves INT 13h pointing into its stack frame.
    outcome = boot_planned(aoe_probe, rom=base_rom)
    assert not outcome.passed
    log = transcript(outcome)
    assert_in_order(log, "Preserving connection to SAN disk", "gPXE> exit", "Booting from Floppy")
    assert "PATCHKIT-PASS" not in log


def test_without_keep_san_the_aoe_drive_is_gone(series_nic_rom: Path, aoe_probe: AoeKeepSanProbeGuest) -> None:
    outcome = boot_planned(without_keep_san(aoe_probe), rom=series_nic_rom)
    assert not outcome.passed
    assert "PROBE FAIL ah41-extensions status" in outcome.reason
    assert_in_order(transcript(outcome), "Unregistering BIOS drive 0x80", "gPXE> exit", "PROBE start drive 0x00000080")


# --- accelerators ------------------------------------------------------------------------------


def test_auto_accel_avoids_a_kvm_that_cannot_run_the_guests() -> None:
    assert choose_accel("tcg") == ("tcg", "")
    assert choose_accel("kvm") == ("kvm", "")
    accel, note = choose_accel("auto")
    if Path("/sys/module/kvm_pvm").exists():
        assert (accel, note) == ("tcg", "KVM is the kvm_pvm software module (cannot run real-mode guests): using TCG")
    elif not os.access("/dev/kvm", os.R_OK | os.W_OK):
        assert accel == "tcg" and "not usable" in note
    else:
        assert accel == "kvm"


def test_a_kvm_internal_error_is_detected(inputs_cache: Path, store: Store) -> None:
    if not Path("/sys/module/kvm_pvm").exists() or not os.access("/dev/kvm", os.R_OK | os.W_OK):
        pytest.skip("needs the kvm_pvm software KVM (where syslinux stops with a KVM internal error)")
    guest = guest_or_skip("freedos", store)
    outcome = boot_guest(guest, rom=None, accel="kvm", timeout=120)
    assert not outcome.passed and outcome.kvm_failed
    assert "internal error" in outcome.reason


# --- the command ---------------------------------------------------------------------------


def test_command_reference_run_is_recorded(inputs_cache: Path, store: Store, tmp_path: Path) -> None:
    guest_or_skip("freedos", store)
    done = run_patchkit("test", "--reference", "--guest", "freedos", cache=inputs_cache, merged=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "PASS freedos on pc (tcg): marker seen after" in done.stdout
    with store.results() as db:
        [result] = db.for_revision(SERIES, "reference")
    assert result.passed and result.key.rom_sha256 == "" and result.key.guest == "freedos"
    assert result.key.qemu_version[0].isdigit() and result.key.accel == "tcg"
    assert result.run_dir in done.stdout


def test_command_fails_with_the_base_rom(inputs_cache: Path, store: Store, base_rom: Path) -> None:
    guest_or_skip("probe", store)
    done = run_patchkit("test", "--rom", str(base_rom), "--guest", "probe", "--accel", "tcg", "--reruns", "0",
                        cache=inputs_cache, merged=False)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "FAIL probe on pc (tcg): sanboot virtio_blk:PCI00:04.0 returned to the gPXE prompt" in done.stdout
    assert "1 of 1 boots failed: pc/probe" in done.stderr
    with store.results() as db:
        [result] = db.for_series(SERIES)
    assert not result.passed and result.key.revision == f"rom-{result.key.rom_sha256[:12]}"


def test_command_builds_the_series_rom_and_records_the_revision(series_rom: Path, inputs_cache: Path,
                                                                project: Project) -> None:
    guest_or_skip("freedos", project.store)
    done = run_patchkit("test", "--guest", "freedos", cache=inputs_cache, merged=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "PASS freedos" in done.stdout
    revision = project.series(SERIES).revision_hash()
    with project.store.results() as db:
        latest = db.latest_by_guest(SERIES, revision)
    assert latest["freedos"].passed
    assert latest["freedos"].key.rom_sha256 == sha256_file(series_rom)


def test_command_boots_keepsan_aoe_through_the_series_nic_rom(series_nic_rom: Path, aoe_probe: AoeKeepSanProbeGuest,
                                                               inputs_cache: Path, project: Project) -> None:
    done = run_patchkit("test", "--guest", "keepsan-aoe", cache=inputs_cache, merged=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert re.search(r"^booting pc/keepsan-aoe through \S+/1af41000\.rom \.\.\.$", done.stderr, re.M), done.stderr
    assert "PASS keepsan-aoe" in done.stdout
    revision = project.series(SERIES).revision_hash()
    with project.store.results() as db:
        latest = db.latest_by_guest(SERIES, revision)
    assert latest["keepsan-aoe"].key.rom_sha256 == sha256_file(series_nic_rom)
    refused = run_patchkit("test", "--reference", "--guest", "keepsan", cache=inputs_cache, merged=False)
    assert refused.returncode == 1 and "keepsan runs gPXE commands" in refused.stderr


def test_command_names_the_missing_image(tmp_path: Path) -> None:
    done = run_patchkit("test", "--reference", "--guest", "debian", cache=tmp_path / "empty-cache", merged=False)
    assert done.returncode == 1
    assert "patchkit guest build debian" in done.stderr


def test_interrupting_the_command_stops_qemu(inputs_cache: Path, store: Store) -> None:
    guest_or_skip("debian", store)
    with reaped(start_patchkit("test", "--reference", "--guest", "debian", cache=inputs_cache,
                               merged=False)) as command:
        run_dir = None
        for _ in range(600):  # until QEMU is up and the guest printing
            logs = list((inputs_cache / "runs").glob("*/serial.log"))
            if logs and logs[0].stat().st_size > 0 and processes_in(logs[0].parent):
                run_dir = logs[0].parent
                break
            time.sleep(0.05)
        assert run_dir is not None, "QEMU did not start"
        out, err = signal_and_wait(command, signal.SIGINT)
    assert command.returncode == 130, out + err
    assert "Interrupted." in err
    assert processes_in(run_dir) == []
