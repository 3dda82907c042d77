"""Commands as event logs in the document store.

``devices/{device_id}/commands/{command_id}`` holds the materialized :class:`Command`;
``…/events/{seq:08d}`` the immutable :class:`CommandEvent` history. Every change is one
transaction that reads the command, checks the transition against the table, creates the next
event document (``create``: a second writer of the same sequence number fails, so history cannot
fork) and writes the new state. Nothing here calls a manufacturer: callers do that outside the
transaction and record what happened afterwards.

Recording is idempotent where redelivery makes it matter: creating a command that exists returns
it unchanged, and an event whose ``dedup_key`` the command already recorded is not recorded twice.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from hpsteer.domain.commands import Command, CommandEvent, CommandEventType, apply, fold
from hpsteer.errors import DocumentNotFound
from hpsteer.ports.store import DocumentStore, Order, Transaction

__all__ = ["command_path", "create_command", "history", "load_command", "record_event"]


def command_path(device_id: str, command_id: str) -> str:
    return f"devices/{device_id}/commands/{command_id}"


def _event_path(device_id: str, command_id: str, seq: int) -> str:
    return f"{command_path(device_id, command_id)}/events/{seq:08d}"


def create_command(store: DocumentStore, created: CommandEvent) -> Command:
    """Store a new command from its ``created`` event; an existing one is returned as it is."""
    command = fold([created])

    def run(tx: Transaction) -> Command:
        path = command_path(command.device_id, command.command_id)
        existing = tx.get(path)
        if existing is not None:
            return Command.parse(existing.data)
        tx.create(_event_path(command.device_id, command.command_id, 1), created.to_document())
        tx.create(path, command.to_document())
        return command

    return store.run_transaction(run)


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

    def run(tx: Transaction) -> Command:
        path = command_path(device_id, command_id)
        snapshot = tx.get(path)
        if snapshot is None:
            raise DocumentNotFound(f"no command {command_id} for device {device_id}")
        command = Command.parse(snapshot.data)
        if dedup_key is not None and command.last_dedup_key == dedup_key:
            return command
        event = CommandEvent(
            command_id=command_id,
            seq=command.last_seq + 1,
            type=event_type,
            at=at,
            attempt=attempt,
            error=error,
            detail=detail or {},
            dedup_key=dedup_key,
        )
        updated = apply(command, event)
        tx.create(_event_path(device_id, command_id, event.seq), event.to_document())
        tx.set(path, updated.to_document())
        return updated

    return store.run_transaction(run)


def load_command(store: DocumentStore, device_id: str, command_id: str) -> Command | None:
    snapshot = store.get(command_path(device_id, command_id))
    return None if snapshot is None else Command.parse(snapshot.data)


def history(store: DocumentStore, device_id: str, command_id: str) -> list[CommandEvent]:
    """Every event of a command, oldest first (paged, so long histories are read whole)."""
    events: list[CommandEvent] = []
    cursor: str | None = None
    while True:
        page = store.query(
            f"{command_path(device_id, command_id)}/events",
            order_by=[Order("seq")],
            limit=200,
            cursor=cursor,
        )
        events.extend(CommandEvent.parse(doc.data) for doc in page.documents)
        if page.next_cursor is None:
            return events
        cursor = page.next_cursor
