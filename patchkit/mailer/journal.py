"""The send-email journal: what the SMTP server accepted, one JSON object per line.

One file per series version, ``<cache>/mail/<series>/v<N>.journal``. A send starts
with a ``start`` record that fixes every Message-ID of the series and records its To
and Cc (where ``report --mail`` replies), then gets, per
message, a ``sending`` record before it goes to the server and an ``accepted``
record once the server took it, and ends with ``done`` once the revision is frozen.
A ``failed`` record notes why a message was not delivered. A message ``sending``
without an answer recorded after it is in doubt (the server closed the connection
or never answered after taking the whole message, the journal could not be written
after the server's reply, or patchkit was killed in between; a ``no-answer`` record
says which when it can): only the user can say whether it arrived, so it is never
resent silently. ``patchkit report --mail``
keeps the same records for its one reply per send in ``report-v<N>.journal`` beside
it (the review import reads only ``v<N>.journal``). Every record is
one ``write`` of one line on an ``O_APPEND`` descriptor followed by ``fsync``; a torn
last line (power lost mid-write) is ignored on read and closed before the next record.
"""

from __future__ import annotations

from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path

from patchkit.errors import MailError
from patchkit.journal import JournalError as JournalError, JournalFile
from patchkit.mailer.smtp import DeliveryInDoubt
from patchkit.mailer.transport import Transport
from patchkit.store import Store


def journal_path(store: Store, series: str, version: int) -> Path:
    """Where the journal of ``series`` version ``version`` lives."""
    return store.mail(series) / f"v{version}.journal"


def report_journal_path(store: Store, series: str, version: int) -> Path:
    """Where the journal of the test reports mailed about ``series`` version ``version`` lives."""
    return store.mail(series) / f"report-v{version}.journal"


@dataclass
class SendState:
    """One send attempt as read back from the journal (the records after its ``start``)."""

    revision: str
    message_ids: list[str]
    subjects: list[str]
    forced_reason: str | None
    problems: list[str]  # what the gate found when --force overrode it
    started: float
    accepted: dict[str, list[str]] = field(default_factory=dict)  # Message-ID -> recipients
    in_doubt: dict[str, list[str]] = field(default_factory=dict)  # sent to these recipients, no answer recorded
    failures: dict[str, str] = field(default_factory=dict)  # Message-ID -> why it was not delivered
    done: bool = False
    to: list[str] = field(default_factory=list)  # the To and Cc headers of the send (empty in older journals)
    cc: list[str] = field(default_factory=list)

    @property
    def pending(self) -> list[str]:
        """Message-IDs not yet accepted, in sending order."""
        return [m for m in self.message_ids if m not in self.accepted]


class Journal(JournalFile):
    """Append-only JSON-lines log of one series version's sends."""

    @classmethod
    def for_version(cls, store: Store, series: str, version: int) -> Journal:
        return cls(journal_path(store, series, version))

    @classmethod
    def for_report(cls, store: Store, series: str, version: int) -> Journal:
        return cls(report_journal_path(store, series, version))

    def start(self, revision: str, message_ids: list[str], subjects: list[str], forced_reason: str | None,
              problems: list[str] | None = None, to: list[str] | None = None, cc: list[str] | None = None) -> None:
        """A send begins: its Message-IDs and subjects (cover first) and the To and Cc its messages carry."""
        self.append({"event": "start", "revision": revision, "message_ids": message_ids, "subjects": subjects,
                     "forced_reason": forced_reason, "problems": problems or [], "to": to or [], "cc": cc or []})

    def sending(self, message_id: str, recipients: list[str]) -> None:
        self.append({"event": "sending", "message_id": message_id, "recipients": recipients})

    def accepted(self, message_id: str, recipients: list[str], note: str | None = None) -> None:
        record = {"event": "accepted", "message_id": message_id, "recipients": recipients}
        self.append(record if note is None else {**record, "note": note})

    def failed(self, message_id: str | None, error: str) -> None:
        self.append({"event": "failed", "message_id": message_id, "error": error})

    def attempt(self, conn: Transport, envelope_from: str, recipients: list[str], message_id: str,
                data: bytes) -> None:
        """Send one message on ``conn``, journaled as ``sending`` first; the caller journals ``accepted``.

        The one place that decides what a failure means. A refusal, or an error before the whole
        message went out, is journaled as ``failed`` and raised again. Once the whole message went
        out, an error without a reply (DeliveryInDoubt: the connection closed, or no answer came)
        leaves it in doubt (a ``no-answer`` record, never ``failed``): it may have been delivered, so
        only the user may have it sent again. So does any error that could not be journaled.
        """
        self.sending(message_id, recipients)
        try:
            conn.send(envelope_from, recipients, data)
        except DeliveryInDoubt as exc:
            with suppress(JournalError):
                self.append({"event": "no-answer", "message_id": message_id, "error": exc.message})
            raise
        except MailError as exc:
            with suppress(JournalError):
                self.failed(message_id, exc.message)
            raise

    def done(self, tag: str) -> None:
        self.append({"event": "done", "tag": tag})

    def last_send(self) -> SendState | None:
        """The most recent send attempt, or None if nothing was ever started."""
        sends = self.sends()
        return sends[-1] if sends else None

    def sends(self) -> list[SendState]:
        """Every send attempt, oldest first."""
        out: list[SendState] = []
        for rec in self.records():
            event = rec.get("event")
            if event == "start":
                out.append(SendState(rec["revision"], rec["message_ids"], rec["subjects"],
                                     rec.get("forced_reason"), rec.get("problems", []), rec["time"],
                                     to=list(rec.get("to", [])), cc=list(rec.get("cc", []))))
                continue
            if not out:
                continue
            state = out[-1]
            if event == "sending":
                state.in_doubt[rec["message_id"]] = rec["recipients"]
            elif event == "accepted":
                state.accepted[rec["message_id"]] = rec["recipients"]
                state.in_doubt.pop(rec["message_id"], None)
                state.failures.pop(rec["message_id"], None)
            elif event == "failed":
                state.in_doubt.pop(str(rec.get("message_id")), None)
                state.failures[str(rec.get("message_id"))] = str(rec.get("error", ""))
            elif event == "done":
                state.done = True
        return out

    def sent_revisions(self) -> set[str]:
        """Revisions of which a send completed."""
        done, current = set(), None
        for rec in self.records():
            if rec.get("event") == "start":
                current = rec["revision"]
            elif rec.get("event") == "done" and current:
                done.add(current)
        return done
