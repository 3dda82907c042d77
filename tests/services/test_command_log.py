"""Commands are event logs in the store: one transaction per transition, history never forks."""

import threading
from datetime import UTC, datetime, timedelta

import pytest

from hpsteer.backends.local.store import LocalDocumentStore
from hpsteer.domain.commands import CommandEvent, CommandEventType, CommandState
from hpsteer.errors import DocumentNotFound, IllegalTransition
from hpsteer.ports.clock import SimulatedClock
from hpsteer.services.command_log import (
    command_path,
    create_command,
    history,
    load_command,
    record_event,
)

T0 = datetime(2024, 1, 15, 6, tzinfo=UTC)
E = CommandEventType


@pytest.fixture
def store():
    return LocalDocumentStore(clock=SimulatedClock(T0))


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
    command = create_command(store, created())
    assert command.state is CommandState.PENDING
    assert load_command(store, "d1", "c1") == command
    assert [event.type for event in history(store, "d1", "c1")] == [E.CREATED]
    assert store.get(command_path("d1", "c1") + "/events/00000001") is not None


def test_creating_the_same_command_again_changes_nothing(store):
    first = create_command(store, created())
    record_event(store, "d1", "c1", E.SENT, T0 + timedelta(seconds=1), attempt=1)
    again = create_command(store, created())
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
