"""The pinned upstream's import into the cache (the pin itself: ``patchkit.pin``).

``patchkit vendor`` clones the pin's URL (or a local mirror given with ``--from``)
as a bare mirror ``upstream/<name>.git`` in the cache. The clone is built in a
temporary directory and moved into place only once the pinned commit is verified,
so a failed or interrupted import leaves the previous mirror (or nothing) behind.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from patchkit.errors import UpstreamError
from patchkit.git.cmd import git, git_logged
from patchkit.pin import Pin
from patchkit.progress import Progress
from patchkit.store import Store, build_dir, file_lock


@dataclass(frozen=True)
class VendorReport:
    """What ``vendor`` found: the mirror and whether the drift-check commit is there."""

    path: Path
    commit: str
    latest_present: bool


def vendor(store: Store, pin: Pin, source: str | None = None, progress: Progress | None = None) -> Path:
    """Import ``pin``'s upstream from ``source`` (default: the pin URL) into the cache.

    Verifies the pinned commit; re-running re-imports and re-validates. Returns the
    mirror's path. Raises UpstreamError when the source cannot be reached or lacks
    the pinned commit (the previous mirror, if any, is kept).
    """
    return vendor_report(store, pin, source, progress).path


def vendor_report(store: Store, pin: Pin, source: str | None = None,
                  progress: Progress | None = None) -> VendorReport:
    """``vendor``, also telling whether the pin's ``latest`` commit is present."""
    say = progress or (lambda _msg: None)
    src = source or pin.url
    if source is not None and "://" not in source and not source.startswith("git@"):
        local = Path(source).expanduser()
        if not local.exists():
            raise UpstreamError(f"cannot reach upstream source {source}: no such directory",
                                hint="pass --from the path of a local git mirror of the upstream")
        src = str(local.resolve())
    final = store.mirror(pin.name)
    with file_lock(final.parent / f".{pin.name}.lock"), build_dir(final) as tmp:
        say(f"cloning {src}")
        target = tmp / "mirror.git"
        log = tmp / "clone.log"
        # The user's git configuration reaches the network (http.proxy, url.*.insteadOf, credential helpers).
        status = git_logged("clone", "--mirror", "--progress", src, target, logfile=log, user_config=True,
                            on_line=lambda line: say(_last_segment(line)))
        if status != 0:
            tail = _tail(log)
            raise UpstreamError(f"cannot reach upstream source {src}: git clone failed\n{tail}",
                                hint="check the URL and the network, or pass --from PATH to a local mirror")
        if not _has_commit(target, pin.commit):
            raise UpstreamError(f"{src} does not contain the pinned commit {pin.commit}",
                                hint="point --from at a mirror of the pinned upstream, or fix gpxe-tree/pin.toml")
        latest_present = bool(pin.latest) and _has_commit(target, pin.latest or "")
        # Move the clone's contents up so the final directory is the bare repository itself.
        for entry in target.iterdir():
            entry.rename(tmp / entry.name)
        target.rmdir()
        log.unlink()
    say(f"pinned commit {pin.commit} verified in {final}")
    if pin.latest:
        say(f"latest commit {pin.latest} " + ("present" if latest_present else "NOT present (no drift check possible)"))
    return VendorReport(path=final, commit=pin.commit, latest_present=latest_present)


def _has_commit(repo: Path, rev: str) -> bool:
    return git("-C", repo, "cat-file", "-e", f"{rev}^{{commit}}", check=False).returncode == 0


def _last_segment(line: str) -> str:
    """Git progress rewrites a line with CR; keep what would be visible."""
    parts = [p for p in line.split("\r") if p.strip()]
    return parts[-1].strip() if parts else ""


def _tail(log: Path, lines: int = 5) -> str:
    text = log.read_text(encoding="utf-8", errors="replace").replace("\r", "\n")
    return "\n".join([t for t in text.splitlines() if t.strip()][-lines:])
