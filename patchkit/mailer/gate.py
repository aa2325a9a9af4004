"""The send-email gate: what must hold before a series revision may be mailed, and the Tested section.

A revision may go out when every cell (configuration x guest) of every required
configuration in the manifest passed on this exact revision with one and the same
ROM (the virtio-blk ROM; guests booting through the NIC ROM are not compared with
it) and none is FLAKY (failed and passed on one ROM, patchkit.triage.flaky), when it
was not sent before (unless resending), and when it differs from the last sent version,
and when no patch file carries a stale collected trailer (a Reviewed-by, Acked-by,
Tested-by... given on an earlier form of a patch whose diff changed since: a name on
code that person did not see). ``--force`` with a reason overrides the test, no-change
and trailer checks; the reason is recorded. Collected trailers that apply but are not in
the patch files yet are only a note. A manifest without ``[[configs]]`` has the one
implicit configuration "pc" with its ``guests``.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from patchkit.errors import MailError
from patchkit.guests import guest_class
from patchkit.guests.image import ADHOC_PREFIX
from patchkit.mailer.text import wrap
from patchkit.review.carry import PatchTrailers
from patchkit.series.io import load_version
from patchkit.series.model import Config, Patch, Series
from patchkit.store import TestResult
from patchkit.table import table
from patchkit.triage.flaky import Flake, verdict

Latest = dict[tuple[str, str], TestResult]  # (configuration, guest) -> the newest result
Flakes = Mapping[tuple[str, str], Flake]  # (configuration, guest) -> its flake record

_HUNK_NUMBERS = re.compile(r"^@@ -\d+(?:,\d+)? \+\d+(?:,\d+)? @@")
# The timing `patchkit test` records when the guest's success marker appears (s after start).
_MARKER_TIMING = "success"
UNTESTED = ": not tested on this revision"
LISTED_UNTESTED = 3  # more untested cells than this are one summary line in a refusal


@dataclass(frozen=True)
class GateResult:
    """The outcome of the gate: problems found (empty = clear), the override, if any, and notes (never refused)."""

    problems: list[str]
    forced_reason: str | None
    notes: list[str] = field(default_factory=list)
    refusal: MailError | None = None  # a dry run's: what a real send would be refused with

    @property
    def forced(self) -> bool:
        return bool(self.problems) and self.forced_reason is not None


def required_cells(series: Series) -> list[tuple[str, str]]:
    """(configuration, guest) of every cell send-email requires, in manifest order."""
    return [(c.name, g) for c in series.test_configs() if c.required for g in c.guests]


def result_problems(series: Series, latest: Latest, flaky: Flakes | None = None) -> list[str]:
    """Why the stored results do not clear this revision (``latest``: newest result per cell; ``flaky``: the
    cells that both failed and passed on one ROM, patchkit.triage.flaky)."""
    flaky = flaky or {}
    cells = required_cells(series)
    if not cells:
        return [f"the manifest of {series.name} requires no guest on any configuration"]
    problems = []
    for config, guest in cells:
        result = latest.get((config, guest))
        cell = f"{config}/{guest}" if series.configs else guest  # the implicit configuration goes unnamed
        if result is None:
            problems.append(f"{cell}{UNTESTED}")
        elif (config, guest) in flaky:
            problems.append(f"{cell}: {flaky[config, guest].describe()}")
        elif not result.passed:
            problems.append(f"{cell}: failed ({result.reason})")
    roms = {latest[c].key.rom_sha256 for c in cells
            if c in latest and latest[c].passed and not guest_class(c[1]).sanboot.own_rom}
    if len(roms) > 1:
        problems.append("the guests passed with different ROMs (" + ", ".join(sorted(s[:12] for s in roms)) + ")")
    return problems


def last_sent_version(series: Series) -> int | None:
    """The newest version before the current one that was mailed."""
    sent = [v.number for v in series.versions if v.sent and v.number < series.version]
    return max(sent, default=None)


def patch_fingerprint(patch: Patch) -> str:
    """A hash of what a range-diff compares: subject, message and diff, ignoring line numbers and blob ids."""
    diff = []
    for line in patch.diff.splitlines():
        if line.startswith("index "):
            continue
        diff.append(_HUNK_NUMBERS.sub("@@", line))
    text = "\n".join([patch.subject, patch.message, *diff])
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def unchanged_since(series: Series) -> int | None:
    """The last sent version when the current patches equal it (an empty range-diff), else None."""
    last = last_sent_version(series)
    if last is None:
        return None
    frozen = load_version(series, last)
    if [patch_fingerprint(p) for p in frozen.patches] == [patch_fingerprint(p) for p in series.patches]:
        return last
    return None


def trailer_problems(series: Series, trailers: Sequence[PatchTrailers]) -> list[str]:
    """The stale collected trailers in the patch files: given on a form of the patch that changed since."""
    total = len(series.patches)
    return [f"patch {entry.index}/{total} carries {g.collected.trailer.text()}, given on v{g.version} "
            "before the patch changed (a stale trailer)" for entry in trailers for g in entry.stale]


def trailer_notes(series: Series, trailers: Sequence[PatchTrailers]) -> list[str]:
    """Collected trailers that apply to a patch but are not in its file yet (one note per patch)."""
    info = series.version_info(series.version)
    how = ("a sent version never changes: `patchkit version new`, then `patchkit trailers --update`"
           if info is not None and info.sent else "`patchkit trailers --update` writes them")
    total = len(series.patches)
    return [f"patch {entry.index}/{total} lacks the collected {', '.join(t.text() for t in entry.missing)} ({how})"
            for entry in trailers if entry.missing]


def check(series: Series, latest: Latest, *, already_sent: bool, resend: bool,
          force: bool, reason: str | None, trailers: Sequence[PatchTrailers] = (),
          coverage: Sequence[str] = (), flaky: Flakes | None = None, dry_run: bool = False) -> GateResult:
    """Apply every rule; raise MailError listing what blocks the send (or return the forced result).

    ``trailers``: what ``review.carry.plan`` says of each current patch's collected trailers;
    ``coverage``: what the manifest's coverage gate finds (patchkit.coverage.gate). A ``dry_run``
    is never refused for what the revision lacks: the refusal comes back in the result instead.
    """
    if force and not (reason and reason.strip()):
        raise MailError("--force needs --reason TEXT", hint="say why the series may go out anyway; it is recorded")
    if already_sent and not resend:
        raise MailError(f"{series.name} v{series.version} was already sent",
                        hint="pass --resend to send the same revision again, or start a new version")
    problems = result_problems(series, latest, flaky)
    same_as = unchanged_since(series)
    if same_as is not None:
        problems.append(f"v{series.version} has no changes against the sent v{same_as} (empty range-diff)")
    untested = bool(problems)
    problems += coverage
    stale = trailer_problems(series, trailers)
    if (problems or stale) and not force:
        listing = "\n".join(f"  - {p}" for p in summarised(problems + stale))
        todo = ["run `patchkit test --matrix` for this revision"] if untested else []
        if coverage:
            todo.append("have cells run the lines `patchkit coverage` lists, or give each a reason in "
                        "coverage-notes.txt")
        if stale:
            todo.insert(0, "run `patchkit trailers --update` to take the stale trailers out "
                           "(then `patchkit test`: the revision changes)")
        refusal = MailError(f"{series.name} v{series.version} may not be sent yet:\n{listing}",
                            hint="; ".join(todo) + ", or pass --force --reason TEXT")
        if not dry_run:
            raise refusal
        return GateResult(problems + stale, None, trailer_notes(series, trailers), refusal)
    return GateResult(problems + stale, reason.strip() if force and reason else None,
                      trailer_notes(series, trailers))


def summarised(problems: list[str]) -> list[str]:
    """``problems`` for a refusal: untested cells as one line when there are many (the cover lists them all)."""
    untested = [p for p in problems if p.endswith(UNTESTED)]
    if len(untested) <= LISTED_UNTESTED:
        return problems
    rest = [p for p in problems if not p.endswith(UNTESTED)]
    return [f"{len(untested)} cells untested (`patchkit status` shows which)", *rest]


def boot_seconds(result: TestResult) -> float | None:
    """The time from power-on to the success marker, when the run recorded it."""
    value = result.timings.get(_MARKER_TIMING)
    return float(value) if value is not None else None


def tested_section(series: Series, revision: str, latest: Latest, gate: GateResult,
                   coverage: str | None = None, flaky: Flakes | None = None) -> str:
    """The cover letter's Tested section, from the stored results for this revision.

    Without ``[[configs]]``: a row per guest. With them: a row per configuration (its guests
    grouped by verdict), the ROM and QEMU, then each configuration described (wrapped at 72). ``coverage``
    (the changed-line figure, when measured) is one more line. Runs of `test --image` are left
    out: a user's own images (their private file names) are not what the series was tested on.
    """
    latest = {cell: r for cell, r in latest.items() if not cell[1].startswith(ADHOC_PREFIX)}
    flaky = {cell: f for cell, f in (flaky or {}).items() if not cell[1].startswith(ADHOC_PREFIX)}
    if series.configs:
        lines = _matrix_lines(series, revision, latest, flaky)
    else:
        first = series.test_configs()[0].name
        lines = _guest_lines(series, revision, {g: r for (c, g), r in latest.items() if c == first},
                             {g: f for (c, g), f in flaky.items() if c == first})
    if flaky:
        lines.append("")
        for cell, flake in flaky.items():
            lines += wrap(f"{'/'.join(cell)}: {flake.describe()}", hanging="  ")
    if coverage:
        lines.append("")
        lines += wrap(f"Coverage: {coverage}.")
    if gate.forced:
        lines.append("")
        lines += wrap(f"Sent despite: {'; '.join(gate.problems)}.")
        lines += wrap(f"Reason: {gate.forced_reason}")
    return "\n".join(lines)


def _guest_lines(series: Series, revision: str, latest: dict[str, TestResult], flaky: dict[str, Flake]) -> list[str]:
    rows = [("guest", "result", "accel", "boot to marker", "ROM")]
    extra = sorted(set(latest) - set(series.guests))  # also tested, not required by the manifest
    for guest in [*series.guests, *extra]:
        r = latest.get(guest)
        if r is None:
            rows.append((guest, "not tested", "-", "-", "-"))
            continue
        boot = boot_seconds(r)
        rows.append((guest, verdict(r, flaky.get(guest)), r.key.accel,
                     f"{boot:.1f} s" if boot is not None else "-",
                     f"{r.rom_size} bytes, sha256 {r.key.rom_sha256[:12]}" if r.key.rom_sha256 else "-"))
    lines = [f"Tested with `patchkit test` on this revision ({revision[:12]}):", *table(rows, indent="  ")]
    qemu = sorted({r.key.qemu_version for r in latest.values() if r.key.qemu_version})
    if qemu:
        lines.append(f"  (QEMU {', '.join(qemu)})")
    return lines


def config_rows(configs: Sequence[Config], verdicts: Mapping[tuple[str, str], str]) -> list[str]:
    """The matrix for a 78-column mail reader: a row per configuration, its guests grouped by verdict
    (``pass: freedos, probe; FAIL: debian``), wrapped under the configuration's name."""
    width = min(max(len(c.name) for c in configs), 24)
    lines = []
    for config in configs:
        groups: dict[str, list[str]] = {}
        for (name, guest), word in verdicts.items():
            if name == config.name:
                groups.setdefault(word, []).append(guest)
        text = "; ".join(f"{word}: {', '.join(guests)}" for word, guests in groups.items()) or "no guests"
        optional = "" if config.required else "(optional) "
        lines += wrap(f"{config.name.ljust(width)}  {optional}{text}", indent="  ", hanging=" " * (width + 4))
    return lines


def _matrix_lines(series: Series, revision: str, latest: Latest, flaky: Flakes) -> list[str]:
    configs = series.test_configs()
    known = {c.name for c in configs}
    verdicts: dict[tuple[str, str], str] = {}
    for config in configs:
        for guest in config.guests:
            verdicts[config.name, guest] = "not tested" if config.required else "not run"
    for (config_name, guest), r in latest.items():
        if config_name in known:
            verdicts[config_name, guest] = verdict(r, flaky.get((config_name, guest)))
    lines = [f"Tested with `patchkit test --matrix` on this revision ({revision[:12]}):"]
    lines += config_rows(configs, verdicts)
    shown = [r for (c, _), r in latest.items() if c in known]
    roms = sorted({(r.rom_size, r.key.rom_sha256) for r in shown if r.key.rom_sha256})
    qemu = sorted({f"{r.key.qemu_version}, {r.key.accel}" for r in shown if r.key.qemu_version})
    if roms:
        lines.append("  ROM: " + "; ".join(f"{size} bytes, sha256 {sha[:12]}" for size, sha in roms))
    if qemu:
        lines.append(f"  QEMU {'; '.join(qemu)}")
    first = configs[0].name
    boots = [f"{g} {b:.1f} s" for (c, g), r in latest.items() if c == first and (b := boot_seconds(r)) is not None]
    if boots:
        lines.append(f"  boot to marker on {first}: {', '.join(boots)}")
    lines.append("")
    lines.append("Configurations:")
    width = min(max(len(c.name) for c in configs), 24)
    for c in configs:
        lines += wrap(f"{c.name.ljust(width)}  {c.describe()}", indent="  ", hanging=" " * (width + 4))
    return lines
