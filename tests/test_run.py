"""patchkit.run: finding the program, and the locale children run in."""

from __future__ import annotations

from pathlib import Path

import pytest

from patchkit.errors import PatchkitError
from patchkit.git.cmd import git_text
from patchkit.run import run, run_logged, spawned

SHOW_LOCALE = ["sh", "-c", 'echo "$LC_ALL $LANG [$LANGUAGE]"']


def test_a_program_in_sbin_runs_without_sbin_on_path(monkeypatch: pytest.MonkeyPatch) -> None:
    # A normal user's PATH on Debian: mkfs.fat (dosfstools) lives in /usr/sbin.
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    out = run(["mkfs.fat", "--help"]).stdout.decode()
    assert "Create FAT filesystem" in out


def test_a_program_nowhere_names_itself_and_the_setup() -> None:
    with pytest.raises(PatchkitError, match="program not found: patchkit-no-such-program") as info:
        run(["patchkit-no-such-program"])
    assert info.value.hint is not None
    assert "ci/setup.sh" in info.value.hint


def _german(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in (("LC_ALL", "de_DE.UTF-8"), ("LANG", "de_DE.UTF-8"), ("LANGUAGE", "de")):
        monkeypatch.setenv(name, value)


def test_children_run_in_the_c_locale_whatever_the_users(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _german(monkeypatch)
    assert run(SHOW_LOCALE).stdout.decode() == "C.UTF-8 C.UTF-8 []\n"
    assert run_logged(SHOW_LOCALE, tmp_path / "log") == 0
    assert (tmp_path / "log").read_text() == "C.UTF-8 C.UTF-8 []\n"
    with spawned(SHOW_LOCALE, stderr_file=tmp_path / "err") as proc:
        assert proc.stdout is not None
        assert proc.stdout.read() == b"C.UTF-8 C.UTF-8 []\n"


def test_a_callers_env_still_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    _german(monkeypatch)
    assert run(SHOW_LOCALE, env={"LC_ALL": "POSIX"}).stdout.decode() == "POSIX C.UTF-8 []\n"




def test_git_through_gitpython_gets_the_same_locale(monkeypatch: pytest.MonkeyPatch) -> None:
    _german(monkeypatch)
    alias = 'alias.locale=!echo "$LC_ALL $LANG [$LANGUAGE]"'
    assert git_text(None, "-c", alias, "locale") == "C.UTF-8 C.UTF-8 []"
