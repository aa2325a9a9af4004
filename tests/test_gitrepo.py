"""Applying a series with real git: equality with `git am`, failure atomicity, merged
patches, dirty trees, symlinks, refresh, export, tags and range-diff."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from fixtures.repos import (
    GIT_ENV,
    format_patches,
    git_out,
    series_from_commits,
    snapshot,
    strip_to_series_form,
    write_series,
)
from fixtures.world import World

from patchkit.errors import ApplyError, DirtyTreeError, SeriesError, UpstreamError
from patchkit.git.apply import apply_series
from patchkit.git.rangediff import range_diff
from patchkit.git.refresh import refresh_series
from patchkit.git.worktree import export_tree, tag
from patchkit.project import Project
from patchkit.run import run
from patchkit.series.io import new_version, save_series
from patchkit.series.model import parse_patch
from patchkit.store import Store

FIELDS = "%an%n%ae%n%ad%n%B"


def commit_info(repo: Path, sha: str) -> tuple[str, str]:
    """(tree, author name/email/date + message) of a commit."""
    return (git_out(repo, "rev-parse", f"{sha}^{{tree}}"),
            git_out(repo, "log", "-1", "--date=raw", f"--format={FIELDS}", sha))


def series_bytes(project: Path, name: str) -> dict[str, bytes]:
    d = project / "series" / name
    return {str(p.relative_to(d)): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


def conflicting_patch(subject: str = "[core] Set line five to seven", index: str = "") -> str:
    """A patch written against the base's line 5, which upstream commit 1 changes.

    ``index`` is an optional ``index A..B 100644`` line (lets git try a 3-way merge).
    """
    return (f"From: Bob <bob@example.org>\nDate: Wed, 27 Jan 2010 10:00:00 +0000\nSubject: {subject}\n\n"
            "Seven is better.\n---\n"
            f"diff --git a/src/core/main.c b/src/core/main.c\n{index}--- a/src/core/main.c\n+++ b/src/core/main.c\n"
            "@@ -3,5 +3,5 @@\n int line3 = 3;\n int line4 = 4;\n-int line5 = 5;\n+int line5 = 7;\n"
            " int line6 = 6;\n int line7 = 7;\n")


def test_apply_equals_git_am(world: World) -> None:
    """Commit trees, authors, dates and messages equal `git am` of `git format-patch` output."""
    series_from_commits(world.root, "demo", world.upstream, world.tmp)
    result = apply_series(world.project, "demo")
    assert result.branch == "patchkit/demo/v1" and result.base == world.upstream.base and result.merged == []
    assert len(result.commits) == 3
    assert git_out(result.tree, "symbolic-ref", "--short", "HEAD") == "patchkit/demo/v1"
    assert git_out(result.tree, "rev-parse", "HEAD") == result.commits[-1]

    # The reference: git am (keeping the bracketed subject tags) in a plain clone.
    ref = world.tmp / "am"
    run(["git", "clone", "-q", world.upstream.path, ref], env=GIT_ENV)
    run(["git", "-C", ref, "checkout", "-q", "-b", "am", world.upstream.base], env=GIT_ENV)
    mails = format_patches(world.upstream.path, f"{world.upstream.base}..{world.upstream.commits[-1]}",
                           world.tmp / "mails")
    run(["git", "-C", ref, "-c", "user.name=T", "-c", "user.email=t@example.org", "am", "-q", "--keep-non-patch",
         *mails], env=GIT_ENV)
    am_commits = git_out(ref, "rev-list", "--reverse", f"{world.upstream.base}..HEAD").split()
    assert [commit_info(result.tree, c) for c in result.commits] == [commit_info(ref, c) for c in am_commits]
    # ... and they are upstream's own commits (trees, authorship, messages).
    assert [commit_info(result.tree, c) for c in result.commits] == \
        [commit_info(world.upstream.path, c) for c in world.upstream.commits]
    committer = git_out(result.tree, "log", "-1", "--date=raw", "--format=%cn <%ce> %cd", result.commits[0])
    assert committer == "patchkit <patchkit@localhost> 1264507200 +0000"


def test_apply_is_reproducible(world: World) -> None:
    series_from_commits(world.root, "demo", world.upstream, world.tmp)
    first = apply_series(world.project, "demo")
    again = apply_series(world.project, "demo")
    assert again.commits == first.commits


def test_apply_upto_and_version(world: World) -> None:
    series_from_commits(world.root, "demo", world.upstream, world.tmp)
    r = apply_series(world.project, "demo", upto=1)
    assert len(r.commits) == 1
    assert git_out(r.tree, "log", "-1", "--format=%s") == "[core] Change line five"
    with pytest.raises(SeriesError, match=r"--upto 9: the series has 3 patch\(es\)"):
        apply_series(world.project, "demo", upto=9)
    s = world.project.series("demo")
    v2 = new_version(s, "- dropped the last patch")
    v2.patches = v2.patches[:2]
    save_series(v2)
    world.project.forget_series("demo")
    assert len(apply_series(world.project, "demo").commits) == 2
    old = apply_series(world.project, "demo", version=1)
    assert old.branch == "patchkit/demo/v1" and len(old.commits) == 3
    with pytest.raises(SeriesError, match=r"unknown version v5 of series 'demo' \(known: v1, v2\)"):
        apply_series(world.project, "demo", version=5)


@pytest.mark.parametrize("three_way", [False, True], ids=["plain", "3-way"])
def test_failed_apply_leaves_tree_exactly_and_names_the_hunk(world: World, three_way: bool) -> None:
    index = ""
    if three_way:  # the preimage blob is in the mirror: git attempts (and fails) a 3-way merge
        blob = git_out(world.upstream.path, "rev-parse", f"{world.upstream.base}:src/core/main.c")
        index = f"index {blob[:7]}..1234567 100644\n"
    write_series(world.root, "clash", world.upstream.base, [conflicting_patch(index=index)])
    tree = apply_series(world.project, "clash").tree  # applies on the base
    (tree / "untracked.txt").write_text("mine\n")  # untracked work survives too
    before = snapshot(tree)
    with pytest.raises(ApplyError) as exc:  # upstream commit 1 changed line 5
        apply_series(world.project, "clash", onto=world.upstream.commits[0])
    message = str(exc.value)
    assert "patch 0001-core-Set-line-five-to-seven.patch ([core] Set line five to seven) does not apply" in message
    assert "src/core/main.c: hunk 1 of 1 (@@ -3,5 +3,5 @@) does not match upstream lines 3-7" in message
    assert "-int line5 = 5;" in message and "+int line5 = 500; /* changed */" in message
    assert "the tree was left as it was" in message
    assert snapshot(tree) == before


def test_drift_check_goes_on_past_a_conflict(world: World) -> None:
    """One --onto run names what each patch after the first conflict would do there."""
    c2 = format_patches(world.upstream.path, f"{world.upstream.commits[0]}..{world.upstream.commits[1]}",
                        world.tmp / "c2")[0]
    new_file = ("From: Bob <bob@example.org>\nDate: Wed, 27 Jan 2010 11:00:00 +0000\nSubject: [core] Add notes\n\n"
                "Notes.\n---\ndiff --git a/NOTES b/NOTES\nnew file mode 100644\n--- /dev/null\n+++ b/NOTES\n"
                "@@ -0,0 +1 @@\n+notes\n")
    write_series(world.root, "later", world.upstream.base,
                 [conflicting_patch(), new_file, strip_to_series_form(c2.read_text()),
                  conflicting_patch("[core] Set line five again")])
    with pytest.raises(ApplyError) as exc:
        apply_series(world.project, "later", onto=world.upstream.commits[1])
    message = str(exc.value)
    assert message.startswith("patch 0001-core-Set-line-five-to-seven.patch")
    assert f"the patches after it, each checked alone on {world.upstream.commits[1][:12]}:" in message
    assert "    0002-core-Add-notes.patch: applies" in message
    assert "    0003-blk-Add-a-block-driver-stub.patch: already upstream: upstream " in message
    assert ("    0004-core-Set-line-five-again.patch: does not apply: src/core/main.c: hunk 1 of 1 "
            "(@@ -3,5 +3,5 @@) does not match upstream lines 3-7\n") in message


def test_failed_apply_in_same_tree_changes_nothing(world: World) -> None:
    """A series edited into a conflict, re-applied over its applied branch: nothing moves."""
    series_from_commits(world.root, "demo", world.upstream, world.tmp, base=world.upstream.commits[0],
                        commits=world.upstream.commits[1:])
    apply_series(world.project, "demo")
    tree = world.store.tree("demo")
    before = snapshot(tree)
    d = world.project.series_root / "demo"
    (d / "patches" / "0003-core-Set-line-five-to-seven.patch").write_text(conflicting_patch())
    manifest = (d / "series.toml").read_text()
    (d / "series.toml").write_text(manifest.replace('.patch"]', '.patch", "0003-core-Set-line-five-to-seven.patch"]'))
    world.project.forget_series("demo")
    with pytest.raises(ApplyError, match=r"0003-core-Set-line-five-to-seven\.patch .*does not apply"):
        apply_series(world.project, "demo")
    assert snapshot(tree) == before


def test_merged_by_patch_id_on_drift_check(world: World) -> None:
    series_from_commits(world.root, "demo", world.upstream, world.tmp)
    r = apply_series(world.project, "demo", onto=world.upstream.commits[0])
    assert r.merged == ["0001-core-Change-line-five.patch"]
    assert r.base == world.upstream.commits[0] and len(r.commits) == 2
    assert git_out(r.tree, "rev-parse", "HEAD^{tree}") == git_out(world.upstream.path, "rev-parse",
                                                                   f"{world.upstream.commits[-1]}^{{tree}}")


def test_merged_when_it_reverse_applies(world: World) -> None:
    """A patch whose change is upstream inside a bigger commit (different patch-id) is merged."""
    mails = format_patches(world.upstream.path, f"{world.upstream.commits[1]}..{world.upstream.commits[2]}",
                           world.tmp / "mails")
    full = parse_patch(mails[0].read_text(), "x")
    blk_only = full.diff[full.diff.index("diff --git a/src/drivers/blk.c"):]
    text = full.__class__(**{**full.__dict__, "diff": blk_only, "subject": "[blk] Probe succeeds"}).render()
    write_series(world.root, "sub", world.upstream.base, [text])
    r = apply_series(world.project, "sub", onto=world.upstream.commits[2])
    assert r.merged == ["0001-blk-Probe-succeeds.patch"] and r.commits == []


def test_dirty_tree_refused(world: World) -> None:
    series_from_commits(world.root, "demo", world.upstream, world.tmp)
    r = apply_series(world.project, "demo")
    (r.tree / "README").write_text("my uncommitted edit\n")
    with pytest.raises(DirtyTreeError) as exc:
        apply_series(world.project, "demo", upto=1)
    assert f"the work tree {r.tree} has uncommitted changes" in str(exc.value) and "M README" in str(exc.value)
    assert (r.tree / "README").read_text() == "my uncommitted edit\n"
    assert git_out(r.tree, "rev-parse", "HEAD") == r.commits[-1]


def test_patch_through_symlink_refused(world: World) -> None:
    up = world.upstream.path
    os.symlink("/tmp", up / "src" / "outside")
    run(["git", "-C", up, "add", "src/outside"], env=GIT_ENV)
    run(["git", "-C", up, "-c", "user.name=U", "-c", "user.email=u@example.org", "commit", "-q", "-m", "link"],
        env=GIT_ENV)
    linked = git_out(up, "rev-parse", "HEAD")
    from patchkit.upstream import vendor

    vendor(world.store, world.pin, str(up))
    text = ("From: M <m@example.org>\nDate: Wed, 27 Jan 2010 10:00:00 +0000\nSubject: Escape\n\n---\n"
            "diff --git a/src/outside/evil.c b/src/outside/evil.c\nnew file mode 100644\n--- /dev/null\n"
            "+++ b/src/outside/evil.c\n@@ -0,0 +1 @@\n+evil\n")
    write_series(world.root, "evil", linked, [text])
    with pytest.raises(SeriesError, match=r"0001-Escape\.patch: patch touches 'src/outside/evil\.c' through the "
                                          r"symlink 'src/outside' in the tree"):
        apply_series(world.project, "evil")
    assert not Path("/tmp/evil.c").exists()


def test_unknown_onto_revision(world: World) -> None:
    series_from_commits(world.root, "demo", world.upstream, world.tmp)
    with pytest.raises(UpstreamError, match=r"revision deadbeef is not in the upstream mirror"):
        apply_series(world.project, "demo", onto="deadbeef")


def test_apply_then_refresh_changes_nothing(world: World) -> None:
    series_from_commits(world.root, "demo", world.upstream, world.tmp)
    d = world.project.series_root / "demo"
    before = series_bytes(world.root, "demo")
    mtimes = {p: p.stat().st_mtime_ns for p in d.rglob("*")}
    apply_series(world.project, "demo")
    assert refresh_series(world.project, "demo") == []
    assert series_bytes(world.root, "demo") == before
    assert {p: p.stat().st_mtime_ns for p in d.rglob("*")} == mtimes


def test_refresh_captures_amend_and_new_commit(world: World) -> None:
    series_from_commits(world.root, "demo", world.upstream, world.tmp)
    before = series_bytes(world.root, "demo")
    r = apply_series(world.project, "demo")
    t = r.tree
    ident = ["-c", "user.name=Editor", "-c", "user.email=ed@example.org"]
    # Reword the last commit (diff unchanged), then add a new commit on top.
    run(["git", "-C", t, *ident, "commit", "-q", "--amend", "-m",
         "[core] Touch two files\n\nNow with a reason.\n\nSigned-off-by: Ada Lovelace <ada@example.org>"], env=GIT_ENV)
    (t / "src" / "new.c").write_text("int new_thing;\n")
    run(["git", "-C", t, "add", "src/new.c"], env=GIT_ENV)
    run(["git", "-C", t, *ident, "commit", "-q", "-m", "[new] Add new.c\n\nSigned-off-by: Editor <ed@example.org>"],
        env={**GIT_ENV, "GIT_AUTHOR_DATE": "1264600000 +0000"})
    changed = refresh_series(world.project, "demo")
    assert changed == ["0003-core-Touch-two-files.patch", "0004-new-Add-new.c.patch"]
    after = series_bytes(world.root, "demo")
    for name in ("patches/0001-core-Change-line-five.patch", "patches/0002-blk-Add-a-block-driver-stub.patch"):
        assert after[name] == before[name]
    s = world.project.series("demo")
    assert [p.filename for p in s.patches][-1] == "0004-new-Add-new.c.patch"
    third, fourth = s.patches[2], s.patches[3]
    assert third.message.startswith("Now with a reason.")
    old_third = parse_patch(before["patches/0003-core-Touch-two-files.patch"].decode(), "x")
    assert third.diff == old_third.diff  # the diff text is kept when only the message changed
    assert (fourth.author_name, fourth.date) == ("Editor", "Wed, 27 Jan 2010 13:46:40 +0000")
    assert fourth.files == ["src/new.c"]
    # The refreshed series applies to exactly the edited branch, and refresh is now a no-op.
    head = git_out(t, "rev-parse", "HEAD^{tree}")
    again = apply_series(world.project, "demo")
    assert git_out(again.tree, "rev-parse", "HEAD^{tree}") == head
    assert refresh_series(world.project, "demo") == []


def test_refresh_keeps_a_patch_file_name_after_an_amend(world: World) -> None:
    """A patch file named by hand keeps its name when its commit is amended (same place, same subject)."""
    series_from_commits(world.root, "demo", world.upstream, world.tmp)
    sdir = world.project.series_root / "demo"
    (sdir / "patches" / "0002-blk-Add-a-block-driver-stub.patch").rename(sdir / "patches" / "0002-blk-stub.patch")
    manifest = sdir / "series.toml"
    manifest.write_text(manifest.read_text().replace("0002-blk-Add-a-block-driver-stub.patch", "0002-blk-stub.patch"))
    r = apply_series(world.project, "demo")
    run(["git", "-C", r.tree, "-c", "user.name=E", "-c", "user.email=e@example.org", "rebase", "-q", "--exec",
         "git -c user.name=E -c user.email=e@example.org commit -q --amend --no-edit --date=now", "HEAD~2"],
        env=GIT_ENV)
    refresh_series(world.project, "demo")
    assert [p.filename for p in world.project.series("demo").patches][:3] == [
        "0001-core-Change-line-five.patch", "0002-blk-stub.patch", "0003-core-Touch-two-files.patch"]


def test_refresh_after_upto_keeps_the_rest(world: World) -> None:
    series_from_commits(world.root, "demo", world.upstream, world.tmp)
    before = series_bytes(world.root, "demo")
    apply_series(world.project, "demo", upto=1)
    assert refresh_series(world.project, "demo") == []
    assert series_bytes(world.root, "demo") == before


def test_refresh_refuses_drift_branch(world: World) -> None:
    series_from_commits(world.root, "demo", world.upstream, world.tmp)
    apply_series(world.project, "demo", onto=world.upstream.commits[0])
    with pytest.raises(ApplyError, match="was applied --onto another revision"):
        refresh_series(world.project, "demo")


def test_refresh_without_apply(world: World) -> None:
    series_from_commits(world.root, "demo", world.upstream, world.tmp)
    with pytest.raises(ApplyError, match=r"no work tree for series 'demo'.*\n.*run `patchkit apply demo` first"):
        refresh_series(world.project, "demo")


def test_export_tree(world: World, tmp_path: Path) -> None:
    series_from_commits(world.root, "demo", world.upstream, world.tmp)
    r = apply_series(world.project, "demo")
    dest = tmp_path / "export"
    export_tree(r.tree, r.commits[0], dest)
    files = sorted(str(p.relative_to(dest)) for p in dest.rglob("*") if p.is_file())
    assert files == sorted(git_out(r.tree, "ls-tree", "-r", "--name-only", r.commits[0]).splitlines())
    assert "int line5 = 500; /* changed */" in (dest / "src" / "core" / "main.c").read_text()
    assert not (dest / "src" / "drivers").exists()  # commit 1 has no driver yet


def test_tag(world: World) -> None:
    series_from_commits(world.root, "demo", world.upstream, world.tmp)
    r = apply_series(world.project, "demo")
    tag(r.tree, "demo-v1", r.commits[-1], "demo v1 as sent")
    assert git_out(r.tree, "cat-file", "-t", "demo-v1") == "tag"
    assert git_out(r.tree, "rev-parse", "demo-v1^{commit}") == r.commits[-1]
    tag(r.tree, "demo-v1", r.commits[-1], "again")  # same target: nothing to do
    apply_series(world.project, "demo", upto=1)  # refreshing the tree keeps local tags
    assert git_out(r.tree, "rev-parse", "demo-v1^{commit}") == r.commits[-1]
    with pytest.raises(ApplyError, match="tag demo-v1 already exists"):
        tag(r.tree, "demo-v1", r.commits[0], "moved")


def test_range_diff(world: World) -> None:
    series_from_commits(world.root, "demo", world.upstream, world.tmp)
    s = world.project.series("demo")
    v2 = new_version(s, "- reworded patch 2")
    p = v2.patches[1]
    v2.patches[1] = p.__class__(**{**p.__dict__, "message": "Reworded.\n\n" + p.message})
    save_series(v2)
    world.project.forget_series("demo")
    out = range_diff(world.project, "demo", 1, 2)
    lines = out.splitlines()
    assert lines[0].startswith("1:") and "= 1:" in lines[0]
    assert "! 2:" in lines[1] and "[blk] Add a block driver stub" in lines[1]
    assert "+    Reworded." in out
    assert "refs/patchkit" not in git_out(world.store.tree("demo"), "for-each-ref")


def test_merged_when_only_reverse_apply_can_tell(world: World) -> None:
    """No blob ids for a 3-way merge, no drift range for patch-ids: the reverse check finds it."""
    mails = format_patches(world.upstream.path, f"{world.upstream.base}..{world.upstream.commits[0]}",
                           world.tmp / "mails")
    p = parse_patch(mails[0].read_text(), "x")
    no_index = "".join(line for line in p.diff.splitlines(keepends=True) if not line.startswith("index "))
    text = p.__class__(**{**p.__dict__, "diff": no_index}).render()
    write_series(world.root, "again", world.upstream.commits[0], [text])
    r = apply_series(world.project, "again")
    assert r.merged == ["0001-core-Change-line-five.patch"] and r.commits == []
    assert r.base == world.upstream.commits[0]
    with pytest.raises(ApplyError, match=r"0001-core-Change-line-five\.patch was already upstream when applied"):
        refresh_series(world.project, "again")


# --- the real gPXE upstream --------------------------------------------------------

PROJECT_ROOT = Path(__file__).resolve().parent.parent
GPXE_BASE = "245dca9ce6d748815914bf23231c34fe33e7f18b"
GPXE_LATEST = "c23508d796325f8af724ad497c99ffb5a49abea0"
UPSTREAM_FIX = "37883e99"  # upstream's own version of the series' patch 1


@pytest.fixture
def gpxe_project(gpxe_mirror: Path, tmp_path: Path, store: Store) -> Project:
    """A project with the real pin, vendored from the real mirror into the test's cache."""
    from patchkit.upstream import vendor

    root = tmp_path / "gpxe-project"
    (root / "gpxe-tree").mkdir(parents=True)
    (root / "series").mkdir()
    (root / "gpxe-tree" / "pin.toml").write_bytes((PROJECT_ROOT / "gpxe-tree" / "pin.toml").read_bytes())
    project = Project(root, store)
    vendor(store, project.pin, str(gpxe_mirror))
    return project


def _gpxe_fixture_series(project: Project) -> None:
    """Patch 1: upstream's fix as git formats it (made here, never stored); patch 2: a new file."""
    out = run(["git", "-C", project.store.imported_mirror(project.pin.name), "format-patch", "-k", "--no-signature",
               "--stdout", "-1", UPSTREAM_FIX], env=GIT_ENV).stdout.decode("utf-8")
    first = parse_patch(out, "x").render()
    second = ("From: Fixture Author <fixture@example.org>\nDate: Wed, 27 Jan 2010 10:00:00 +0000\n"
              "Subject: [fixture] Add a note file\n\nNot a real change.\n---\n"
              "diff --git a/src/NOTE b/src/NOTE\nnew file mode 100644\n--- /dev/null\n+++ b/src/NOTE\n"
              "@@ -0,0 +1 @@\n+fixture note\n")
    write_series(project.root, "fx", GPXE_BASE, [first, second])


def test_gpxe_apply_on_base_and_drift_check(gpxe_project: Project) -> None:
    _gpxe_fixture_series(gpxe_project)
    r = apply_series(gpxe_project, "fx")
    assert r.branch == "patchkit/fx/v1" and r.base == GPXE_BASE and len(r.commits) == 2 and r.merged == []
    assert git_out(r.tree, "rev-parse", "HEAD~2") == GPXE_BASE
    drift = apply_series(gpxe_project, "fx", onto=GPXE_LATEST)
    first = gpxe_project.series("fx").patches[0].filename
    assert drift.merged == [first]
    assert drift.merged_why[first].startswith("upstream 37883e99fd79 has the same change (patch-id)")
    assert drift.base == GPXE_LATEST and len(drift.commits) == 1
    assert git_out(drift.tree, "log", "-1", "--format=%s") == "[fixture] Add a note file"


def test_real_series_applies(gpxe_project: Project) -> None:
    real = PROJECT_ROOT / "series" / "gpxe-virtio-blk"
    if not (real / "series.toml").is_file():
        pytest.skip("series/gpxe-virtio-blk does not exist yet (being written)")
    shutil.copytree(real, gpxe_project.series_root / "gpxe-virtio-blk")
    before = series_bytes(gpxe_project.root, "gpxe-virtio-blk")
    s = gpxe_project.series("gpxe-virtio-blk")
    r = apply_series(gpxe_project, "gpxe-virtio-blk")
    assert len(r.commits) == len(s.patches) and r.merged == []
    assert [git_out(r.tree, "log", "-1", "--format=%s", c) for c in r.commits] == [p.subject for p in s.patches]
    assert refresh_series(gpxe_project, "gpxe-virtio-blk") == []
    assert series_bytes(gpxe_project.root, "gpxe-virtio-blk") == before


def test_real_series_drift_check_names_merged_patch_1(gpxe_project: Project) -> None:
    """Upstream merged its own version of patch 1 (same subject, different change) before c23508d."""
    real = PROJECT_ROOT / "series" / "gpxe-virtio-blk"
    if not (real / "series.toml").is_file():
        pytest.skip("series/gpxe-virtio-blk does not exist yet (being written)")
    shutil.copytree(real, gpxe_project.series_root / "gpxe-virtio-blk")
    patches = gpxe_project.series("gpxe-virtio-blk").patches
    first = patches[0].filename
    virtio = [p.filename for p in patches if p.subject.startswith("[virtio] ")]
    expected = f"{first}: upstream 37883e99fd79 has the same subject"
    try:
        r = apply_series(gpxe_project, "gpxe-virtio-blk", onto=GPXE_LATEST)
    except ApplyError as exc:  # a virtio patch collides with later upstream work: the report still names patch 1
        assert f"already upstream: {expected}" in str(exc)
        assert any(name in str(exc).splitlines()[0] for name in virtio)
    else:
        assert r.merged == [first] and r.merged_why[first].startswith(expected.split(": ", 1)[1])


def test_apply_refuses_to_drop_uncaptured_commits(world: World) -> None:
    series_from_commits(world.root, "demo", world.upstream, world.tmp)
    r = apply_series(world.project, "demo")
    run(["git", "-C", r.tree, "-c", "user.name=E", "-c", "user.email=e@example.org", "commit", "-q", "--amend",
         "-m", "[core] Reworded"], env=GIT_ENV)
    amended = git_out(r.tree, "rev-parse", "HEAD")
    with pytest.raises(DirtyTreeError, match=r"patchkit/demo/v1 in .* has commits not yet captured into series/demo/"):
        apply_series(world.project, "demo")
    assert git_out(r.tree, "rev-parse", "HEAD") == amended
    assert refresh_series(world.project, "demo") == ["0003-core-Reworded.patch",
                                                             "0003-core-Touch-two-files.patch"]
    again = apply_series(world.project, "demo").commits[-1]
    assert commit_info(r.tree, again) == commit_info(r.tree, amended)


def test_series_for_another_upstream(world: World) -> None:
    write_series(world.root, "ipxe-thing", world.upstream.base, [], upstream="ipxe")
    with pytest.raises(SeriesError, match=r"series 'ipxe-thing' targets upstream 'ipxe' but gpxe-tree/pin\.toml "
                                          r"pins 'gpxe'"):
        apply_series(world.project, "ipxe-thing")


def test_drift_check_matches_upstream_subject(world: World) -> None:
    """Upstream took its own version of a patch (same subject, different change): merged, flagged for review."""
    write_series(world.root, "own", world.upstream.base, [conflicting_patch(subject="[core]  change line FIVE")])
    r = apply_series(world.project, "own", onto=world.upstream.commits[-1])
    name = "0001-core-change-line-FIVE.patch"
    assert r.merged == [name] and r.commits == []
    assert r.merged_why[name] == (f"upstream {world.upstream.commits[0][:12]} has the same subject "
                                  "(its change differs: review it)")
