"""The same change by another commit: ``git patch-id`` of a diff, and the upstream commits a drift check compares."""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass

import git as gitpython

from patchkit.git.cmd import GIT_ENV, git_text


def patch_id(repo_path: str | os.PathLike[str] | None, diff: str) -> str:
    """``git patch-id --stable`` of a diff ('' when the diff has no changes)."""
    with tempfile.NamedTemporaryFile("wb", suffix=".diff") as f:
        f.write(diff.encode("utf-8"))
        f.flush()
        with open(f.name, "rb") as stream:
            out = gitpython.Git(str(repo_path) if repo_path else None).patch_id("--stable", istream=stream, env=GIT_ENV)
    return out.split()[0] if out.strip() else ""


@dataclass(frozen=True)
class UpstreamRange:
    """The upstream commits a drift check compares the series with, by patch-id and by subject."""

    ids: dict[str, str]
    subjects: dict[str, str]

    def find(self, pid: str, subject: str) -> str | None:
        """How ``patch`` is known upstream, or None."""
        if pid in self.ids:
            return f"upstream {self.ids[pid][:12]} has the same change (patch-id)"
        key = _subject_key(subject)
        if key in self.subjects:
            return f"upstream {self.subjects[key][:12]} has the same subject (its change differs: review it)"
        return None


def _subject_key(subject: str) -> str:
    return " ".join(subject.split()).casefold()


def upstream_range(repo: gitpython.Repo, base: str, onto: str) -> UpstreamRange:
    """patch-ids and subjects of the upstream commits between the series base and ``onto``."""
    if base == onto:
        return UpstreamRange({}, {})
    start = git_text(repo, "merge-base", base, onto)
    subjects: dict[str, str] = {}
    for line in git_text(repo, "log", "--no-merges", "--format=%H %s", f"{start}..{onto}").splitlines():
        commit, _, subject = line.partition(" ")
        subjects.setdefault(_subject_key(subject), commit)
    log = repo.git.log("-p", "--no-merges", "--no-color", "--format=commit %H", f"{start}..{onto}",
                       env=GIT_ENV, stdout_as_string=False, strip_newline_in_stdout=False)
    ids: dict[str, str] = {}
    if log.strip():
        with tempfile.NamedTemporaryFile("wb", suffix=".log") as f:
            f.write(log)
            f.flush()
            with open(f.name, "rb") as stream:
                out = repo.git.patch_id("--stable", istream=stream, env=GIT_ENV)
        for line in out.splitlines():
            pid, commit = line.split()
            ids.setdefault(pid, commit)
    return UpstreamRange(ids, subjects)
