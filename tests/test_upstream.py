"""The pin and `vendor`: import from a local mirror, verification, atomicity, errors."""

from __future__ import annotations

import socket
from pathlib import Path

import git
import pytest
from fixtures.repos import commit_files, git_out, make_project, make_upstream

from patchkit.errors import MissingInputError, UpstreamError
from patchkit.pin import BuildSettings, RomIds, load_pin
from patchkit.store import Store
from patchkit.upstream import vendor, vendor_report


def test_load_pin_of_the_project() -> None:
    pin = load_pin(Path(__file__).resolve().parent.parent)
    assert pin.name == "gpxe"
    assert pin.commit == "245dca9ce6d748815914bf23231c34fe33e7f18b"
    assert pin.latest == "c23508d796325f8af724ad497c99ffb5a49abea0"
    assert pin.build.target == "bin/1af41001.rom"
    assert pin.rom == RomIds(vendor=0x1AF4, device=0x1001)


def test_malformed_pin_names_line(tmp_path: Path) -> None:
    (tmp_path / "gpxe-tree").mkdir()
    (tmp_path / "gpxe-tree" / "pin.toml").write_text('name = "gpxe"\nurl = \n')
    with pytest.raises(UpstreamError, match=r"pin\.toml: .*line 2"):
        load_pin(tmp_path)


PIN_HEAD = 'name = "gpxe"\nurl = "-"\ncommit = "245dca9ce6d748815914bf23231c34fe33e7f18b"\n\n'


def write_pin(root: Path, tables: str) -> Path:
    """``root/gpxe-tree/pin.toml`` with a valid name, url and commit, then ``tables``; returns its path."""
    path = root / "gpxe-tree" / "pin.toml"
    path.parent.mkdir(parents=True)
    path.write_text(PIN_HEAD + tables, encoding="utf-8")
    return path


def test_pin_build_settings_are_typed_and_base_target_defaults_to_target(tmp_path: Path) -> None:
    path = write_pin(tmp_path, '[build]\ntarget = "bin/x.rom"\nmake_args = ["A=1", "B=2"]\n')
    pin = load_pin(tmp_path)
    assert pin.build == BuildSettings(target="bin/x.rom", base_target="bin/x.rom", directory=".",
                                      make_args=("A=1", "B=2"))
    assert pin.rom is None and pin.path == path


@pytest.mark.parametrize(("tables", "problem"), [
    ('[build]\ntarget = "bin/x.rom"\nmake_args = "NO_WERROR=1"\n', "[build] make_args must be a list of strings"),
    ('[build]\ntarget = "bin/x.rom"\nmake_args = ["A=1", 2]\n', "[build] make_args must be a list of strings"),
    ('[build]\ndirectory = "src"\n', "[build] target must be a non-empty string"),
    ("", "[build] target must be a non-empty string"),
    ('[build]\ntarget = "bin/x.rom"\n\n[rom]\nvendor = 0x10000\ndevice = 0x1001\n',
     "[rom] vendor must be a PCI id (an integer such as 0x1af4)"),
    ('[build]\ntarget = "bin/x.rom"\n\n[rom]\nvendor = 0x1af4\ndevice = -1\n',
     "[rom] device must be a PCI id (an integer such as 0x1af4)"),
    ('[build]\ntarget = "bin/x.rom"\n\n[rom]\nvendor = 0x1af4\n',
     "[rom] device must be a PCI id (an integer such as 0x1af4)"),
], ids=["make_args-string", "make_args-not-strings", "no-target", "no-build-table", "vendor-too-big",
        "device-negative", "device-missing"])
def test_bad_pin_settings_name_the_file(tmp_path: Path, tables: str, problem: str) -> None:
    path = write_pin(tmp_path, tables)
    with pytest.raises(UpstreamError) as exc:
        load_pin(tmp_path)
    assert str(exc.value) == f"{path}: {problem}"


def test_vendor_from_local_mirror(tmp_path: Path, isolated_cache: Path, store: Store) -> None:
    up = make_upstream(tmp_path / "up")
    pin = load_pin(make_project(tmp_path / "p", up.path, up.base, latest=up.commits[-1]))
    with pytest.raises(MissingInputError, match=r"run `patchkit vendor`"):
        store.imported_mirror(pin.name)
    messages: list[str] = []
    report = vendor_report(store, pin, str(up.path), messages.append)
    assert report.path == isolated_cache / "upstream" / "gpxe.git" == store.imported_mirror(pin.name)
    assert report.latest_present
    assert git_out(report.path, "rev-parse", "--is-bare-repository") == "true"
    assert git_out(report.path, "rev-parse", "master") == up.commits[-1]
    assert any("verified" in m for m in messages) and any("cloning" in m for m in messages)
    # Only the mirror and its lock are left: no temporary directory.
    assert sorted(p.name for p in (isolated_cache / "upstream").iterdir()) == [".gpxe.lock", "gpxe.git"]


def test_vendor_rerun_updates(tmp_path: Path, store: Store) -> None:
    up = make_upstream(tmp_path / "up")
    pin = load_pin(make_project(tmp_path / "p", up.path, up.base, latest="f" * 40))
    first = vendor_report(store, pin, str(up.path))
    assert not first.latest_present
    new = commit_files(git.Repo(up.path), {"NEW": "x\n"}, "[misc] Later upstream work")
    assert vendor(store, pin, str(up.path)) == first.path
    assert git_out(first.path, "rev-parse", "master") == new


def test_vendor_source_missing(tmp_path: Path, isolated_cache: Path, store: Store) -> None:
    pin = load_pin(make_project(tmp_path / "p", tmp_path / "nowhere", "a" * 40))
    with pytest.raises(UpstreamError, match=r"cannot reach upstream source .*nowhere: no such directory"):
        vendor(store, pin, str(tmp_path / "nowhere"))
    assert not (isolated_cache / "upstream" / "gpxe.git").exists()


def test_vendor_unreachable_url_says_so(tmp_path: Path, isolated_cache: Path, store: Store) -> None:
    with socket.socket() as s:  # a loopback port with nobody listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/gpxe.git"
    pin = load_pin(make_project(tmp_path / "p", Path("unused"), "a" * 40))
    with pytest.raises(UpstreamError) as exc:
        vendor(store, pin, url)
    assert f"cannot reach upstream source {url}: git clone failed" in str(exc.value)
    assert "--from PATH" in str(exc.value)
    assert not (isolated_cache / "upstream" / "gpxe.git").exists()
    assert [p.name for p in (isolated_cache / "upstream").iterdir()] == [".gpxe.lock"]


def test_vendor_without_pinned_commit_keeps_previous_mirror(tmp_path: Path, isolated_cache: Path,
                                                            store: Store) -> None:
    up = make_upstream(tmp_path / "up")
    good = load_pin(make_project(tmp_path / "p", up.path, up.base))
    path = vendor(store, good, str(up.path))
    objects = sorted(p.name for p in (path / "objects").rglob("*"))
    bad = load_pin(make_project(tmp_path / "p2", up.path, "0123456789" * 4))
    with pytest.raises(UpstreamError, match=r"does not contain the pinned commit 0123456789"):
        vendor(store, bad, str(up.path))
    assert sorted(p.name for p in (path / "objects").rglob("*")) == objects  # the old mirror is intact
    assert git_out(path, "rev-parse", "master") == up.commits[-1]
    assert sorted(p.name for p in (isolated_cache / "upstream").iterdir()) == [".gpxe.lock", "gpxe.git"]


def test_vendor_real_gpxe_mirror(gpxe_mirror: Path, store: Store) -> None:
    pin = load_pin(Path(__file__).resolve().parent.parent)
    report = vendor_report(store, pin, str(gpxe_mirror))
    assert report.latest_present
    assert git_out(report.path, "rev-parse", f"{pin.commit}^{{commit}}") == pin.commit
