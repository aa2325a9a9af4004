"""Running patchkit inside a subdirectory of the project finds the project upward, as git does."""

from __future__ import annotations

from pathlib import Path

from fixtures.cli import run_patchkit
from fixtures.repos import BASE, patch_text, write_series


def project_with_series(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    (root / "gpxe-tree").mkdir(parents=True)
    (root / "gpxe-tree" / "pin.toml").write_text(f'name = "gpxe"\nurl = "-"\ncommit = "{BASE}"\n')
    (root / "series").mkdir()
    write_series(root, "demo", BASE, [patch_text()])
    return root


def status_in(cwd: Path, *args: str) -> tuple[int, str]:
    done = run_patchkit(*args, "status", cwd=cwd)
    return done.returncode, done.stdout


def test_status_from_a_subdirectory_finds_the_project(tmp_path: Path) -> None:
    root = project_with_series(tmp_path)
    for where in (root / "series" / "demo" / "patches", root / "gpxe-tree"):
        code, out = status_in(where)
        assert code == 0, out
        assert out.startswith("demo  v1"), out


def test_c_option_names_a_directory_inside_the_project_too(tmp_path: Path) -> None:
    root = project_with_series(tmp_path)
    code, out = status_in(tmp_path, "-C", str(root / "series"))
    assert code == 0 and out.startswith("demo  v1"), out


def test_outside_any_project_it_says_so(tmp_path: Path) -> None:
    (tmp_path / "elsewhere").mkdir()
    code, out = status_in(tmp_path / "elsewhere")
    assert code == 1 and "not a patchkit project" in out and "cd into one or pass -C" in out, out
