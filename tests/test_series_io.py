"""Series files: load/save round trips, versions, and every validation error's message."""

from __future__ import annotations

from pathlib import Path

import pytest
from fixtures.repos import BASE, all_bytes, patch_text, write_series

from patchkit.errors import SeriesError
from patchkit.project import Project
from patchkit.series.io import load_series, load_version, new_version, save_series
from patchkit.store import Store


@pytest.fixture
def project(tmp_path: Path, store: Store) -> Project:
    root = tmp_path / "project"
    (root / "series").mkdir(parents=True)
    write_series(root, "demo", BASE, [patch_text(), patch_text("[core] Second")])
    return Project(root, store)


def test_load_fields(project: Project) -> None:
    s = project.series(None)
    assert (s.name, s.upstream, s.base, s.version, s.subject_prefix) == ("demo", "gpxe", BASE, 1, "PATCH")
    assert s.guests == ["freedos", "debian", "probe"] and s.to == ["devel@example.org"] and s.cc == []
    assert [p.filename for p in s.patches] == ["0001-core-Add-two.patch", "0002-core-Second.patch"]
    assert s.cover_title == "demo: fixture series" and s.cover_body == "A fixture cover letter."
    assert s.versions[0].number == 1 and s.versions[0].changelog == "Initial posting."
    assert project.series_names() == ["demo"]


def test_save_unchanged_rewrites_nothing(project: Project) -> None:
    d = project.series_root / "demo"
    before = all_bytes(d)
    mtimes = {p: p.stat().st_mtime_ns for p in d.rglob("*")}
    save_series(load_series(d))
    assert all_bytes(d) == before
    assert {p: p.stat().st_mtime_ns for p in d.rglob("*")} == mtimes


def test_save_is_stable_and_readable(project: Project) -> None:
    d = project.series_root / "demo"
    s = load_series(d)
    s.cc = ["list@example.org"]
    save_series(s)
    once = all_bytes(d)
    again = load_series(d)
    assert again.cc == ["list@example.org"] and again.patches == s.patches
    save_series(again)
    assert all_bytes(d) == once


def test_save_removes_dropped_patch_files(project: Project) -> None:
    d = project.series_root / "demo"
    s = load_series(d)
    s.patches = s.patches[:1]
    save_series(s)
    assert sorted(p.name for p in (d / "patches").iterdir()) == ["0001-core-Add-two.patch"]
    assert len(load_series(d).patches) == 1


def test_new_version_freezes_and_starts_next(project: Project) -> None:
    d = project.series_root / "demo"
    s = load_series(d)
    v2 = new_version(s, "- second patch reworded\n- typo")
    assert v2.version == 2
    reloaded = load_series(d)
    assert reloaded.version == 2
    info = reloaded.version_info(2)
    assert info is not None and info.changelog == "- second patch reworded\n- typo\n"
    assert (d / "versions" / "v1" / "patches" / "0001-core-Add-two.patch").read_bytes() == \
        (d / "patches" / "0001-core-Add-two.patch").read_bytes()
    assert (d / "versions" / "v1" / "cover.txt").is_file()
    old = load_version(reloaded, 1)
    assert old.version == 1 and [p.subject for p in old.patches] == ["[core] Add two", "[core] Second"]
    assert old.revision_hash() == s.revision_hash()
    reloaded.version = 1  # a manifest pointing back at a frozen version
    with pytest.raises(SeriesError, match=r"versions/v1 already exists: v1 was frozen before"):
        new_version(reloaded, "again")


# --- validation: each error names the file (and line) -----------------------------


def _manifest(project: Project) -> Path:
    return project.series_root / "demo" / "series.toml"


def _patch(project: Project) -> Path:
    return project.series_root / "demo" / "patches" / "0001-core-Add-two.patch"


def test_malformed_manifest_names_line(project: Project) -> None:
    m = _manifest(project)
    lines = m.read_text().splitlines()
    lines[3] = 'subject_prefix = "PATCH'  # unterminated string on line 4
    m.write_text("\n".join(lines) + "\n")
    with pytest.raises(SeriesError) as exc:
        project.series("demo")
    assert f"{m}:" in str(exc.value) and "line 4" in str(exc.value)


def test_manifest_missing_key(project: Project) -> None:
    m = _manifest(project)
    m.write_text("\n".join(line for line in m.read_text().splitlines() if not line.startswith("base")) + "\n")
    with pytest.raises(SeriesError, match=r"series\.toml: missing key 'base'"):
        project.series("demo")


def test_manifest_wrong_type_names_line(project: Project) -> None:
    m = _manifest(project)
    m.write_text(m.read_text().replace("version = 1", 'version = "one"'))
    with pytest.raises(SeriesError, match=r"series\.toml:8: 'version' must be a int"):
        project.series("demo")


def test_missing_patch_file(project: Project) -> None:
    _patch(project).unlink()
    with pytest.raises(SeriesError) as exc:
        project.series("demo")
    assert f"{_manifest(project)}:9" in str(exc.value)
    assert "0001-core-Add-two.patch does not exist" in str(exc.value)


def test_diff_that_does_not_parse(project: Project) -> None:
    # The hunk header promises 3 old lines, the hunk has 2: the error points at the line after it.
    bad = patch_text(diff="diff --git a/src/a.c b/src/a.c\n--- a/src/a.c\n+++ b/src/a.c\n"
                          "@@ -1,3 +1,3 @@\n one\n-two\n+2\nnot a diff line\n")
    _patch(project).write_text(bad)
    with pytest.raises(SeriesError) as exc:
        project.series("demo")
    assert f"{_patch(project)}:16: hunk started at line 12 ends early: 'not a diff line'" in str(exc.value)


def test_malformed_hunk_header(project: Project) -> None:
    _patch(project).write_text(patch_text(diff="diff --git a/src/a.c b/src/a.c\n--- a/src/a.c\n+++ b/src/a.c\n"
                                              "@@ -x +y @@\n one\n"))
    with pytest.raises(SeriesError, match=r"0001-core-Add-two\.patch:12: malformed hunk header"):
        project.series("demo")


@pytest.mark.parametrize(
    ("path", "why"),
    [("../outside.c", "a path leaving the tree ('..')"),
     ("src/../../etc/x", "a path leaving the tree ('..')"),
     ("/etc/passwd", "an absolute path"),
     (".git/hooks/pre-commit", "a path inside .git")],
)
def test_patch_path_outside_the_tree(project: Project, path: str, why: str) -> None:
    if path.startswith("/"):
        diff = f"diff --git a{path} b{path}\n--- {path}\n+++ {path}\n@@ -1 +1 @@\n-a\n+b\n"
    else:
        diff = f"diff --git a/{path} b/{path}\n--- a/{path}\n+++ b/{path}\n@@ -1 +1 @@\n-a\n+b\n"
    _patch(project).write_text(patch_text(diff=diff))
    with pytest.raises(SeriesError) as exc:
        project.series("demo")
    assert f"{_patch(project)}:" in str(exc.value) and why in str(exc.value)


def test_binary_patch_refused(project: Project) -> None:
    diff = ("diff --git a/logo.png b/logo.png\nnew file mode 100644\nindex 0000000..1111111\n"
            "GIT binary patch\nliteral 4\nLcmZ?wbhB_8\n\nliteral 0\nHcmV?d00001\n")
    _patch(project).write_text(patch_text(diff=diff))
    with pytest.raises(SeriesError, match=r"0001-core-Add-two\.patch:12: binary patches are not supported"):
        project.series("demo")


def test_binary_files_differ_refused(project: Project) -> None:
    diff = "diff --git a/x.bin b/x.bin\nindex 1111111..2222222 100644\nBinary files a/x.bin and b/x.bin differ\n"
    _patch(project).write_text(patch_text(diff=diff))
    with pytest.raises(SeriesError, match="binary patches are not supported"):
        project.series("demo")


def test_crlf_refused_with_line(project: Project) -> None:
    p = _patch(project)
    lines = p.read_text().split("\n")
    lines[4] += "\r"
    p.write_bytes("\n".join(lines).encode())
    with pytest.raises(SeriesError, match=rf"{p.name}:5: CRLF/CR line ending"):
        project.series("demo")


def test_crlf_manifest_refused(project: Project) -> None:
    m = _manifest(project)
    m.write_bytes(m.read_bytes().replace(b"\n", b"\r\n"))
    with pytest.raises(SeriesError, match=r"series\.toml:1: CRLF/CR line ending"):
        project.series("demo")


def test_non_utf8_refused_with_line(project: Project) -> None:
    p = _patch(project)
    p.write_bytes(p.read_bytes().replace(b"Because.", b"Caf\xe9."))
    with pytest.raises(SeriesError, match=rf"{p.name}:5: not UTF-8 text \(byte 0xe9\)"):
        project.series("demo")


def test_unknown_series(project: Project) -> None:
    with pytest.raises(SeriesError, match=r"unknown series 'nope' \(known: demo\)"):
        project.series("nope")


def test_unknown_version(project: Project) -> None:
    s = project.series("demo")
    with pytest.raises(SeriesError, match=r"unknown version v7 of series 'demo' \(known: v1\)"):
        load_version(s, 7)


def test_several_series_need_a_name(project: Project) -> None:
    write_series(project.root, "other", BASE, [patch_text()])
    with pytest.raises(SeriesError, match="several series, name one of: demo, other"):
        project.series(None)


def test_empty_changelog_refused(project: Project) -> None:
    with pytest.raises(SeriesError, match="the changelog is empty"):
        new_version(project.series("demo"), "  ")
