"""[[configs]] in series.toml: defaults, the implicit "pc" configuration, round trips, and each error's line."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from fixtures.repos import BASE, all_bytes, patch_text, write_series

from patchkit.errors import SeriesError
from patchkit.qemu.faults import Hold, InjectError
from patchkit.series.io import load_series, save_series
from patchkit.series.model import Config

CONFIGS = """
[[configs]]
name = "pc"

[[configs]]
name = "q35-bare"
guests = ["probe"]
machine = "q35"
root_path = "virtio_blk:"
required = false

[[configs]]
name = "busy"
guests = ["probe"]
disk_addr = "05.0"
bios_disks = ["04.0"]
blank_disks = ["06.0", "07.0"]
boot = "default"
readonly = true
disk_shape = "2g-255x63"
virtio_blk = { queue-size = 1024, disable-legacy = "on", event_idx = false }
expect_refusal = "(?i)in use"
"""


@pytest.fixture
def series_dir(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    (root / "series").mkdir(parents=True)
    return write_series(root, "demo", BASE, [patch_text()])


def with_configs(series_dir: Path, text: str) -> Path:
    manifest = series_dir / "series.toml"
    manifest.write_text(manifest.read_text() + text)
    return manifest


def test_a_manifest_without_configs_has_one_implicit_pc_config(series_dir: Path) -> None:
    s = load_series(series_dir)
    assert s.configs == []
    assert s.test_configs() == [Config(name="pc", guests=("freedos", "debian", "probe"))]
    assert s.config("pc").root_path == "virtio_blk:PCI00:04.0"
    with pytest.raises(SeriesError, match=r"no configuration 'q35' \(known: pc\)"):
        s.config("q35")


def test_configs_are_read_with_their_defaults(series_dir: Path) -> None:
    with_configs(series_dir, CONFIGS)
    pc, bare, busy = load_series(series_dir).test_configs()
    assert pc == Config(name="pc", guests=("freedos", "debian", "probe"))  # guests default to the manifest's
    assert (pc.required, pc.machine, pc.boot, pc.disk_addr, pc.blank_disks) == (True, "pc", "strict", "04.0", ())
    assert (bare.machine, bare.root_path, bare.required, bare.guests) == ("q35", "virtio_blk:", False, ("probe",))
    assert busy.bios_disks == ("04.0",) and busy.blank_disks == ("06.0", "07.0") and busy.disk_addr == "05.0"
    assert busy.virtio_blk == (("queue-size", 1024), ("disable-legacy", "on"), ("event_idx", False))
    assert (busy.boot, busy.readonly, busy.disk_shape, busy.expect_refusal) == ("default", True, "2g-255x63",
                                                                               "(?i)in use")


def test_a_config_describes_itself_in_one_line(series_dir: Path) -> None:
    with_configs(series_dir, CONFIGS)
    pc, bare, busy = load_series(series_dir).test_configs()
    assert pc.describe() == "-machine pc; strict boot; guest disk at 04.0; sanboot virtio_blk:PCI00:04.0"
    assert busy.describe() == (
        "-machine pc; QEMU's default boot order; guest disk at 05.0 (2g-255x63); read-only; "
        "queue-size=1024,disable-legacy=on,event_idx=off; blank disks at 06.0, 07.0; "
        "disks driven by SeaBIOS at 04.0; sanboot virtio_blk:PCI00:04.0; must be refused (/(?i)in use/)")
    assert "\n" not in bare.describe()


def test_saving_keeps_the_configs_as_written(series_dir: Path) -> None:
    with_configs(series_dir, CONFIGS)
    before = all_bytes(series_dir)
    save_series(load_series(series_dir))
    assert all_bytes(series_dir) == before
    s = load_series(series_dir)
    s.cc = ["list@example.org"]  # a change elsewhere rewrites the manifest: the configs survive it
    save_series(s)
    again = load_series(series_dir)
    assert again.cc == ["list@example.org"] and again.configs == s.configs


def bad(series_dir: Path, table: str) -> str:
    """The error for a manifest with one [[configs]] table ``table`` (its header is line 15)."""
    manifest = with_configs(series_dir, "\n[[configs]]\n" + table)
    assert manifest.read_text().splitlines()[14] == "[[configs]]"
    with pytest.raises(SeriesError) as exc:
        load_series(series_dir)
    return str(exc.value)


@pytest.mark.parametrize(("table", "message"), [
    ('name = "x"\ncolour = "blue"\n', r":17: unknown configuration key 'colour'"),
    ('guests = ["probe"]\n', r":15: a configuration needs a `name`"),
    ('name = "Q35"\n', r":16: configuration name 'Q35' must be lowercase letters, digits and '-'"),
    ('name = "x"\nrequired = "yes"\n', r":17: 'required' must be a bool, got 'yes'"),
    ('name = "x"\nguests = ["probe", "windows"]\n', r":17: unknown guest 'windows'"),
    ('name = "x"\nguests = []\n', r":17: configuration x runs no guest"),
    ('name = "x"\nmachine = "isapc"\n', r":17: 'machine' must be one of pc, q35, got 'isapc'"),
    ('name = "x"\nboot = "menu"\n', r":17: 'boot' must be one of strict, default, got 'menu'"),
    ('name = "x"\ndisk_addr = "4"\n', r":17: 'disk_addr' is slot.function on bus 0"),
    ('name = "x"\nblank_disks = ["05.0", "0g.0"]\n', r":17: 'blank_disks' holds PCI addresses"),
    ('name = "x"\nblank_disks = ["04.0"]\n', r":17: two disks at PCI address 04.0"),
    ('name = "x"\nblank_disks = ["05.0"]\nbios_disks = ["05.0"]\n', r":18: two disks at PCI address 05.0"),
    ('name = "x"\nbios_disks = ["04.0"]\n', r":17: the guest disk \(04.0\) cannot be a BIOS disk"),
    ('name = "x"\nvirtio_blk = { bootindex = 1 }\n', r":17: .*'bootindex' is not one a configuration may"),
    ('name = "x"\nvirtio_blk = { queue-size = "big" }\n', r":17: virtio-blk-pci property queue-size takes a number"),
    ('name = "x"\nvirtio_blk = { disable-legacy = "yes" }\n', r":17: .*disable-legacy takes on/off/auto"),
    ('name = "x"\nvirtio_blk = { serial = "a,b" }\n', r":17: .*may not hold commas"),
    ('name = "x"\nroot_path = "virtio_blk: x"\n', r":17: 'root_path' must be one word"),
    ('name = "x"\nexpect_refusal = "(unclosed"\n', r":17: 'expect_refusal' is not a regular expression"),
    ('name = "x"\ninject_error = { event = "open" }\n', r":17: inject_error.event must be one of read_aio, "),
    ('name = "x"\ninject_error = { errno = -5 }\n', r":17: inject_error.errno must be a int"),
    ('name = "x"\ninject_error = { sector = "0" }\n', r":17: inject_error.sector must be a int"),
    ('name = "x"\ninject_error = { where = 1 }\n', r":17: unknown inject_error key 'where'"),
    ('name = "x"\nhold = { at = "A" }\n', r":17: a hold needs `at` and `release`"),
    ('name = "x"\nhold = { at = "A", release = "B", via = "pause" }\n', r":17: hold.via must be one of throttle, "),
    ('name = "x"\nhold = { at = "A", release = "B", key = "Space!" }\n', r":17: hold.key must be a QEMU key code"),
    ('name = "x"\nexpect_refusal = "a"\nexpect_failure = "b"\n', r":18: .*either a refusal by sanboot or a failure"),
    ('name = "x"\nexpect_failure = "(unclosed"\n', r":17: 'expect_failure' is not a regular expression"),
    ('name = "x"\ndisk_shape = 2\n', r":17: 'disk_shape' must be a shape name"),
    # Issue 23, item 12: values that passed this check and failed later (or tested nothing).
    ('name = "x"\nvirtio_blk = { queue-size = 0 }\n', r":17: .*queue-size takes a power of two from 4 to 1024"),
    ('name = "x"\nvirtio_blk = { queue-size = 100 }\n', r":17: .*queue-size takes a power of two"),
    ('name = "x"\nvirtio_blk = { queue-size = "\u0661\u0662\u0668" }\n', r":17: .*queue-size takes a number"),
    ('name = "x"\nvirtio_blk = { cyls = 99999999999999 }\n', r":17: .*cyls takes from 1 to 65535"),
    ('name = "x"\nroot_path = "virtio_blk:\u00e9"\n', r":17: 'root_path' must be one word typed"),
    ('name = "x"\nroot_path = "virtio_blk:~"\n', r":17: 'root_path' must be one word typed"),
    ('name = "x"\ndisk_addr = "ff.0"\n', r":17: PCI slot ff.0 is not free on -machine pc"),
    ('name = "x"\nmachine = "q35"\nblank_disks = ["1f.0"]\n', r":18: PCI slot 1f.0 is not free on -machine q35"),
    ('name = "x"\ninject_error = { event = "read_aio", errno = 0 }\n', r":17: inject_error.errno must be an errno "
                                                                         r"from 1 to 133 .*0 injects nothing"),
    ('name = "x"\nblank_virtio_blk = { queue-size = 64 }\n', r":17: 'blank_virtio_blk' sets properties of the "
                                                               r"blank disks: add `blank_disks`"),
    ('name = "x"\nblank_disks = ["05.0"]\nblank_virtio_blk = { romfile = "x" }\n', r":18: .*'romfile' is not one"),
    ('name = "x"\nblank_disks = ["05.0"]\nkept_disks = ["06.0"]\n', r":18: kept disk 06.0 is not one of the blank "
                                                                     r"disks \(05.0\)"),
])
def test_each_config_error_names_its_line(series_dir: Path, table: str, message: str) -> None:
    error = bad(series_dir, table)
    assert "series.toml" in error
    assert re.search(message, error), error


def test_kept_disks_and_blank_disks_properties_are_read_described_and_saved(series_dir: Path) -> None:
    with_configs(series_dir, """
[[configs]]
name = "heap"
guests = ["probe"]
blank_disks = ["05.0", "06.0"]
blank_virtio_blk = { queue-size = 1024 }
kept_disks = ["05.0"]
""")
    before = all_bytes(series_dir)
    config = load_series(series_dir).config("heap")
    assert config.blank_virtio_blk == (("queue-size", 1024),) and config.kept_disks == ("05.0",)
    assert "blank disks at 05.0, 06.0 (queue-size=1024); keep-san sanboot of 05.0 first" in config.describe()
    save_series(load_series(series_dir))
    assert all_bytes(series_dir) == before


def test_two_configs_may_not_share_a_name(series_dir: Path) -> None:
    with_configs(series_dir, '\n[[configs]]\nname = "pc"\n\n[[configs]]\nname = "pc"\nmachine = "q35"\n')
    with pytest.raises(SeriesError, match=r"series\.toml:19: a second configuration named 'pc'"):
        load_series(series_dir)


def test_the_real_series_configs_load() -> None:
    s = load_series(Path(__file__).resolve().parent.parent / "series" / "gpxe-virtio-blk")
    names = [c.name for c in s.test_configs()]
    assert names[0] == "pc" and len(names) == len(set(names))
    assert s.config("pc").guests == ("freedos", "debian", "probe", "freedos-installed", "debian-system")


def test_faults_are_read_and_described(series_dir: Path) -> None:
    with_configs(series_dir, """
[[configs]]
name = "read-error"
guests = ["probe"]
inject_error = { sector = 200, once = true }
expect_failure = "status 0x0*4"

[[configs]]
name = "held"
guests = ["probe"]
hold = { at = "PROBE hold", release = "PROBE returned" }
""")
    failing, held = load_series(series_dir).test_configs()
    assert failing.inject_error == InjectError(event="read_aio", errno=5, sector=200, once=True)
    assert failing.expect_failure == "status 0x0*4" and failing.hold is None
    assert held.hold == Hold(at="PROBE hold", release="PROBE returned", via="throttle", event="read_aio", key="spc")
    assert held.hold.monitor_commands("disk0") == ("block_set_io_throttle disk0 0 1 0 0 0 0",
                                                   "block_set_io_throttle disk0 0 0 0 0 0 0",
                                                   ("block_set_io_throttle disk0 0 0 0 0 0 0",))
    assert Hold("a", "b", via="blkdebug").monitor_commands("disk1") == (
        'qemu-io disk1 "break read_aio patchkit-hold"', 'qemu-io disk1 "resume patchkit-hold"',
        ('qemu-io disk1 "remove_break patchkit-hold"', 'qemu-io disk1 "resume patchkit-hold"'))
    assert failing.describe().endswith("read_aio fails with errno 5 at sector 200 once; "
                                       "the guest must report the failure (/status 0x0*4/)")
    assert 'reads throttled after "PROBE hold" held until "PROBE returned" (throttle)' in held.describe()
    before = all_bytes(series_dir)
    save_series(load_series(series_dir))
    assert all_bytes(series_dir) == before
