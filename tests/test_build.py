"""Building ROMs: warning and error parsing (captured text), tree checkout and digest
(small git repos), and real gPXE builds (skipped without the vendored upstream).

The gPXE tests share one build cache and one --each-patch scratch tree per session,
so the cold build (~25 s on 2 cores) happens once; the rest are incremental or reused.
The series they build is synthetic (new files only, written here), so they depend on
nothing but the pinned tree.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import git
import pytest
from click.testing import CliRunner
from fixtures.optionrom import make_rom_import
from fixtures.repos import commit_files as commit, write_series

from patchkit.build.cache import build_rom
from patchkit.build.each_patch import build_each_patch
from patchkit.build.keys import tree_digest
from patchkit.build.make import failure_message, rom_target_available
from patchkit.build.series import base_rom, checkout, ensure_series_rom
from patchkit.build.warnings import new_warnings, normalise_warning
from patchkit.cli import cli
from patchkit.errors import BuildError
from patchkit.pin import BuildSettings, Pin, RomIds
from patchkit.project import Project
from patchkit.rom import check_rom
from patchkit.store import Store

PROJECT_ROOT = Path(__file__).resolve().parent.parent

# --- warnings and errors, on captured compiler output ---------------------------------

BASE_LOG = """\
  [BUILD] bin/stringextra.o
core/stringextra.c:187:25: warning: 'nonnull' argument 's' compared to NULL [-Wnonnull-compare]
  187 |         sbegin  = s ? s : ___strtok;
  [LD] bin/1af41000.rom.tmp
ld: warning: bin/1af41000.rom.tmp has a LOAD segment with RWX permissions
"""

PATCH_LOG = """\
  [BUILD] bin/stringextra.o
core/stringextra.c:190:25: warning: 'nonnull' argument 's' compared to NULL [-Wnonnull-compare]
  [BUILD] bin/pkdemo.o
core/pkdemo.c:9:12: warning: 'pkdemo_unused' defined but not used [-Wunused-function]
core/pkdemo.c:9:12: warning: 'pkdemo_unused' defined but not used [-Wunused-function]
  [LD] bin/1af41001.rom.tmp
ld: warning: bin/1af41001.rom.tmp has a LOAD segment with RWX permissions
"""


def known_from(text: str) -> set[tuple[str, str]]:
    return {normalise_warning(line) for line in text.splitlines() if "warning:" in line}


def test_normalise_drops_line_and_column() -> None:
    assert normalise_warning("core/a.c:12:3: warning: unused variable 'x' [-Wunused-variable]") == (
        "core/a.c", "unused variable 'x' [-Wunused-variable]")
    assert normalise_warning("core/a.c:12: warning: old style") == ("core/a.c", "old style")


def test_new_warnings_ignore_line_shifts_and_link_output_names() -> None:
    fresh = new_warnings(PATCH_LOG.splitlines(), known_from(BASE_LOG))
    assert fresh == ["core/pkdemo.c:9:12: warning: 'pkdemo_unused' defined but not used [-Wunused-function]"]


def test_no_new_warnings_for_the_same_log() -> None:
    assert new_warnings(BASE_LOG.splitlines(), known_from(BASE_LOG)) == []


FAILED_LOG = """\
  [BUILD] bin/pkdemo-nic.o
drivers/net/pkdemo-nic.c: In function 'pkdemo_probe':
drivers/net/pkdemo-nic.c:12:24: error: expected ';' before '}' token
   12 |         return -ENODEV
make: *** [Makefile.housekeeping:520: bin/pkdemo-nic.o] Error 1
"""


def test_failure_message_names_error_lines_patch_and_log(tmp_path: Path) -> None:
    log = tmp_path / "build.log"
    msg = failure_message(FAILED_LOG, log, "bin/1af41001.rom", "after patch 2 (0002-demo.patch)")
    assert "drivers/net/pkdemo-nic.c:12:24: error: expected ';'" in msg
    assert "after patch 2 (0002-demo.patch)" in msg
    assert f"full log: {log}" in msg
    assert "*** [" not in msg  # compiler errors are shown, make's summary is not needed


def test_failure_message_without_compiler_errors_shows_link_errors(tmp_path: Path) -> None:
    text = "ld:--defsym:2: undefined symbol `obj_1af41001' referenced in expression\nmake: *** [x] Error 1\n"
    msg = failure_message(text, tmp_path / "l", "bin/1af41001.rom")
    assert "undefined symbol `obj_1af41001'" in msg


# --- checkout into a scratch tree and the tree digest (small real git repos) ----------


@pytest.fixture
def small_repo(tmp_path: Path) -> tuple[Path, list[str]]:
    repo = git.Repo.init(tmp_path / "repo")
    c1 = commit(repo, {"src/.gitignore": "bin*\n", "src/a.c": "a1\n", "src/b.c": "b1\n", "src/old.c": "o\n"}, "one")
    c2 = commit(repo, {"src/a.c": "a2\n", "src/old.c": None, "src/new.c": "n\n"}, "two")
    return Path(repo.working_dir), [c1, c2]


def test_checkout_rewrites_only_changed_files(small_repo: tuple[Path, list[str]], tmp_path: Path) -> None:
    repo, (c1, c2) = small_repo
    dest = tmp_path / "scratch"
    checkout(repo, c1, dest)
    (dest / "src" / "bin").mkdir()
    (dest / "src" / "bin" / "a.o").write_text("object")
    past = 1_000_000_000
    for name in ("a.c", "b.c"):
        os.utime(dest / "src" / name, (past, past))
    checkout(repo, c2, dest)
    src = dest / "src"
    assert (src / "a.c").read_text() == "a2\n" and (src / "a.c").stat().st_mtime > past
    assert (src / "b.c").stat().st_mtime == past  # unchanged: make must not rebuild it
    assert not (src / "old.c").exists() and (src / "new.c").read_text() == "n\n"
    assert (src / "bin" / "a.o").read_text() == "object"  # build outputs are kept


def test_tree_digest_follows_content_not_outputs(small_repo: tuple[Path, list[str]], tmp_path: Path) -> None:
    repo, (c1, _) = small_repo
    dest = tmp_path / "scratch"
    checkout(repo, c1, dest)
    src = dest / "src"
    before = tree_digest(src)
    (src / "bin").mkdir()
    (src / "bin" / "x.o").write_text("object")
    assert tree_digest(src) == before
    (src / "b.c").write_text("b-changed\n")
    assert tree_digest(src) != before


# --- make in a small fixture tree (real make and gcc, no gPXE) -------------------------

FIXTURE_MAKEFILE = """\
bin/fixture.rom : bin/a.o mkrom.py
\t$(PYTHON) mkrom.py $@

bin/a.o : a.c
\t@echo "  [BUILD] $@"
\tgcc -Wall $(EXTRA_CFLAGS) -c a.c -o $@

clean :
\trm -f bin/*.*
"""

# Writes a minimal valid option ROM for PCI 1af4:1001 (2 x 512 bytes).
FIXTURE_MKROM = make_rom_import() + """\
open(sys.argv[1], "wb").write(make_rom(units=2))
"""


@pytest.fixture
def fixture_tree(tmp_path: Path) -> tuple[Path, Pin]:
    """A tree whose make compiles one C file with gcc and writes a valid ROM."""
    src = tmp_path / "tree" / "src"
    (src / "bin").mkdir(parents=True)
    (src / ".gitignore").write_text("bin*\n")
    (src / "Makefile").write_text(FIXTURE_MAKEFILE)
    (src / "mkrom.py").write_text(FIXTURE_MKROM)
    (src / "a.c").write_text("int answer ( void );\nint answer ( void ) {\n\treturn 42;\n}\n")
    pin = Pin(name="fixture", url="-", commit="-", rom=RomIds(vendor=0x1AF4, device=0x1001),
              build=BuildSettings(directory="src", target="bin/fixture.rom", base_target="bin/fixture.rom",
                                  make_args=(f"PYTHON={sys.executable}",)))
    return tmp_path / "tree", pin


def test_fixture_build_then_reuse_then_incremental(fixture_tree: tuple[Path, Pin], store: Store) -> None:
    tree, pin = fixture_tree
    first = build_rom(store, tree, pin)
    assert not first.reused and first.full and first.size == 1024
    assert check_rom(first.path).device == 0x1001
    again = build_rom(store, tree, pin)
    assert again.reused and again.path == first.path and again.sha256 == first.sha256
    (tree / "src" / "a.c").write_text("int answer ( void );\nint answer ( void ) {\n\treturn 43;\n}\n")
    changed = build_rom(store, tree, pin)
    assert not changed.reused and not changed.full and changed.key != first.key


def test_fixture_changed_settings_clean_the_tree(fixture_tree: tuple[Path, Pin], store: Store) -> None:
    tree, pin = fixture_tree
    build_rom(store, tree, pin)
    messages: list[str] = []
    rom = build_rom(store, tree, pin, extra_make_args=["EXTRA_CFLAGS=-DSETTING=1"], progress=messages.append)
    assert not rom.reused and rom.full  # gPXE would not rebuild for new flags: the tree was cleaned
    assert any(m.startswith("make clean (the tree was last built with other settings)") for m in messages)
    assert build_rom(store, tree, pin, extra_make_args=["EXTRA_CFLAGS=-DSETTING=1"]).reused


def test_fixture_compile_error_names_file_line_and_log(fixture_tree: tuple[Path, Pin], store: Store) -> None:
    tree, pin = fixture_tree
    (tree / "src" / "a.c").write_text("int answer ( void ) {\n\treturn 42\n}\n")
    with pytest.raises(BuildError) as caught:
        build_rom(store, tree, pin)
    msg = str(caught.value)
    assert "a.c:2:" in msg and "error:" in msg
    log = Path(msg.split("full log: ")[1].splitlines()[0])
    assert log.is_file() and "a.c:2:" in log.read_text()


def test_fixture_device_target_without_driver_is_refused(fixture_tree: tuple[Path, Pin], store: Store) -> None:
    tree, pin = fixture_tree
    with pytest.raises(BuildError, match=r"no source declares PCI_ROM\(0x1af4, 0x1001"):
        build_rom(store, tree, pin, "bin/1af41001.rom")
    (tree / "src" / "a.c").write_text('/* PCI_ROM ( 0x1af4, 0x1001, "x", "x", 0 ) */\n')
    assert rom_target_available(tree / "src", "bin/1af41001.rom")


# --- real gPXE builds ------------------------------------------------------------------

AUTHOR = "From: Test Author <author@example.org>\nDate: Tue, 26 Jan 2010 12:00:00 +0000\n"

DEMO_OBJECT = """\
FILE_LICENCE ( GPL2_OR_LATER );

/** @file
 *
 * An object for patchkit's build tests
 *
 */

int pkdemo_answer ( void );
{extra}
/** The answer */
int pkdemo_answer ( void ) {{
	return 42;
}}
"""

DEMO_DRIVER = """\
FILE_LICENCE ( GPL2_OR_LATER );

#include <stdint.h>
#include <gpxe/pci.h>

/** @file
 *
 * A driver claiming PCI 1af4:1001 so that bin/1af41001.rom exists
 *
 */

static int pkdemo_probe ( struct pci_device *pci __unused,
\t\t\t  const struct pci_device_id *id __unused ) {{
	return -1{semicolon}
}}

static void pkdemo_remove ( struct pci_device *pci __unused ) {{
}}

static struct pci_device_id pkdemo_ids[] = {{
	PCI_ROM ( 0x1af4, 0x1001, "pkdemo", "patchkit demonstration", 0 ),
}};

struct pci_driver pkdemo_driver __pci_driver = {{
	.ids = pkdemo_ids,
	.id_count = ( sizeof ( pkdemo_ids ) / sizeof ( pkdemo_ids[0] ) ),
	.probe = pkdemo_probe,
	.remove = pkdemo_remove,
}};
"""


def new_file_patch(subject: str, path: str, content: str) -> str:
    """A patch (series file form) adding ``path`` with ``content``."""
    lines = content.splitlines()
    body = "".join(f"+{line}\n" for line in lines)
    return (f"{AUTHOR}Subject: {subject}\n\n{subject}.\n\nSigned-off-by: Test Author <author@example.org>\n---\n"
            f"diff --git a/{path} b/{path}\nnew file mode 100644\n--- /dev/null\n+++ b/{path}\n"
            f"@@ -0,0 +1,{len(lines)} @@\n{body}")


def demo_patches(*, warning: bool = False, broken: bool = False) -> list[str]:
    extra = "\nstatic int pkdemo_unused ( void ) {\n\treturn 1;\n}\n" if warning else ""
    return [
        new_file_patch("[pkdemo] Add an object", "src/core/pkdemo.c", DEMO_OBJECT.format(extra=extra)),
        new_file_patch("[pkdemo] Add a driver for 1af4:1001", "src/drivers/net/pkdemo-nic.c",
                       DEMO_DRIVER.format(semicolon="" if broken else ";")),
    ]


@pytest.fixture(scope="session")
def shared_build_state(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Build cache and --each-patch scratch tree shared by this session's gPXE tests."""
    return tmp_path_factory.mktemp("gpxe-builds")


@pytest.fixture
def gpxe_project(gpxe_mirror: Path, isolated_cache: Path, store: Store, shared_build_state: Path,
                 tmp_path: Path) -> Project:
    """A project pinned like the real one, with demo series, in a cache seeing the mirror."""
    (isolated_cache / "upstream").mkdir()
    os.symlink(gpxe_mirror, isolated_cache / "upstream" / "gpxe.git")
    (shared_build_state / "builds").mkdir(exist_ok=True)
    os.symlink(shared_build_state / "builds", isolated_cache / "builds")
    root = tmp_path / "project"
    (root / "gpxe-tree").mkdir(parents=True)
    (root / "series").mkdir()
    shutil.copy(PROJECT_ROOT / "gpxe-tree" / "pin.toml", root / "gpxe-tree" / "pin.toml")
    project = Project(root, store)
    base = project.pin.commit
    write_series(root, "demo", base, demo_patches())
    write_series(root, "demo-warn", base, demo_patches(warning=True))
    write_series(root, "demo-broken", base, demo_patches(broken=True))
    # `patchkit build --each-patch` uses trees/<series>.each-patch: point it at the shared scratch tree.
    (isolated_cache / "trees").mkdir()
    os.symlink(shared_build_state / "each-patch", isolated_cache / "trees" / "demo-warn.each-patch")
    return project


@pytest.fixture
def scratch(shared_build_state: Path) -> Path:
    return shared_build_state / "each-patch"


@pytest.mark.needs_gpxe
def test_each_patch_builds_every_step(gpxe_project: Project, scratch: Path) -> None:
    messages: list[str] = []
    steps = build_each_patch(gpxe_project, "demo", messages.append, scratch=scratch)
    assert [s.name for s in steps] == ["base", "0001-pkdemo-Add-an-object.patch",
                                       "0002-pkdemo-Add-a-driver-for-1af4-1001.patch"]
    assert list(steps[0].roms) == ["bin/1af41000.rom"]  # 1af41001 cannot build at the base
    assert list(steps[2].roms) == ["bin/1af41000.rom", "bin/1af41001.rom"]
    assert steps[0].warnings  # gPXE at the base has hundreds under gcc 12
    assert all(not s.new_warnings for s in steps)
    assert check_rom(steps[2].roms["bin/1af41001.rom"].path).device == 0x1001
    # The series' own work tree has the same content as the last step: its ROM is reused.
    rom = ensure_series_rom(gpxe_project, "demo")
    assert rom.reused and rom.sha256 == steps[2].roms["bin/1af41001.rom"].sha256


@pytest.mark.needs_gpxe
def test_base_rom_is_checked_and_reused(gpxe_project: Project) -> None:
    # After the --each-patch test this is a reuse of its base build (same content key).
    first = base_rom(gpxe_project)
    info = check_rom(first.path, 0x1AF4, 0x1000)
    assert info.size == first.size == first.path.stat().st_size
    second = base_rom(gpxe_project)
    assert second.reused and second.sha256 == first.sha256 and second.path == first.path


@pytest.mark.needs_gpxe
def test_each_patch_reports_a_new_warning(gpxe_project: Project, scratch: Path) -> None:
    steps = build_each_patch(gpxe_project, "demo-warn", scratch=scratch)
    assert len(steps[1].new_warnings) == 1
    assert "core/pkdemo.c" in steps[1].new_warnings[0] and "pkdemo_unused" in steps[1].new_warnings[0]
    assert steps[2].new_warnings == []


@pytest.mark.needs_gpxe
def test_each_patch_names_the_failing_patch_and_line(gpxe_project: Project, scratch: Path) -> None:
    with pytest.raises(BuildError) as caught:
        build_each_patch(gpxe_project, "demo-broken", scratch=scratch)
    msg = str(caught.value)
    assert "after patch 2 (0002-pkdemo-Add-a-driver-for-1af4-1001.patch)" in msg
    assert "drivers/net/pkdemo-nic.c:14:" in msg and "error:" in msg
    log = Path(msg.split("full log: ")[1].splitlines()[0])
    assert log.is_file() and "error:" in log.read_text()


@pytest.mark.needs_gpxe
def test_cli_build_prints_rom_facts(gpxe_project: Project, scratch: Path) -> None:
    build_each_patch(gpxe_project, "demo", scratch=scratch)
    result = CliRunner().invoke(cli, ["-C", str(gpxe_project.root), "build", "demo"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "sha256:" in result.output and "reused" in result.output
    assert "PCIR 1af4:1001" in result.output


@pytest.mark.needs_gpxe
def test_cli_each_patch_fails_on_a_new_warning(gpxe_project: Project) -> None:
    result = CliRunner().invoke(cli, ["-C", str(gpxe_project.root), "build", "demo-warn", "--each-patch"])
    assert result.exit_code == 1
    assert "patch 1 0001-pkdemo-Add-an-object.patch: builds (1af41000.rom" in result.output
    assert "pkdemo_unused" in result.output
    assert "the series adds 1 compiler warning(s)" in str(result.exception)
