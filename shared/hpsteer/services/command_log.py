"""Commands as event logs in the document store.

``devices/{device_id}/commands/{command_id}`` holds the materialized :class:`Command` and, in
the same document, its immutable :class:`CommandEvent` history: the map ``events`` (field
:data:`~hpsteer.domain.commands.EVENTS_FIELD`), one entry per event keyed by its sequence number
(``{seq:08d}``, so the Firestore console lists them in order). Every change reads the command,
checks the transition against the table, adds the next entries (an update of the field paths
``events.{seq:08d}``: entries already there are never written again) and writes the new state,
in one write of one document that holds only if the document is still as read: in a
transaction, or as one update conditional on the ``update_time`` the caller read
(:func:`record_on`). A second writer that read the same state fails (its transaction retries and
decides again on what the first wrote, or its precondition fails), so history cannot fork.
Nothing here calls a manufacturer: callers do that outside the transaction and record what
happened afterwards.

Why one document and not an ``events/{seq}`` sub-collection: every event would be a second
document write in its transaction, doubling a command's writes (about ten instead of five over
a lifecycle) for nothing the store needs. A command's history is short (a created event, a
few attempts, a verification: about 2 KiB, far below Firestore's 1 MiB per document); it is
read whenever the command is (the console shows state and history together); and the fleet-wide
history, which a sub-collection's collection-group query would have served, is the analytics
``command_events`` table below.

Recording is idempotent where redelivery makes it matter: creating a command that exists returns
it unchanged, and an event whose ``dedup_key`` the command already recorded is not recorded twice.
Several events that happen together (``verified`` then ``completed``) are one write. A
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
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from hpsteer.domain.actions import Mode
from hpsteer.domain.commands import (
    EVENTS_FIELD,
    Command,
    CommandEvent,
    CommandEventType,
    apply,
    fold,
)
from hpsteer.domain.messages import KnownCommand
from hpsteer.errors import (
    ConcurrencyConflict,
    DocumentAlreadyExists,
    DocumentNotFound,
    IllegalTransition,
    MalformedMessage,
    PermanentError,
    PreconditionFailed,
    TransientError,
)
from hpsteer.ports.analytics import Analytics, Column, TableSchema
from hpsteer.ports.store import Document, DocumentStore, Order, Transaction

__all__ = [
    "COMMAND_EVENTS",
    "Created",
    "NewEvent",
    "Recorded",
    "RecordedOn",
    "append_event_rows",
    "command_document",
    "command_path",
    "create_command",
    "create_in",
    "create_stored",
    "event_changes",
    "event_rows",
    "events_after",
    "events_of",
    "export_events",
    "history",
    "known_command",
    "known_document",
    "load_command",
    "read_command",
    "record_event",
    "record_events",
    "record_on",
    "recorded_key",
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


def _event_key(seq: int) -> str:
    return f"{seq:08d}"


def event_changes(command: Command, written: Sequence[CommandEvent]) -> dict[str, Any]:
    """The update that records ``written`` on a stored command: the new state, and one field
    path ``events.{seq:08d}`` per event (the entries before them are left as they are)."""
    return {
        **command_document(command),
        **{f"{EVENTS_FIELD}.{_event_key(e.seq)}": e.to_document() for e in written},
    }


def create_in(tx: Transaction, created: CommandEvent) -> tuple[Command, CommandEvent]:
    """Create a command with its first event in ``tx`` (``create()``: the transaction fails
    whole with DocumentAlreadyExists if the command exists); the command, and the event as
    stored."""
    command, created, data = _new_command(created)
    tx.create(command_path(command.device_id, command.command_id), data)
    return command, created


def _new_command(created: CommandEvent) -> tuple[Command, CommandEvent, dict[str, Any]]:
    """A command made by its ``created`` event: the command, the event as stored, and the
    document to create."""
    command = fold([created])
    created = created.model_copy(update={"state": command.state})
    data = {**command_document(command), EVENTS_FIELD: {_event_key(1): created.to_document()}}
    return command, created, data


@dataclass(frozen=True, slots=True)
class Created:
    """What :func:`create_stored` found: the command, whether this call created it, and its
    document as created (or as found), whose ``update_time`` a task may carry
    (:class:`~hpsteer.domain.messages.KnownCommand`)."""

    command: Command
    is_new: bool
    document: Document


def create_stored(store: DocumentStore, created: CommandEvent) -> Created:
    """Store a new command from its ``created`` event. An existing command is returned as it
    is. The common case reads nothing: one ``create()``, which fails if the command exists."""
    command, _, data = _new_command(created)
    path = command_path(command.device_id, command.command_id)
    try:
        document = store.create(path, data)
    except DocumentAlreadyExists:  # this command was created before (a redelivered outbox)
        existing = store.get(path)
        if existing is None:  # deleted in between: let the caller's redelivery decide
            raise ConcurrencyConflict(f"{path} vanished while being created") from None
        return Created(Command.parse(existing.data), False, existing)
    return Created(command, True, document)


def create_command(store: DocumentStore, created: CommandEvent) -> tuple[Command, bool]:
    """:func:`create_stored`: (the command, whether this call created it)."""
    made = create_stored(store, created)
    return made.command, made.is_new


def known_command(command: Command, document: Document | None) -> KnownCommand | None:
    """``command`` as ``document`` holds it, for a task to carry (None: no document known)."""
    if document is None:
        return None
    return KnownCommand(command=command.to_document(), update_time=document.update_time)


def known_document(known: KnownCommand) -> Document | None:
    """The command document a task's :class:`~hpsteer.domain.messages.KnownCommand` stands
    for (its history left out: it is not part of the state), to record on with :func:`record_on`;
    None when this version cannot read the carried command (then read the command)."""
    try:
        command = Command.parse(known.command)
    except MalformedMessage:
        return None
    path = command_path(command.device_id, command.command_id)
    return Document(path, command_document(command), known.update_time, known.update_time)


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
    """Write :func:`events_after`'s result in ``tx`` (which read the command): the new state
    and each event's entry, one update of the command's document."""
    tx.update(command_path(device_id, command.command_id), event_changes(command, written))


def _decided(
    command: Command,
    new_events: Sequence[NewEvent],
    dedup_key: str | None,
    expected_seq: int | None,
) -> tuple[Command, list[CommandEvent]]:
    """The command after ``new_events`` and the events to write (none: ``dedup_key`` recorded
    them already); ConcurrencyConflict if it moved on since ``expected_seq``."""
    if dedup_key is not None and command.last_dedup_key == dedup_key:
        return command, []
    if expected_seq is not None and command.last_seq != expected_seq:
        raise ConcurrencyConflict(
            f"command {command.command_id} moved on to seq {command.last_seq} since seq "
            f"{expected_seq} was read"
        )
    return events_after(command, new_events, dedup_key)


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
    path = command_path(device_id, command_id)

    def run(tx: Transaction) -> tuple[Command, list[CommandEvent]]:
        if guard is not None:
            guard(tx)
        snapshot = tx.get(path)
        if snapshot is None:
            raise DocumentNotFound(f"no command {command_id} for device {device_id}")
        command, written = _decided(
            Command.parse(snapshot.data), new_events, dedup_key, expected_seq
        )
        if written:
            write_events(tx, device_id, command, written)
        return command, written

    return store.run_transaction(run)


@dataclass(frozen=True, slots=True)
class RecordedOn:
    """What :func:`record_on` did: the command after it, the events it wrote (none: the
    delivery had recorded them already), and the command's document as it now stands, to
    record on next (None when that is not known without a read: read it again)."""

    command: Command
    written: list[CommandEvent]
    document: Document | None


def record_on(
    store: DocumentStore,
    read: Document,
    new_events: Sequence[NewEvent],
    *,
    dedup_key: str | None = None,
    expected_seq: int | None = None,
) -> RecordedOn:
    """:func:`record_events` on the command document the caller has just read (or written):
    the decision is made on ``read`` and written by one update on the condition that the
    document is still as read, so recording reads nothing. Only when another writer wrote it
    since does a transaction read it again and decide anew (``expected_seq`` then makes that a
    ConcurrencyConflict, as in :func:`record_events`); so does an event not legal from the
    state read (it may be from a state written since)."""
    if not new_events:
        raise ValueError("record_on needs at least one event")
    command = Command.parse(read.data)
    try:
        after, written = _decided(command, new_events, dedup_key, expected_seq)
    except IllegalTransition:
        pass  # perhaps legal from a state written since: the transaction decides
    else:
        if not written:
            return RecordedOn(after, written, read)
        changes = event_changes(after, written)
        try:
            written_at = store.update(read.path, changes, if_update_time=read.update_time)
        except PreconditionFailed:
            pass  # written since: decide again on the document as it is now
        else:
            document = Document(
                read.path, _updated(read.data, changes), read.create_time, written_at
            )
            return RecordedOn(after, written, document)
    command, written = record_events(
        store,
        command.device_id,
        command.command_id,
        new_events,
        dedup_key=dedup_key,
        expected_seq=expected_seq,
    )
    return RecordedOn(command, written, None)


def _updated(data: Mapping[str, Any], changes: Mapping[str, Any]) -> dict[str, Any]:
    """``data`` after :func:`event_changes`' update (top-level fields and ``events.{key}``)."""
    after = dict(data)
    events = dict(after.get(EVENTS_FIELD) or {})
    for name, value in changes.items():
        if name.startswith(f"{EVENTS_FIELD}."):
            events[name.split(".", 1)[1]] = value
        else:
            after[name] = value
    after[EVENTS_FIELD] = events
    return after


Recorded = tuple[Command, list[CommandEvent]]
"""A command as events left it, and the events written."""


def last_accepted_mode(store: DocumentStore, device_id: str) -> Mode | None:
    """The mode of the device's command the manufacturer accepted last (``acknowledged_at``, kept
    by every later state): where we last put the device. One query of the device's commands on a
    single-field index (commands never accepted hold ``null`` there and sort last); None: no
    command of a mode was ever accepted."""
    page = store.query(
        f"devices/{device_id}/commands", order_by=[Order("acknowledged_at", "desc")], limit=1
    )
    for document in page.documents:
        if document.data.get("acknowledged_at") is None:
            return None
        try:
            return Command.parse(document.data).generic_action.mode
        except PermanentError:
            return None  # a command this version cannot read says nothing
    return None


def load_command(store: DocumentStore, device_id: str, command_id: str) -> Command | None:
    snapshot = store.get(command_path(device_id, command_id))
    return None if snapshot is None else Command.parse(snapshot.data)


def _entries(data: Mapping[str, Any]) -> list[Any]:
    """The stored entries of a command document's history, as stored (in no particular order)."""
    entries = data.get(EVENTS_FIELD)
    return list(entries.values()) if isinstance(entries, Mapping) else []


def events_of(data: Mapping[str, Any]) -> list[CommandEvent]:
    """The history held in a stored command's document, oldest first."""
    return sorted((CommandEvent.parse(e) for e in _entries(data)), key=lambda e: e.seq)


def recorded_key(data: Mapping[str, Any], dedup_key: str) -> bool:
    """Whether a stored command's history has an event recorded by ``dedup_key``."""
    return any(isinstance(e, Mapping) and e.get("dedup_key") == dedup_key for e in _entries(data))


def history(store: DocumentStore, device_id: str, command_id: str) -> list[CommandEvent]:
    """Every event of a command, oldest first (none if there is no such command)."""
    snapshot = store.get(command_path(device_id, command_id))
    return [] if snapshot is None else events_of(snapshot.data)


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
