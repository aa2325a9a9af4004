"""Bad manifests and patches a careful user can write by mistake: each refused naming file:line.

A typo'd key (``Cc``) silently dropped the Cc list; a patch listed twice, a version
going backwards or negative, and a symlink pointing outside the tree were accepted;
`patchkit status` exited 0 for an invalid series.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from fixtures.cli import run_patchkit
from fixtures.repos import BASE, patch_text, write_series

from patchkit.errors import SeriesError
from patchkit.series.io import load_series, new_version


@pytest.fixture
def series_dir(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    (root / "series").mkdir(parents=True)
    return write_series(root, "demo", BASE, [patch_text(), patch_text("[core] Second")])


def edit_manifest(series_dir: Path, old: str, new: str) -> None:
    manifest = series_dir / "series.toml"
    text = manifest.read_text()
    assert old in text
    manifest.write_text(text.replace(old, new, 1))


def line_of(path: Path, needle: str, nth: int = 1) -> int:
    found = [n for n, line in enumerate(path.read_text().splitlines(), 1) if needle in line]
    return found[nth - 1]


def refused(series_dir: Path) -> str:
    with pytest.raises(SeriesError) as caught:
        load_series(series_dir)
    return str(caught.value)


def test_an_unknown_key_is_refused_with_its_line_and_a_suggestion(series_dir: Path) -> None:
    edit_manifest(series_dir, "cc = []", 'Cc = ["reviewer@example.org"]')
    said = refused(series_dir)
    manifest = series_dir / "series.toml"
    assert said.startswith(f"{manifest}:{line_of(manifest, 'Cc =')}: unknown key 'Cc'")
    assert "did you mean 'cc'" in said


def test_an_unknown_key_in_a_version_entry_is_refused(series_dir: Path) -> None:
    edit_manifest(series_dir, 'changelog = "Initial posting."', 'changelog = "Initial posting."\nsend = "2010-01-01"')
    said = refused(series_dir)
    manifest = series_dir / "series.toml"
    assert said.startswith(f"{manifest}:{line_of(manifest, 'send =')}: unknown key 'send' in [[versions]]")
    assert "did you mean 'sent'" in said


def test_configs_keys_stay_valid(series_dir: Path) -> None:
    # The matrix's [[configs]] tables are known keys (validated by their own loader).
    (series_dir / "series.toml").write_text((series_dir / "series.toml").read_text()
                                            + '\n[[configs]]\nname = "q35"\nmachine = "q35"\n')
    assert [c.name for c in load_series(series_dir).configs] == ["q35"]


def test_a_patch_listed_twice_is_refused(series_dir: Path) -> None:
    manifest = series_dir / "series.toml"
    first = re.search(r'patches = \["([^"]+)"', manifest.read_text())
    assert first
    edit_manifest(series_dir, "patches = [", f'patches = ["{first.group(1)}", ')
    said = refused(series_dir)
    assert f"{first.group(1)} is listed twice" in said
    assert said.startswith(f"{manifest}:{line_of(manifest, 'patches =')}:")


@pytest.mark.parametrize("number", [0, -1])
def test_a_version_below_one_is_refused(series_dir: Path, number: int) -> None:
    edit_manifest(series_dir, "version = 1", f"version = {number}")
    manifest = series_dir / "series.toml"
    said = refused(series_dir)
    assert said.startswith(f"{manifest}:{line_of(manifest, 'version =')}: 'version' must be 1 or more")


def test_a_version_going_back_below_a_frozen_one_is_refused(series_dir: Path) -> None:
    new_version(load_series(series_dir), "Second.")  # v1 frozen, now v2
    edit_manifest(series_dir, "version = 2", "version = 1")
    manifest = series_dir / "series.toml"
    said = refused(series_dir)
    assert said.startswith(f"{manifest}:{line_of(manifest, 'version =')}: version 1 is already frozen")
    assert "versions/v1" in said


def test_a_version_entry_beyond_the_current_version_is_refused(series_dir: Path) -> None:
    manifest = series_dir / "series.toml"
    manifest.write_text(manifest.read_text() + '\n[[versions]]\nnumber = 2\nchangelog = "Next."\n')
    said = refused(series_dir)
    assert said.startswith(f"{manifest}:{line_of(manifest, 'version = 1')}: version 1 is behind [[versions]] "
                           "entry 2")


def test_two_version_entries_with_one_number_are_refused(series_dir: Path) -> None:
    manifest = series_dir / "series.toml"
    manifest.write_text(manifest.read_text() + '\n[[versions]]\nnumber = 1\nchangelog = "Again."\n')
    said = refused(series_dir)
    assert "a second [[versions]] entry for version 1" in said
    assert said.startswith(f"{manifest}:{line_of(manifest, 'number = 1', 2)}:")


SYMLINK = ("diff --git a/src/{name} b/src/{name}\nnew file mode 120000\nindex 0000000..1111111\n"
           "--- /dev/null\n+++ b/src/{name}\n@@ -0,0 +1 @@\n+{target}\n\\ No newline at end of file\n")


@pytest.mark.parametrize("target", ["/etc/passwd", "../../outside", "a/../../../x"])
def test_a_symlink_pointing_outside_the_tree_is_refused(tmp_path: Path, target: str) -> None:
    root = tmp_path / "project"
    (root / "series").mkdir(parents=True)
    d = write_series(root, "demo", BASE, [patch_text(diff=SYMLINK.format(name="link", target=target))])
    [patch] = (d / "patches").glob("*.patch")
    with pytest.raises(SeriesError) as caught:
        load_series(d)
    assert str(caught.value).startswith(f"{patch}:{line_of(patch, '+' + target)}: ")
    assert f"symlink src/link points outside the tree ({target!r}, " in str(caught.value)


def test_a_symlink_inside_the_tree_is_fine(tmp_path: Path) -> None:
    root = tmp_path / "project"
    (root / "series").mkdir(parents=True)
    d = write_series(root, "demo", BASE, [patch_text(diff=SYMLINK.format(name="link", target="core/a.c"))])
    assert load_series(d).patches[0].files == ["src/link"]


def test_status_exits_non_zero_for_an_invalid_series(series_dir: Path, tmp_path: Path) -> None:
    write_series(series_dir.parent.parent, "good", BASE, [patch_text()])
    edit_manifest(series_dir, "cc = []", "Cc = []")
    done = run_patchkit("-C", series_dir.parent.parent, "status")
    out = done.stdout
    assert done.returncode == 1, out
    assert "demo: INVALID" in out and "good  v1" in out  # the valid series is still shown
