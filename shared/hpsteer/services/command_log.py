"""Commands as event logs in the document store.

``devices/{device_id}/commands/{command_id}`` holds the materialized :class:`Command`;
``…/events/{seq:08d}`` the immutable :class:`CommandEvent` history. Every change is one
transaction that reads the command, checks the transition against the table, creates the next
event document (``create``: a second writer of the same sequence number fails, so history cannot
fork) and writes the new state. Nothing here calls a manufacturer: callers do that outside the
transaction and record what happened afterwards.

Recording is idempotent where redelivery makes it matter: creating a command that exists returns
it unchanged, and an event whose ``dedup_key`` the command already recorded is not recorded twice.
Several events that happen together (``verified`` then ``completed``) are one transaction. A
caller that changes several commands of one device together (a plan's release: supersede some,
create others, all while the plan is the device's current one) builds its own transaction from
the same pieces: :func:`read_command`, :func:`events_after`, :func:`write_events` and
:func:`create_in`.

Every recorded event also becomes a row of the analytics ``command_events`` table
(:func:`export_events`, insert id ``{device_id}/{command_id}/{seq:08d}``: command ids are
unique per device; appending again adds nothing).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from hpsteer.domain.commands import Command, CommandEvent, CommandEventType, apply, fold
from hpsteer.errors import (
    ConcurrencyConflict,
    DocumentAlreadyExists,
    DocumentNotFound,
    TransientError,
)
from hpsteer.ports.analytics import Analytics, Column, TableSchema
from hpsteer.ports.store import DocumentStore, Order, Transaction, every_page

__all__ = [
    "COMMAND_EVENTS",
    "NewEvent",
    "Recorded",
    "append_event_rows",
    "command_document",
    "command_path",
    "create_command",
    "create_in",
    "event_rows",
    "events_after",
    "export_events",
    "history",
    "load_command",
    "read_command",
    "record_event",
    "record_events",
    "write_events",
]

_log = logging.getLogger(__name__)

COMMAND_EVENTS = TableSchema(
    name="command_events",
    columns=(
        Column("device_id", "STRING", required=True),
        Column("command_id", "STRING", required=True),
        Column("seq", "INT64", required=True),
        Column("type", "STRING", required=True),
        Column("state", "STRING", required=True, description="the state the event led to"),
        Column("occurred_at", "TIMESTAMP", required=True),
        Column("attempt", "INT64"),
        Column("manufacturer", "STRING"),
        Column("generic_action", "STRING"),
        Column("plan_id", "STRING"),
        Column("error", "STRING"),
        Column("correlation_id", "STRING"),
    ),
    partition_by="occurred_at",
    cluster_by=("device_id", "command_id"),
    description="Every command lifecycle event, as stored in Firestore (one row per event).",
)


@dataclass(frozen=True, slots=True)
class NewEvent:
    """An event to record: its type and facts (the sequence number is the log's to give)."""

    type: CommandEventType
    at: datetime
    attempt: int = 0
    error: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)


def command_document(command: Command) -> dict[str, Any]:
    """The stored form: ISO strings for reading, but the instants the sweep queries by
    (``watch_at``, ``updated_at``) as timestamps, which the store orders as time."""
    return {**command.to_document(), "watch_at": command.watch_at, "updated_at": command.updated_at}


def command_path(device_id: str, command_id: str) -> str:
    return f"devices/{device_id}/commands/{command_id}"


def _event_path(device_id: str, command_id: str, seq: int) -> str:
    return f"{command_path(device_id, command_id)}/events/{seq:08d}"


def create_in(tx: Transaction, created: CommandEvent) -> tuple[Command, CommandEvent]:
    """Create a command and its first event in ``tx`` (``create()``: the transaction fails
    whole with DocumentAlreadyExists if the command exists); the command, and the event as
    stored."""
    command = fold([created])
    created = created.model_copy(update={"state": command.state})
    tx.create(_event_path(command.device_id, command.command_id, 1), created.to_document())
    tx.create(command_path(command.device_id, command.command_id), command_document(command))
    return command, created


def create_command(store: DocumentStore, created: CommandEvent) -> tuple[Command, bool]:
    """Store a new command from its ``created`` event: (the command, whether this call created
    it). An existing command is returned as it is. The common case reads nothing: both documents
    are created in one transaction, which fails whole if the command exists."""

    def run(tx: Transaction) -> Command:
        return create_in(tx, created)[0]

    try:
        command = store.run_transaction(run)
    except DocumentAlreadyExists:  # this command was created before (a redelivered outbox)
        path = command_path(fold([created]).device_id, created.command_id)
        existing = store.get(path)
        if existing is None:  # deleted in between: let the caller's redelivery decide
            raise ConcurrencyConflict(f"{path} vanished while being created") from None
        return Command.parse(existing.data), False
    return command, True


def record_event(
    store: DocumentStore,
    device_id: str,
    command_id: str,
    event_type: CommandEventType,
    at: datetime,
    *,
    attempt: int = 0,
    error: str | None = None,
    detail: dict[str, Any] | None = None,
    dedup_key: str | None = None,
) -> Command:
    """Append one event and update the state, atomically; IllegalTransition if not allowed.

    ``dedup_key`` names the delivery that caused the event (e.g. the task name and its retry
    count): if the command's last event carries the same key, nothing is recorded again.
    """
    new = NewEvent(event_type, at, attempt, error, detail or {})
    return record_events(store, device_id, command_id, [new], dedup_key=dedup_key)[0]


def events_after(
    command: Command, new_events: Sequence[NewEvent], dedup_key: str | None
) -> tuple[Command, list[CommandEvent]]:
    """The command after ``new_events`` and the events to store (IllegalTransition if the
    sequence is not legal from its state); ``dedup_key`` goes on the last event."""
    written: list[CommandEvent] = []
    for index, new in enumerate(new_events):
        event = CommandEvent(
            command_id=command.command_id,
            seq=command.last_seq + 1,
            type=new.type,
            at=new.at,
            attempt=new.attempt,
            error=new.error,
            detail=new.detail,
            dedup_key=dedup_key if index == len(new_events) - 1 else None,
        )
        command = apply(command, event)
        written.append(event.model_copy(update={"state": command.state}))
    return command, written


def read_command(tx: Transaction, device_id: str, command_id: str) -> Command | None:
    """A command as ``tx`` reads it (reads come before any write in a transaction)."""
    snapshot = tx.get(command_path(device_id, command_id))
    return None if snapshot is None else Command.parse(snapshot.data)


def write_events(
    tx: Transaction, device_id: str, command: Command, written: Sequence[CommandEvent]
) -> None:
    """Write :func:`events_after`'s result in ``tx``: each event with ``create()`` (a second
    writer of the same sequence number fails the transaction) and the new state."""
    for event in written:
        tx.create(_event_path(device_id, command.command_id, event.seq), event.to_document())
    tx.set(command_path(device_id, command.command_id), command_document(command))


def record_events(
    store: DocumentStore,
    device_id: str,
    command_id: str,
    new_events: Sequence[NewEvent],
    *,
    dedup_key: str | None = None,
    expected_seq: int | None = None,
    guard: Callable[[Transaction], None] | None = None,
) -> tuple[Command, list[CommandEvent]]:
    """Append events in order and update the state, all in one transaction; return the command
    and the events written (none when ``dedup_key`` was already recorded).

    The whole sequence must be legal from the state the transaction reads, else nothing is
    written (IllegalTransition). ``dedup_key`` goes on the last event. ``expected_seq``: the
    last sequence number the caller saw; if another writer appended since, nothing is written
    (ConcurrencyConflict), so a caller never writes on a stale view (e.g. its attempt number).
    ``guard(tx)`` runs inside the transaction first and may read other documents and raise to
    write nothing (e.g. "only while this plan is still the device's current plan").
    """
    if not new_events:
        raise ValueError("record_events needs at least one event")

    def run(tx: Transaction) -> tuple[Command, list[CommandEvent]]:
        path = command_path(device_id, command_id)
        if guard is not None:
            guard(tx)
        snapshot = tx.get(path)
        if snapshot is None:
            raise DocumentNotFound(f"no command {command_id} for device {device_id}")
        command = Command.parse(snapshot.data)
        if dedup_key is not None and command.last_dedup_key == dedup_key:
            return command, []
        if expected_seq is not None and command.last_seq != expected_seq:
            raise ConcurrencyConflict(
                f"command {command_id} moved on to seq {command.last_seq} since seq "
                f"{expected_seq} was read"
            )
        command, written = events_after(command, new_events, dedup_key)
        write_events(tx, device_id, command, written)
        return command, written

    return store.run_transaction(run)


Recorded = tuple[Command, list[CommandEvent]]
"""A command as events left it, and the events written."""


def load_command(store: DocumentStore, device_id: str, command_id: str) -> Command | None:
    snapshot = store.get(command_path(device_id, command_id))
    return None if snapshot is None else Command.parse(snapshot.data)


def history(store: DocumentStore, device_id: str, command_id: str) -> list[CommandEvent]:
    """Every event of a command, oldest first (paged, so long histories are read whole)."""
    pages = every_page(
        lambda cursor: store.query(
            f"{command_path(device_id, command_id)}/events",
            order_by=[Order("seq")],
            limit=200,
            cursor=cursor,
        )
    )
    return [CommandEvent.parse(doc.data) for doc in pages]


def event_rows(command: Command, events: Sequence[CommandEvent]) -> list[dict[str, Any]]:
    """The ``command_events`` rows of ``events`` (of ``command``, as it is after them)."""
    return [
        {
            "device_id": command.device_id,
            "command_id": command.command_id,
            "seq": event.seq,
            "type": event.type.value,
            "state": (event.state or command.state).value,
            "occurred_at": event.at,
            "attempt": event.attempt,
            "manufacturer": command.manufacturer,
            "generic_action": command.generic_action.value,
            "plan_id": command.plan_id,
            "error": event.error,
            "correlation_id": command.correlation_id,
        }
        for event in events
    ]


def export_events(analytics: Analytics, command: Command, events: Sequence[CommandEvent]) -> None:
    """Append ``events`` to ``command_events``, insert id ``{device}/{command}/{seq:08d}``."""
    if not events:
        return
    analytics.append(
        COMMAND_EVENTS.name,
        event_rows(command, events),
        [f"{command.device_id}/{command.command_id}/{event.seq:08d}" for event in events],
    )


def append_event_rows(
    analytics: Analytics, command: Command, events: Sequence[CommandEvent]
) -> None:
    """:func:`export_events`, for callers whose command must go on if analytics is down: the
    rows are a copy of what the store holds, so a failure is logged, not raised."""
    if not events:
        return
    try:
        analytics.ensure_table(COMMAND_EVENTS)
        export_events(analytics, command, events)
    except TransientError as err:
        _log.warning("command_events rows of %s not appended: %s", command.command_id, err)
