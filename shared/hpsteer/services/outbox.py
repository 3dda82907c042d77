"""From a plan's outbox to commands and Cloud Tasks, and the sweep that makes sure of it.

A plan document carries its mode changes as an outbox (``{at, action, slot_index, status}``,
:mod:`hpsteer.services.plans_store`), and a marker ``outboxes/{device_id}~{plan_id}`` is created
with it in the same transaction. :func:`release_plan` (called by optimize right after the plan
became current) turns each ``pending`` entry into

1. a command ``devices/{id}/commands/{plan_id}-s{slot:03d}`` (``created``; a second release
   finds it and changes nothing), carrying its slot, ``valid_until`` (the next change's time or
   the plan's end: a send after that would undo the next change) and its task's name;
2. a named task in the manufacturer's queue, scheduled at the slot's start (never in the past);
   ALREADY_EXISTS is success, since the name is derived from device, plan and slot;

then marks the entries ``queued`` in one update of the plan and deletes the marker. An entry
whose successor is already due when released is ``skipped`` (the successor sets the mode).

Before that, the device's older commands that were never sent (``pending``/``retrying`` of
another plan) are **superseded**, and their tasks deleted (best effort: a task that still runs
finds its command superseded and sends nothing).

A plan that is no longer the device's current plan when its release starts (a concurrent
optimize made a newer one current) is not released: only its marker is dropped, so its late
release never supersedes the newer plan's commands.

A crash anywhere in between loses nothing: every step is idempotent, and :func:`sweep` (Cloud
Scheduler, ``command-sweep-requests``) releases every marker older than a grace period whose plan
is still current, drops the marker of a plan that is not (it was replaced before it could be
released), and re-enqueues commands that stopped moving (a task that Cloud Tasks gave up on
after a crash in its last attempt): ``pending``/``sent``/``retrying`` get a dispatch task,
``acknowledged`` a verification task. It also raises the alert of a command that failed within
the last ``command_stuck_after_minutes`` if a crash between recording ``failed`` and alerting
kept it back (on the last attempt no redelivery would raise it).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from hpsteer.domain.actions import GenericAction
from hpsteer.domain.commands import Command, CommandEvent, CommandEventType, CommandState
from hpsteer.domain.messages import CommandSweepRequest
from hpsteer.errors import IllegalTransition, TaskAlreadyExists, TransientError
from hpsteer.messaging.envelope import PubSubMessage
from hpsteer.observability.logging import log_context
from hpsteer.ports.store import Filter, Transaction, every_page
from hpsteer.runtime.bootstrap import Dependencies
from hpsteer.services.alerts import alert_path, failure_alert, raise_alert
from hpsteer.services.command_log import (
    NewEvent,
    append_event_rows,
    create_command,
    record_events,
)
from hpsteer.services.command_tasks import (
    dispatch_task,
    send_task_name,
    sweep_task_name,
    verify_task,
)
from hpsteer.services.paths import device_path

__all__ = [
    "MARKERS",
    "ReleaseOutcome",
    "SweepOutcome",
    "command_id_for",
    "handle_sweep_request",
    "marker_path",
    "release_plan",
    "supersede_older",
    "sweep",
]

_log = logging.getLogger(__name__)

MARKERS = "outboxes"
SWEEP_GRACE = timedelta(minutes=2)
"""A marker younger than this belongs to a release still running: the sweep leaves it."""
_PAGE = 200
_UNSENT = [CommandState.PENDING.value, CommandState.RETRYING.value]
_MOVING = [
    CommandState.PENDING.value,
    CommandState.SENT.value,
    CommandState.RETRYING.value,
    CommandState.ACKNOWLEDGED.value,
]


def marker_path(device_id: str, plan_id: str) -> str:
    return f"{MARKERS}/{device_id}~{plan_id}"


def command_id_for(plan_id: str, slot_index: int) -> str:
    return f"{plan_id}-s{slot_index:03d}"


@dataclass
class ReleaseOutcome:
    queued: list[str] = field(default_factory=list)
    """Command ids whose task exists now (created by this call or before)."""
    skipped: int = 0
    superseded: list[str] = field(default_factory=list)


def _created_event(
    device_id: str,
    device: Mapping[str, Any],
    plan: Mapping[str, Any],
    entry: Mapping[str, Any],
    valid_until: datetime,
    now: datetime,
) -> CommandEvent:
    plan_id = str(plan["plan_id"])
    slot_index = int(entry["slot_index"])
    return CommandEvent(
        command_id=command_id_for(plan_id, slot_index),
        seq=1,
        type=CommandEventType.CREATED,
        at=now,
        detail={
            "device_id": device_id,
            "manufacturer": device["manufacturer"],
            "generic_action": GenericAction(entry["action"]).value,
            "plan_id": plan_id,
            "slot_start_at": entry["at"],
            "slot_index": slot_index,
            "valid_until": valid_until.isoformat(),
            "task_name": send_task_name(device_id, plan_id, slot_index),
            "correlation_id": plan_id,
        },
    )


def _instant(value: Any) -> datetime:
    return value if isinstance(value, datetime) else datetime.fromisoformat(str(value))


def _enqueue_send(deps: Dependencies, command: Command, name: str, at: datetime) -> None:
    with contextlib.suppress(TaskAlreadyExists):
        deps.tasks.create_task(
            dispatch_task(
                deps.settings,
                command.manufacturer,
                name,
                command.device_id,
                command.command_id,
                at,
            )
        )


def release_plan(
    deps: Dependencies, device_id: str, device: Mapping[str, Any], plan: Mapping[str, Any]
) -> ReleaseOutcome:
    """Turn the plan's pending outbox entries into commands and tasks (module docstring)."""
    now = deps.clock.now()
    store = deps.store
    plan_id = str(plan["plan_id"])
    outcome = ReleaseOutcome()
    current = store.get(device_path(device_id))
    if current is None or current.data.get("current_plan_id") != plan_id:
        # A newer plan became current since the caller looked (a concurrent optimize): this
        # outbox is moot, and superseding "older" commands now would supersede the newer plan's.
        store.delete(marker_path(device_id, plan_id))
        return outcome
    entries = [dict(e) for e in plan.get("outbox", [])]
    plan_end = _instant(plan["end_at"])
    changed = False
    with log_context(device_id=device_id, plan_id=plan_id):
        # First, so the query meets only older plans' unsent commands (usually none), not this
        # plan's new ones; the device points at this plan already, so dispatch would skip them.
        outcome.superseded = supersede_older(deps, device_id, plan_id)
        for index, entry in enumerate(entries):
            if entry.get("status") != "pending":
                continue
            valid_until = (
                _instant(entries[index + 1]["at"]) if index + 1 < len(entries) else plan_end
            )
            if valid_until <= now:
                entry["status"] = "skipped"
                outcome.skipped += 1
                changed = True
                continue
            created = _created_event(device_id, device, plan, entry, valid_until, now)
            command, is_new = create_command(store, created)
            if is_new:
                append_event_rows(
                    deps.analytics, command, [created.model_copy(update={"state": command.state})]
                )
            if command.state is CommandState.PENDING and command.task_name:
                _enqueue_send(deps, command, command.task_name, max(_instant(entry["at"]), now))
            entry.update(
                status="queued", command_id=command.command_id, task_name=command.task_name
            )
            outcome.queued.append(command.command_id)
            changed = True
        if changed:
            store.update(
                f"devices/{device_id}/plans/{plan_id}",
                {"outbox": entries, "outbox_released_at": now},
            )
        store.delete(marker_path(device_id, plan_id))
    if outcome.queued or outcome.superseded:
        _log.info(
            "plan %s released: %d commands queued, %d skipped, %d older superseded",
            plan_id,
            len(outcome.queued),
            outcome.skipped,
            len(outcome.superseded),
            extra={"device_id": device_id, "plan_id": plan_id},
        )
    return outcome


class _NoLongerCurrent(Exception):
    """The plan superseding others stopped being the device's current plan."""


def supersede_older(deps: Dependencies, device_id: str, plan_id: str) -> list[str]:
    """Supersede the device's unsent commands of other plans, each in a transaction that also
    checks this plan is still the current one (two releases racing cannot supersede the newer
    plan's commands); return their ids."""
    store = deps.store
    now = deps.clock.now()
    superseded: list[str] = []

    def still_current(tx: Transaction) -> None:
        device = tx.get(device_path(device_id))
        if device is None or device.data.get("current_plan_id") != plan_id:
            raise _NoLongerCurrent(plan_id)

    page = store.query(
        f"devices/{device_id}/commands", [Filter("state", "in", _UNSENT)], limit=_PAGE
    )
    for document in page.documents:
        older = Command.parse(document.data)
        if older.plan_id == plan_id or older.plan_id is None:
            continue
        try:
            command, events = record_events(
                store,
                device_id,
                older.command_id,
                [
                    NewEvent(
                        CommandEventType.SUPERSEDED,
                        now,
                        older.attempt,
                        detail={"reason": "newer_plan", "by_plan_id": plan_id},
                    )
                ],
                dedup_key=f"superseded-by/{plan_id}",
                guard=still_current,
            )
        except IllegalTransition:
            continue  # it moved on meanwhile (a dispatch sent it): the dispatcher decides
        except _NoLongerCurrent:
            break  # a newer plan became current meanwhile: superseding is its release's job
        if events:
            append_event_rows(deps.analytics, command, events)
            superseded.append(older.command_id)
            if older.task_name:
                _delete_task(deps, older)
    return superseded


def _delete_task(deps: Dependencies, command: Command) -> None:
    from hpsteer.services.command_tasks import dispatch_queue

    try:
        deps.tasks.delete_task(dispatch_queue(command.manufacturer).name, str(command.task_name))
    except TransientError as err:
        _log.info(
            "task of superseded %s not deleted (it will find it superseded): %s",
            command.command_id,
            err,
        )


@dataclass
class SweepOutcome:
    released_plans: int = 0
    dropped_markers: int = 0
    requeued_commands: int = 0
    alerts_raised: int = 0


def _sweep_markers(deps: Dependencies, outcome: SweepOutcome) -> None:
    store = deps.store
    cutoff = deps.clock.now() - SWEEP_GRACE
    old_markers = every_page(
        lambda cursor: store.query(
            MARKERS, [Filter("created_at", "<", cutoff)], limit=_PAGE, cursor=cursor
        )
    )
    for marker in old_markers:
        device_id = str(marker.data["device_id"])
        plan_id = str(marker.data["plan_id"])
        device = store.get(device_path(device_id))
        plan = store.get(f"devices/{device_id}/plans/{plan_id}")
        if device is None or plan is None or device.data.get("current_plan_id") != plan_id:
            store.delete(marker.path)
            outcome.dropped_markers += 1
            continue
        release_plan(deps, device_id, device.data, plan.data)
        outcome.released_plans += 1


def _sweep_stuck(deps: Dependencies, outcome: SweepOutcome) -> None:
    store = deps.store
    now = deps.clock.now()
    cutoff = now - timedelta(minutes=deps.settings.command_stuck_after_minutes)
    stuck = every_page(
        lambda cursor: store.collection_group(
            "commands",
            [Filter("state", "in", _MOVING), Filter("watch_at", "<", cutoff)],
            limit=_PAGE,
            cursor=cursor,
        )
    )
    for document in stuck:
        command = Command.parse(document.data)
        stuck_since = command.watch_at or command.created_at
        name = sweep_task_name(command.device_id, command.command_id, stuck_since)
        try:
            if command.state is CommandState.ACKNOWLEDGED:
                deps.tasks.create_task(
                    verify_task(deps.settings, name, command.device_id, command.command_id, now)
                )
            else:
                deps.tasks.create_task(
                    dispatch_task(
                        deps.settings,
                        command.manufacturer,
                        name,
                        command.device_id,
                        command.command_id,
                        now,
                    )
                )
        except TaskAlreadyExists:
            continue
        outcome.requeued_commands += 1
        _log.warning(
            "command %s stuck in %s since %s: re-enqueued",
            command.command_id,
            command.state.value,
            stuck_since.isoformat(),
            extra={"device_id": command.device_id, "command_id": command.command_id},
        )


def _sweep_unalerted_failures(deps: Dependencies, outcome: SweepOutcome) -> None:
    store = deps.store
    now = deps.clock.now()
    since = now - timedelta(minutes=deps.settings.command_stuck_after_minutes)
    failed = every_page(
        lambda cursor: store.collection_group(
            "commands",
            [Filter("state", "in", [CommandState.FAILED.value]), Filter("watch_at", ">=", since)],
            limit=_PAGE,
            cursor=cursor,
        )
    )
    for document in failed:
        command = Command.parse(document.data)
        alert = failure_alert(command, now)
        stored = store.get(alert_path(alert.alert_id))
        if stored is None or stored.data.get("published") is not True:
            raise_alert(store, deps.bus, alert)
            outcome.alerts_raised += 1


def sweep(deps: Dependencies) -> SweepOutcome:
    """Release forgotten outboxes, re-enqueue stuck commands and raise the alerts a crash kept
    back (module docstring)."""
    outcome = SweepOutcome()
    _sweep_markers(deps, outcome)
    _sweep_stuck(deps, outcome)
    _sweep_unalerted_failures(deps, outcome)
    _log.info(
        "sweep: %d plans released, %d stale markers dropped, %d stuck commands re-enqueued, "
        "%d failure alerts raised",
        outcome.released_plans,
        outcome.dropped_markers,
        outcome.requeued_commands,
        outcome.alerts_raised,
    )
    return outcome


def handle_sweep_request(message: PubSubMessage, deps: Dependencies) -> None:
    """``command-sweep-requests``: one sweep (a redelivery sweeps again: harmless)."""
    CommandSweepRequest.parse_json(message.data)
    sweep(deps)
