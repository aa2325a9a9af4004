"""The command line as git and b4 users expect it: --version, -h, -v anywhere, --rev vN, SERIES positional."""

from __future__ import annotations

import importlib.metadata
import re
from pathlib import Path

import pytest
from conftest import PROJECT_ROOT
from fixtures.cli import run_patchkit
from fixtures.repos import series_from_commits
from fixtures.world import World

from patchkit import __version__


def test_version_and_short_help() -> None:
    done = run_patchkit("--version")
    assert (done.returncode, done.stdout) == (0, f"patchkit {__version__}\n")
    for args in (("-h",), ("test", "-h"), ("review", "-h"), ("version", "new", "-h")):
        done = run_patchkit(*args)
        assert done.returncode == 0 and done.stdout.startswith("Usage: patchkit"), (args, done.stdout)


def test_every_command_names_its_series_the_same_way() -> None:
    """No command has --version or --series options any more; those that take one version take --rev vN."""
    for command in ("apply", "build", "test", "report", "review"):
        done = run_patchkit(command, "-h")
        assert "--rev vN" in done.stdout, (command, done.stdout)
    for command in ("apply", "build", "test", "report", "review", "status", "refresh", "send-email", "trailers",
                    "coverage", "version new"):
        done = run_patchkit(*command.split(), "-h")
        usage = done.stdout.splitlines()[0]
        assert "[SERIES]" in usage, (command, usage)
        assert "--version" not in done.stdout and "--series" not in done.stdout, (command, done.stdout)


@pytest.mark.parametrize("where", ["before", "after"])
def test_verbose_before_or_after_the_subcommand_shows_patchkits_commands(world: World, where: str) -> None:
    series_from_commits(world.root, "demo", world.upstream, world.tmp)
    args = ["-C", str(world.root), "apply", "demo"]
    args.insert(0 if where == "before" else len(args), "-v")
    done = run_patchkit(*args, merged=False)
    assert done.returncode == 0, done.stderr
    assert re.search(r"^patchkit\.(run|git): (run|git): git ", done.stderr, re.M), done.stderr
    assert "Popen(" not in done.stderr and "git.cmd" not in done.stderr  # gitpython's own debug lines


def test_rev_picks_the_version_and_is_checked(world: World) -> None:
    series_from_commits(world.root, "demo", world.upstream, world.tmp)
    p = str(world.root)
    done = run_patchkit("-C", p, "apply", "demo", "--rev", "v1")
    assert done.returncode == 0 and "patchkit/demo/v1:" in done.stdout, done.stdout
    for command in ("build", "test"):
        done = run_patchkit("-C", p, command, "demo", "--rev", "v9")
        assert done.returncode == 1 and "unknown version v9 of series 'demo' (known: v1)" in done.stdout, done.stdout
    done = run_patchkit("-C", p, "apply", "--rev", "two")
    assert done.returncode == 2 and "not a version: 'two' (write versions as vN, e.g. v2)" in done.stdout
    done = run_patchkit("-C", p, "test", "--rev", "v1", "--reference")
    assert done.returncode == 2 and "drop --rom/--reference" in done.stdout


@pytest.mark.needs_gpxe
def test_build_rev_builds_that_version(gpxe_mirror: Path, inputs_cache: Path) -> None:
    """`build --rev v3` builds v3's sources, not the current version's (before, only `apply` took a version)."""
    shas = {}
    for rev in ("v3", "v4"):
        done = run_patchkit("build", "--rev", rev, merged=False)
        assert done.returncode == 0, done.stderr
        assert f"of gpxe-virtio-blk {rev} onto" in done.stderr
        shas[rev] = re.findall(r"^sha256: +(\w+)", done.stdout, re.M)
    assert shas["v3"] and shas["v4"] and shas["v3"] != shas["v4"]


def test_outside_a_project_is_an_error(tmp_path: Path) -> None:
    for args, cwd in ((("status",), tmp_path), (("-C", str(tmp_path / "nonexistent"), "status"), tmp_path),
                      (("review",), tmp_path)):
        done = run_patchkit(*args, cwd=cwd)
        assert done.returncode == 1, (args, done.stdout)
        assert "error: not a patchkit project: " in done.stdout and "hint: cd into one or pass -C" in done.stdout


def test_review_import_of_a_missing_file_is_an_error(world: World) -> None:
    done = run_patchkit("-C", world.root, "review", "import", world.tmp / "nope.mbox")
    assert done.returncode == 2 and "'nope.mbox' does not exist" in done.stdout.replace(str(world.tmp) + "/", ""), \
        done.stdout


def test_version_new_without_changelog_opens_the_editor(world: World) -> None:
    series_from_commits(world.root, "demo", world.upstream, world.tmp)
    p = str(world.root)
    editor = world.tmp / "editor"
    # An editor that leaves the template as it is: only comments, so nothing is frozen.
    editor.write_text("#!/bin/sh\nexit 0\n")
    editor.chmod(0o755)
    done = run_patchkit("-C", p, "version", "new", env={"EDITOR": str(editor), "VISUAL": ""})
    assert done.returncode == 1 and "aborting: the changelog is empty" in done.stdout, done.stdout
    assert not (world.root / "series" / "demo" / "versions").exists()
    # An editor that writes a message under git's comment lines: they are dropped.
    editor.write_text('#!/bin/sh\ngrep "^#" "$1" > "$1.c"\n'
                      '{ echo "- the queue size is checked"; cat "$1.c"; } > "$1"\n')
    done = run_patchkit("-C", p, "version", "new", env={"EDITOR": str(editor), "VISUAL": ""})
    assert done.returncode == 0 and "now editing v2" in done.stdout, done.stdout
    assert world.project.series("demo").versions[-1].changelog == "- the queue size is checked\n"


def test_apply_says_one_line_when_nothing_changed(world: World) -> None:
    series_from_commits(world.root, "demo", world.upstream, world.tmp)
    first = run_patchkit("-C", world.root, "apply", merged=False)
    assert first.returncode == 0 and "applying 3 patch(es) of demo v1" in first.stderr, first.stderr
    again = run_patchkit("-C", world.root, "apply", merged=False)
    assert again.returncode == 0
    assert re.fullmatch(r"demo v1: patchkit/demo/v1 at \w{12}, unchanged \(3 commit\(s\) on \w{12}\)\n"
                        r"next: patchkit build \(or edit the commits, then patchkit refresh\)\n", again.stderr)
    assert again.stdout == first.stdout  # the result line stays


def test_what_a_user_installs() -> None:
    """The version is written once (patchkit.__version__); `pip install .` brings no test tools."""
    assert importlib.metadata.version("patchkit") == __version__
    meta = importlib.metadata.metadata("patchkit")
    assert meta["License-Expression"] and meta["Description-Content-Type"] == "text/markdown"
    plain = [r for r in importlib.metadata.requires("patchkit") or [] if "extra ==" not in r]
    assert not [r for r in plain if re.match(r"(pytest|ruff|mypy|aiosmtpd|b4|trustme)\b", r)], plain
    assert not re.search(r'^version = "', (PROJECT_ROOT / "pyproject.toml").read_text(), re.M)


def complete(words: str, cwd: Path = PROJECT_ROOT) -> list[str]:
    """What bash completion offers for the command line ``words`` (the last word being completed)."""
    parts = words.split(" ")
    done = run_patchkit(env={"_PATCHKIT_COMPLETE": "bash_complete", "COMP_WORDS": words,
                             "COMP_CWORD": str(len(parts) - 1)}, merged=False, cwd=cwd)
    return [line.split(",", 1)[1] for line in done.stdout.splitlines() if line]


def test_completion_offers_series_versions_configurations_and_guests() -> None:
    assert complete("patchkit status ") == ["gpxe-virtio-blk"]
    assert complete("patchkit test --rev ")[:4] == ["v1", "v2", "v3", "v4"]
    assert complete("patchkit report gpxe-virtio-blk --rev v")[:4] == ["v1", "v2", "v3", "v4"]
    assert "q35-bare" in complete("patchkit test --config q35")
    offered = complete("patchkit test --guest probe")
    assert {"probe", "probe-hold"} <= set(offered) and all(g.startswith("probe") for g in offered), offered
    assert "keepsan-reset" in complete("patchkit test --guest keepsan")


def test_completion_outside_a_project_offers_nothing(tmp_path: Path) -> None:
    assert complete("patchkit status ", cwd=tmp_path) == []


def test_guest_takes_every_guest_a_configuration_can_run(world: World) -> None:
    series_from_commits(world.root, "demo", world.upstream, world.tmp)
    for guest in ("probe-hold", "keepsan-reset"):
        done = run_patchkit("-C", world.root, "test", "--guest", guest, "--rev", "v9")
        assert done.returncode == 1 and "unknown version v9" in done.stdout, done.stdout  # the guest was taken
    done = run_patchkit("-C", world.root, "test", "--guest", "nope")
    assert done.returncode == 1 and "unknown guest 'nope' (known: " in done.stdout and "probe-hold" in done.stdout
