"""The only module that uses Dask distributed (the optional extra `cluster`): typed calls for the rest.

Client side: connect to a scheduler, list its workers, submit tasks (to any worker or to some),
scatter and publish data, wait, set an event, cancel. Worker side: who this worker is, a
dataset's data, an event's state. Dask is imported on first use, so patchkit without the
extra runs everything else.
"""

from __future__ import annotations

import contextlib
import logging
import re
import socket
from collections.abc import Callable, Collection, Iterator, Sequence
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeVar

from patchkit.errors import ClusterError

if TYPE_CHECKING:
    from distributed import Client, Future

_R = TypeVar("_R")
_A = TypeVar("_A")
Status = Literal["pending", "cancelled", "finished", "lost", "error"] | None

CONNECT_TIMEOUT = 30.0  # for the scheduler to answer, and for a first worker to join it
PROBE_TIMEOUT = 5.0  # for a scheduler's address to accept a connection and greet
LOST_CLOSE_TIMEOUT = 2.0  # closing a client whose scheduler is gone
_ADDRESS = re.compile(r"(?:(?P<scheme>tcp|tls)://)?(?P<host>\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):(?P<port>\d{1,5})")
_START_HINT = ("start one there with `dask scheduler`, and workers with `dask worker ADDRESS` "
               "(README: more than one machine)")
INSTALL_HINT = "install Dask distributed beside patchkit: pip install 'patchkit[cluster]'"


class Job(Generic[_R]):
    """A submitted task (a distributed.Future)."""

    def __init__(self, future: Future[_R]) -> None:
        self.future = future

    @property
    def status(self) -> Status:
        return self.future.status

    def done(self) -> bool:
        return bool(self.future.done())

    def result(self) -> _R:
        return self.future.result()

    def exception(self) -> BaseException | None:
        exc = self.future.exception()
        return exc if isinstance(exc, BaseException) else None


class Cluster:
    """A connection to a scheduler (client side)."""

    def __init__(self, client: Client, address: str) -> None:
        self.client = client
        self.address = address

    def connected(self) -> bool:
        """Whether the scheduler is still there (Dask would try to reconnect for 30 s, then close)."""
        return bool(self.client.status == "running")

    def check_connected(self) -> None:
        """ClusterError, at once, when the connection to the scheduler is gone."""
        if not self.connected():
            raise ClusterError(f"lost the connection to the Dask scheduler at {self.address}",
                               hint="check the scheduler (was it stopped?), then run the command again: the cells "
                                    "recorded so far stay recorded")

    def workers(self) -> set[str]:
        """The addresses of the workers the scheduler has now."""
        return set(self.client.scheduler_info()["workers"])

    def submit(self, fn: Callable[[_A], _R], arg: _A, key: str, on: Collection[str] | None = None) -> Job[_R]:
        """Run ``fn(arg)`` on a worker, once (under task key ``key``); with ``on`` (addresses, not empty) on one
        of those workers and no other."""
        if on is not None and not on:
            raise ValueError("a task restricted to no worker would never run")
        return Job(self.client.submit(fn, arg, key=key, pure=False, workers=None if on is None else sorted(on),
                                      allow_other_workers=False))

    def publish(self, name: str, data: object) -> Job[object]:
        """Scatter ``data`` to a worker and publish it as dataset ``name`` (replacing one of that name)."""
        future = self.client.scatter(data, hash=False)
        self.client.publish_dataset(future, name=name, override=True)
        return Job(future)

    def unpublish(self, name: str) -> None:
        if not self.connected():
            return  # the scheduler, and its datasets, are gone
        with contextlib.suppress(KeyError):
            self.client.unpublish_dataset(name)

    def wait_any(self, jobs: Sequence[Job[Any]], timeout: float) -> None:
        """Until one of ``jobs`` is done, or ``timeout`` seconds."""
        from distributed import wait

        try:
            with self.client.as_current(), contextlib.suppress(TimeoutError):
                wait([j.future for j in jobs], timeout=timeout, return_when="FIRST_COMPLETED")
        except Exception:
            self.check_connected()  # the scheduler went away: say so, not Dask's error
            raise
        self.check_connected()

    def wait_all(self, jobs: Sequence[Job[Any]], timeout: float) -> None:
        """Until every one of ``jobs`` is done, or ``timeout`` seconds."""
        from distributed import wait

        with self.client.as_current(), contextlib.suppress(TimeoutError):
            wait([j.future for j in jobs], timeout=timeout)

    def cancel(self, jobs: Sequence[Job[Any]]) -> None:
        self.client.cancel([j.future for j in jobs])

    def set_event(self, name: str) -> None:
        from distributed import Event

        Event(name, client=self.client).set()


@contextlib.contextmanager
def connect(address: str) -> Iterator[Cluster]:
    """A connection to the scheduler at ``address`` that has at least one worker; closed on leaving."""
    try:
        from distributed import Client
    except ImportError as exc:
        raise ClusterError(f"--cluster needs Dask distributed ({exc})", hint=INSTALL_HINT) from exc
    _quiet_dask()
    probe(address)  # a wrong address fails here, in seconds: Dask itself waits and leaves a 60 s close behind
    try:
        client = Client(address, timeout=CONNECT_TIMEOUT, set_as_default=False)
    except (OSError, TimeoutError, ValueError) as exc:
        raise ClusterError(f"cannot reach a Dask scheduler at {address} ({exc})", hint=_START_HINT) from exc
    try:
        try:
            client.wait_for_workers(1, timeout=CONNECT_TIMEOUT)
        except TimeoutError as exc:
            raise ClusterError(f"no worker joined the scheduler at {address} within {CONNECT_TIMEOUT:g} s",
                               hint=f"start workers with `dask worker {address}` on machines with patchkit "
                                    "and QEMU") from exc
        cluster = Cluster(client, address)
        yield cluster
    finally:
        client.close(timeout=CONNECT_TIMEOUT if client.status == "running" else LOST_CLOSE_TIMEOUT)


def _quiet_dask() -> None:
    """A lost scheduler is our one line, not Dask's reconnect tracebacks (also from its threads, until the process
    ends): Dask sets its loggers' levels one by one, so each is quietened; patchkit -v leaves them be."""
    if logging.getLogger().isEnabledFor(logging.DEBUG):
        return
    for name in list(logging.root.manager.loggerDict):
        if name == "distributed" or name.startswith("distributed."):
            logging.getLogger(name).setLevel(logging.CRITICAL)


def probe(address: str) -> None:
    """ClusterError unless ``address`` is scheme://HOST:PORT (or HOST:PORT) where something accepts connections
    and, over plain TCP, greets as a Dask scheduler does (its handshake: a small frame length first)."""
    m = _ADDRESS.fullmatch(address)
    if m is None or not 0 < int(m["port"]) < 65536:
        raise ClusterError(f"--cluster {address!r} is not a scheduler's address",
                           hint="give it as `dask scheduler` prints it: tcp://HOST:8786 (or tls://HOST:PORT)")
    host, port = m["host"].strip("[]"), int(m["port"])
    where = f"the scheduler at {address}"
    try:
        with socket.create_connection((host, port), timeout=PROBE_TIMEOUT) as sock:
            if (m["scheme"] or "tcp") != "tcp":
                return  # TLS speaks first from the client side
            sock.settimeout(PROBE_TIMEOUT)
            greeting = b""
            while len(greeting) < 8 and (chunk := sock.recv(8 - len(greeting))):
                greeting += chunk
    except TimeoutError:
        raise ClusterError(f"{where} did not answer as a Dask scheduler within {PROBE_TIMEOUT:g} s",
                           hint=_START_HINT) from None
    except OSError as exc:
        raise ClusterError(f"cannot reach {where} ({exc.strerror or exc})", hint=_START_HINT) from None
    if len(greeting) < 8 or int.from_bytes(greeting, "little") > 1 << 20:
        shown = greeting.decode("ascii", "replace").strip() or "nothing"
        raise ClusterError(f"{address} is not a Dask scheduler (it answered {shown!r})", hint=_START_HINT)


def killed_worker(exc: BaseException) -> str | None:
    """For a task whose workers all died: how often and the last one's address; None for other errors."""
    from distributed.scheduler import KilledWorker

    if not isinstance(exc, KilledWorker):
        return None
    return f"{exc.allowed_failures + 1} times, last {exc.last_worker.address}"


# --- on a worker, inside a task -------------------------------------------------------------------


def this_worker() -> tuple[str, str]:
    """(name, address) of the worker running the current task."""
    from distributed import get_worker

    worker = get_worker()
    return str(worker.name), str(worker.address)


def dataset(name: str) -> Job[object] | None:
    """The published dataset ``name`` (a client's scattered data), or None."""
    from distributed import Future, get_client

    future = get_client().get_dataset(name, default=None)
    return Job(future) if isinstance(future, Future) else None


def fetch(job: Job[object], timeout: float) -> object:
    """The data of a dataset's job; TimeoutError after ``timeout`` seconds."""
    return job.future.result(timeout=timeout)


def event_checker(name: str) -> Callable[[], bool]:
    """A function saying whether event ``name`` is set (callable from any thread)."""
    from distributed import Event, get_client

    event = Event(name, client=get_client())
    return lambda: bool(event.is_set())
