"""The Project a command works on: found like git finds .git, its pin and series read once per command."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from click.testing import CliRunner
from fixtures.gated import make_gated_project
from fixtures.repos import series_from_commits, write_series
from fixtures.world import World

from patchkit import pin as pin_module
from patchkit.cli import cli
from patchkit.errors import SeriesError
from patchkit.project import Project
from patchkit.series import io as series_io
from patchkit.store import Store


def test_found_from_a_directory_inside_it(world: World, store: Store) -> None:
    inside = world.root / "series" / "deep"
    inside.mkdir(parents=True)
    assert Project.find(inside, store).root == world.root
    outside = world.tmp / "elsewhere"
    outside.mkdir()
    assert Project.find(outside, store).root == outside  # no pin above: commands needing it say so


def test_series_read_once_and_named(world: World) -> None:
    write_series(world.root, "demo", world.upstream.base, [])
    project = world.project
    assert project.series() is project.series("demo")  # the only series, read once
    write_series(world.root, "other", world.upstream.base, [])
    with pytest.raises(SeriesError, match="several series, name one of: demo, other"):
        project.series()
    with pytest.raises(SeriesError, match="unknown series 'nope' \\(known: demo, other\\)"):
        project.series("nope")


def test_forget_series_reads_the_files_again(world: World) -> None:
    write_series(world.root, "demo", world.upstream.base, [])
    first = world.project.series("demo")
    manifest = world.root / "series" / "demo" / "series.toml"
    manifest.write_text(manifest.read_text().replace('subject_prefix = "PATCH"', 'subject_prefix = "RFC"'))
    assert world.project.series("demo") is first  # held in memory until told otherwise
    world.project.forget_series("demo")
    assert world.project.series("demo").subject_prefix == "RFC"


def _count_reads(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """Count the reads of series manifests and of pin.toml where they happen (whoever asks for them)."""
    calls: Counter[str] = Counter()
    read_text, pin_file = series_io._read_text, pin_module.pin_file

    def counted_text(path: Path) -> str:
        calls[path.name] += 1
        return read_text(path)

    def counted_pin(root: Path) -> Path:
        calls["pin.toml"] += 1
        return pin_file(root)

    monkeypatch.setattr(series_io, "_read_text", counted_text)
    monkeypatch.setattr(pin_module, "pin_file", counted_pin)
    return calls


@pytest.mark.parametrize("command", [["apply"], ["status"], ["refresh"]])
def test_one_command_reads_the_pin_and_the_manifest_once(world: World, store: Store, monkeypatch: pytest.MonkeyPatch,
                                                         command: list[str]) -> None:
    series_from_commits(world.root, "demo", world.upstream, world.tmp)
    if command != ["apply"]:
        assert CliRunner().invoke(cli, ["-C", str(world.root), "apply"], obj=store).exit_code == 0
    calls = _count_reads(monkeypatch)
    result = CliRunner().invoke(cli, ["-C", str(world.root), *command], obj=store)
    assert result.exit_code == 0, result.output
    assert calls["series.toml"] == 1
    assert calls["pin.toml"] == (1 if command == ["apply"] else 0)  # status and refresh never need the pin


def test_a_build_reads_the_pin_and_the_manifest_once(tmp_path: Path, store: Store,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """`patchkit build` applies, makes, stores and prints the ROM's ids: one read of each file for all of it."""
    gated = make_gated_project(tmp_path, store.root)
    calls = _count_reads(monkeypatch)
    result = CliRunner().invoke(cli, ["-C", str(gated.project), "build", "demo"], obj=store)
    assert result.exit_code == 0, result.output
    assert "PCIR 1af4:1001" in result.output
    assert (calls["series.toml"], calls["pin.toml"]) == (1, 1)
