"""The pin and `vendor`: import from a local mirror, verification, atomicity, errors."""

from __future__ import annotations

import socket
from pathlib import Path

import git
import pytest
from fixtures.repos import commit_files, git_out, make_project, make_upstream

from patchkit.errors import MissingInputError, UpstreamError
from patchkit.upstream import load_pin, mirror_path, vendor, vendor_report


def test_load_pin_of_the_project() -> None:
    pin = load_pin(Path(__file__).resolve().parent.parent)
    assert pin.name == "gpxe"
    assert pin.commit == "245dca9ce6d748815914bf23231c34fe33e7f18b"
    assert pin.latest == "c23508d796325f8af724ad497c99ffb5a49abea0"
    assert pin.build["target"] == "bin/1af41001.rom"
    assert (pin.rom["vendor"], pin.rom["device"]) == (0x1AF4, 0x1001)


def test_malformed_pin_names_line(tmp_path: Path) -> None:
    (tmp_path / "gpxe-tree").mkdir()
    (tmp_path / "gpxe-tree" / "pin.toml").write_text('name = "gpxe"\nurl = \n')
    with pytest.raises(UpstreamError, match=r"pin\.toml: .*line 2"):
        load_pin(tmp_path)


def test_vendor_from_local_mirror(tmp_path: Path, isolated_cache: Path) -> None:
    up = make_upstream(tmp_path / "up")
    pin = load_pin(make_project(tmp_path / "p", up.path, up.base, latest=up.commits[-1]))
    with pytest.raises(MissingInputError, match=r"run `patchkit vendor`"):
        mirror_path(pin)
    messages: list[str] = []
    report = vendor_report(pin, str(up.path), messages.append)
    assert report.path == isolated_cache / "upstream" / "gpxe.git" == mirror_path(pin)
    assert report.latest_present
    assert git_out(report.path, "rev-parse", "--is-bare-repository") == "true"
    assert git_out(report.path, "rev-parse", "master") == up.commits[-1]
    assert any("verified" in m for m in messages) and any("cloning" in m for m in messages)
    # Only the mirror and its lock are left: no temporary directory.
    assert sorted(p.name for p in (isolated_cache / "upstream").iterdir()) == [".gpxe.lock", "gpxe.git"]


def test_vendor_rerun_updates(tmp_path: Path) -> None:
    up = make_upstream(tmp_path / "up")
    pin = load_pin(make_project(tmp_path / "p", up.path, up.base, latest="f" * 40))
    first = vendor_report(pin, str(up.path))
    assert not first.latest_present
    new = commit_files(git.Repo(up.path), {"NEW": "x\n"}, "[misc] Later upstream work")
    assert vendor(pin, str(up.path)) == first.path
    assert git_out(first.path, "rev-parse", "master") == new


def test_vendor_source_missing(tmp_path: Path, isolated_cache: Path) -> None:
    pin = load_pin(make_project(tmp_path / "p", tmp_path / "nowhere", "a" * 40))
    with pytest.raises(UpstreamError, match=r"cannot reach upstream source .*nowhere: no such directory"):
        vendor(pin, str(tmp_path / "nowhere"))
    assert not (isolated_cache / "upstream" / "gpxe.git").exists()


def test_vendor_unreachable_url_says_so(tmp_path: Path, isolated_cache: Path) -> None:
    with socket.socket() as s:  # a loopback port with nobody listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/gpxe.git"
    pin = load_pin(make_project(tmp_path / "p", Path("unused"), "a" * 40))
    with pytest.raises(UpstreamError) as exc:
        vendor(pin, url)
    assert f"cannot reach upstream source {url}: git clone failed" in str(exc.value)
    assert "--from PATH" in str(exc.value)
    assert not (isolated_cache / "upstream" / "gpxe.git").exists()
    assert [p.name for p in (isolated_cache / "upstream").iterdir()] == [".gpxe.lock"]


def test_vendor_without_pinned_commit_keeps_previous_mirror(tmp_path: Path, isolated_cache: Path) -> None:
    up = make_upstream(tmp_path / "up")
    good = load_pin(make_project(tmp_path / "p", up.path, up.base))
    path = vendor(good, str(up.path))
    objects = sorted(p.name for p in (path / "objects").rglob("*"))
    bad = load_pin(make_project(tmp_path / "p2", up.path, "0123456789" * 4))
    with pytest.raises(UpstreamError, match=r"does not contain the pinned commit 0123456789"):
        vendor(bad, str(up.path))
    assert sorted(p.name for p in (path / "objects").rglob("*")) == objects  # the old mirror is intact
    assert git_out(path, "rev-parse", "master") == up.commits[-1]
    assert sorted(p.name for p in (isolated_cache / "upstream").iterdir()) == [".gpxe.lock", "gpxe.git"]


def test_vendor_real_gpxe_mirror(gpxe_mirror: Path, isolated_cache: Path) -> None:
    pin = load_pin(Path(__file__).resolve().parent.parent)
    report = vendor_report(pin, str(gpxe_mirror))
    assert report.latest_present
    assert git_out(report.path, "rev-parse", f"{pin.commit}^{{commit}}") == pin.commit
