"""The series commands through `python -m patchkit`, as a user runs them."""

from __future__ import annotations

from pathlib import Path

from fixtures.cli import run_patchkit
from fixtures.repos import make_project, make_upstream, series_from_commits, write_series
from fixtures.world import World

from patchkit import store


def pk(project: Path, *args: str) -> tuple[int, str]:
    """Run patchkit in ``project``; return (exit status, merged output)."""
    done = run_patchkit("-C", project, *args)
    return done.returncode, done.stdout


def test_vendor_from_path_and_unreachable(tmp_path: Path, isolated_cache: Path) -> None:
    up = make_upstream(tmp_path / "up")
    project = make_project(tmp_path / "p", up.path, up.base, latest=up.commits[-1])
    code, out = pk(project, "vendor", "--from", str(up.path))
    assert code == 0, out
    assert "cloning" in out and f"gpxe: {isolated_cache / 'upstream' / 'gpxe.git'}" in out
    assert "pinned " + up.base[:12] + " verified; latest " + up.commits[-1][:12] + " present" in out
    code, out = pk(project, "vendor", "--from", str(tmp_path / "missing"))
    assert code == 1
    assert "error: cannot reach upstream source" in out and "no such directory" in out


def test_apply_before_vendor_says_what_to_run(tmp_path: Path) -> None:
    up = make_upstream(tmp_path / "up")
    project = make_project(tmp_path / "p", up.path, up.base)
    write_series(project, "demo", up.base, [])
    code, out = pk(project, "apply", "demo")
    assert code == 1 and "run `patchkit vendor`" in out


def test_apply_status_refresh_version_range_diff(world: World) -> None:
    series_from_commits(world.root, "demo", world.upstream, world.tmp)
    p = world.root

    code, out = pk(p, "apply")
    assert code == 0, out
    assert "patchkit/demo/v1: 3 commit(s) on " + world.upstream.base[:12] in out
    assert "0002-blk-Add-a-block-driver-stub.patch" in out  # progress names each patch

    s = world.project.series("demo")
    with world.store.results() as results:
        for guest, passed in (("freedos", True), ("debian", False)):
            key = store.ResultKey("demo", s.revision_hash(), "r" * 64, guest, "i" * 64, "7.2.0", "tcg")
            results.record(store.TestResult(key=key, passed=passed, reason="", run_dir="", version=1))
    code, out = pk(p, "status")
    assert code == 0, out
    assert f"demo  v1  revision {s.revision_hash()[:12]}  base {world.upstream.base[:12]} (gpxe)" in out
    assert "1. [core] Change line five" in out
    assert "1 file(s), +2 -0: src/drivers/blk.c (+2 -0)" in out
    assert "applied: patchkit/demo/v1 at" in out and "(checked out) [up to date]" in out
    header = next(line for line in out.splitlines() if line.strip().startswith("revision"))
    assert header.split()[1:] == ["configuration", "freedos", "debian", "probe"]
    row = next(line for line in out.splitlines() if s.revision_hash()[:12] in line and "v1 *" in line)
    assert row.split()[-3:] == ["pass", "FAIL", "-"]

    code, out = pk(p, "refresh", "demo")
    assert (code, out.strip().splitlines()[-1]) == (0, "no change")

    code, out = pk(p, "version", "new", "demo", "--changelog", "- nothing yet")
    assert code == 0 and "now editing v2" in out
    code, out = pk(p, "range-diff", "v1", "v2", "demo")
    assert code == 0, out
    assert out.splitlines()[0].startswith("1:") and "= 1:" in out.splitlines()[0]
    code, out = pk(p, "status", "demo")
    assert "versions: v1, v2 current" in out and "[series files changed since" not in out
    assert "applied: not on patchkit/demo/v2" in out


def test_cli_errors(world: World) -> None:
    series_from_commits(world.root, "demo", world.upstream, world.tmp)
    p = world.root
    assert pk(p, "apply", "nope") == (1, "error: unknown series 'nope' (known: demo)\n"
                                         "  hint: run `patchkit status` to list the series\n")
    code, out = pk(p, "apply", "demo", "--rev", "v9")
    assert code == 1 and "unknown version v9 of series 'demo' (known: v1)" in out
    code, out = pk(p, "apply", "demo", "--onto", "0" * 40)
    assert code == 1 and f"revision {'0' * 40} is not in the upstream mirror" in out
    code, out = pk(p, "apply", "demo")
    assert code == 0, out
    tree = world.tmp / "cache" / "trees" / "demo"
    (tree / "README").write_text("uncommitted\n")
    code, out = pk(p, "apply", "demo")
    assert code == 1 and "has uncommitted changes" in out and " M README" in out
    code, out = pk(p, "refresh", "demo")
    assert code == 1 and "has uncommitted changes" in out


def test_drift_check_reports_merged(world: World) -> None:
    series_from_commits(world.root, "demo", world.upstream, world.tmp)
    code, out = pk(world.root, "apply", "demo", "--onto", world.upstream.commits[0])
    assert code == 0, out
    assert "already upstream (merged, skipped): 0001-core-Change-line-five.patch" in out
    code, out = pk(world.root, "status")
    assert f"[drift check onto {world.upstream.commits[0][:12]}]" in out


def test_status_lists_invalid_series(world: World) -> None:
    series_from_commits(world.root, "demo", world.upstream, world.tmp)
    bad = world.root / "series" / "broken"
    bad.mkdir()
    (bad / "series.toml").write_text('name = "broken\n')
    code, out = pk(world.root, "status")
    assert code == 1  # every series is shown, and the exit status says one is invalid
    assert "broken: INVALID:" in out and "series.toml: " in out and "line 1" in out
    assert "demo  v1" in out
