"""`patchkit test`: build what is missing, boot each guest through the ROM, record results.

One boot (a ROM run driving gPXE, or a reference run booting natively) is patchkit.boot;
this module chooses what to boot against which ROM and records the verdicts.
A run of several boots (guests x configurations, see patchkit.matrix) shares one event
loop: at most ``jobs`` QEMUs at a time, each in its own run directory, every one
stopped and reaped when the run ends, also on ^C (exit 130) and SIGTERM (exit 143).
With a cluster each boot is a task of its workers instead (patchkit.cluster).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import time
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from patchkit.boot.run import DEFAULT_STALL_TIMEOUT, BootOutcome, boot_planned_async, run_interruptibly
from patchkit.build.cache import elf_path, rom_ids
from patchkit.build.series import ensure_series_rom
from patchkit.cluster.client import BootOptions, RemoteCell, boot_on_cluster
from patchkit.cluster.engine import connect
from patchkit.coverage.collect import collect, report_lines
from patchkit.coverage.debuginfo import DebugInfo
from patchkit.coverage.result import measure
from patchkit.errors import PatchkitError, SeriesError
from patchkit.guests import GUEST_NAMES, HARNESS_NAMES, KEEP_SAN_NAMES, Guest
from patchkit.guests.image import DEFAULT_EXPECT, DEFAULT_MEMORY, DEFAULT_TIMEOUT, ImageGuest, ImageSpec
from patchkit.matrix import Cell, plan_cells, select_configs, summary_table
from patchkit.pin import Pin
from patchkit.progress import Progress, Steps, quiet
from patchkit.project import Project
from patchkit.qemu.machine import qemu_version
from patchkit.rom import check_rom_for
from patchkit.series.io import load_version
from patchkit.series.model import IMPLICIT_CONFIG, Config, Series
from patchkit.store import ResultKey, Results, TestResult, sha256_file
from patchkit.triage.flaky import RERUNS, flakes, verdict
from patchkit.triage.logdiff import what_changed


@dataclass(frozen=True)
class Subject:
    """What the results are recorded against."""

    series: str
    revision: str
    version: int
    rom: Path | None
    rom_sha256: str
    rom_size: int


def resolve_subject(project: Project, series_name: str | None, rom: Path | None, reference: bool,
                    progress: Progress, need_elf: bool = False,
                    version: int | None = None) -> tuple[Subject, list[Config]]:
    """What is under test and the series' configurations; builds the ROM of the series' current revision (or of
    its ``version``) unless ``rom`` or ``reference``.

    A ``rom`` given by path is recorded as revision "rom-<sha256 prefix>", not as the
    series revision: nothing ties that file to the series' sources, so its results
    must not clear the send-email gate.
    """
    try:
        series = tested_series(project, series_name, version)
        name, revision, number, configs = series.name, series.revision_hash(), series.version, series.test_configs()
    except SeriesError:
        if not (rom or reference):
            raise
        name, revision, number, configs = series_name or "-", "", 0, [Config(IMPLICIT_CONFIG, GUEST_NAMES)]
    if reference:
        return Subject(name, "reference", number, None, "", 0), configs
    if rom is None:
        built = ensure_series_rom(project, name, progress, need_elf=need_elf, version=version)
        return Subject(name, revision, number, built.path, built.sha256, built.size), configs
    if not rom.is_file():
        raise PatchkitError(f"ROM {rom} does not exist", hint="build it with `patchkit build` or drop --rom")
    check_given_rom(project.pin, rom)
    rom_sha = sha256_file(rom)
    progress(f"note: --rom results are recorded as revision rom-{rom_sha[:12]} (not the series revision: "
             "they do not clear send-email; run without --rom for that)")
    return Subject(name, f"rom-{rom_sha[:12]}", number, rom.resolve(), rom_sha, rom.stat().st_size), configs


def tested_series(project: Project, series_name: str | None, version: int | None) -> Series:
    """The series (None: the only one) at ``version`` (None: the current one)."""
    current = project.series(series_name)
    return load_version(current, version) if version is not None else current


def manifest_images(project: Project, series_name: str | None, image_dirs: Sequence[Path] = ()) -> dict[str, ImageSpec]:
    """The manifest's ``[[images]]`` by name (none without a series); their backing files may be in ``image_dirs``."""
    try:
        series = project.series(series_name)
    except SeriesError:
        return {}
    assert series.path is not None
    return {i.name: ImageSpec(series.path / Path(i.path).expanduser(), name=i.name, expect=i.expect or DEFAULT_EXPECT,
                              fail=i.fail, timeout=i.timeout or DEFAULT_TIMEOUT, image_dirs=tuple(image_dirs),
                              format="raw" if i.format == "raw" else "qcow2" if i.format == "qcow2" else None,
                              memory_mib=i.memory or DEFAULT_MEMORY)
            for i in series.images}


def check_image_place(project: Project, spec: ImageSpec) -> None:
    """A manifest's image must be inside the project or a directory the user allowed (--image-dir): a series
    from someone else must not make patchkit boot a host file (``path = "/etc/shadow"``)."""
    real = Path(os.path.realpath(spec.path))
    roots = [Path(os.path.realpath(d)) for d in (project.root, *spec.image_dirs)]
    if not any(real.is_relative_to(root) for root in roots):
        raise PatchkitError(f"series.toml: image {spec.name}'s path {spec.path} is outside the project "
                            f"({project.root}): refused",
                            hint=f"allow its directory explicitly: patchkit test --image-dir {real.parent}")


def check_given_rom(pin: Pin, rom: Path) -> None:
    """The checks `patchkit build` applies, for a ROM given by path: for the pin's device, or its base target's."""
    ids = list(dict.fromkeys([rom_ids(pin, pin.build.target), rom_ids(pin, pin.build.base_target)]))
    names = " or ".join(f"{vendor:04x}:{device:04x}" for vendor, device in ids)
    check_rom_for(rom, ids, hint=f"pass a ROM built for {names}, or drop --rom to test the series' own")


def _nic_subject(project: Project, subject: Subject, progress: Progress, need_elf: bool) -> Subject:
    """``subject`` with the series' NIC ROM (the pin's base_target built from the series), for AoE sanboot."""
    built = ensure_series_rom(project, subject.series, progress, target=project.pin.build.base_target,
                              need_elf=need_elf)
    return replace(subject, rom=built.path, rom_sha256=built.sha256, rom_size=built.size)


def _embedding_subject(project: Project, subject: Subject, image: Path, progress: Progress, need_elf: bool,
                       version: int | None) -> Subject:
    """``subject`` with the series' ROM (at ``version``) built with ``image`` embedded (EMBEDDED_IMAGE: gPXE
    registers it as an image named after the file, which `imgexec` runs)."""
    built = ensure_series_rom(project, subject.series, progress, extra_make_args=[f"EMBEDDED_IMAGE={image}"],
                              need_elf=need_elf, version=version)
    return replace(subject, rom=built.path, rom_sha256=built.sha256, rom_size=built.size)


def run_tests(
    project: Project,
    guest_names: Sequence[str],
    *,
    series_name: str | None = None,
    version: int | None = None,
    configs: Sequence[str] = (),
    matrix: bool = False,
    jobs: int | None = None,
    rom: Path | None = None,
    accel: str = "auto",
    timeout: float | None = None,
    stall_timeout: float = DEFAULT_STALL_TIMEOUT,
    reference: bool = False,
    root_path: str | None = None,
    user_images: Sequence[ImageSpec] = (),
    more_guests: Sequence[Guest] = (),
    image_dirs: Sequence[Path] = (),
    cluster: str | None = None,
    coverage: bool = False,
    memory_mib: int | None = None,
    fresh: bool = False,
    reruns: int = RERUNS,
    progress: Progress = print,
    result_line: Progress | None = None,
    steps: Progress = quiet,
) -> list[TestResult]:
    """Boot guests (names, or "all") x configurations against the series' ROM (of its current revision, or of
    ``version``) and record the results.

    ``configs`` names configurations of the manifest, ``matrix`` takes them all, neither
    the first (see patchkit.matrix.plan_cells for which guests run). ``jobs`` boots run at
    once (default: the number of CPUs). One line per finished boot goes to ``result_line`` (default:
    ``progress``), and a configuration x guest table at the end of a run of several; ``steps`` gets
    "[7/24] ..., about 1 min left" after each boot (the CLI's on a terminal). Cells that cannot run
    (a guest without the configuration's disk shape) are reported, then raised as
    PatchkitError once the others have run. ``user_images`` (`--image`) boot on
    each chosen configuration besides the guests, and so do ``more_guests`` (a caller's own guest
    objects: a test's, a benchmark's); the manifest's images must be in the project
    or in ``image_dirs`` (also where their backing files may be). With ``cluster`` (a Dask scheduler's
    address) every boot is a task of that cluster (patchkit.cluster), recorded as a local one
    plus the worker's name; ``jobs`` does not apply (each worker boots as many at once as it
    has threads). With ``coverage`` each boot also records which source lines of the ROM
    it ran (patchkit.coverage), and the run ends with the series' changed-line coverage.
    """
    say_result = result_line or progress
    if coverage and (cluster or reference):
        raise PatchkitError("--coverage is measured by the QEMUs of this machine, through the series' ROM",
                            hint="drop --cluster or --reference (coverage on a cluster is not done yet)")
    if coverage and rom is not None and not elf_path(rom).is_file():
        raise PatchkitError(f"--coverage needs the ELF {rom} was made from, as {elf_path(rom).name} beside it",
                            hint="copy gPXE's bin/<rom>.tmp there, or drop --rom to test the series' own ROM")
    # A missing or unknown image fails before any build.
    image_guests = [ImageGuest(project.store, spec) for spec in user_images]
    specs = manifest_images(project, series_name, image_dirs)
    known = (*GUEST_NAMES, *KEEP_SAN_NAMES, *HARNESS_NAMES, *specs, "all")
    for name in guest_names:
        if name not in known:
            raise PatchkitError(f"unknown guest {name!r} (known: {', '.join(known)})",
                                hint="the built-in guests, those a configuration runs, and the manifest's [[images]]")
    for spec in specs.values():
        check_image_place(project, spec)
    subject, series_configs = resolve_subject(project, series_name, rom, reference, progress, need_elf=coverage,
                                               version=version)
    chosen = select_configs(series_configs, configs, matrix)
    if reference and (matrix or configs):
        raise PatchkitError("--reference boots the guests natively on the default machine: drop --config/--matrix")
    wanted = {*guest_names, *(name for config in chosen for name in config.guests)}
    extra = {name: ImageGuest(project.store, spec) for name, spec in specs.items() if name in wanted}
    for shown in [*image_guests, *extra.values()]:
        if len(shown.chain) > 1:
            progress(f"{shown.name}: backing chain {shown.describe_chain()} (all of it hashed)")
    plan = plan_cells(project.store, chosen, guest_names, matrix, extra=extra)
    plan.cells.extend(Cell(config, guest) for config in chosen for guest in [*image_guests, *more_guests])
    if rom is not None:  # a ROM given by path carries none of patchkit's images
        for cell in [c for c in plan.cells if c.guest.sanboot.embedded is not None]:
            plan.cells.remove(cell)
            plan.unrunnable[cell.config.name, cell.guest.name] = (
                f"it boots {cell.guest.sanboot.embedded}, embedded in the series' ROM when patchkit builds it: "
                "not with --rom")
    if not plan.cells:
        first = next(iter(plan.unrunnable.items()), None)
        if first is None:
            raise PatchkitError("no guest to boot in these configurations")
        raise PatchkitError(f"{'/'.join(first[0])}: {first[1]}")
    if reference and (planned := sorted({c.guest.name for c in plan.cells if c.guest.sanboot.needs_gpxe})):
        raise PatchkitError(f"--reference boots without gPXE, and {', '.join(planned)} runs gPXE commands",
                            hint="run it without --reference")
    for cell in plan.cells:  # an image made of patchkit's own sources (the probe's, its variants) is built on demand
        if cell.guest.self_contained:
            cell.guest.build(progress)
    images = {id(c): c.guest.image_sha256() for c in plan.cells}  # fails early, naming the build command
    subjects = {id(c): subject for c in plan.cells}
    if rom is None and not reference and any(c.guest.sanboot.nic_rom for c in plan.cells):
        nic_subject = _nic_subject(project, subject, progress, coverage)
        subjects.update({id(c): nic_subject for c in plan.cells if c.guest.sanboot.nic_rom})
    for cell in plan.cells:  # a guest that boots an image embedded in the ROM: the series' ROM carrying it
        if (embedded := cell.guest.embedded_image()) is not None and not reference:
            subjects[id(cell)] = _embedding_subject(project, subject, embedded, progress, coverage, version)
    qemu = "" if cluster else qemu_version()  # the client of a cluster need not have QEMU
    jobs = max(1, jobs or os.cpu_count() or 1)
    for (config, guest), why in plan.unrunnable.items():
        progress(f"NOT RUN {config}/{guest}: {why}")
    debug = {} if not coverage else {s.rom: DebugInfo(elf_path(s.rom), project.pin.build.directory)
                                     for s in subjects.values() if s.rom is not None}
    results: list[TestResult] = []
    errors = dict(plan.unrunnable)  # cells that did not run, and why
    said: set[str] = set()

    with project.store.results() as db, contextlib.ExitStack() as stack:
        cells = longest_first(plan.cells, db.durations(subject.series))
        if not (fresh or coverage or cluster):
            carried = carry_over(db, cells, subjects, images, qemu)
            cells = [c for c in cells if id(c) not in carried]
            for carried_result in carried.values():
                db.record(carried_result)
                results.append(carried_result)
                say_result(verdict_line(carried_result))
        remote = None if cluster is None else stack.enter_context(connect(cluster))
        where = (f"{jobs} at a time" if remote is None
                 else f"on the cluster at {cluster}, {len(remote.workers())} workers")
        for tested in dict.fromkeys(subjects.values()):
            users = [c.name for c in plan.cells if subjects[id(c)] is tested]
            through = "natively (reference)" if reference else f"through {tested.rom}"
            progress(f"booting {', '.join(users)} {through}" + (" ..." if remote is None else f", {where} ...")
                     if len(users) < 4 else f"booting {len(users)} cells {through}, {where} ...")
        started = time.monotonic()
        expected = _expected_seconds(cells, db.durations(subject.series))
        counter = Steps(len(cells), steps)

        def finished(cell: Cell, verdict_word: str) -> None:
            expected.pop(id(cell), None)
            counter.step(f"{verdict_word} {cell.name}", sum(expected.values()) / (1 if remote else jobs))

        def record(cell: Cell, outcome: BootOutcome, qemu_version: str, worker: str = "") -> None:
            tested = subjects[id(cell)]
            for note in outcome.notes:
                if note not in said:
                    said.add(note)
                    progress(f"note: {note}")
            key = ResultKey(tested.series, tested.revision, tested.rom_sha256, cell.guest.name, images[id(cell)],
                            qemu_version, outcome.accel, cell.config.name)
            result = TestResult(key=key, passed=outcome.passed, reason=outcome.reason, run_dir=str(outcome.run_dir),
                                timings=outcome.timings, rom_size=tested.rom_size, version=tested.version,
                                worker=worker)
            db.record(result)
            results.append(result)
            say_result(verdict_line(result))
            finished(cell, "PASS" if result.passed else "FAIL")

        def not_run(cell: Cell, why: str) -> None:  # no verdict on the ROM (e.g. QEMU refused the configuration)
            errors[cell.config.name, cell.guest.name] = why
            say_result(f"NOT RUN {cell.name}: {why}")
            finished(cell, "NOT RUN")

        async def one(cell: Cell, slots: asyncio.Semaphore) -> None:
            async with slots:
                try:
                    outcome = await boot_planned_async(cell.guest, rom=subjects[id(cell)].rom, config=cell.config,
                                                       root_path=root_path, accel=accel, timeout=timeout,
                                                       stall_timeout=stall_timeout, trace=coverage,
                                                       memory_mib=memory_mib)
                except PatchkitError as exc:
                    not_run(cell, str(exc))
                    return
            if (rom_path := subjects[id(cell)].rom) in debug:
                try:
                    await asyncio.to_thread(measure, outcome.run_dir, debug[rom_path], elf_path(rom_path))
                except PatchkitError as exc:
                    progress(f"note: no coverage for {cell.name}: {exc.message}")
            record(cell, outcome, qemu)

        for round_ in range(1 + reruns):  # then the cells that failed every boot so far, again (triage.flaky)
            if round_:
                passed = {(r.key.config, r.key.guest) for r in results if r.passed}
                cells = [c for c in cells if (c.config.name, c.guest.name) not in passed
                         and (c.config.name, c.guest.name) not in errors]
                if not cells:
                    break
                progress(f"booting again ({round_} of {reruns}) what failed: {', '.join(c.name for c in cells)}")
                counter.total += len(cells)
                expected.update(_expected_seconds(cells, db.durations(subject.series)))
            if remote is None:
                run_interruptibly(_gather_limited(jobs, [functools.partial(one, cell) for cell in cells]))
            else:
                boot_on_cluster(remote, [RemoteCell(c, subjects[id(c)].rom, subjects[id(c)].rom_sha256)
                                         for c in cells],
                                BootOptions(root_path, accel, timeout, stall_timeout), runs=project.store.runs,
                                record=record, not_run=not_run, progress=progress)
        flaky = flakes(results)
        for flake in flaky.values():
            say_result(f"{'/'.join(flake.cell)}: {flake.describe()}")
        what_changed(db.for_series(subject.series), results, say_result)
    if len(plan.cells) + len(plan.unrunnable) > 1:
        verdicts = {(r.key.config, r.key.guest): verdict(r, flaky.get((r.key.config, r.key.guest)))
                    for r in sorted(results, key=lambda r: r.created)}
        verdicts.update({cell: "not run" for cell in errors})
        say_result(f"results ({len(results)} boots in {time.monotonic() - started:.0f} s, {where}):")
        for line in summary_table(chosen, verdicts):
            say_result("  " + line)
    if coverage and subject.revision and not subject.revision.startswith("rom-"):
        series = tested_series(project, series_name, version)
        with project.store.results() as db:
            measured = collect(db, series)
        for line in report_lines(series, measured) if measured is not None else []:
            say_result(line)
    # An optional configuration the matrix cannot run here (keepsan-aoe without root) leaves the matrix
    # complete; named with --config, it fails the command like any other.
    optional = {c.name for c in chosen if not c.required} if matrix else set()
    if blocking := [cell for cell in errors if cell[0] not in optional]:
        raise PatchkitError(f"{len(blocking)} cell(s) could not run: {', '.join('/'.join(c) for c in blocking)}",
                            hint="see the NOT RUN lines above")
    return results


def carry_over(db: Results, cells: Sequence[Cell], subjects: Mapping[int, Subject], images: Mapping[int, str],
               qemu: str) -> dict[int, TestResult]:
    """Results that need no boot, by cell id: a series revision whose ROM is byte-identical to one another revision
    of the series passed a cell with (the same guest image, configuration and QEMU) gets that pass, recorded
    under its own revision as "same ROM as vN, tested DATE". Results are keyed by what was booted: a change to
    the commit messages or trailers alone changes no byte of the ROM."""
    carried: dict[int, TestResult] = {}
    earlier: list[TestResult] | None = None
    for cell in cells:
        subject = subjects[id(cell)]
        if not subject.revision or subject.revision in ("reference",) or subject.revision.startswith("rom-"):
            continue
        if earlier is None:
            earlier = [r for r in db.for_series(subject.series) if r.passed and not r.worker]
        for r in earlier:  # newest first
            k = r.key
            if (k.rom_sha256 == subject.rom_sha256 and k.guest == cell.guest.name and k.image_sha256 == images[id(cell)]
                    and k.qemu_version == qemu and k.config == cell.config.name and k.revision != subject.revision
                    and k.revision != "reference" and not k.revision.startswith("rom-")):
                when = time.strftime("%Y-%m-%d %H:%M", time.localtime(r.created))
                same = r.reason if r.reason.startswith("same ROM as v") else (
                    f"same ROM as v{r.version}, tested {when} ({r.reason})")
                carried[id(cell)] = TestResult(
                    key=replace(k, revision=subject.revision), passed=True, reason=same, run_dir=r.run_dir,
                    timings=r.timings, rom_size=r.rom_size, version=subject.version)
                break
    return carried


def _expected_seconds(cells: Sequence[Cell], took: Mapping[tuple[str, str], float]) -> dict[int, float]:
    """How long each cell (by id) is expected to boot: its newest boot's time, else the mean of the others'
    (else 30 s): the time left of a run is what its unfinished cells are expected to take."""
    known = [took[c.config.name, c.guest.name] for c in cells if (c.config.name, c.guest.name) in took]
    guess = sum(known) / len(known) if known else 30.0
    return {id(c): took.get((c.config.name, c.guest.name), guess) for c in cells}


def longest_first(cells: Sequence[Cell], took: Mapping[tuple[str, str], float]) -> list[Cell]:
    """``cells`` by how long each is expected to boot, longest first (so that none of the long ones starts
    last, while the other jobs sit idle): as long as its newest boot took (``took``), a cell never booted
    its guest's timeout. Ties keep their order."""
    return sorted(cells, key=lambda c: took.get((c.config.name, c.guest.name), c.guest.default_timeout), reverse=True)


async def _gather_limited(jobs: int,
                          work: Sequence[Callable[[asyncio.Semaphore], Coroutine[None, None, None]]]) -> None:
    """Run every ``work(slots)``, at most ``jobs`` holding a slot at once; the first error cancels the rest."""
    slots = asyncio.Semaphore(jobs)
    async with asyncio.TaskGroup() as group:
        for start in work:
            group.create_task(start(slots))


def verdict_line(result: TestResult) -> str:
    """One line per boot: PASS/FAIL, guest, configuration, accelerator (and cluster worker), reason, run directory."""
    word = "PASS" if result.passed else "FAIL"
    where = f"{result.key.accel}, worker {result.worker}" if result.worker else result.key.accel
    return f"{word} {result.key.guest} on {result.key.config} ({where}): {result.reason} [run: {result.run_dir}]"
