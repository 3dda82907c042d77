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

**Which plan wants a command** (:class:`CurrentPlan`, read from the device document). A command
carries the plan that created it (``plan_id``). A newer plan that makes the very same change (the
same mode from the same instant) *adopts* the older plan's command instead of superseding it and
creating an identical one (:mod:`hpsteer.services.outbox`). So a command is still wanted when
the device's current plan is its own plan, or when the current plan, created after the command,
starts a run of the command's mode exactly at the command's slot start; it is wanted until that
run ends (:meth:`CurrentPlan.wants`). Adopting writes nothing on the command: the next event
recorded while an adopting plan is current names it (``detail.adopted_by``, with the run's end as
``detail.valid_until``), and :func:`apply` adds it to ``adopted_by`` and moves ``valid_until``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, Self

from pydantic import Field

from hpsteer.domain.actions import GenericAction, Mode
from hpsteer.domain.base import Record, UtcDatetime
from hpsteer.domain.instants import instant_or_none, parse_instant
from hpsteer.errors import IllegalTransition

__all__ = [
    "EVENTS_FIELD",
    "REMEDIATION",
    "TERMINAL_STATES",
    "TRANSITIONS",
    "VERIFICATION_BOOKING",
    "Command",
    "CommandEvent",
    "CommandEventType",
    "CommandState",
    "CurrentPlan",
    "Wanted",
    "apply",
    "fold",
    "mode_run_since",
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

VERIFICATION_BOOKING = "verification_booking"
"""``detail`` of a ``sent`` event: the budget's booking of the state read that verifies this
attempt (:meth:`hpsteer.adapters.budget.Booking.to_json`), made in the send's budget write."""

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

EVENTS_FIELD = "events"
"""The field of a command's document that holds its history: a map from each event's sequence
number (``{seq:08d}``, so that key order is history order) to the event."""


class CommandEvent(Record):
    """One immutable lifecycle event, stored in its command's document under
    ``events.{seq:08d}`` (:data:`EVENTS_FIELD`)."""

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
    """The materialized state of one command (``devices/{device_id}/commands/{command_id}``).

    The same document holds the command's history beside the state, in the map
    :data:`EVENTS_FIELD` (:mod:`hpsteer.services.command_log`); :meth:`parse` reads the state
    and leaves the history."""

    command_id: str = Field(min_length=1, max_length=200)
    device_id: str = Field(min_length=1, max_length=128)
    manufacturer: str = Field(min_length=1)
    generic_action: GenericAction
    manufacturer_payload: dict[str, Any] = Field(default_factory=dict)
    plan_id: str | None = None
    slot_start_at: UtcDatetime | None = None
    slot_index: int | None = Field(default=None, ge=0)
    valid_until: UtcDatetime | None = None
    """When the plan's next mode change (or the plan's end) takes over: sending later is moot.
    For an adopted command, as the last plan that adopted it set it (see ``adopted_by``)."""
    adopted_by: tuple[str, ...] = ()
    """Newer plans that kept this command because they make the same change (``plan_id`` is
    the plan that created it), in the order its events met them: an adoption itself writes
    nothing, the next event recorded while the adopting plan is current names it."""
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
    verification_booking: dict[str, Any] | None = None
    """The budget's booking of the read that verifies the last attempt, as its ``sent`` event
    carried it (:data:`VERIFICATION_BOOKING`; ``None``: that send booked nothing)."""
    last_seq: int = Field(default=1, ge=1)
    last_dedup_key: str | None = None

    @classmethod
    def parse(cls, data: Mapping[str, Any]) -> Self:
        """The state of a stored command document (its history, :data:`EVENTS_FIELD`, is not
        part of the state: :func:`hpsteer.services.command_log.events_of` reads it)."""
        if isinstance(data, Mapping) and EVENTS_FIELD in data:
            data = {k: v for k, v in data.items() if k != EVENTS_FIELD}
        return super().parse(data)


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
    if event.type is CommandEventType.SENT:
        booking = event.detail.get(VERIFICATION_BOOKING)
        changes["verification_booking"] = dict(booking) if isinstance(booking, Mapping) else None
    if event.type is CommandEventType.ACKNOWLEDGED and event.detail.get("manufacturer_reference"):
        changes["manufacturer_reference"] = str(event.detail["manufacturer_reference"])
    if event.error is not None:
        changes["last_error"] = event.error
    adopter = event.detail.get("adopted_by")
    if isinstance(adopter, str) and adopter:
        if adopter not in command.adopted_by:
            changes["adopted_by"] = (*command.adopted_by, adopter)
        if "valid_until" in event.detail:
            changes["valid_until"] = instant_or_none(event.detail["valid_until"])
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


@dataclass(frozen=True, slots=True)
class Wanted:
    """A command the device's current plan wants: until when, and whether by adoption."""

    until: datetime | None
    """When the change stops being wanted (the plan's next change or its end); None: no end."""
    adopted_by: str | None = None
    """The current plan's id when it wants an older plan's command (adoption), else None."""


def mode_run_since(run: Mapping[str, Any], start: datetime) -> datetime:
    """Since when a stored mode run of ``current_plan_modes`` (starting at ``start``) has run: its
    ``since`` when an earlier plan began it (:func:`hpsteer.services.plans_store.make_current`;
    never after its start), else its start."""
    began = instant_or_none(run.get("since"))
    return began if began is not None and began <= start else start


@dataclass(frozen=True, slots=True)
class CurrentPlan:
    """The device's current plan as the device document carries it: ``current_plan_id``,
    ``current_plan_created_at``, its mode runs ``current_plan_modes`` ([{at, mode}]) and
    ``current_plan_end_at`` (:func:`hpsteer.services.plans_store.make_current`)."""

    plan_id: str | None
    created_at: datetime | None = None
    runs: tuple[tuple[datetime, Mode], ...] = ()
    end_at: datetime | None = None

    @classmethod
    def of_device(cls, device: Mapping[str, Any]) -> CurrentPlan:
        runs: list[tuple[datetime, Mode]] = []
        for run in device.get("current_plan_modes") or []:
            if not isinstance(run, Mapping):
                continue
            at, mode = instant_or_none(run.get("at")), _mode_or_none(run.get("mode"))
            if at is not None and mode is not None:
                runs.append((at, mode))
        plan_id = device.get("current_plan_id")
        return cls(
            plan_id=plan_id if isinstance(plan_id, str) else None,
            created_at=instant_or_none(device.get("current_plan_created_at")),
            runs=tuple(sorted(runs, key=lambda run: run[0])),
            end_at=instant_or_none(device.get("current_plan_end_at")),
        )

    def makes(self, at: datetime, mode: Mode) -> Wanted | None:
        """Whether this plan starts a run of ``mode`` exactly at ``at``: then until when."""
        for index, (start, run_mode) in enumerate(self.runs):
            if start == at and run_mode is mode:
                later = self.runs[index + 1][0] if index + 1 < len(self.runs) else self.end_at
                return Wanted(later, self.plan_id)
        return None

    def wants(self, command: Command) -> Wanted | None:
        """Whether this plan still wants ``command``'s change, and until when; None: it does not
        (a newer plan took over). Its own command until its ``valid_until``; an older plan's
        when it makes the same change at the same instant and the command is older than the
        plan (one created later may come from the release of a plan this one overtook, which
        this plan's release did not see: it is never adopted, so no change has two commands).
        Commands without a plan (a hand-back) are not a plan's to judge: wanted until their
        ``valid_until``."""
        if command.plan_id is None:
            return Wanted(command.valid_until)
        if self.plan_id is None:
            return None
        if command.plan_id == self.plan_id:
            return Wanted(command.valid_until)
        mode = command.generic_action.mode
        if (
            mode is None
            or command.slot_start_at is None
            or self.created_at is None
            or command.created_at >= self.created_at
        ):
            return None
        return self.makes(command.slot_start_at, mode)


def _mode_or_none(value: object) -> Mode | None:
    try:
        return Mode(value) if isinstance(value, str) else None
    except ValueError:
        return None
