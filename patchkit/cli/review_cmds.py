"""`patchkit review` (import replies, list trailers and comments) and `patchkit trailers`."""

from __future__ import annotations

from pathlib import Path

import click

from patchkit.cli.base import PatchkitGroup, cli, echo, rev_option, series_argument
from patchkit.project import Project
from patchkit.review.carry import plan, update
from patchkit.review.summary import review_lines
from patchkit.review.thread import import_replies


class ReviewGroup(PatchkitGroup):
    """`review [SERIES] [--rev vN]` lists, `review import PATH...` imports: SERIES is positional as elsewhere."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if not any(a in self.commands for a in args):
            args = list(args)
            for i, arg in enumerate(args):
                if not arg.startswith("-") and (i == 0 or args[i - 1] != "--rev"):
                    args[i:i + 1] = ["--series", arg]  # the group's own (hidden) option
                    break
        return super().parse_args(ctx, args)

    def collect_usage_pieces(self, ctx: click.Context) -> list[str]:
        options, *rest = super().collect_usage_pieces(ctx)
        return [options, "[SERIES]", *rest]


@cli.group("review", cls=ReviewGroup, invoke_without_command=True)
@click.option("--series", "series", hidden=True)
@rev_option("whose replies to list (default: all sent versions)")
@click.pass_context
def review_group(ctx: click.Context, series: str | None, rev: int | None) -> None:
    """List per patch of SERIES the collected trailers and the review comments with the code they answer."""
    if ctx.invoked_subcommand is not None:
        return
    project: Project = ctx.obj
    for line in review_lines(project.store, project.series(series), rev):
        echo(line)


@review_group.command("import")
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.pass_obj
def review_import_cmd(project: Project, paths: tuple[Path, ...]) -> int:
    """Import replies from mbox files, maildirs or saved mails (e.g. `b4 mbox` output), for every series (matched
    by the Message-IDs of its sent mails)."""
    names = project.series_names()
    report = import_replies(project.store, list(paths), names)
    new = sum(len(v) for v in report.stored.values())
    echo(f"read {report.read} message(s): {new} new repl{'y' if new == 1 else 'ies'} stored"
               f", {report.known} already stored, {report.own} of the series' own mails"
               f", {len(report.unmatched)} unmatched, {len(report.malformed)} malformed")
    for name, ids in report.stored.items():
        echo(f"  {name}: +{len(ids)}")
    for p in report.unmatched:
        echo(f"unmatched: {p.where}: {p.problem}")
    for p in report.malformed:
        echo(f"malformed: {p.where}: {p.problem}")
    for p in report.warnings:
        echo(f"warning: {p.where}: {p.problem}")
    return 1 if report.malformed else 0


@cli.command("trailers")
@series_argument()
@click.option("--update", "do_update", is_flag=True,
              help="Write the collected trailers into the current version's patch files.")
@click.pass_obj
def trailers_cmd(project: Project, series: str | None, do_update: bool) -> None:
    """Show (or with --update write) the collected trailers that apply to each current patch."""
    s = project.series(series)
    if do_update:
        with project.editing(series) as s:
            changes = update(project, s)
        if not changes:
            echo(f"{s.name} v{s.version}: the patch files already carry every collected trailer")
        for entry, added, removed in changes:
            echo(f"{entry.index}/{len(s.patches)} {entry.patch.subject}")
            echo("".join(f"  + {t.text()}\n" for t in added), nl=False)
            echo("".join(f"  - {g.collected.trailer.text()} (given on v{g.version}; the patch changed)\n"
                               for g in removed), nl=False)
        return
    for entry in plan(project.store, s):
        echo(f"{entry.index}/{len(s.patches)} {entry.patch.subject}")
        missing = {t.key for t in entry.missing}
        for g in entry.valid:
            mark = "+" if g.collected.trailer.key in missing else "="
            echo(f"  {mark} {g.collected.trailer.text()} (v{g.version})")
        stale = {g.collected.trailer.key for g in entry.stale}
        valid = {g.collected.trailer.key for g in entry.valid}
        for g in entry.changed:
            if g.collected.trailer.key in valid:
                continue
            note = "stale: in the file, will be removed" if g.collected.trailer.key in stale else "not carried"
            echo(f"  - {g.collected.trailer.text()} (v{g.version}; the patch changed since: {note})")
    echo("(+ to add with --update, = already in the patch file)")
