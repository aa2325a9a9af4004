"""`patchkit test --image`: a user's image booted through the ROM and judged by patterns.

The third-party image is GRUB's rescue image as Debian builds it (package
grub-rescue-pc, a hybrid ISO that is an MBR disk as well): it must reach GRUB's menu
through the series' ROM, and fail through the base ROM with gPXE's reason. A blank
image fails with gPXE's (or SeaBIOS's) own message, not a timeout. The image file is
never written.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest
import tomli_w
from conftest import REAL_STORE
from fixtures.cli import run_patchkit
from fixtures.roms import PROJECT_ROOT, SERIES

from patchkit.boot.run import boot_guest
from patchkit.errors import PatchkitError, SeriesError
from patchkit.guests import debpkgs
from patchkit.guests.image import DEFAULT_EXPECT, ImageGuest, ImageSpec, image_format
from patchkit.project import Project
from patchkit.qemu.console import Console
from patchkit.run import run
from patchkit.series.io import save_series
from patchkit.series.model import ImageEntry
from patchkit.store import Store, sha256_file
from patchkit.validate import run_tests

GRUB_MENU = "Press enter to boot the selected OS"


@pytest.fixture
def grub_rescue(tmp_path: Path) -> Path:
    """Debian's GRUB rescue image, unpacked from the package `patchkit setup` downloads (or skip)."""
    deb = debpkgs.inputs_dir(REAL_STORE) / debpkgs.GRUB_RESCUE.filename
    if not deb.is_file():
        pytest.skip(f"{deb.name} not downloaded: run `patchkit setup`")
    debpkgs.extract(deb, tmp_path / "deb")
    return tmp_path / "deb" / debpkgs.GRUB_RESCUE_IMAGE


def _blank(path: Path) -> Path:
    with open(path, "wb") as f:
        f.truncate(8 << 20)
    return path


# --- without booting ---------------------------------------------------------------------


def test_missing_and_unknown_images_are_refused(tmp_path: Path, store: Store) -> None:
    with pytest.raises(PatchkitError, match="does not exist"):
        image_format(tmp_path / "nope.img")
    vdi = tmp_path / "disk.vdi"
    run(["qemu-img", "create", "-q", "-f", "vdi", vdi, "1M"])
    with pytest.raises(PatchkitError, match="in vdi format") as err:
        ImageGuest(store, ImageSpec(vdi))
    assert "qemu-img convert -O qcow2" in str(err.value)
    with pytest.raises(PatchkitError, match="--expect '\\(' is not a regular expression"):
        ImageGuest(store, ImageSpec(_blank(tmp_path / "b.img"), expect="("))


def test_a_run_boots_an_overlay_of_the_image(tmp_path: Path, store: Store) -> None:
    image = _blank(tmp_path / "mine.img")
    run(["qemu-img", "convert", "-O", "qcow2", image, tmp_path / "mine.qcow2"])
    for path, fmt in ((image, "raw"), (tmp_path / "mine.qcow2", "qcow2")):
        guest = ImageGuest(store, ImageSpec(path))
        assert guest.name == f"image:{path.name}" and guest.format == fmt
        overlay = guest.make_run_disk(tmp_path / f"run-{fmt}", "t")
        assert overlay.parent == tmp_path / f"run-{fmt}"
        info = run(["qemu-img", "info", "--output=json", overlay]).stdout.decode()
        assert '"format": "qcow2"' in info and f'"backing-filename": "{path}"' in info
        assert guest.image_sha256() == sha256_file(path)


def test_the_default_expect_matches_prompts_only() -> None:
    expect = re.compile(DEFAULT_EXPECT)
    for prompt in ("debian login: ", "root@box:~# ", "C:\\>", "C:\\DOS>", "grub> ", "$"):
        assert expect.search(f"banner\r\n{prompt}"), prompt
    for text in ("gPXE> sanboot virtio_blk:PCI00:04.0\r\n", "Booting from BIOS drive 0x80\r\n", "50% done\r\n"):
        assert not expect.search(text), text


def test_regular_expressions_match_serial_and_the_screen_below_a_line() -> None:
    async def main() -> None:
        console = Console()
        console.feed(b"gPXE> sanboot x\r\nGRUB menu\r\n")
        wait = await console.wait_for([re.compile(r"GR.B menu")], timeout=1)
        assert wait.matched and wait.end == len("gPXE> sanboot x\r\nGRUB menu")
        # split on serial by a cursor move, whole on the screen
        console.feed(b"\x1b[5;1HPress en\x1b[5;9Hter to boot")
        pattern = re.compile("Press enter to boot")
        wait = await console.wait_for([pattern], timeout=1, screen_below="sanboot", screen_patterns=[pattern])
        assert wait.matched
        # nothing above the line counts
        above = re.compile("gPXE>")
        assert not (await console.wait_for([], timeout=0.2, screen_below="sanboot", screen_patterns=[above])).matched

    asyncio.run(main())


# --- boots ------------------------------------------------------------------------------


def test_a_third_party_image_reaches_grubs_menu_through_the_series_rom(inputs_cache: Path, store: Store,
                                                                       series_rom: Path, grub_rescue: Path) -> None:
    before = sha256_file(grub_rescue)
    outcome = boot_guest(ImageGuest(store, ImageSpec(grub_rescue, expect=GRUB_MENU)), rom=series_rom)
    assert outcome.passed, f"{outcome.reason} (see {outcome.run_dir})"
    assert outcome.timings["sanboot"] < outcome.timings["success"]
    assert sha256_file(grub_rescue) == before  # the image itself is never written


def test_the_base_rom_fails_it_with_gpxes_reason(inputs_cache: Path, store: Store, base_rom: Path,
                                                 grub_rescue: Path) -> None:
    outcome = boot_guest(ImageGuest(store, ImageSpec(grub_rescue, expect=GRUB_MENU)), rom=base_rom)
    assert not outcome.passed
    assert "returned to the gPXE prompt: Could not boot from virtio_blk:PCI00:04.0: Not supported" in outcome.reason


def test_fail_pattern_and_the_reference_path(inputs_cache: Path, store: Store, grub_rescue: Path) -> None:
    outcome = boot_guest(ImageGuest(store, ImageSpec(grub_rescue, expect="no such text", fail="GNU GRUB")), rom=None)
    # The quoted line is the screen's when the marker showed: GRUB may still be drawing the rest of it.
    assert not outcome.passed and 'failure marker "GNU GRUB" seen: GNU GRUB  version 2' in outcome.reason


def test_a_blank_image_fails_with_gpxes_and_seabioss_messages(inputs_cache: Path, store: Store, series_rom: Path,
                                                             tmp_path: Path) -> None:
    guest = ImageGuest(store, ImageSpec(_blank(tmp_path / "blank.img"), timeout=60))
    outcome = boot_guest(guest, rom=series_rom)
    assert not outcome.passed
    assert "returned to the gPXE prompt:" in outcome.reason and "Not an executable image" in outcome.reason
    outcome = boot_guest(guest, rom=None)
    assert not outcome.passed and "Boot failed: not a bootable disk" in outcome.reason


def test_the_command_records_the_image_and_status_shows_it(inputs_cache: Path, project: Project, series_rom: Path,
                                                          grub_rescue: Path) -> None:
    done = run_patchkit("test", "--image", grub_rescue, "--expect", GRUB_MENU, "--accel", "tcg", cache=inputs_cache,
                        merged=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "PASS image:grub-rescue-cdrom.iso on pc (tcg)" in done.stdout
    run_dir = Path(done.stdout.split("[run: ")[1].split("]")[0])
    assert " -m 512 " in (run_dir / "qemu-cmdline.txt").read_text()  # an image's default fits an installer
    revision = project.series(SERIES).revision_hash()
    with project.store.results() as db:
        latest = db.latest_by_guest(SERIES, revision)
    assert list(latest) == ["image:grub-rescue-cdrom.iso"]  # --image alone boots no other guest
    result = latest["image:grub-rescue-cdrom.iso"]
    assert result.passed and result.key.image_sha256 == sha256_file(grub_rescue)
    assert result.key.rom_sha256 == sha256_file(series_rom)
    status = run_patchkit("status", cache=inputs_cache, merged=False)
    assert "image:grub-rescue-cdrom.iso" in status.stdout


# --- [[images]] in the manifest ----------------------------------------------------------------


def _series_copy(tmp_path: Path, images: Sequence[Mapping[str, object]], guests: list[str] | None = None) -> Path:
    """The real series in a project of its own, with ``images`` as its [[images]] (and ``guests``)."""
    project = tmp_path / "project"
    shutil.copytree(PROJECT_ROOT / "series", project / "series")
    shutil.copytree(PROJECT_ROOT / "gpxe-tree", project / "gpxe-tree")
    manifest = project / "series" / SERIES / "series.toml"
    data = tomllib.loads(manifest.read_text())
    data["images"] = [dict(image) for image in images]
    if guests is not None:
        data["guests"] = guests
        data.pop("configs", None)
    manifest.write_text(tomli_w.dumps(data))
    return project


def test_manifest_images_are_parsed_saved_and_checked(tmp_path: Path, store: Store) -> None:
    image = {"name": "grub-rescue", "path": "images/rescue.iso", "expect": "GNU GRUB", "timeout": 120}
    root = _series_copy(tmp_path, [image], guests=["freedos", "grub-rescue"])
    series = Project(root, store).series(SERIES)
    assert series.images == [ImageEntry("grub-rescue", "images/rescue.iso", "GNU GRUB", None, 120)]
    assert series.guests == ["freedos", "grub-rescue"]
    save_series(series)
    assert Project(root, store).series(SERIES).images == series.images  # read again from the saved files
    refused: list[tuple[dict[str, object], str]] = [
        ({"name": "freedos", "path": "x"}, "not a built-in guest's"),
        ({"name": "x"}, "an image needs a `path` string"),
        ({"name": "x", "path": "x", "expect": "("}, "'expect' is not a regular"),
        ({"name": "x", "path": "x", "colour": 1}, "unknown image key 'colour'"),
    ]
    for n, (bad, message) in enumerate(refused):
        with pytest.raises(SeriesError, match=re.escape(message)):
            Project(_series_copy(tmp_path / str(n), [bad]), store).series(SERIES)


def test_a_manifest_image_boots_as_one_of_the_series_guests(inputs_cache: Path, store: Store, series_rom: Path,
                                                            grub_rescue: Path, tmp_path: Path) -> None:
    image = {"name": "grub-rescue", "path": str(grub_rescue), "expect": GRUB_MENU}
    project = Project(_series_copy(tmp_path, [image], guests=["grub-rescue"]), store)
    with pytest.raises(PatchkitError, match="is outside the project"):  # issue 23: only where the user allows
        run_tests(project, ["all"], rom=series_rom, accel="tcg", progress=lambda _m: None)
    [result] = run_tests(project, ["all"], rom=series_rom, accel="tcg", image_dirs=[grub_rescue.parent],
                         progress=lambda _m: None)
    assert result.passed, result.reason
    assert result.key.guest == "grub-rescue" and result.key.image_sha256 == sha256_file(grub_rescue)
