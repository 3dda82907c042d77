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

then marks the entries ``queued`` in one update of the plan and deletes the marker (the
outbox's **conclusion**). An entry whose successor is already due when released is ``skipped``
(the successor sets the mode).

Before that, the device's older commands that were never sent (``pending``/``retrying`` of
another plan) are **superseded**, all in one transaction that first checks this plan is still
the device's current one and also names them on the plan's marker
(``superseded_command_ids``), and their tasks deleted (best effort: a task that still runs finds
its command superseded and sends nothing). A release's Cloud Tasks calls (its new tasks, the
superseded ones' deletions) go out together on a few threads (:data:`REMOTE_CALL_THREADS`), not
one after the other.

**Analytics rows.** Every event recorded here is a row of ``command_events`` (insert id
``{device}/{command}/{seq:08d}``). The rows wait in a :class:`ReleaseBatch` (an optimize shard
shares one across its devices, with its ``plans`` rows) and are appended, one insert per table,
*before* the outboxes are concluded. So an outbox whose marker is gone had its rows appended (or
refused as invalid, which is logged); one whose release ended earlier (a crash, analytics
unavailable) still has its marker, and the next release of it (the shard's redelivery, or the
sweep) derives the rows again from what is stored: the ``created`` row of each command its
entries already have, and the ``superseded`` row of each command the marker names. Appending
them twice adds nothing (the insert ids; BigQuery's deduplication is best effort). A release
without a batch (the sweep's) finishes on its own; if analytics is unavailable it leaves its
outbox unconcluded for the next sweep rather than fail.

A plan that is no longer the device's current plan when its release starts (a concurrent
optimize made a newer one current) is not released: only its marker is dropped (after the rows
an earlier release of it may have left are derived, as above), so its late release never
supersedes the newer plan's commands.

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
import contextvars
import logging
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from hpsteer.domain.actions import GenericAction
from hpsteer.domain.commands import Command, CommandEvent, CommandEventType, CommandState
from hpsteer.domain.messages import CommandSweepRequest
from hpsteer.errors import PermanentError, TaskAlreadyExists, TransientError
from hpsteer.messaging.envelope import PubSubMessage
from hpsteer.observability.logging import log_context
from hpsteer.ports.analytics import Analytics, BufferedAnalytics
from hpsteer.ports.store import Filter, Transaction, every_page
from hpsteer.runtime.bootstrap import Dependencies
from hpsteer.services.alerts import alert_path, failure_alert, raise_alert
from hpsteer.services.command_log import (
    COMMAND_EVENTS,
    NewEvent,
    Recorded,
    create_command,
    export_events,
    load_command,
    record_events_together,
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
    "REMOTE_CALL_THREADS",
    "ReleaseBatch",
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
REMOTE_CALL_THREADS = 8
"""Threads for remote calls made at once (:func:`remote_call_pool`)."""
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


def _optional_instant(value: Any) -> datetime | None:
    return None if value is None else _instant(value)


def _superseded_key(plan_id: str) -> str:
    return f"superseded-by/{plan_id}"


def _created_as_stored(command: Command) -> CommandEvent:
    """A stored command's ``created`` event, as far as its ``command_events`` row tells it."""
    return CommandEvent(
        command_id=command.command_id,
        seq=1,
        type=CommandEventType.CREATED,
        at=command.created_at,
        state=CommandState.PENDING,
    )


def _superseded_as_stored(command: Command) -> CommandEvent:
    """A command's last event, the ``superseded`` one :func:`supersede_older` recorded, as far as
    its row tells it (that event has no error and sets the command's attempt)."""
    return CommandEvent(
        command_id=command.command_id,
        seq=command.last_seq,
        type=CommandEventType.SUPERSEDED,
        at=command.superseded_at or command.updated_at or command.created_at,
        attempt=command.attempt,
        state=CommandState.SUPERSEDED,
    )


def _rows(analytics: Analytics, command: Command, events: Sequence[CommandEvent]) -> None:
    """The events' ``command_events`` rows into a release's buffer (which cannot fail)."""
    if events:
        analytics.ensure_table(COMMAND_EVENTS)
        export_events(analytics, command, events)


def remote_call_pool(deps: Dependencies) -> ThreadPoolExecutor:
    """The instance's threads for remote calls that go out together (:data:`REMOTE_CALL_THREADS`):
    a release's Cloud Tasks calls, a batch's appends to its tables. Each call mostly waits on a
    round trip, so they wait at the same time instead of one after the other."""
    return deps.singleton(
        "remote_call_pool",
        lambda: ThreadPoolExecutor(
            max_workers=REMOTE_CALL_THREADS, thread_name_prefix="remote-calls"
        ),
    )


class _TaskCalls:
    """The Cloud Tasks calls of one release, made together by :meth:`run` (each in a copy of the
    caller's context, so log fields and the trace follow it); the first error is raised after
    all of them ended."""

    def __init__(self, deps: Dependencies) -> None:
        self._deps = deps
        self._calls: list[Callable[[], None]] = []

    def add(self, call: Callable[[], None]) -> None:
        self._calls.append(call)

    def run(self) -> None:
        calls, self._calls = self._calls, []
        if len(calls) <= 1:
            for call in calls:
                call()
            return
        pool = remote_call_pool(self._deps)
        futures: list[Future[None]] = [
            pool.submit(contextvars.copy_context().run, call) for call in calls
        ]
        errors = [err for future in futures if (err := future.exception()) is not None]
        if errors:
            raise errors[0]


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


class ReleaseBatch:
    """Releases that end together (one optimize shard's): their ``command_events`` rows wait in a
    :class:`~hpsteer.ports.analytics.BufferedAnalytics` (``analytics``, which the shard's other
    rows may share) and their outboxes' conclusions (entries marked, marker deleted) wait for
    :meth:`finish`, which sends the rows first, one append per table, and concludes after.

    So an outbox is concluded only once its rows were appended; until then its marker is there,
    and a crash or a failed append leaves it to a later release (the shard's redelivery, the
    sweep), which derives the rows again from what is stored (module docstring)."""

    def __init__(self, deps: Dependencies) -> None:
        self._deps = deps
        self.analytics = BufferedAnalytics(lambda: deps.analytics)
        self._conclusions: list[tuple[str, Callable[[], None]]] = []

    def later(self, plan_id: str, conclude: Callable[[], None]) -> None:
        self._conclusions.append((plan_id, conclude))

    def finish(self) -> None:
        """Append the rows (the tables at once), then conclude every outbox. Analytics
        unavailable (TransientError): nothing is concluded, the rows not sent stay here and the
        error is raised. Rows refused (PermanentError: sending them again cannot help): logged,
        dropped, and the outboxes concluded. A conclusion that fails transiently leaves its
        marker to the sweep; the others go on, and the first such error is raised after them."""
        try:
            self.analytics.flush(remote_call_pool(self._deps))
        except PermanentError as err:
            _log.error(
                "analytics rows of %d releases refused, dropped: %s", len(self._conclusions), err
            )
        failed: list[TransientError] = []
        conclusions, self._conclusions = self._conclusions, []
        for plan_id, conclude in conclusions:
            try:
                conclude()
            except TransientError as err:
                _log.warning("outbox of plan %s not concluded (the sweep will): %s", plan_id, err)
                failed.append(err)
            except PermanentError as err:
                _log.error(
                    "outbox of plan %s not concluded: %s: %s", plan_id, type(err).__name__, err
                )
        if failed:
            raise failed[0]

    def finish_or_leave(self) -> None:
        """:meth:`finish`, for a lone release that must not fail because analytics does: if it
        is unavailable, the outbox stays unconcluded (its marker left for the sweep's next
        release, which appends the rows again) and a WARNING is logged."""
        try:
            self.finish()
        except TransientError as err:
            _log.warning("release left for the sweep to conclude: %s", err)


def release_plan(
    deps: Dependencies,
    device_id: str,
    device: Mapping[str, Any],
    plan: Mapping[str, Any],
    *,
    batch: ReleaseBatch | None = None,
    current: bool = False,
    fresh: bool = False,
) -> ReleaseOutcome:
    """Turn the plan's pending outbox entries into commands and tasks (module docstring).

    ``batch``: the rows and the conclusion wait for its :meth:`~ReleaseBatch.finish` (without
    one, this release finishes on its own before returning). ``current``: the caller has just
    seen (or made) the device point at this plan, so it is not read again. ``fresh``: the caller
    has just written this plan, so no earlier release of it can have left rows unsent and its
    marker is not read."""
    now = deps.clock.now()
    store = deps.store
    plan_id = str(plan["plan_id"])
    outcome = ReleaseOutcome()
    own = batch is None
    batch = batch if batch is not None else ReleaseBatch(deps)
    if not current:
        snapshot = store.get(device_path(device_id))
        current = snapshot is not None and snapshot.data.get("current_plan_id") == plan_id
    if not current:
        # A newer plan became current since the caller looked (a concurrent optimize): this
        # outbox is moot, and superseding "older" commands now would supersede the newer plan's.
        _drop(deps, device_id, plan, None, batch)
        if own:
            batch.finish_or_leave()
        return outcome
    earlier = _unfinished_marker(deps, device_id, plan, fresh)
    entries = [dict(e) for e in plan.get("outbox", [])]
    plan_end = _instant(plan["end_at"])
    changed = False
    calls = _TaskCalls(deps)
    with log_context(device_id=device_id, plan_id=plan_id):
        superseded_before = _superseded_ids(earlier)
        if superseded_before:
            _export_superseded(deps, batch.analytics, device_id, plan_id, superseded_before)
        # First, so the query meets only older plans' unsent commands (usually none), not this
        # plan's new ones; the device points at this plan already, so dispatch would skip them.
        outcome.superseded = _supersede(
            deps,
            device_id,
            plan_id,
            batch.analytics,
            calls,
            marker_created_at=_optional_instant(plan.get("created_at")),
            recorded_before=superseded_before,
        )
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
            # An existing command: an earlier release of this outbox created it and ended before
            # its rows were surely appended; its created row again (same insert id).
            first = (
                created.model_copy(update={"state": command.state})
                if is_new
                else _created_as_stored(command)
            )
            _rows(batch.analytics, command, [first])
            if command.state is CommandState.PENDING and command.task_name:
                at = max(_instant(entry["at"]), now)
                calls.add(_bind_send(deps, command, command.task_name, at))
            entry.update(
                status="queued", command_id=command.command_id, task_name=command.task_name
            )
            outcome.queued.append(command.command_id)
            changed = True
        calls.run()

        def conclude() -> None:
            if changed:
                store.update(
                    f"devices/{device_id}/plans/{plan_id}",
                    {"outbox": entries, "outbox_released_at": now},
                )
            store.delete(marker_path(device_id, plan_id))

        batch.later(plan_id, conclude)
    if own:
        batch.finish_or_leave()
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


def _bind_send(deps: Dependencies, command: Command, name: str, at: datetime) -> Callable[[], None]:
    return lambda: _enqueue_send(deps, command, name, at)


def _unfinished_marker(
    deps: Dependencies, device_id: str, plan: Mapping[str, Any], fresh: bool
) -> Mapping[str, Any] | None:
    """The marker an earlier release of this plan left (it ended before concluding), or None;
    not read for a plan written just now, nor for one whose outbox was concluded."""
    if fresh or plan.get("outbox_released_at") is not None:
        return None
    snapshot = deps.store.get(marker_path(device_id, str(plan["plan_id"])))
    return None if snapshot is None else snapshot.data


def _superseded_ids(marker: Mapping[str, Any] | None) -> list[str]:
    ids = (marker or {}).get("superseded_command_ids")
    return [str(i) for i in ids] if isinstance(ids, list) else []


def _export_superseded(
    deps: Dependencies, analytics: Analytics, device_id: str, plan_id: str, ids: Sequence[str]
) -> None:
    """The rows of the ``superseded`` events an earlier release of ``plan_id`` recorded (the
    marker names the commands), again: that release may have ended before appending them."""
    for command_id in ids:
        command = load_command(deps.store, device_id, command_id)
        if (
            command is not None
            and command.state is CommandState.SUPERSEDED
            and command.last_dedup_key == _superseded_key(plan_id)
        ):
            _rows(analytics, command, [_superseded_as_stored(command)])


def _drop(
    deps: Dependencies,
    device_id: str,
    plan: Mapping[str, Any],
    marker: Mapping[str, Any] | None,
    batch: ReleaseBatch,
) -> None:
    """A plan that is not current is not released: its marker goes (once the batch's rows are
    appended). If an earlier release of it ended before concluding, the rows of what that
    release recorded are derived again first: the commands of its pending entries, and those
    it superseded (``marker``: the marker as read, if the caller read it)."""
    plan_id = str(plan["plan_id"])
    store = deps.store
    if plan.get("outbox_released_at") is None:
        if marker is None:
            snapshot = store.get(marker_path(device_id, plan_id))
            marker = None if snapshot is None else snapshot.data
        if marker is not None:
            _export_superseded(deps, batch.analytics, device_id, plan_id, _superseded_ids(marker))
            for entry in plan.get("outbox", []):
                if entry.get("status") != "pending":
                    continue
                command_id = command_id_for(plan_id, int(entry["slot_index"]))
                command = load_command(store, device_id, command_id)
                if command is not None:
                    _rows(batch.analytics, command, [_created_as_stored(command)])
    batch.later(plan_id, lambda: store.delete(marker_path(device_id, plan_id)))


class _NoLongerCurrent(Exception):
    """The plan superseding others stopped being the device's current plan."""


def supersede_older(deps: Dependencies, device_id: str, plan_id: str) -> list[str]:
    """Supersede the device's unsent commands of other plans, in one transaction that also
    checks this plan is still the current one (two releases racing cannot supersede the newer
    plan's commands) and names them on the plan's marker; delete their tasks (best effort);
    return their ids. Their ``command_events`` rows are appended before this returns."""
    batch = ReleaseBatch(deps)
    calls = _TaskCalls(deps)
    superseded = _supersede(deps, device_id, plan_id, batch.analytics, calls)
    calls.run()
    try:
        batch.analytics.flush()
    except TransientError as err:
        _log.warning("command_events rows of %d superseded not appended: %s", len(superseded), err)
    return superseded


def _supersede(
    deps: Dependencies,
    device_id: str,
    plan_id: str,
    analytics: Analytics,
    calls: _TaskCalls,
    *,
    marker_created_at: datetime | None = None,
    recorded_before: Sequence[str] = (),
) -> list[str]:
    """:func:`supersede_older`'s work: rows into ``analytics``, task deletions into ``calls``.

    The transaction also writes the ids it superseded on the plan's marker (creating it if the
    plan has none: ``marker_created_at``, else now), beside ``recorded_before``: a later release
    of this plan that finds the marker still there derives their rows again."""
    store = deps.store
    now = deps.clock.now()
    page = store.query(
        f"devices/{device_id}/commands", [Filter("state", "in", _UNSENT)], limit=_PAGE
    )
    older = [
        Command.parse(document.data)
        for document in page.documents
        if document.data.get("plan_id") not in (plan_id, None)
    ]
    if not older:
        return []

    def still_current(tx: Transaction) -> None:
        device = tx.get(device_path(device_id))
        if device is None or device.data.get("current_plan_id") != plan_id:
            raise _NoLongerCurrent(plan_id)

    def superseded_event(command: Command) -> list[NewEvent]:
        detail = {"reason": "newer_plan", "by_plan_id": plan_id}
        return [NewEvent(CommandEventType.SUPERSEDED, now, command.attempt, detail=detail)]

    def name_them(tx: Transaction, recorded: list[Recorded]) -> None:
        ids = dict.fromkeys([*recorded_before, *(c.command_id for c, _ in recorded)])
        tx.set(
            marker_path(device_id, plan_id),
            {
                "device_id": device_id,
                "plan_id": plan_id,
                "created_at": marker_created_at or now,
                "superseded_command_ids": list(ids),
            },
            merge=True,
        )

    try:
        recorded = record_events_together(
            store,
            device_id,
            [command.command_id for command in older],
            superseded_event,
            dedup_key=_superseded_key(plan_id),
            guard=still_current,
            also=name_them,
        )
    except _NoLongerCurrent:
        return []  # a newer plan became current meanwhile: superseding is its release's job
    # A command left out moved on meanwhile (a dispatch sent it): the dispatcher decides.
    superseded: list[str] = []
    for command, events in recorded:
        _rows(analytics, command, events)
        superseded.append(command.command_id)
        if command.task_name:
            calls.add(_bind_delete(deps, command))
    return superseded


def _bind_delete(deps: Dependencies, command: Command) -> Callable[[], None]:
    return lambda: _delete_task(deps, command)


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
        if device is None or plan is None:
            store.delete(marker.path)
            outcome.dropped_markers += 1
            continue
        if device.data.get("current_plan_id") != plan_id:
            batch = ReleaseBatch(deps)
            _drop(deps, device_id, plan.data, marker.data, batch)
            batch.finish_or_leave()
            outcome.dropped_markers += 1
            continue
        release_plan(deps, device_id, device.data, plan.data, current=True)
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
