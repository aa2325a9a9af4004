"""patchkit.run: finding the program."""

from __future__ import annotations

import pytest

from patchkit.errors import PatchkitError
from patchkit.run import run


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
