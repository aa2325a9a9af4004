"""A series' work tree: cloned from the mirror, its lock, its branches, exports and tags, and when it may move."""

from __future__ import annotations

import time
from contextlib import AbstractContextManager
from pathlib import Path

import git as gitpython

from patchkit.errors import ApplyError, DirtyTreeError
from patchkit.git.cmd import git_text, open_repo, resolve, temp_index
from patchkit.git.identity import identity_env
from patchkit.git.state import SWITCH, interrupted_switch, read_record, read_state
from patchkit.pin import Pin
from patchkit.progress import Progress
from patchkit.store import Store, build_dir, file_lock


def branch_name(series: str, version: int) -> str:
    """``patchkit/<series>/v<N>``."""
    return f"patchkit/{series}/v{version}"


def tree_lock(path: Path, progress: Progress | None = None) -> AbstractContextManager[None]:
    """The lock of work tree ``path``: held while its files are switched, and by a build from hashing to storing.

    ``progress`` hears it when another patchkit command holds the tree.
    """
    def waiting() -> None:
        if progress is not None:
            progress(f"waiting for {path}: another patchkit command is using it")

    return file_lock(path.parent / f".{path.name}.lock", waiting)


def work_tree(store: Store, pin: Pin, name: str | None = None) -> Path:
    """The work tree ``trees/<name>/`` (default: the pin's name): cloned from the mirror, or refreshed."""
    mirror = store.imported_mirror(pin.name)
    path = store.tree(name or pin.name)
    with tree_lock(path):
        if (path / ".git").is_dir():
            repo = open_repo(path)
            git_text(repo, "remote", "set-url", "origin", str(mirror))
            git_text(repo, "fetch", "--quiet", "--prune", "--tags", "origin")
            return path
        with build_dir(path) as tmp:
            git_text(None, "clone", "--quiet", str(mirror), str(tmp))
    return path


def current_branch(tree: Path) -> tuple[str | None, str]:
    """The branch checked out in ``tree`` (None when detached) and HEAD's commit."""
    repo = open_repo(tree)
    head = repo.head.commit.hexsha
    return (None if repo.head.is_detached else repo.active_branch.name), head


def export_tree(repo: Path, rev: str, dest: Path) -> None:
    """Write the files of commit ``rev`` of ``repo`` into ``dest`` (created; modes and symlinks kept)."""
    r = open_repo(repo)
    dest.mkdir(parents=True, exist_ok=True)
    with temp_index() as env:
        git_text(r, "read-tree", resolve(r, rev), env=env)
        git_text(r, "checkout-index", "--all", "--force", f"--prefix={dest.resolve()}/", env=env)


def tag(repo: Path, name: str, rev: str, message: str) -> None:
    """Create annotated tag ``name`` at ``rev`` (no-op if it already points there; error otherwise)."""
    r = open_repo(repo)
    target = resolve(r, rev)
    try:
        existing = r.commit(f"refs/tags/{name}").hexsha
    except (gitpython.BadName, ValueError):
        existing = None
    if existing == target:
        return
    if existing is not None:
        raise ApplyError(f"tag {name} already exists at {existing[:12]}, not {target[:12]}",
                         hint="a sent version's tag never moves: start a new version")
    env = identity_env(f"{int(time.time())} +0000")
    git_text(r, "tag", "-a", "-m", message, name, target, env=env)


def require_clean(repo: gitpython.Repo, path: Path) -> None:
    """Refuse a work tree whose files are not its checked-out commit's (an interrupted switch, local changes)."""
    if (switching := interrupted_switch(path)) is not None:
        name = read_record(Path(repo.git_dir) / SWITCH).get("series", "SERIES")
        raise DirtyTreeError(f"an apply was interrupted while switching {path} to {switching}: its files are a mix",
                             hint=f"run `patchkit apply {name}` to finish the switch first")
    if repo.is_dirty(index=True, working_tree=True, untracked_files=False):
        changed = git_text(repo, "status", "--porcelain", "--untracked-files=no")
        raise DirtyTreeError(f"the work tree {path} has uncommitted changes:\n{changed}",
                             hint="commit them (then `patchkit refresh`) or discard them; "
                                  "patchkit never overwrites them")


def require_captured(path: Path, branch: str, name: str) -> None:
    """Refuse to move ``branch`` when it has commits that `patchkit refresh` has not captured."""
    state = read_state(path, branch)
    if state is None or state.head is None:
        return
    recorded = state.commits[-1] if state.commits else state.base
    if state.head != recorded:
        raise DirtyTreeError(f"{branch} in {path} has commits not yet captured into series/{name}/ "
                             f"(head {state.head[:12]}, applied {recorded[:12]})",
                             hint=f"run `patchkit refresh {name}` to keep them, or `git -C {path} reset --hard "
                                  f"{recorded[:12]}` to drop them")
