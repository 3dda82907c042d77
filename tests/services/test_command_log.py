"""Commands are event logs in the store: one transaction per transition, history never forks."""

import threading
from datetime import UTC, datetime, timedelta

import pytest

from hpsteer.backends.local.analytics import SqliteAnalytics
from hpsteer.domain.commands import CommandEvent, CommandEventType, CommandState
from hpsteer.errors import DocumentNotFound, IllegalTransition
from hpsteer.services.command_log import (
    COMMAND_EVENTS,
    NewEvent,
    command_path,
    create_command,
    export_events,
    history,
    load_command,
    record_event,
    record_events,
)

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
    assert store.get(command_path("d1", "c1") + "/events/00000001") is not None


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


def test_events_recorded_together_are_one_transaction_and_legal_as_a_sequence(store):
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
