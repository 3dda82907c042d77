"""Commands are event logs in the store: one write per transition, history never forks."""

import threading
from datetime import UTC, datetime, timedelta

import pytest

from hpsteer.backends.local.analytics import SqliteAnalytics
from hpsteer.backends.local.store import LocalDocumentStore
from hpsteer.domain.commands import CommandEvent, CommandEventType, CommandState
from hpsteer.errors import ConcurrencyConflict, DocumentNotFound, IllegalTransition
from hpsteer.services.command_log import (
    COMMAND_EVENTS,
    NewEvent,
    command_path,
    create_command,
    create_stored,
    export_events,
    history,
    known_command,
    known_document,
    load_command,
    record_event,
    record_events,
    record_on,
    recorded_key,
)
from tests.support.stores import ReadRecordingStore

T0 = datetime(2024, 1, 15, 6, tzinfo=UTC)
E = CommandEventType


@pytest.fixture
def store(document_store):
    """The local store and Firestore on its emulator: the log must behave the same on both."""
    return document_store


def created(command_id: str = "c1") -> CommandEvent:
    return CommandEvent(
        command_id=command_id,
        seq=1,
        type=E.CREATED,
        at=T0,
        detail={
            "device_id": "d1",
            "manufacturer": "viessmann",
            "generic_action": "set_mode_min",
            "correlation_id": "trace-1",
        },
    )


def test_a_new_command_is_pending_with_its_created_event(store):
    command, created_now = create_command(store, created())
    assert created_now
    assert command.state is CommandState.PENDING
    assert load_command(store, "d1", "c1") == command
    assert [event.type for event in history(store, "d1", "c1")] == [E.CREATED]


def test_the_history_is_kept_in_the_commands_own_document_keyed_by_sequence_number(store):
    create_command(store, created())
    record_event(store, "d1", "c1", E.SENT, T0 + timedelta(seconds=1), attempt=1)
    stored = store.get(command_path("d1", "c1"))
    assert sorted(stored.data["events"]) == ["00000001", "00000002"]
    assert stored.data["events"]["00000002"]["type"] == "sent"
    assert stored.data["events"]["00000002"]["state"] == "sent"
    assert stored.data["state"] == "sent"
    assert store.query(command_path("d1", "c1") + "/events").documents == []


def test_recording_leaves_the_entries_already_in_the_history_as_they_were(store):
    create_command(store, created())
    first = store.get(command_path("d1", "c1")).data["events"]["00000001"]
    record_event(store, "d1", "c1", E.SENT, T0 + timedelta(seconds=1), attempt=1)
    record_event(store, "d1", "c1", E.ACKNOWLEDGED, T0 + timedelta(seconds=2), attempt=1)
    assert store.get(command_path("d1", "c1")).data["events"]["00000001"] == first


def test_creating_the_same_command_again_changes_nothing(store):
    first, _ = create_command(store, created())
    record_event(store, "d1", "c1", E.SENT, T0 + timedelta(seconds=1), attempt=1)
    again, created_again = create_command(store, created())
    assert not created_again
    assert again.state is CommandState.SENT
    assert first.state is CommandState.PENDING
    assert len(history(store, "d1", "c1")) == 2


def test_each_transition_appends_an_event_and_updates_the_state(store):
    create_command(store, created())
    record_event(store, "d1", "c1", E.SENT, T0 + timedelta(seconds=1), attempt=1)
    record_event(
        store, "d1", "c1", E.RETRY_SCHEDULED, T0 + timedelta(seconds=2), attempt=1, error="503"
    )
    record_event(store, "d1", "c1", E.SENT, T0 + timedelta(seconds=12), attempt=2)
    command = record_event(store, "d1", "c1", E.ACKNOWLEDGED, T0 + timedelta(seconds=13), attempt=2)
    assert command.state is CommandState.ACKNOWLEDGED
    assert command.retry_count == 1
    assert command.last_error == "503"
    assert [event.seq for event in history(store, "d1", "c1")] == [1, 2, 3, 4, 5]
    assert load_command(store, "d1", "c1") == command


def test_an_illegal_transition_writes_nothing(store):
    create_command(store, created())
    with pytest.raises(IllegalTransition, match="a pending command cannot take 'verified'"):
        record_event(store, "d1", "c1", E.VERIFIED, T0)
    assert len(history(store, "d1", "c1")) == 1
    assert load_command(store, "d1", "c1").state is CommandState.PENDING


def test_a_redelivered_event_with_the_same_dedup_key_is_recorded_once(store):
    create_command(store, created())
    for _ in range(3):
        command = record_event(store, "d1", "c1", E.SENT, T0, attempt=1, dedup_key="task-a/0")
    assert command.last_seq == 2
    assert len(history(store, "d1", "c1")) == 2


def test_an_unknown_command_is_a_clear_error(store):
    with pytest.raises(DocumentNotFound, match="no command c9 for device d1"):
        record_event(store, "d1", "c9", E.SENT, T0)


def test_two_writers_racing_for_the_same_transition_cannot_fork_history(store):
    create_command(store, created())
    barrier = threading.Barrier(2)
    outcomes: list[str] = []

    def writer() -> None:
        barrier.wait()
        try:
            record_event(store, "d1", "c1", E.SENT, T0, attempt=1)
            outcomes.append("recorded")
        except IllegalTransition:
            outcomes.append("refused")

    threads = [threading.Thread(target=writer) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["recorded", "refused"]
    assert [event.type for event in history(store, "d1", "c1")] == [E.CREATED, E.SENT]


def test_events_recorded_together_are_one_write_and_legal_as_a_sequence(store):
    create_command(store, created())
    record_event(store, "d1", "c1", E.SENT, T0, attempt=1)
    record_event(store, "d1", "c1", E.ACKNOWLEDGED, T0, attempt=1)
    command, written = record_events(
        store,
        "d1",
        "c1",
        [NewEvent(E.VERIFIED, T0, attempt=1), NewEvent(E.COMPLETED, T0, attempt=1)],
        dedup_key="verify-1",
    )
    assert command.state is CommandState.COMPLETED
    assert [(e.seq, e.type, e.state) for e in written] == [
        (4, E.VERIFIED, CommandState.VERIFIED),
        (5, E.COMPLETED, CommandState.COMPLETED),
    ]
    assert [e.dedup_key for e in written] == [None, "verify-1"]
    again, nothing = record_events(
        store,
        "d1",
        "c1",
        [NewEvent(E.VERIFIED, T0), NewEvent(E.COMPLETED, T0)],
        dedup_key="verify-1",
    )
    assert (again.state, nothing) == (CommandState.COMPLETED, [])


def test_an_illegal_event_anywhere_in_a_sequence_writes_none_of_it(store):
    create_command(store, created())
    with pytest.raises(IllegalTransition):
        record_events(store, "d1", "c1", [NewEvent(E.SENT, T0, 1), NewEvent(E.VERIFIED, T0, 1)])
    assert load_command(store, "d1", "c1").state is CommandState.PENDING
    assert [e.seq for e in history(store, "d1", "c1")] == [1]


def test_every_event_becomes_one_analytics_row_and_appending_again_adds_nothing(store):
    analytics = SqliteAnalytics()
    analytics.ensure_table(COMMAND_EVENTS)
    command, _ = create_command(store, created())
    export_events(analytics, command, history(store, "d1", "c1"))
    command, written = record_events(store, "d1", "c1", [NewEvent(E.SENT, T0, 1, detail={})])
    export_events(analytics, command, written)
    export_events(analytics, command, written)
    rows = analytics.query(
        "SELECT seq, type, state, attempt, manufacturer FROM `command_events` ORDER BY seq"
    )
    assert rows == [
        {
            "seq": 1,
            "type": "created",
            "state": "pending",
            "attempt": 0,
            "manufacturer": "viessmann",
        },
        {"seq": 2, "type": "sent", "state": "sent", "attempt": 1, "manufacturer": "viessmann"},
    ]


def test_recording_on_the_document_just_read_reads_nothing_and_chains(store):
    create_command(store, created())
    read = store.get(command_path("d1", "c1"))
    recording = ReadRecordingStore(store)
    sent = record_on(recording, read, [NewEvent(E.SENT, T0, 1)], dedup_key="t/0/sent")
    acked = record_on(recording, sent.document, [NewEvent(E.ACKNOWLEDGED, T0, 1)], expected_seq=2)
    assert recording.read == []
    assert acked.command.state is CommandState.ACKNOWLEDGED
    assert acked.command == load_command(store, "d1", "c1")
    assert acked.document.data == store.get(command_path("d1", "c1")).data
    assert [e.type for e in history(store, "d1", "c1")] == [E.CREATED, E.SENT, E.ACKNOWLEDGED]
    assert recorded_key(acked.document.data, "t/0/sent")


def test_recording_on_a_document_written_since_decides_again_on_the_stored_one(store):
    create_command(store, created())
    stale = store.get(command_path("d1", "c1"))
    record_event(store, "d1", "c1", E.SENT, T0, attempt=1, dedup_key="other/0/sent")
    with pytest.raises(ConcurrencyConflict, match="moved on to seq 2 since seq 1"):
        record_on(store, stale, [NewEvent(E.SENT, T0, 1)], expected_seq=1)
    # Without a view to defend, the event is decided on the command as it now is.
    done = record_on(store, stale, [NewEvent(E.ACKNOWLEDGED, T0, 1)])
    assert [e.type for e in done.written] == [E.ACKNOWLEDGED]
    assert done.document is None  # the transaction's write time is not known: read again
    assert [e.seq for e in history(store, "d1", "c1")] == [1, 2, 3]


def test_a_delivery_that_recorded_already_writes_nothing_on_the_document_it_read(store):
    create_command(store, created())
    read = store.get(command_path("d1", "c1"))
    done = record_on(store, read, [NewEvent(E.SENT, T0, 1)], dedup_key="t/0/sent")
    again = record_on(store, done.document, [NewEvent(E.SENT, T0, 1)], dedup_key="t/0/sent")
    assert again.written == []
    assert again.document == done.document
    assert len(history(store, "d1", "c1")) == 2


def test_a_command_is_created_by_one_write_that_reads_nothing_and_tells_its_version(store):
    recording = ReadRecordingStore(store)
    made = create_stored(recording, created())
    assert made.is_new
    assert recording.read == []
    assert made.document.update_time == store.get(command_path("d1", "c1")).update_time
    again = create_stored(recording, created())  # a redelivered release
    assert not again.is_new
    assert again.command == made.command
    assert again.document.update_time == made.document.update_time


def test_a_command_a_task_carries_is_recorded_on_without_a_read_while_no_one_wrote_it(store):
    made = create_stored(store, created())
    carried = known_command(made.command, made.document)  # what the release's task carries
    document = known_document(carried)
    assert document is not None
    assert document.data == {k: v for k, v in made.document.data.items() if k != "events"}
    recording = ReadRecordingStore(store)
    sent = record_on(recording, document, [NewEvent(E.SENT, T0, 1)], expected_seq=1)
    assert recording.read == []
    assert sent.command == load_command(store, "d1", "c1")
    # Once written, the carried version is stale: a second delivery cannot record on it.
    with pytest.raises(ConcurrencyConflict):
        record_on(store, document, [NewEvent(E.SENT, T0, 1)], expected_seq=1)
    assert [e.type for e in history(store, "d1", "c1")] == [E.CREATED, E.SENT]


def test_no_version_is_carried_without_a_document():
    command, _ = create_command(LocalDocumentStore(), created())
    assert known_command(command, None) is None
