"""Commands and their lifecycle, event-sourced.

::

    pending ─sent─▶ sent ─acknowledged─▶ acknowledged ─verified─▶ verified ─completed─▶ completed
       │              │                        │
       │              └─retry_scheduled─┐      └─retry_scheduled─┐
       └─retry_scheduled────────────────┴─▶ retrying ◀───────────┘
                                              └─sent─▶ sent
    pending, acknowledged, retrying ──superseded──▶ superseded
    pending, sent, acknowledged, retrying ──failed──▶ failed

``completed``, ``failed`` and ``superseded`` are terminal. ``superseded`` means something newer
took over: a newer plan before the command was sent, or, after it was sent but before it could
be verified, a later mode change of the same device (verifying the older mode then would fight
the newer one) or the household overruling it in the manufacturer's app (never a failure).
The legal transitions live in one table, :data:`TRANSITIONS`; :func:`next_state` decides,
:func:`fold` replays a command's events (numbered 1, 2, 3, … without gaps) into its
materialized :class:`Command`. Events are facts in
the past tense; the first is always ``created`` and carries what the command is.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum
from typing import Any

from pydantic import Field

from hpsteer.domain.actions import GenericAction
from hpsteer.domain.base import Record, UtcDatetime
from hpsteer.domain.instants import parse_instant
from hpsteer.errors import IllegalTransition

__all__ = [
    "REMEDIATION",
    "TERMINAL_STATES",
    "TRANSITIONS",
    "Command",
    "CommandEvent",
    "CommandEventType",
    "CommandState",
    "apply",
    "fold",
    "next_state",
]


class CommandState(StrEnum):
    PENDING = "pending"
    SENT = "sent"
    ACKNOWLEDGED = "acknowledged"
    VERIFIED = "verified"
    COMPLETED = "completed"
    RETRYING = "retrying"
    FAILED = "failed"
    SUPERSEDED = "superseded"

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL_STATES


class CommandEventType(StrEnum):
    CREATED = "created"
    SENT = "sent"
    ACKNOWLEDGED = "acknowledged"
    VERIFIED = "verified"
    COMPLETED = "completed"
    RETRY_SCHEDULED = "retry_scheduled"
    FAILED = "failed"
    SUPERSEDED = "superseded"


REMEDIATION = "verification_mismatch"
"""``detail.cause`` of a ``retry_scheduled`` event that re-sends after a failed verification."""

TERMINAL_STATES = frozenset({CommandState.COMPLETED, CommandState.FAILED, CommandState.SUPERSEDED})

_S = CommandState
_E = CommandEventType

TRANSITIONS: dict[tuple[CommandState, CommandEventType], CommandState] = {
    (_S.PENDING, _E.SENT): _S.SENT,
    (_S.PENDING, _E.RETRY_SCHEDULED): _S.RETRYING,
    (_S.PENDING, _E.SUPERSEDED): _S.SUPERSEDED,
    (_S.PENDING, _E.FAILED): _S.FAILED,
    (_S.SENT, _E.ACKNOWLEDGED): _S.ACKNOWLEDGED,
    (_S.SENT, _E.RETRY_SCHEDULED): _S.RETRYING,
    (_S.SENT, _E.FAILED): _S.FAILED,
    (_S.ACKNOWLEDGED, _E.VERIFIED): _S.VERIFIED,
    (_S.ACKNOWLEDGED, _E.RETRY_SCHEDULED): _S.RETRYING,
    (_S.ACKNOWLEDGED, _E.FAILED): _S.FAILED,
    (_S.ACKNOWLEDGED, _E.SUPERSEDED): _S.SUPERSEDED,
    (_S.VERIFIED, _E.COMPLETED): _S.COMPLETED,
    (_S.RETRYING, _E.SENT): _S.SENT,
    (_S.RETRYING, _E.SUPERSEDED): _S.SUPERSEDED,
    (_S.RETRYING, _E.FAILED): _S.FAILED,
}
"""Every legal (state, event) pair and the state it leads to; anything else is illegal."""


class CommandEvent(Record):
    """One immutable lifecycle event, stored at ``…/commands/{command_id}/events/{seq:08d}``."""

    command_id: str = Field(min_length=1, max_length=200)
    seq: int = Field(ge=1)
    type: CommandEventType
    at: UtcDatetime
    attempt: int = Field(default=0, ge=0)
    """The dispatch attempt that produced this event (0 before the first send)."""
    error: str | None = Field(default=None, max_length=2000)
    detail: dict[str, Any] = Field(default_factory=dict)
    """Facts of the event: for ``created`` the command's fields, else e.g. the response id."""
    dedup_key: str | None = Field(default=None, max_length=600)
    """The delivery that caused the event (e.g. task name and retry count), for idempotency."""
    state: CommandState | None = None
    """The state the event led to (written with the event, for a reader of the history)."""


class Command(Record):
    """The materialized state of one command (``devices/{device_id}/commands/{command_id}``)."""

    command_id: str = Field(min_length=1, max_length=200)
    device_id: str = Field(min_length=1, max_length=128)
    manufacturer: str = Field(min_length=1)
    generic_action: GenericAction
    manufacturer_payload: dict[str, Any] = Field(default_factory=dict)
    plan_id: str | None = None
    slot_start_at: UtcDatetime | None = None
    slot_index: int | None = Field(default=None, ge=0)
    valid_until: UtcDatetime | None = None
    """When the plan's next mode change (or the plan's end) takes over: sending later is moot."""
    task_name: str | None = None
    """The Cloud Task that dispatches it (queue per manufacturer)."""
    correlation_id: str = Field(min_length=1)
    state: CommandState = CommandState.PENDING
    created_at: UtcDatetime
    updated_at: UtcDatetime | None = None
    """When the last event happened."""
    watch_at: UtcDatetime | None = None
    """From when the command should have moved on: its last event, or its slot's start while it
    waits for it (the sweep finds commands that stopped moving by this)."""
    sent_at: UtcDatetime | None = None
    acknowledged_at: UtcDatetime | None = None
    verified_at: UtcDatetime | None = None
    completed_at: UtcDatetime | None = None
    failed_at: UtcDatetime | None = None
    superseded_at: UtcDatetime | None = None
    retry_count: int = Field(default=0, ge=0)
    attempt: int = Field(default=0, ge=0)
    last_error: str | None = None
    remediations: int = Field(default=0, ge=0)
    """Re-sends after a verification found the device in another mode."""
    manufacturer_reference: str | None = None
    last_seq: int = Field(default=1, ge=1)
    last_dedup_key: str | None = None


def next_state(state: CommandState, event: CommandEventType) -> CommandState:
    """The state after ``event``; IllegalTransition if the table does not allow it."""
    try:
        return TRANSITIONS[(state, event)]
    except KeyError:
        allowed = sorted(e.value for (s, e) in TRANSITIONS if s == state)
        raise IllegalTransition(
            f"a {state.value} command cannot take '{event.value}'"
            + (f"; allowed: {', '.join(allowed)}" if allowed else f" ({state.value} is terminal)")
        ) from None


_TIMESTAMP_FIELD: dict[CommandState, str] = {
    _S.SENT: "sent_at",
    _S.ACKNOWLEDGED: "acknowledged_at",
    _S.VERIFIED: "verified_at",
    _S.COMPLETED: "completed_at",
    _S.FAILED: "failed_at",
    _S.SUPERSEDED: "superseded_at",
}


def _created(event: CommandEvent) -> Command:
    if event.type is not CommandEventType.CREATED or event.seq != 1:
        raise IllegalTransition(
            f"command {event.command_id}: history must start with 'created' at seq 1, "
            f"got '{event.type.value}' at seq {event.seq}"
        )
    fields = {
        **event.detail,
        "command_id": event.command_id,
        "created_at": event.at,
        "updated_at": event.at,
    }
    slot_start = event.detail.get("slot_start_at")
    fields["watch_at"] = max(event.at, parse_instant(slot_start)) if slot_start else event.at
    return Command.model_validate({**fields, "state": CommandState.PENDING, "last_seq": 1})


def apply(command: Command, event: CommandEvent) -> Command:
    """The command after one more event; checks the sequence number and the transition."""
    if event.command_id != command.command_id:
        raise IllegalTransition(
            f"event for {event.command_id} applied to command {command.command_id}"
        )
    if event.seq != command.last_seq + 1:
        raise IllegalTransition(
            f"command {command.command_id}: event seq {event.seq} does not follow "
            f"{command.last_seq}"
        )
    state = next_state(command.state, event.type)
    changes: dict[str, Any] = {
        "state": state,
        "last_seq": event.seq,
        "attempt": event.attempt,
        "last_dedup_key": event.dedup_key,
        "updated_at": event.at,
        "watch_at": max(event.at, command.slot_start_at or event.at),
    }
    if state in _TIMESTAMP_FIELD:
        changes[_TIMESTAMP_FIELD[state]] = event.at
    if event.type is CommandEventType.RETRY_SCHEDULED:
        changes["retry_count"] = command.retry_count + 1
        if event.detail.get("cause") == REMEDIATION:
            changes["remediations"] = command.remediations + 1
    if event.type is CommandEventType.SENT and "manufacturer_payload" in event.detail:
        changes["manufacturer_payload"] = event.detail["manufacturer_payload"]
    if event.type is CommandEventType.ACKNOWLEDGED and event.detail.get("manufacturer_reference"):
        changes["manufacturer_reference"] = str(event.detail["manufacturer_reference"])
    if event.error is not None:
        changes["last_error"] = event.error
    return command.model_copy(update=changes)


def fold(events: Iterable[CommandEvent]) -> Command:
    """Replay a command's history, oldest first, into its current state."""
    iterator = iter(sorted(events, key=lambda e: e.seq))
    first = next(iterator, None)
    if first is None:
        raise IllegalTransition("a command needs at least its 'created' event")
    command = _created(first)
    for event in iterator:
        command = apply(command, event)
    return command
