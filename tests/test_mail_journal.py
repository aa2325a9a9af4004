"""The send journal: whole-line records, the latest send's state, torn last lines."""

from __future__ import annotations

from pathlib import Path

from patchkit.mailer.journal import Journal, journal_path, report_journal_path
from patchkit.store import Store


def test_journal_lives_in_the_cache_per_version(store: Store, isolated_cache: Path) -> None:
    assert journal_path(store, "demo", 3) == isolated_cache / "mail" / "demo" / "v3.journal"
    assert report_journal_path(store, "demo", 3) == isolated_cache / "mail" / "demo" / "report-v3.journal"


def test_last_send_tracks_accepted_and_pending(store: Store) -> None:
    j = Journal.for_version(store, "demo", 1)
    assert j.last_send() is None and j.sent_revisions() == set()
    j.start("rev-a", ["<c@x>", "<1@x>", "<2@x>"], ["cover", "one", "two"], None)
    j.accepted("<c@x>", ["list@example.org"])
    j.failed("<1@x>", "server went away")
    state = j.last_send()
    assert state is not None and not state.done
    assert state.pending == ["<1@x>", "<2@x>"] and state.accepted == {"<c@x>": ["list@example.org"]}
    j.accepted("<1@x>", ["list@example.org"])
    j.accepted("<2@x>", ["list@example.org"])
    j.done("demo-v1")
    last = j.last_send()
    assert last is not None and last.done and j.sent_revisions() == {"rev-a"}
    j.start("rev-a", ["<c2@x>"], ["cover"], "forced: reason")
    state = j.last_send()
    assert state is not None and state.pending == ["<c2@x>"] and state.forced_reason == "forced: reason"
    assert j.sent_revisions() == {"rev-a"}


def test_torn_last_line_is_ignored(store: Store) -> None:
    j = Journal.for_version(store, "demo", 2)
    j.start("rev", ["<c@x>", "<1@x>"], ["c", "1"], None)
    j.accepted("<c@x>", ["a@example.org"])
    with open(j.path, "a") as f:
        f.write('{"event": "accepted", "message_id": "<1@')  # power lost mid-write
    state = j.last_send()
    assert state is not None and state.pending == ["<1@x>"]
    j.accepted("<1@x>", ["a@example.org"])  # the next record is still read whole
    state = j.last_send()
    assert state is not None and state.pending == []
    assert (j.path.stat().st_mode & 0o777) == 0o600


def test_sends_lists_every_attempt_with_its_outcome(store: Store) -> None:
    j = Journal.for_report(store, "demo", 2)
    assert j.sends() == []
    j.start("rev", ["<r1@x>"], ["Re: cover"], None)
    j.sending("<r1@x>", ["a@example.org"])
    j.failed("<r1@x>", "554 rejected")
    j.start("rev", ["<r2@x>"], ["Re: cover"], None)
    j.sending("<r2@x>", ["a@example.org"])  # no answer recorded: in doubt
    j.start("rev", ["<r3@x>"], ["Re: cover"], None)
    j.sending("<r3@x>", ["a@example.org"])
    j.accepted("<r3@x>", ["a@example.org"])
    first, second, third = j.sends()
    assert first.failures == {"<r1@x>": "554 rejected"} and not first.accepted and not first.in_doubt
    assert second.in_doubt == {"<r2@x>": ["a@example.org"]} and not second.failures
    assert third.accepted == {"<r3@x>": ["a@example.org"]} and not third.in_doubt
    assert j.last_send() == third
