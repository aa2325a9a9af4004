"""The test matrix without QEMU: which cells run, their machines, the summary table, results by configuration."""

from __future__ import annotations

import sqlite3
from dataclasses import replace
from pathlib import Path

import pytest

from patchkit import store as storage
from patchkit.boot.layout import Layout, machine_spec
from patchkit.errors import PatchkitError
from patchkit.guests import get_guest
from patchkit.matrix import Plan, plan_cells, select_configs, summary_table
from patchkit.qemu.cmdline import qemu_argv
from patchkit.series.model import Config
from patchkit.store import Store

PC = Config(name="pc", guests=("freedos", "debian", "probe"))
Q35 = Config(name="q35", guests=("probe",), machine="q35", root_path="virtio_blk:")
SHAPED = Config(name="geometry-255", guests=("probe",), disk_shape="2g-255x63")
BUSY = Config(name="bios-busy-first", guests=("probe",), disk_addr="05.0", bios_disks=("04.0",),
              blank_disks=("06.0",), boot="default", readonly=True, virtio_blk=(("queue-size", 64),))
CONFIGS = [PC, Q35, SHAPED]


def names(plan: Plan) -> list[str]:
    return [cell.name for cell in plan.cells]


def test_configurations_are_chosen_by_name_or_all() -> None:
    assert select_configs(CONFIGS, (), matrix=False) == [PC]  # the first: today's machine
    assert select_configs(CONFIGS, ("q35", "pc", "q35"), matrix=False) == [Q35, PC]
    assert select_configs(CONFIGS, (), matrix=True) == CONFIGS
    with pytest.raises(PatchkitError, match=r"unknown configuration q36 \(known: pc, q35, geometry-255\)"):
        select_configs(CONFIGS, ("q36",), matrix=False)


def test_cells_are_each_configurations_guests(store: Store) -> None:
    plan = plan_cells(store, [PC, Q35], ("all",), matrix=True)
    assert names(plan) == ["pc/freedos", "pc/debian", "pc/probe", "q35/probe"]
    assert names(plan_cells(store, [PC, Q35], ("probe",), matrix=True)) == ["pc/probe", "q35/probe"]
    assert names(plan_cells(store, [PC, Q35], ("freedos",), matrix=True)) == ["pc/freedos"]  # --matrix filters
    assert names(plan_cells(store, [Q35], ("freedos", "keepsan"), matrix=False)) == ["q35/freedos", "q35/keepsan"]


def test_a_guest_without_the_configurations_disk_is_not_run(store: Store) -> None:
    probe = get_guest("probe", store)
    plan = plan_cells(store, [SHAPED], ("all",), matrix=True)
    if "2g-255x63" in probe.disk_shapes:
        assert names(plan) == ["geometry-255/probe"] and plan.unrunnable == {}
    else:  # until the probe has disk shapes
        assert plan.cells == [] and "cannot run on disk shape '2g-255x63'" in plan.unrunnable["geometry-255", "probe"]
    plan = plan_cells(store, [SHAPED], ("freedos",), matrix=False)
    assert plan.cells == [] and "the freedos guest cannot run on" in plan.unrunnable["geometry-255", "freedos"]


def test_a_configurations_machine(tmp_path: Path, store: Store) -> None:
    guest = get_guest("probe", store)
    layout = Layout.for_cell(BUSY, guest)
    assert (layout.guest_addr, layout.blank_addrs, layout.bios_addrs) == ("05.0", ("06.0",), ("04.0",))
    disk = tmp_path / "probe.img"
    argv = qemu_argv(machine_spec(tmp_path, disk, Path("/roms/1af41001.rom"), "tcg", layout, None), monitor_fd=3)
    devices = [argv[i + 1] for i, arg in enumerate(argv) if arg == "-device"]
    assert "-boot" not in argv  # QEMU's default boot order
    assert devices[-3:] == ["virtio-blk-pci,drive=disk0,addr=06.0",  # blank: no bootindex
                            "virtio-blk-pci,drive=disk1,addr=04.0,bootindex=1",  # blank, driven by SeaBIOS
                            "virtio-blk-pci,drive=disk2,addr=05.0,queue-size=64"]  # the guest's, read-only
    assert f"file={disk},format=raw,if=none,id=disk2,readonly=on" in argv
    assert (tmp_path / "blank-04-0.img").stat().st_size == (tmp_path / "blank-06-0.img").stat().st_size > 0


def test_blank_disks_properties_go_to_the_blank_disks_only(tmp_path: Path, store: Store) -> None:
    config = replace(BUSY, blank_virtio_blk=(("logical_block_size", 4096),))
    layout = Layout.for_cell(config, get_guest("probe", store))
    argv = qemu_argv(machine_spec(tmp_path, tmp_path / "probe.img", Path("/roms/1af41001.rom"), "tcg", layout, None),
                     monitor_fd=3)
    devices = [argv[i + 1] for i, arg in enumerate(argv) if arg == "-device"]
    assert devices[-3:] == ["virtio-blk-pci,drive=disk0,addr=06.0,logical_block_size=4096",  # the blank disk
                            "virtio-blk-pci,drive=disk1,addr=04.0,bootindex=1",  # SeaBIOS's: none
                            "virtio-blk-pci,drive=disk2,addr=05.0,queue-size=64"]  # the guest's own


def test_the_summary_is_a_configuration_by_guest_table() -> None:
    optional = Config(name="queue-1024", guests=("probe",), required=False)
    table = summary_table([PC, Q35, optional], {("pc", "freedos"): "pass", ("pc", "probe"): "FAIL",
                                                ("q35", "probe"): "pass", ("pc", "keepsan"): "pass"})
    assert [line.split() for line in table] == [
        ["configuration", "freedos", "debian", "probe", "keepsan"],
        ["pc", "pass", "-", "FAIL", "pass"],
        ["q35", "-", "-", "pass", "-"],
        ["queue-1024", "(optional)", "-", "-", "-", "-"],
    ]


# --- results keyed by configuration --------------------------------------------------------


def result(guest: str, config: str, passed: bool, created: float) -> storage.TestResult:
    key = storage.ResultKey("demo", "rev", "r" * 64, guest, "i" * 64, "7.2.0", "tcg", config)
    return storage.TestResult(key=key, passed=passed, reason="", run_dir="", version=2, created=created)


def test_the_newest_result_per_cell(store: Store) -> None:
    with store.results() as db:
        db.record(result("probe", "pc", False, 1.0))
        db.record(result("probe", "pc", True, 2.0))
        db.record(result("probe", "q35", False, 3.0))
        cells = db.latest_by_cell("demo", "rev")
        assert {cell: r.passed for cell, r in cells.items()} == {("pc", "probe"): True, ("q35", "probe"): False}
        assert db.latest_by_guest("demo", "rev")["probe"].passed
        assert not db.latest_by_guest("demo", "rev", config="q35")["probe"].passed


def test_a_database_from_before_configurations_is_migrated(tmp_path: Path) -> None:
    path = tmp_path / "results.sqlite"
    old = sqlite3.connect(path)
    old.execute("""CREATE TABLE results (series TEXT, revision TEXT, rom_sha256 TEXT, guest TEXT, image_sha256 TEXT,
                   qemu_version TEXT, accel TEXT, passed INTEGER, reason TEXT, run_dir TEXT, timings TEXT,
                   rom_size INTEGER, version INTEGER, created REAL)""")
    old.execute("INSERT INTO results VALUES ('demo','rev','r','freedos','i','7.2.0','tcg',1,'ok','/run','{}',1,2,1.0)")
    old.commit()
    old.close()
    with storage.Results(path) as db:
        [migrated] = db.for_revision("demo", "rev")
        assert migrated.key.config == "pc" and migrated.passed and migrated.reason == "ok"
        db.record(result("freedos", "q35", False, 5.0))
    with storage.Results(path) as db:  # opening again changes nothing
        assert {cell: r.passed for cell, r in db.latest_by_cell("demo", "rev").items()} == {
            ("pc", "freedos"): True, ("q35", "freedos"): False}
