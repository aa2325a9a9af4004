"""The applied-state file of a work tree: what `patchkit apply` put on each branch, and the switch marker.

The checkout that puts a series on its branch can be interrupted (^C, a kill): a
marker written before it and removed once the record of the branch is saved tells
`status` the truth, and the next apply finishes that switch first (a forced checkout
of its commit).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import git as gitpython

from patchkit.errors import ApplyError
from patchkit.git.cmd import git_text, open_repo
from patchkit.progress import Progress
from patchkit.store import atomic_write

_STATE = "patchkit-applied.json"
SWITCH = "patchkit-switch.json"  # present while apply switches the work tree: {series, branch, head, entry}


@dataclass(frozen=True)
class AppliedState:
    """What `patchkit apply` last put on a branch (read back by refresh and status)."""

    branch: str
    base: str
    version: int
    commits: list[str]
    patches: list[str]
    revision: str  # Series.revision_hash() of the series version applied from
    upto: int  # how many of its patches were applied
    onto: bool  # applied on another revision than the series base (a drift check)
    merged: list[str]  # patch files skipped because upstream already has them
    head: str | None  # the branch's current head (None when the branch is gone)


def read_state(tree: Path, branch: str) -> AppliedState | None:
    """What `patchkit apply` recorded for ``branch`` in ``tree`` (None if nothing)."""
    entry = _records(tree / ".git").get(branch)
    if entry is None:
        return None
    repo = open_repo(tree)
    try:
        head = repo.commit(f"refs/heads/{branch}").hexsha
    except (gitpython.BadName, ValueError):
        head = None
    return AppliedState(branch=branch, base=entry["base"], version=entry["version"],
                        commits=entry["commits"], patches=entry["patches"], revision=entry["revision"],
                        upto=entry["upto"], onto=entry["onto"], merged=entry.get("merged", []), head=head)


def interrupted_switch(tree: Path) -> str | None:
    """The branch an interrupted apply was switching ``tree`` to (its files may be a mix), else None."""
    marker = tree / ".git" / SWITCH
    if not marker.is_file():
        return None
    return str(read_record(marker).get("branch", "?"))


def save_state(repo: gitpython.Repo, branch: str, entry: dict[str, object]) -> None:
    """Record what is on ``branch`` (base, version, commits, patch files, revision, upto, onto)."""
    git_dir = Path(repo.git_dir)
    data = _records(git_dir)
    data[branch] = entry
    atomic_write(git_dir / _STATE, json.dumps(data, indent=1, sort_keys=True))


def recorded(repo: gitpython.Repo, branch: str) -> dict[str, Any] | None:
    """The entry apply recorded for ``branch`` (as given to save_state), None if none."""
    return _records(Path(repo.git_dir)).get(branch)


def _records(git_dir: Path) -> dict[str, dict[str, Any]]:
    """The apply records of a work tree (branch -> entry), {} when there are none."""
    state_file = git_dir / _STATE
    return read_record(state_file) if state_file.is_file() else {}


def read_record(path: Path) -> dict[str, Any]:
    """A JSON object patchkit keeps in a work tree's .git; ApplyError naming it when damaged."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        data = exc
    if not isinstance(data, dict):
        raise ApplyError(f"{path} is damaged ({data if isinstance(data, Exception) else 'not a JSON object'})",
                         hint=f"remove it and run `patchkit apply` again (it records what apply put on each "
                              f"branch; commits made since the last refresh are kept on the branches in "
                              f"{path.parent.parent})")
    return data


def switch(repo: gitpython.Repo, series: str, branch: str, head: str, entry: dict[str, object]) -> None:
    """Point ``branch`` at ``head``, check it out and record ``entry``; a marker covers the whole switch."""
    marker = Path(repo.git_dir) / SWITCH
    atomic_write(marker, json.dumps({"series": series, "branch": branch, "head": head, "entry": entry}))
    git_text(repo, "checkout", "--quiet", "-B", branch, head)
    save_state(repo, branch, entry)
    marker.unlink()


def finish_switch(repo: gitpython.Repo, say: Progress) -> None:
    """Finish a switch an interrupted apply left half done: its files are a mix, so check out by force."""
    marker = Path(repo.git_dir) / SWITCH
    if not marker.is_file():
        return
    pending = read_record(marker)
    branch, head = pending["branch"], pending["head"]
    say(f"finishing the switch to {branch} that an interrupted apply left half done")
    # git killed mid-checkout leaves its index lock; the tree lock keeps other patchkit commands out.
    (Path(repo.git_dir) / "index.lock").unlink(missing_ok=True)
    git_text(repo, "checkout", "--quiet", "--force", "-B", branch, head)
    save_state(repo, branch, pending["entry"])
    marker.unlink()
