"""Shared pieces of the send-email tests: a fixture git repo and series, and real SMTP servers.

Imported by the other tests/test_mail_*.py modules (it holds no tests itself).
"""

from __future__ import annotations

import socket
import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import git
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope as SmtpEnvelope, LoginPassword, Session

from patchkit.mailer.journal import journal_path
from patchkit.mailer.send import SendOptions
from patchkit.project import Project
from patchkit.run import run
from patchkit.series.io import save_series
from patchkit.series.model import Series, VersionInfo, parse_patch
from patchkit.store import ResultKey, Store, TestResult as StoredResult  # a Test* name pytest would collect

SENDER = "Jane Doe <jane@example.org>"
AUTHOR_2 = ("Zoë Ünïcode", "zoe@example.net")


@dataclass
class FixtureApplied:
    """What gitrepo.ApplyResult gives render: the tree, the base and the patch commits."""

    tree: Path
    base: str
    commits: list[str]


def _commit(repo: git.Repo, message: str, author: tuple[str, str], date: str) -> str:
    env = {"GIT_AUTHOR_NAME": author[0], "GIT_AUTHOR_EMAIL": author[1], "GIT_AUTHOR_DATE": date,
           "GIT_COMMITTER_NAME": "Jane Doe", "GIT_COMMITTER_EMAIL": "jane@example.org",
           "GIT_COMMITTER_DATE": date}
    run(["git", "add", "-A"], cwd=repo.working_dir)
    run(["git", "commit", "-q", "-m", message], cwd=repo.working_dir, env=env)
    return repo.head.commit.hexsha


def make_repo(root: Path) -> FixtureApplied:
    """A small C project with a base commit and two patch commits on top."""
    root.mkdir(parents=True)
    repo = git.Repo.init(root)
    with repo.config_writer() as cw:
        cw.set_value("user", "name", "Jane Doe")
        cw.set_value("user", "email", "jane@example.org")
    src = root / "src"
    src.mkdir()
    (src / "aoeboot.c").write_text("".join(f"int line{i} = {i};\n" for i in range(40)))
    (src / "Makefile").write_text("all:\n\tcc -c aoeboot.c\n")
    base = _commit(repo, "Initial import", ("Upstream", "up@example.com"), "1264000000 +0000")
    text = (src / "aoeboot.c").read_text().replace("int line7 = 7;", "static int line7 = 7;")
    (src / "aoeboot.c").write_text(text)
    c1 = _commit(repo, '[sanboot] Prevent leaking a stack reference for "keep-san" AoE\n\n'
                 "The drive lived on the stack.\nKeep it on the heap instead.\n"
                 ".A line starting with a dot (SMTP stuffs it).\n\n"
                 "Signed-off-by: Jane Doe <jane@example.org>\n",
                 ("Jane Doe", "jane@example.org"), "1264507200 +0000")
    (src / "virtio-blk.c").write_text("/* virtio block \u2013 naïve */\nint virtio_blk;\n")
    (src / "Makefile").write_text("all:\n\tcc -c aoeboot.c virtio-blk.c\n")
    c2 = _commit(repo, "[virtio] Add virtio block device sanboot support with a rather long subject\n\n"
                 "Boot from a virtio-blk disk \u2013 déjà vu.\n\nSigned-off-by: Zoë Ünïcode <zoe@example.net>\n",
                 AUTHOR_2, "1264593600 +0100")
    return FixtureApplied(root, base, [c1, c2])


def format_patch(applied: FixtureApplied, outdir: Path, version: int, *extra: str) -> list[Path]:
    """Run the real `git format-patch` the way render imitates; return the files (cover first)."""
    run(["git", "format-patch", "-q", "--cover-letter", "--thread=shallow", f"-v{version}",
         f"--base={applied.base}", "-o", outdir, *extra, f"{applied.base}..{applied.commits[-1]}"],
        cwd=applied.tree)
    return sorted(outdir.glob("*.patch"))


def make_series(project: Path, applied: FixtureApplied, *, version: int = 2, name: str = "demo") -> Series:
    """A series in ``project/series/<name>`` whose patches are format-patch's output of the fixture."""
    files = format_patch(applied, project / ".fp", 1)[1:]
    patches = [parse_patch(f.read_text(encoding="utf-8"), "").with_filename(i) for i, f in enumerate(files, 1)]
    series = Series(
        name=name, upstream="fixture", base=applied.base, subject_prefix="PATCH",
        to=["Devel List <devel@example.org>"], cc=["reviewer@example.com"],
        guests=["freedos", "probe"], version=version,
        versions=[VersionInfo(1, "Initial posting.\n"),
                  *[VersionInfo(n, f"- change number {n}\n") for n in range(2, version + 1)]],
        cover_title="virtio-blk sanboot for gPXE",
        cover_body="This series lets gPXE sanboot from virtio-blk disks.\n\n{tested}\n\nPlease review.",
        patches=patches, path=project / "series" / name,
    )
    save_series(series)
    return series


@pytest.fixture
def mail_repo(tmp_path: Path) -> FixtureApplied:
    return make_repo(tmp_path / "tree")


ROM_SHA = "ab" * 32


@dataclass
class MailProject:
    """A project (at ``root``) whose upstream mirror (in ``store``) and series come from the fixture repo."""

    root: Path
    store: Store
    upstream: FixtureApplied
    name: str = "demo"

    @property
    def project(self) -> Project:
        """The project as one patchkit command sees it: a new ``Project`` each time, so it reads the
        series files as they are now (tests rewrite them between sends)."""
        return Project(self.root, self.store)

    def series(self) -> Series:
        return self.project.series(self.name)

    def journal(self, version: int = 2) -> Path:
        """The send journal of version ``version``."""
        return journal_path(self.store, self.name, version)

    def tree(self) -> Path:
        """The work tree the series is applied in."""
        return self.store.tree(self.name)

    def record(self, guests: list[str] | None = None, *, passed: bool = True, rom: str = ROM_SHA,
               config: str = "pc") -> None:
        """Store a result per guest (default: the configuration's) for the current revision, as `patchkit test`."""
        s = self.series()
        with self.store.results() as results:
            for guest in guests if guests is not None else s.config(config).guests:
                key = ResultKey(s.name, s.revision_hash(), rom, guest, "cd" * 32, "7.2.0", "tcg", config)
                results.record(StoredResult(key, passed, "marker seen" if passed else "no marker", "",
                                          {"success": 0.5}, 65536, s.version))


@pytest.fixture
def mail_project(tmp_path: Path, store: Store, monkeypatch: pytest.MonkeyPatch) -> MailProject:
    """A fixture project: pin, mirror, series `demo` v2 with two patches; git config isolated."""
    gitconfig = tmp_path / "gitconfig"
    gitconfig.write_text("[user]\n\tname = Jane Doe\n\temail = jane@example.org\n")
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(gitconfig))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    for var in ("PATCHKIT_SMTP_SERVER", "PATCHKIT_SMTP_PORT", "PATCHKIT_SMTP_ENCRYPTION", "PATCHKIT_SMTP_USER",
                "PATCHKIT_SMTP_PASS", "PATCHKIT_SMTP_CA", "PATCHKIT_FROM"):
        monkeypatch.delenv(var, raising=False)
    upstream = make_repo(tmp_path / "upstream-src")
    run(["git", "clone", "-q", "--bare", upstream.tree, store.mirror("fixture")])
    project = tmp_path / "project"
    (project / "gpxe-tree").mkdir(parents=True)
    (project / "gpxe-tree" / "pin.toml").write_text(
        f'name = "fixture"\nurl = "file:///nonexistent"\ncommit = "{upstream.base}"\n'
        '[build]\ntarget = "bin/fixture.rom"\n')  # a pin names its build target; mailing never builds it
    make_series(project, upstream, version=2)
    return MailProject(project, store, upstream)


def smtp_options(server: Server, **kwargs: Any) -> SendOptions:
    """SendOptions pointing at a test server."""
    smtp = {"server": "127.0.0.1", "port": str(server.port), **kwargs.pop("smtp", {})}
    return SendOptions(smtp=smtp, **kwargs)


# --- SMTP servers -------------------------------------------------------------------------


@dataclass
class Recorder:
    """aiosmtpd handler that keeps every accepted message; can refuse or drop on demand."""

    messages: list[SmtpEnvelope] = field(default_factory=list)
    refuse: set[str] = field(default_factory=set)  # recipients answered with 550
    drop_after: int | None = None  # close the connection on the DATA after this many accepted

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: SmtpEnvelope,
                          address: str, rcpt_options: list[str]) -> str:
        if address in self.refuse:
            return "550 5.1.1 No such user here"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: SmtpEnvelope) -> str:
        if self.drop_after is not None and len(self.messages) >= self.drop_after:
            self.drop_after = None  # only once: the next connection works
            assert server.transport is not None
            server.transport.close()
            return "421 4.3.0 going away"
        self.messages.append(envelope)
        return "250 Message accepted for delivery"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """A running aiosmtpd Controller and its recorder."""

    def __init__(self, recorder: Recorder, **kwargs: Any) -> None:
        self.recorder = recorder
        self.port = free_port()
        self.controller = Controller(recorder, hostname="127.0.0.1", port=self.port, **kwargs)

    def __enter__(self) -> Server:
        self.controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.controller.stop()


USERS = {"jane": "s3cret-pass"}


def authenticator(server: SMTP, session: Session, envelope: SmtpEnvelope,
                  mechanism: str, auth_data: object) -> AuthResult:
    if isinstance(auth_data, LoginPassword):
        user = auth_data.login.decode()
        if USERS.get(user) == auth_data.password.decode():
            return AuthResult(success=True)
    return AuthResult(success=False, handled=False)


@pytest.fixture(scope="session")
def tls_ca(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, ssl.SSLContext]:
    """A throwaway CA (trustme): its PEM file and a server context for 127.0.0.1."""
    import trustme

    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(ctx)
    path = tmp_path_factory.mktemp("ca") / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return path, ctx

