"""Dispatch and verification: what Cloud Tasks' calls do to a command.

Both handlers take a :class:`TaskDelivery` (the body and the ``X-CloudTasks-*`` headers) and
return a :class:`Reply` (an HTTP status, ``Retry-After`` when asked, a small JSON body). Only a
2xx ends a task; 429/503 make Cloud Tasks back off, any other non-2xx retries it with the
queue's backoff. The handlers never raise on purpose: a crash (an exception escaping) is a 500,
and the next delivery finds the command where the crash left it.

**Dispatch** (:func:`handle_dispatch`, purpose ``send``):

1. A terminal command: 200, nothing sent (a failed one makes sure its alert went out).
   Acknowledged or verified: 200 after making sure its verification task exists.
2. Stale: fresh telemetry newer than the command shows the household's own setting, or the
   translation's read of the device (step 3) finds it at a setting none of our modes makes
   (``superseded``, and ``override_seen`` for reconciliation: never fight the household); the
   device's current plan no longer wants its change, its slot has passed, steering is off, or
   the household overrides: ``superseded``, 200. The current plan wants a command of its own
   until its ``valid_until``, and an older plan's command that it adopted (it makes the same
   change: the same mode from the command's slot start, and is newer than the command) until
   its run of that mode ends: both read from the device document (``current_plan_*``, see
   :class:`~hpsteer.domain.commands.CurrentPlan`), no extra read. The first event recorded for
   an adopted command names the adopting plan (``adopted_by``, with its ``valid_until``). A
   command whose slot passed after errors kept it from being sent is ``failed`` with an alert
   instead: it never took effect, and that must not pass silently.
   A repeat of a delivery that already recorded ``sent`` (the same task and retry count: Cloud
   Tasks delivers at least once): 503, nothing sent, so one queue attempt makes at most one
   call and a task at most ``max_attempts`` (one read, only for a command sent before).
3. The manufacturer's breaker (open: 503) and the account's command budget (spent: 429), both
   with ``Retry-After``. The budget's one write counts the send and its translation's read and
   books the read of the attempt's verification, ``verify_delay`` ahead (when it fits:
   :meth:`~hpsteer.adapters.gateway.ManufacturerGateway.admit_command`).
4. A command left ``sent`` by an earlier delivery (its outcome unknown: a crash after the
   manufacturer may have accepted) is first checked on the device: already in the intended
   mode → ``acknowledged``; otherwise it is settled (``retry_scheduled``) and sent anew.
5. ``sent`` (attempt n+1, the payload, the verification's booking as ``verification_booking``)
   is recorded, *then* the adapter is called, outside any transaction. A crash between the
   budget's write and this record leaves the booking unused (it over-counts). Success →
   ``acknowledged`` → a verification task ``verify_delay`` later.
   A transient failure → ``retry_scheduled`` and 503 (429 when rate limited), or on the queue's
   last attempt ``failed`` with an alert. A permanent failure (invalid for this device,
   rejected, credentials refused) → ``failed`` with an alert, 200.

**Verification** (:func:`handle_verify`, purpose ``verify``): an ``acknowledged`` command is
checked against the device (command budget and breaker as above). The first delivery of the
attempt's verification task (retry count 0) reads on the booking its ``sent`` carries, with no
store operation on the budget, while its span lasts and no block is marked on the device
document (:mod:`hpsteer.adapters.budget`, "Bookings"); any other delivery, or one without a
usable booking, counts its read in a budget transaction of its own. The intended mode →
``verified`` and ``completed`` (one write). The household changed it in the app →
``superseded`` (never a failure), the sighting written to the device for reconciliation. Another
mode → one remediation (``retry_scheduled`` with cause ``verification_mismatch`` and a new
dispatch task), and a second mismatch → ``failed`` with an alert. A later mode change already
due → ``superseded`` (verifying the older mode would fight the newer one).

Every event is one write of the command's document (:mod:`hpsteer.services.command_log`)
keyed by the delivery (``dedup_key`` = task name and retry count), and is also appended to
``command_events``. It is written on the condition that the document is still as this delivery
last read or wrote it: so a delivery reads the command once, and records ``sent`` and
``acknowledged`` (or ``verified`` and ``completed``) without reading it again. When another
delivery moved it meanwhile (Cloud Tasks may run a task twice at once), nothing is written and
this delivery answers 503 and leaves the command to the other (so an attempt number is never
computed from a stale view). A task that carries the command as its maker left it
(:class:`~hpsteer.domain.messages.KnownCommand`: the release's dispatch tasks, and the
verification and remediation tasks made here) is not read at all on its first delivery (retry
count 0): the delivery decides on that version and records on its ``update_time``. If anyone
wrote the command since, that write fails the same way (503, and the retry reads): nothing is
ever sent on a stale view, though a repeated first delivery may take a budget unit, or a
verification read on its booking, before it finds out.
``checkpoint(step)`` is called between steps; tests raise from it to crash the handler there.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from opentelemetry import trace
from opentelemetry.trace import StatusCode

from hpsteer.adapters.budget import BookedCall, Booking
from hpsteer.adapters.gateway import ManufacturerGateway, device_ref
from hpsteer.adapters.protocol import FOUND_MODE, AdapterContext, DeviceRef, DeviceState
from hpsteer.domain.commands import (
    REMEDIATION,
    VERIFICATION_BOOKING,
    Command,
    CommandEventType,
    CommandState,
    CurrentPlan,
    Wanted,
)
from hpsteer.domain.hand_back import is_hand_back
from hpsteer.domain.instants import format_instant, instant_or_none
from hpsteer.domain.messages import CommandTask
from hpsteer.errors import (
    CircuitOpen,
    ConcurrencyConflict,
    IllegalTransition,
    OemRateLimited,
    PermanentError,
    TaskAlreadyExists,
    TransientError,
)
from hpsteer.observability.logging import log_context
from hpsteer.observability.metrics import (
    COMMAND_DURATION_SECONDS,
    COMMAND_RETRY_TOTAL,
    COMMANDS_FAILURE_TOTAL,
    COMMANDS_SENT_TOTAL,
    COMMANDS_SUCCESS_TOTAL,
    Metrics,
    metrics,
)
from hpsteer.observability.tracing import continued, span
from hpsteer.ports.store import Document
from hpsteer.runtime.bootstrap import Dependencies
from hpsteer.services.alerts import failure_alert, raise_alert
from hpsteer.services.command_log import (
    NewEvent,
    append_event_rows,
    command_path,
    known_command,
    known_document,
    record_on,
    recorded_key,
)
from hpsteer.services.command_tasks import (
    dispatch_task,
    max_attempts,
    remediation_task_name,
    verify_task,
    verify_task_name,
)
from hpsteer.services.paths import device_path

__all__ = [
    "Checkpoint",
    "Reply",
    "TaskDelivery",
    "gateway_for",
    "handle_dispatch",
    "handle_verify",
]

_log = logging.getLogger(__name__)
E = CommandEventType
S = CommandState

Checkpoint = Callable[[str], None]

HOUSEHOLD_FRESH = timedelta(minutes=30)
"""Telemetry this young showing the household's own setting stops a command from being sent."""


def _no_checkpoint(step: str) -> None:
    return None


@dataclass(frozen=True, slots=True)
class TaskDelivery:
    """One delivery of a Cloud Task: its body and the headers Cloud Tasks sets."""

    body: bytes
    task_name: str
    queue_name: str
    retry_count: int = 0
    traceparent: str | None = None

    @classmethod
    def from_headers(cls, headers: Mapping[str, str], body: bytes) -> TaskDelivery:
        lower = {k.lower(): v for k, v in headers.items()}
        try:
            retries = int(lower.get("x-cloudtasks-taskretrycount", "0"))
        except ValueError:
            retries = 0
        return cls(
            body=body,
            task_name=lower.get("x-cloudtasks-taskname", ""),
            # The short id, as Cloud Tasks sends it (a stand-in sends the full queue path).
            queue_name=lower.get("x-cloudtasks-queuename", "").rsplit("/", 1)[-1],
            retry_count=max(0, retries),
            traceparent=lower.get("traceparent"),
        )

    @property
    def dedup_key(self) -> str:
        return f"{self.task_name}/{self.retry_count}"

    @property
    def last_attempt(self) -> bool:
        limit = max_attempts(self.queue_name)
        return limit != -1 and self.retry_count + 1 >= limit


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    outcome: str
    retry_after_s: int | None = None
    detail: dict[str, Any] = field(default_factory=dict)

    def body(self) -> dict[str, Any]:
        return {"outcome": self.outcome, **self.detail}

    def headers(self) -> dict[str, str]:
        return {} if self.retry_after_s is None else {"Retry-After": str(self.retry_after_s)}


def gateway_for(deps: Dependencies) -> ManufacturerGateway:
    """This instance's gateway to the real manufacturers (tests install their own first)."""
    return deps.singleton(
        "manufacturers",
        lambda: ManufacturerGateway(
            AdapterContext(secrets=deps.secrets, clock=deps.clock, store=deps.store)
        ),
    )


def _retry_after(at: datetime | None, now: datetime) -> int:
    if at is None:
        return 60
    return max(1, math.ceil((at - now).total_seconds()))


class _Run:
    """One delivery being handled: the command, its device, and the ways to move it on."""

    def __init__(
        self,
        deps: Dependencies,
        delivery: TaskDelivery,
        gateway: ManufacturerGateway,
        checkpoint: Checkpoint,
        counters: Metrics,
    ) -> None:
        self.deps = deps
        self.delivery = delivery
        self.gateway = gateway
        self.checkpoint = checkpoint
        self.metrics = counters
        self.now = deps.clock.now()
        self.command: Command
        self.document: Document | None = None
        """The command's document as this delivery last read or wrote it (None: unknown)."""
        self.device: Mapping[str, Any] = {}
        self.ref: DeviceRef

    # -- recording --------------------------------------------------------------------------

    def record(self, *events: NewEvent) -> bool:
        """Record events as this delivery; False when it recorded them already (redelivery).
        The first names the plan that adopted the command, if its history does not yet.
        Recorded on the command's document as this delivery last read or wrote it (one
        conditional update, no read)."""
        read = self.document or self.read_again()
        done = record_on(
            self.deps.store,
            read,
            [self.noting_adoption(events[0]), *events[1:]],
            dedup_key=f"{self.delivery.dedup_key}/{events[-1].type.value}",
            expected_seq=self.command.last_seq,  # another delivery moved it: this one stops
        )
        self.command, self.document = done.command, done.document
        if done.written:
            append_event_rows(self.deps.analytics, done.command, done.written)
        return bool(done.written)

    def read_again(self) -> Document:
        """The command's document as it is now (after a write whose result is not known)."""
        document = self.deps.store.get(
            command_path(self.command.device_id, self.command.command_id)
        )
        if document is None:
            raise ConcurrencyConflict(f"command {self.command.command_id} vanished")
        return document

    def event(
        self,
        kind: CommandEventType,
        *,
        attempt: int | None = None,
        error: str | None = None,
        **detail: Any,
    ) -> NewEvent:
        return NewEvent(
            kind,
            self.deps.clock.now(),
            self.command.attempt if attempt is None else attempt,
            error[:2000] if error else None,
            detail,
        )

    @property
    def labels(self) -> dict[str, str]:
        return {"oem": self.command.manufacturer, "action": self.command.generic_action.value}

    # -- endings -------------------------------------------------------------------------------

    def alert_failed(self) -> None:
        raise_alert(
            self.deps.store, self.deps.bus, failure_alert(self.command, self.deps.clock.now())
        )

    def fail(self, error: str, reason: str) -> Reply:
        if self.record(self.event(E.FAILED, error=error, reason=reason)):
            self.metrics.inc(COMMANDS_FAILURE_TOTAL, reason=reason, **self.labels)
            _log.error(
                "command %s failed: %s",
                self.command.command_id,
                error,
                extra={"reason": reason, "attempt": self.command.attempt},
            )
        self.checkpoint("failed_recorded")
        self.alert_failed()
        return Reply(200, "failed", detail={"error": error})

    def supersede(self, reason: str, **detail: Any) -> Reply:
        events = []
        if self.command.state is S.SENT:  # outcome unknown: settle it before leaving
            events.append(self.event(E.RETRY_SCHEDULED, error="outcome unknown", cause="stale"))
        events.append(self.event(E.SUPERSEDED, reason=reason, **detail))
        self.record(*events)
        _log.info("command %s superseded: %s", self.command.command_id, reason)
        return Reply(200, "superseded", detail={"reason": reason})

    def transient(self, err: TransientError, *, sent: bool) -> Reply:
        """A failure that may pass: retry (5xx/429), or fail with an alert on the last attempt."""
        error = f"{type(err).__name__}: {err}"
        if self.delivery.last_attempt:
            return self.fail(error, type(err).__name__)
        if sent and self.record(self.event(E.RETRY_SCHEDULED, error=error)):
            self.metrics.inc(
                COMMAND_RETRY_TOTAL, oem=self.command.manufacturer, reason=type(err).__name__
            )
        retry_at = getattr(err, "retry_at", None)
        if isinstance(err, OemRateLimited):
            return Reply(429, "rate_limited", _retry_after(retry_at, self.now), {"error": error})
        if isinstance(err, CircuitOpen):
            return Reply(503, "circuit_open", _retry_after(retry_at, self.now), {"error": error})
        return Reply(503, "retrying", None, {"error": error})

    def noting_adoption(self, event: NewEvent) -> NewEvent:
        """``event`` with ``adopted_by`` (the current plan) and ``valid_until`` (its run's end)
        in its detail when the current plan wants this older plan's command and the command's
        history does not say so yet (:mod:`hpsteer.domain.commands`): adopting wrote nothing."""
        wanted = self.wanted
        command = self.command
        if wanted is None or wanted.adopted_by is None:
            return event
        if wanted.adopted_by in command.adopted_by and wanted.until == command.valid_until:
            return event
        until = None if wanted.until is None else wanted.until.isoformat()
        detail = {**event.detail, "adopted_by": wanted.adopted_by, "valid_until": until}
        return dataclasses.replace(event, detail=detail)

    # -- facts -----------------------------------------------------------------------------

    @functools.cached_property
    def wanted(self) -> Wanted | None:
        """Whether the device's current plan still wants this command, and until when: its own
        plan's command, or an older plan's command it adopted (the same mode from the same
        instant), read from the device document this delivery read anyway."""
        return CurrentPlan.of_device(self.device).wants(self.command)

    def stale_reason(self) -> tuple[str, dict[str, Any]] | None:
        command, device, now = self.command, self.device, self.deps.clock.now()
        if device.get("steering_enabled") is False and not is_hand_back(command.command_id):
            # Steering off: nothing steers any more, except the one command that hands the
            # heat pump back to its own control (hpsteer.domain.hand_back).
            return "steering_disabled", {}
        override = device.get("override_until")
        if isinstance(override, datetime) and now < override:
            return "user_override", {"override_until": override.isoformat()}
        wanted = self.wanted
        if wanted is None:  # the current plan no longer makes this change
            return "newer_plan", {"current_plan_id": device.get("current_plan_id")}
        if wanted.until is not None and now >= wanted.until:
            return "slot_passed", {"valid_until": wanted.until.isoformat()}
        return None

    def household_change_in_telemetry(self) -> datetime | None:
        """When fresh telemetry, newer than this command, shows the household's own setting
        (the manufacturer says so, or a setting none of our modes): then sending would fight
        the household, so the command is superseded and reconciliation told."""
        telemetry = self.device.get("last_telemetry")
        if not isinstance(telemetry, Mapping):
            return None
        seen = instant_or_none(telemetry.get("observed_at"))
        now = self.deps.clock.now()
        if seen is None or seen < self.command.created_at or now - seen > HOUSEHOLD_FRESH:
            return None
        by_user = telemetry.get("changed_by_user")
        unplaced = (
            telemetry.get("observed_mode") is None
            and telemetry.get("setpoint_offset_k") is not None
            and telemetry.get("online") is not False
        )
        if by_user is True or (by_user is None and unplaced):
            return seen
        return None

    def delivered_before(self) -> bool:
        """Whether this delivery (its task and retry count) already recorded a ``sent``: a twin
        of it, or a stale repeat, that must not make a second call for one queue attempt."""
        key = f"{self.delivery.dedup_key}/{E.SENT.value}"
        if self.command.last_dedup_key == key:
            return True
        return recorded_key((self.document or self.read_again()).data, key)

    def in_intended_mode(self, state: DeviceState) -> bool:
        intended = self.command.generic_action.mode
        if intended is None:  # a hot-water boost: accepted and online is all a read can show
            return state.online
        return state.online and state.mode is intended

    def schedule_verification(self) -> None:
        command = self.command
        name = verify_task_name(command.device_id, command.command_id, command.attempt)
        at = self.deps.clock.now() + timedelta(seconds=self.deps.settings.verify_delay_seconds)
        with contextlib.suppress(TaskAlreadyExists):
            self.deps.tasks.create_task(
                verify_task(
                    self.deps.settings,
                    name,
                    command.device_id,
                    command.command_id,
                    at,
                    known=known_command(command, self.document),
                )
            )

    def schedule_remediation(self) -> None:
        command = self.command
        name = remediation_task_name(command.device_id, command.command_id, command.remediations)
        with contextlib.suppress(TaskAlreadyExists):
            self.deps.tasks.create_task(
                dispatch_task(
                    self.deps.settings,
                    command.manufacturer,
                    name,
                    command.device_id,
                    command.command_id,
                    self.deps.clock.now(),
                    known=known_command(command, self.document),
                )
            )

    # -- dispatch ------------------------------------------------------------------------------

    def dispatch(self) -> Reply:
        command = self.command
        if command.state.is_terminal:
            if command.state is S.FAILED:
                self.alert_failed()
            return Reply(200, f"already_{command.state.value}")
        if command.state in (S.ACKNOWLEDGED, S.VERIFIED):
            self.schedule_verification()
            return Reply(200, f"already_{command.state.value}")
        stale = self.stale_reason()
        household = self.household_change_in_telemetry() if stale is None else None
        if household is not None:
            return self.household_changed(household)
        if stale is not None and stale[0] == "slot_passed" and command.last_error is not None:
            # Trouble kept it from taking effect in its slot: that is a failure, not a
            # replacement, and a person hears of it.
            return self.fail(
                f"its slot passed before it could be sent; last error: {command.last_error}",
                "slot_passed",
            )
        if stale is not None:
            return self.supersede(stale[0], **stale[1])
        if command.state in (S.SENT, S.RETRYING) and self.delivered_before():
            # This queue attempt sent already (its twin, or this is a stale repeat): it is spent
            # or still in flight; the queue's next attempt goes on.
            return Reply(503, "in_flight", 10)
        self.checkpoint("checked")
        action = command.generic_action
        if command.state is S.SENT:
            settled = self.settle_unknown_outcome()
            if settled is not None:
                return settled
        verify_at = self.deps.clock.now() + timedelta(
            seconds=self.deps.settings.verify_delay_seconds
        )
        try:  # the send, its translation's read and its verification's, in one budget write
            booking = self.gateway.admit_command(
                self.ref,
                with_read=True,
                verify_at=verify_at,
                holder=command_path(command.device_id, command.command_id),
            )
        except TransientError as err:
            return self.transient(err, sent=False)
        self.checkpoint("admitted")
        try:
            with span("validate_command", {"action": action.value}):
                payload, validation = self.gateway.prepare(self.ref, action, admitted=True)
        except TransientError as err:
            self.gateway.cancel(self.ref)
            return self.transient(err, sent=False)
        except PermanentError as err:
            self.gateway.cancel(self.ref)
            return self.fail(f"{type(err).__name__}: {err}", "invalid_command")
        if not validation.valid:
            self.gateway.cancel(self.ref)
            return self.fail(f"invalid for this device: {validation.reason}", "invalid_command")
        if action.mode is not None and FOUND_MODE in payload and payload[FOUND_MODE] is None:
            # The translation read the device at a setting none of our modes makes: the
            # household changed it (or its own control did). Never fight it.
            self.gateway.cancel(self.ref)
            return self.household_changed(self.deps.clock.now())
        self.checkpoint("prepared")
        attempt = self.command.attempt + 1
        try:
            booked: dict[str, Any] = {}
            if booking is not None:  # the verification's read, paid with this write
                booked[VERIFICATION_BOOKING] = booking.to_json()
            recorded = self.record(
                self.event(E.SENT, attempt=attempt, manufacturer_payload=payload, **booked)
            )
        except (IllegalTransition, ConcurrencyConflict):
            recorded = False
        if not recorded:  # another delivery of this task holds the command: let it finish
            self.gateway.cancel(self.ref)
            return Reply(503, "in_flight", 10)
        self.checkpoint("sent_recorded")
        with log_context(attempt=attempt):
            try:
                with span("send_to_oem", {"attempt": attempt}):
                    result = self.gateway.send(self.ref, action, payload)
            except TransientError as err:
                self.checkpoint("send_failed")
                return self.transient(err, sent=True)
            except PermanentError as err:
                self.checkpoint("send_failed")
                return self.fail(f"{type(err).__name__}: {err}", type(err).__name__)
        self.checkpoint("manufacturer_accepted")
        try:
            self.record(
                self.event(
                    E.ACKNOWLEDGED,
                    manufacturer_reference=result.manufacturer_reference,
                    accepted_at=result.accepted_at.isoformat(),
                    response=dict(result.response),
                )
            )
        except (IllegalTransition, ConcurrencyConflict):  # a concurrent delivery settled it
            return Reply(200, "raced", detail={"attempt": attempt})
        self.metrics.inc(COMMANDS_SENT_TOTAL, **self.labels)
        self.checkpoint("acknowledged")
        self.schedule_verification()
        self.checkpoint("verification_scheduled")
        return Reply(200, "acknowledged", detail={"attempt": attempt})

    def household_changed(self, seen_at: datetime) -> Reply:
        """The household's own setting was seen (``seen_at``): leave the sighting for
        reconciliation (issue 7), which pauses steering, and supersede the command unsent."""
        command = self.command
        self.deps.store.update(
            device_path(command.device_id),
            {
                "override_seen": {
                    "at": seen_at,
                    "command_id": command.command_id,
                    "observed_mode": None,
                    "room_setpoint_c": None,
                }
            },
        )
        return self.supersede("household_change", seen_at=seen_at.isoformat())

    def settle_unknown_outcome(self) -> Reply | None:
        """The last attempt's outcome is unknown: if the device shows it applied, it was sent;
        else settle it as a failed attempt so a new one can go. None: go on and send."""
        try:
            state = self.gateway.read_state(self.ref, for_command=True)
        except TransientError as err:
            return self.transient(err, sent=False)
        self.checkpoint("unknown_outcome_read")
        if self.command.generic_action.mode is not None and self.in_intended_mode(state):
            self.record(
                self.event(
                    E.ACKNOWLEDGED,
                    found_applied=True,
                    observed_mode=state.mode.value if state.mode else None,
                )
            )
            self.metrics.inc(COMMANDS_SENT_TOTAL, **self.labels)
            self.checkpoint("acknowledged")
            self.schedule_verification()
            return Reply(200, "acknowledged", detail={"found_applied": True})
        settled = self.record(
            self.event(
                E.RETRY_SCHEDULED,
                error=f"outcome of attempt {self.command.attempt} unknown; device not in the "
                "intended mode",
                cause="unknown_outcome",
            )
        )
        if not settled:  # a twin of this delivery settled it and sends the next attempt
            return Reply(503, "in_flight", 10)
        self.checkpoint("unknown_outcome_settled")
        return None

    # -- verification ----------------------------------------------------------------------

    def verify(self) -> Reply:
        command = self.command
        if command.state.is_terminal:
            if command.state is S.FAILED:
                self.alert_failed()
            return Reply(200, f"already_{command.state.value}")
        if command.state is S.RETRYING and command.remediations:
            self.schedule_remediation()  # a crash may have left the remediation's task out
            return Reply(200, "remediating")
        if command.state is not S.ACKNOWLEDGED:
            return Reply(200, f"not_verifiable_{command.state.value}")
        stale = self.stale_reason()
        if stale is not None and not (stale[0] == "newer_plan" and self.current_plan_agrees()):
            return self.supersede(stale[0], **stale[1])
        self.checkpoint("checked")
        try:
            state = self.gateway.read_state(self.ref, for_command=True, booked=self.booked_read())
        except TransientError as err:
            if self.delivery.last_attempt:
                return self.fail(f"verification impossible: {type(err).__name__}: {err}", "verify")
            retry_at = getattr(err, "retry_at", None)
            status = 429 if isinstance(err, OemRateLimited) else 503
            return Reply(
                status, "verify_later", _retry_after(retry_at, self.now) if retry_at else None
            )
        self.checkpoint("state_read")
        observed = state.mode.value if state.mode else None
        if self.in_intended_mode(state):
            done = self.record(
                self.event(E.VERIFIED, observed_mode=observed), self.event(E.COMPLETED)
            )
            if done:
                self.metrics.inc(COMMANDS_SUCCESS_TOTAL, **self.labels)
                started = self.command.sent_at or self.command.created_at
                self.metrics.observe(
                    COMMAND_DURATION_SECONDS,
                    (self.deps.clock.now() - started).total_seconds(),
                    oem=self.command.manufacturer,
                )
            return Reply(200, "completed")
        if self.changed_by_household(state):
            self.note_user_override(state)
            self.checkpoint("override_noted")
            return self.supersede("user_override", observed_mode=observed)
        error = (
            f"verification found {'offline' if not state.online else f'mode {observed}'}, "
            f"intended {command.generic_action.mode.value if command.generic_action.mode else '-'}"
        )
        if command.remediations >= 1:
            return self.fail(error, "not_applied")
        self.record(self.event(E.RETRY_SCHEDULED, error=error, cause=REMEDIATION))
        self.metrics.inc(COMMAND_RETRY_TOTAL, oem=command.manufacturer, reason="not_applied")
        self.checkpoint("remediation_recorded")
        self.schedule_remediation()
        return Reply(200, "remediating")

    def booked_read(self) -> BookedCall | None:
        """The verification read that dispatch booked with the send (the ``sent`` event's
        ``verification_booking``), for the first delivery of this attempt's verification task
        only (not a redelivery, nor a task the sweep made again): the booked call is made at most
        once, the others count on their own. Its blocks are marked on the device's document,
        which this delivery read."""
        command = self.command
        task = verify_task_name(command.device_id, command.command_id, command.attempt)
        booking = Booking.parse(command.verification_booking)
        delivered = self.delivery.task_name.rsplit("/", 1)[-1]  # a stand-in sends the full path
        if booking is None or self.delivery.retry_count != 0 or delivered != task:
            return None
        return BookedCall(
            booking,
            holder=command_path(command.device_id, command.command_id),
            marked_path=device_path(command.device_id),
            marked=self.device,
        )

    def changed_by_household(self, state: DeviceState) -> bool:
        """The manufacturer says the household changed it; or, where it cannot say, the device
        is at a setting that is none of our modes (we only ever command min, mid and max)."""
        if state.changed_by_user is not None:
            return state.changed_by_user
        return state.online and state.mode is None and self.command.generic_action.mode is not None

    def current_plan_agrees(self) -> bool:
        """Whether the device's current plan wants this command's mode now: then the command
        is still what should hold and is verified; else the newer plan's commands take over."""
        plan_id = self.device.get("current_plan_id")
        if not isinstance(plan_id, str) or self.command.generic_action.mode is None:
            return False
        plan = self.deps.store.get(f"devices/{self.command.device_id}/plans/{plan_id}")
        if plan is None:
            return False
        now = self.deps.clock.now()
        for slot in plan.data.get("slots", []):
            start, end = slot.get("start_at"), slot.get("end_at")
            if (
                isinstance(start, str)
                and isinstance(end, str)
                and start <= format_instant(now) < end
            ):
                return bool(slot.get("mode") == self.command.generic_action.mode.value)
        return False

    def note_user_override(self, state: DeviceState) -> None:
        """Leave the sighting where reconciliation (issue 7) picks it up; never fight it."""
        self.deps.store.update(
            device_path(self.command.device_id),
            {
                "override_seen": {
                    "at": state.observed_at,
                    "command_id": self.command.command_id,
                    "observed_mode": state.mode.value if state.mode else None,
                    "room_setpoint_c": state.room_setpoint_c,
                }
            },
        )


def _start(
    delivery: TaskDelivery,
    deps: Dependencies,
    purpose: str,
    gateway: ManufacturerGateway | None,
    checkpoint: Checkpoint,
    counters: Metrics,
) -> _Run | Reply:
    try:
        task = CommandTask.parse_json(delivery.body)
    except PermanentError as err:
        _log.error("dropped a task that is not a command task: %s", err)
        return Reply(200, "malformed", detail={"error": str(err)})
    if task.purpose != purpose:
        _log.error("a %s task reached the %s route: dropped", task.purpose, purpose)
        return Reply(200, "wrong_route")
    document = _known(task, delivery) or deps.store.get(
        command_path(task.device_id, task.command_id)
    )
    if document is None:
        _log.error("task %s names no command %s", delivery.task_name, task.command_id)
        return Reply(200, "unknown_command")
    command = Command.parse(document.data)
    run = _Run(deps, delivery, gateway or gateway_for(deps), checkpoint, counters)
    run.command, run.document = command, document
    device = deps.store.get(device_path(task.device_id))
    run.device = device.data if device is not None else {"steering_enabled": False}
    try:
        run.ref = device_ref(task.device_id, run.device)
    except PermanentError:
        run.ref = DeviceRef(command.manufacturer, "", "unknown", task.device_id)
    return run


def _known(task: CommandTask, delivery: TaskDelivery) -> Document | None:
    """The command as the task carries it, for its first delivery only (a retry follows a
    delivery that may have written it: it reads); None: read the command."""
    known = task.known
    if known is None or delivery.retry_count != 0:
        return None
    document = known_document(known)
    if document is None:
        _log.info("task %s carries a command this version cannot read: read", delivery.task_name)
        return None
    if document.path != command_path(task.device_id, task.command_id):
        _log.warning("task %s carries another command than it names: read", delivery.task_name)
        return None
    return document


def _handle(
    purpose: Literal["send", "verify"],
    delivery: TaskDelivery,
    deps: Dependencies,
    gateway: ManufacturerGateway | None,
    checkpoint: Checkpoint,
    counters: Metrics,
) -> Reply:
    name = "execute_command" if purpose == "send" else "verify_execution"
    attributes = {"task": delivery.task_name, "retry": delivery.retry_count}
    with continued(delivery.traceparent, name, attributes) as handling:
        reply = _handle_in_span(purpose, delivery, deps, gateway, checkpoint, counters)
        handling.set_attribute("http.status_code", reply.status)
        handling.set_attribute("outcome", reply.outcome)
        if reply.status >= 500:
            handling.set_status(StatusCode.ERROR, reply.outcome)
        return reply


def _handle_in_span(
    purpose: Literal["send", "verify"],
    delivery: TaskDelivery,
    deps: Dependencies,
    gateway: ManufacturerGateway | None,
    checkpoint: Checkpoint,
    counters: Metrics,
) -> Reply:
    started = _start(delivery, deps, purpose, gateway, checkpoint, counters)
    if isinstance(started, Reply):
        return started
    current = trace.get_current_span()
    current.set_attribute("device_id", started.command.device_id)
    current.set_attribute("command_id", started.command.command_id)
    with log_context(
        device_id=started.command.device_id,
        command_id=started.command.command_id,
        task=delivery.task_name,
        retry=delivery.retry_count,
    ):
        try:
            return started.dispatch() if purpose == "send" else started.verify()
        except ConcurrencyConflict as err:  # another delivery moved the command: it goes on
            _log.info("%s", err)
            return Reply(503, "in_flight", 10)


def handle_dispatch(
    delivery: TaskDelivery,
    deps: Dependencies,
    *,
    gateway: ManufacturerGateway | None = None,
    checkpoint: Checkpoint = _no_checkpoint,
    counters: Metrics = metrics,
) -> Reply:
    """Dispatch one command (module docstring)."""
    return _handle("send", delivery, deps, gateway, checkpoint, counters)


def handle_verify(
    delivery: TaskDelivery,
    deps: Dependencies,
    *,
    gateway: ManufacturerGateway | None = None,
    checkpoint: Checkpoint = _no_checkpoint,
    counters: Metrics = metrics,
) -> Reply:
    """Verify one command on its device (module docstring)."""
    return _handle("verify", delivery, deps, gateway, checkpoint, counters)
