"""patchkit.git.cmd: git never prompts, and the user's git configuration is seen only where asked for."""

from __future__ import annotations

from pathlib import Path

import pytest

from patchkit.git.cmd import environment, git
from patchkit.run import CHILD_LOCALE

CREDENTIAL_REQUEST = b"protocol=smtp\nhost=mail.example.org:587\nusername=someone\n\n"


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A HOME whose ~/.gitconfig names a user and a credential helper; no system config, no askpass."""
    home = tmp_path / "home"
    home.mkdir()
    (home / ".gitconfig").write_text(
        "[user]\n\tname = Config Reader\n"
        "[credential]\n\thelper = \"!f() { echo password=from-helper; }; f\"\n"
    )
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    for name in ("GIT_CONFIG_GLOBAL", "GIT_CONFIG_SYSTEM", "GIT_CONFIG_NOSYSTEM", "GIT_ASKPASS", "SSH_ASKPASS",
                 "GIT_TERMINAL_PROMPT", "GIT_CONFIG_COUNT", "GIT_CONFIG_PARAMETERS"):
        monkeypatch.delenv(name, raising=False)
    return home


def test_environment_is_one_definition() -> None:
    isolated = environment()
    assert isolated["GIT_TERMINAL_PROMPT"] == "0"
    assert isolated["GIT_CONFIG_GLOBAL"] == "/dev/null"
    assert isolated["GIT_CONFIG_NOSYSTEM"] == "1"
    assert CHILD_LOCALE.items() <= isolated.items()
    reading = environment(user_config=True)
    assert reading["GIT_TERMINAL_PROMPT"] == "0"
    assert "GIT_CONFIG_GLOBAL" not in reading and "GIT_CONFIG_NOSYSTEM" not in reading
    assert CHILD_LOCALE.items() <= reading.items()
    # Only `git credential fill` may ask on the terminal: the prompt setting is then inherited, not forced.
    assert "GIT_TERMINAL_PROMPT" not in environment(user_config=True, prompt=True)


def test_user_config_only_when_asked(home: Path, tmp_path: Path) -> None:
    assert git("config", "--get", "user.name", user_config=True, cwd=tmp_path).stdout == b"Config Reader\n"
    parsed = git("config", "--get", "user.name", cwd=tmp_path, check=False)
    assert parsed.returncode == 1  # the key is missing: ~/.gitconfig was not read
    assert parsed.stdout == b""


def test_git_never_prompts(home: Path, tmp_path: Path) -> None:
    # Without a helper git would ask for the password on the terminal; with the setting it refuses instead.
    proc = git("credential", "fill", cwd=tmp_path, input=CREDENTIAL_REQUEST, check=False)
    assert proc.returncode != 0
    assert b"terminal prompts disabled" in proc.stdout
    # Reading the user's configuration does not bring the prompt back: the helper answers, nothing asks.
    proc = git("credential", "fill", cwd=tmp_path, input=CREDENTIAL_REQUEST, check=False, user_config=True)
    assert proc.returncode == 0
    assert b"password=from-helper\n" in proc.stdout
