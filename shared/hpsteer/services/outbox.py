"""From a plan's outbox to commands and Cloud Tasks, and the sweep that makes sure of it.

A plan document carries its mode changes as an outbox (``{at, action, slot_index, status}``,
:mod:`hpsteer.services.plans_store`) and, while the outbox is not concluded, its **release
fields** (:mod:`hpsteer.services.outbox_markers`: ``release_due_at``, when the sweep takes the
release over, and ``release_superseded_command_ids``), written with it. :func:`release_plan`
(called by optimize right after the plan became current, then by the sweep) turns each
``pending`` entry **due within ``release_ahead_minutes``** (2 h) into

1. a command ``devices/{id}/commands/{plan_id}-s{slot:03d}`` (``created``; a second release
   finds it and changes nothing), carrying its slot, ``valid_until`` (the next change's time or
   the plan's end: a send after that would undo the next change) and its task's name;
2. a named task in the manufacturer's queue, scheduled at the slot's start (never in the past);
   ALREADY_EXISTS is success, since the name is derived from device, plan and slot;

**unless an older plan's command already makes that change** (the same mode from the same
instant): then the entry *adopts* it. Re-plans come every few hours and mostly make the same
changes again, so most entries adopt: no command, event, task or row is created, and the adopted
command and its task are left as they are (no write at all). The entry names the command that
carries its change (``command_id``, ``task_name``, ``adopted_from_plan_id``), and dispatch keeps
sending it as long as the device's current plan makes its change
(:class:`~hpsteer.domain.commands.CurrentPlan`); its next event names the adopting plan
(``adopted_by``) and the run's end (``valid_until``, which may have moved either way).

Then the entries become ``queued`` in one update of the plan that also clears its release fields
(``None``: the sweep's range filter never matches it), the outbox's **conclusion**. An entry
whose successor is already due when released is ``skipped`` (the successor sets the mode).

**Changes further ahead wait.** Re-plans come every few hours and mostly move the far changes
(``hpsteer simulate``, 20 homes, 2 days, everything released at once: 1,035 of the 1,089 commands
made for changes more than 3 h ahead were superseded, while 202 of the 203 made less than an hour
ahead were carried out), so making them commands at once costs a command, its events, its task and
its rows for nothing. Entries later than the reach stay ``pending``; instead of clearing the
release fields, the release's one update of the plan marks its entries, moves ``release_due_at``
to the next such entry's instant minus the reach, and clears ``release_superseded_command_ids``
(their rows are appended by then). The sweep, every 30 minutes, releases a plan whose
``release_due_at`` has come, so each change becomes a command and a task 1.5 to 2 hours before its
instant; the release that leaves no entry pending concludes as above. Such a later release
neither adopts nor supersedes (the plan's first release settled the older commands, and none of
them is for an instant beyond its reach), so it creates its commands without querying the
device's commands (:func:`_older_settled`). A plan replaced before its
later changes came within reach never makes them commands: when its release comes due, the sweep
finds the plan no longer current and drops it (clears its release fields). Should the sweep stop,
the changes already released still go out and reconciliation corrects a device left in a mode its
current plan does not want.

The device's older commands that were never sent (``pending``/``retrying`` of another plan) and
that no entry adopts are **superseded**, and their tasks deleted (best effort: a task that still
runs finds its command superseded and sends nothing). Adopting, superseding and creating the plan's
own commands are one transaction (:func:`_settle`) that first checks that this plan is still the
device's current one and judges adoption by the device's ``current_plan_*`` fields, exactly as
dispatch will; it names the superseded commands in the plan's release fields
(``release_superseded_command_ids``, an update of the plan, which the transaction does not read)
and makes the release due :data:`~hpsteer.services.outbox_markers.RELEASE_GRACE` after it ran. So a
plan's commands exist only if they were created while it was current, and the release of any newer
plan, which starts after that plan became current, sees them: no change ends up with two commands
that dispatch would both send. (A device with no older command open, e.g. its first plan, skips
that check: its commands are created by one ``create()`` each, which reads nothing, and their tasks
carry them as created, so that dispatch need not read them either
(:class:`~hpsteer.domain.messages.KnownCommand`). Such a release overtaken by a newer plan creates
commands that are younger than the newer plan, which dispatch never takes for the newer plan's,
unless the newer plan was planned, made current and released within this release's one query: a
window this layer accepts rather than a device read per release. Likewise a release delayed past
the change's instant (a crash, then the sweep, more than a verification's delay later) may find the
older command already completed under the newer plan's run and create the change again: the device
is sent a mode it is already in, once, as a new command; never the same command and attempt twice.)
An older command already sent or acknowledged is adopted when it makes the change (so it is not
sent twice), never superseded here: dispatch and verification settle it. A release's Cloud Tasks
calls (its new tasks, the superseded ones' deletions) go out together on a few threads
(:data:`REMOTE_CALL_THREADS`), not one after the other.

**Analytics rows.** Every event recorded here is a row of ``command_events`` (insert id
``{device}/{command}/{seq:08d}``). The rows wait in a :class:`ReleaseBatch` (an optimize shard
shares one across its devices, with its ``plans`` rows) and are appended, one insert per table,
*before* the outboxes are concluded. So an outbox whose release fields are cleared had its rows
appended (or refused as invalid, which is logged); one whose release ended earlier (a crash,
analytics unavailable) still has them, and the next release of it (the shard's redelivery, or the
sweep) derives the rows again from what is stored: the ``created`` row of each command its
entries already have, and the ``superseded`` row of each command its release fields name (as the
caller read the plan: it is not read again). Appending them twice adds nothing (the insert ids;
BigQuery's deduplication is best effort). A release without a batch (the sweep's) finishes on its
own; if analytics is unavailable it leaves its outbox unconcluded for the next sweep rather than
fail.

A plan that is no longer the device's current plan when its release starts or when its
transaction runs (a concurrent optimize made a newer one current) is not released: it is only
dropped (its release fields cleared), so its late release never supersedes the newer plan's
commands. If an earlier release of it ended before concluding, dropping first derives that
release's rows (as above) and makes sure each of its commands still ``pending`` has its task: the
release may have died between creating the command and its task, and a newer plan may have
adopted the command since.

A crash anywhere in between loses nothing: every step is idempotent, and :func:`sweep` (Cloud
Scheduler, ``command-sweep-requests``) finds every plan whose ``release_due_at`` has come (one
query over the collection group ``plans``, which returns the plans themselves: each costs the
read of its device only; a new plan is due :data:`~hpsteer.services.outbox_markers.RELEASE_GRACE`
after it was made, and a release that supersedes writes it due that long after it ran, so an
interrupted release is taken over), releases it if it is still current, drops it if it is not (it
was replaced before it could be released, or before its later changes came within reach; or its
steering was switched off; or its device is gone), settling the due plans on ``sweep_workers``
threads (16 in terraform; a plan that fails keeps no other back, and the sweep then fails for a
redelivery), and re-enqueues commands that stopped moving (a task that Cloud Tasks gave up on
after a crash in its last attempt): ``pending``/``sent``/``retrying`` get a dispatch task,
``acknowledged`` a verification task. It also raises the alert of a command that failed within
the last ``command_stuck_after_minutes`` if a crash between recording ``failed`` and alerting
kept it back (on the last attempt no redelivery would raise it).
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import threading
from collections.abc import Callable, Mapping, Sequence, Set
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from hpsteer.domain.actions import GenericAction
from hpsteer.domain.commands import (
    Command,
    CommandEvent,
    CommandEventType,
    CommandState,
    CurrentPlan,
)
from hpsteer.domain.messages import CommandSweepRequest, KnownCommand
from hpsteer.errors import (
    DocumentAlreadyExists,
    DocumentNotFound,
    IllegalTransition,
    PermanentError,
    TaskAlreadyExists,
    TransientError,
)
from hpsteer.messaging.envelope import PubSubMessage
from hpsteer.observability.logging import log_context
from hpsteer.ports.analytics import Analytics, BufferedAnalytics
from hpsteer.ports.store import Document, DocumentStore, Filter, Transaction, every_page
from hpsteer.runtime.bootstrap import Dependencies
from hpsteer.services.alerts import alert_path, failure_alert, raise_alert
from hpsteer.services.command_log import (
    COMMAND_EVENTS,
    NewEvent,
    Recorded,
    create_in,
    create_stored,
    events_after,
    export_events,
    known_command,
    load_command,
    read_command,
    write_events,
)
from hpsteer.services.command_tasks import (
    dispatch_task,
    send_task_name,
    sweep_task_name,
    verify_task,
)
from hpsteer.services.outbox_markers import (
    PLANS,
    RELEASE_DUE_AT,
    RELEASE_GRACE,
    RELEASE_SUPERSEDED,
    concluded_release,
    release_unconcluded,
    superseded_by_release,
)
from hpsteer.services.paths import device_path, plan_path

__all__ = [
    "REMOTE_CALL_THREADS",
    "ReleaseBatch",
    "ReleaseOutcome",
    "SweepOutcome",
    "command_id_for",
    "handle_sweep_request",
    "release_plan",
    "supersede_older",
    "sweep",
]

_log = logging.getLogger(__name__)

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


def command_id_for(plan_id: str, slot_index: int) -> str:
    return f"{plan_id}-s{slot_index:03d}"


@dataclass
class ReleaseOutcome:
    queued: list[str] = field(default_factory=list)
    """Command ids whose task exists now (created by this call or before)."""
    skipped: int = 0
    superseded: list[str] = field(default_factory=list)
    adopted: list[str] = field(default_factory=list)
    """Older plans' command ids that carry one of this plan's changes (no command created)."""
    later: int = 0
    """Changes not yet within ``release_ahead_minutes``, left in the outbox for the sweep."""


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


def _enqueue_send(
    deps: Dependencies,
    command: Command,
    name: str,
    at: datetime,
    known: KnownCommand | None = None,
) -> None:
    """The command's dispatch task; ``known``: the command's version it carries (the release
    created or found it just now), so that its first delivery does not read it."""
    with contextlib.suppress(TaskAlreadyExists):
        deps.tasks.create_task(
            dispatch_task(
                deps.settings,
                command.manufacturer,
                name,
                command.device_id,
                command.command_id,
                at,
                known=known,
            )
        )


class ReleaseBatch:
    """Releases that end together (one optimize shard's): their ``command_events`` rows wait in a
    :class:`~hpsteer.ports.analytics.BufferedAnalytics` (``analytics``, which the shard's other
    rows may share) and their outboxes' conclusions (entries marked, release fields cleared or
    moved) wait for :meth:`finish`, which sends the rows first, one append per table, and
    concludes after.

    So an outbox is concluded only once its rows were appended; until then its release fields are
    there, and a crash or a failed append leaves it to a later release (the shard's redelivery, the
    sweep), which derives the rows again from what is stored (module docstring).

    Releases on several threads may share one batch (optimize's shard workers): its rows wait in a
    thread-safe buffer and its conclusions are added under a lock."""

    def __init__(self, deps: Dependencies) -> None:
        self._deps = deps
        self.analytics = BufferedAnalytics(lambda: deps.analytics)
        self._conclusions: list[tuple[str, Callable[[], None]]] = []
        self._adding = threading.Lock()

    def later(self, plan_id: str, conclude: Callable[[], None]) -> None:
        with self._adding:
            self._conclusions.append((plan_id, conclude))

    def finish(self) -> None:
        """Append the rows (the tables at once), then conclude every outbox. Analytics
        unavailable (TransientError): nothing is concluded, the rows not sent stay here and the
        error is raised. Rows refused (PermanentError: sending them again cannot help): logged,
        dropped, and the outboxes concluded. A conclusion that fails transiently leaves its
        plan to the sweep; the others go on, and the first such error is raised after them."""
        try:
            self.analytics.flush(remote_call_pool(self._deps))
        except PermanentError as err:
            _log.error(
                "analytics rows of %d releases refused, dropped: %s", len(self._conclusions), err
            )
        failed: list[TransientError] = []
        with self._adding:
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
        is unavailable, the outbox stays unconcluded (its release fields left for the sweep's
        next release, which appends the rows again) and a WARNING is logged."""
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
    """Turn the plan's pending outbox entries due within ``release_ahead_minutes`` into commands
    and tasks, adopting older plans' commands that make the same change (module docstring).

    ``batch``: the rows and the conclusion wait for its :meth:`~ReleaseBatch.finish` (without
    one, this release finishes on its own before returning). ``current``: the caller has just
    seen (or made) the device point at this plan, so it is not read again. ``fresh``: the caller
    has just written this plan, so no earlier release of it can have left rows unsent or
    commands behind. ``plan`` is the document as the caller read (or wrote) it: its release
    fields (:mod:`~hpsteer.services.outbox_markers`) tell whether an earlier release of it ended
    before concluding, and what that release superseded; the plan is not read again."""
    now = deps.clock.now()
    ahead = timedelta(minutes=deps.settings.release_ahead_minutes)
    reach = now + ahead
    store = deps.store
    plan_id = str(plan["plan_id"])
    outcome = ReleaseOutcome()
    own = batch is None
    batch = batch if batch is not None else ReleaseBatch(deps)
    if not current:
        snapshot = store.get(device_path(device_id))
        current = snapshot is not None and _releasable(snapshot.data, plan_id)
    if not current:
        # A newer plan became current since the caller looked (a concurrent optimize): this
        # outbox is moot, and superseding "older" commands now would supersede the newer plan's.
        _drop(deps, device_id, plan, batch)
        if own:
            batch.finish_or_leave()
        return outcome
    entries = [dict(e) for e in plan.get("outbox", [])]
    plan_end = _instant(plan["end_at"])
    calls = _TaskCalls(deps)
    with log_context(device_id=device_id, plan_id=plan_id):
        superseded_before = [] if fresh else superseded_by_release(plan)
        if superseded_before:
            _export_superseded(deps, batch.analytics, device_id, plan_id, superseded_before)
        due: list[_Due] = []
        for index, entry in enumerate(entries):
            if entry.get("status") != "pending":
                continue
            valid_until = (
                _instant(entries[index + 1]["at"]) if index + 1 < len(entries) else plan_end
            )
            if valid_until <= now:
                entry["status"] = "skipped"
                outcome.skipped += 1
                continue
            if _instant(entry["at"]) > reach:
                continue  # not yet: a later release (the sweep's) makes it a command
            created = _created_event(device_id, device, plan, entry, valid_until, now)
            due.append(_Due(index, _instant(entry["at"]), created))
        settled = _settle(
            deps,
            device_id,
            plan_id,
            due,
            fresh=fresh,
            recorded_before=superseded_before,
            carried={str(e["command_id"]) for e in entries if e.get("command_id")},
            older_settled=_older_settled(plan),
        )
        if settled is None:
            # A newer plan became current during this release: it created and superseded
            # nothing, and the newer plan's release takes over (as above).
            _drop(deps, device_id, plan, batch, fresh=fresh)
            if own:
                batch.finish_or_leave()
            return outcome
        for command, events in settled.superseded:
            _rows(batch.analytics, command, events)
            outcome.superseded.append(command.command_id)
            if command.task_name:
                calls.add(_bind_delete(deps, command))
        for due_entry in due:
            entry = entries[due_entry.index]
            adopted = settled.adopted.get(due_entry.index)
            if adopted is not None:
                # Its task stays: the adopted command goes out as its own plan had it.
                entry.update(
                    status="queued",
                    command_id=adopted.command_id,
                    task_name=adopted.task_name,
                    adopted_from_plan_id=adopted.plan_id,
                )
                outcome.adopted.append(adopted.command_id)
                continue
            command, first = settled.created[due_entry.index]
            # first None: an earlier release of this outbox created the command and ended
            # before its rows were surely appended; its created row again (same insert id).
            _rows(batch.analytics, command, [first or _created_as_stored(command)])
            if command.state is CommandState.PENDING and command.task_name:
                known = settled.known.get(due_entry.index)
                at = max(due_entry.at, now)
                calls.add(_bind_send(deps, command, command.task_name, at, known))
            entry.update(
                status="queued", command_id=command.command_id, task_name=command.task_name
            )
            outcome.queued.append(command.command_id)
        calls.run()
        changed = bool(outcome.skipped or due)
        later = [_instant(e["at"]) for e in entries if e.get("status") == "pending"]
        outcome.later = len(later)

        # The release fields as stored once this release's transaction ran: it set them (due a
        # grace after now) if it superseded anything, else they are as the caller read them.
        unconcluded = bool(settled.superseded) or release_unconcluded(plan)
        names_superseded = bool(settled.superseded or superseded_before)
        due_as_read = None if settled.superseded else _optional_instant(plan.get(RELEASE_DUE_AT))

        def conclude() -> None:
            changes: dict[str, Any] = {"outbox": entries} if changed else {}
            if later:
                # Changes left for later: the plan waits for the sweep until the next one comes
                # within reach (the superseded commands' rows are appended by now), in the same
                # update that marks the entries.
                reach_next = min(later) - ahead
                if reach_next != due_as_read:
                    changes[RELEASE_DUE_AT] = reach_next
                if names_superseded:
                    changes[RELEASE_SUPERSEDED] = None
            elif unconcluded or changed:
                if unconcluded:
                    changes.update(concluded_release())
                changes["outbox_released_at"] = now
            if changes:
                store.update(plan_path(device_id, plan_id), changes)

        batch.later(plan_id, conclude)
    if own:
        batch.finish_or_leave()
    if outcome.queued or outcome.superseded or outcome.adopted:
        _log.info(
            "plan %s released: %d commands queued, %d adopted, %d skipped, %d older superseded, "
            "%d changes left for later",
            plan_id,
            len(outcome.queued),
            len(outcome.adopted),
            outcome.skipped,
            len(outcome.superseded),
            outcome.later,
            extra={"device_id": device_id, "plan_id": plan_id},
        )
    return outcome


def _bind_send(
    deps: Dependencies, command: Command, name: str, at: datetime, known: KnownCommand | None
) -> Callable[[], None]:
    return lambda: _enqueue_send(deps, command, name, at, known)


def _older_settled(plan: Mapping[str, Any]) -> bool:
    """Whether an earlier release of the plan already settled the device's older commands: one
    concluded (it marked an entry ``queued`` or ``skipped``, which it does only after
    :func:`_settle` ran). Then no older command is left to supersede or to adopt: the older
    plans' commands were created while their plans were current, so before this one became
    current, and none of them is for an instant later than that release's reach, which every
    entry still pending lies beyond. So its later releases (the sweep's) query nothing."""
    return any(e.get("status") in ("queued", "skipped") for e in plan.get("outbox", []))


def _releasable(device: Mapping[str, Any], plan_id: str) -> bool:
    """Whether the device's plan ``plan_id`` may still be released: it is the current plan and
    steering was not switched off since (the hand-back superseded its commands; a switch back on
    asks for a new plan)."""
    return device.get("current_plan_id") == plan_id and device.get("steering_enabled") is not False


def _export_superseded(
    deps: Dependencies, analytics: Analytics, device_id: str, plan_id: str, ids: Sequence[str]
) -> None:
    """The rows of the ``superseded`` events an earlier release of ``plan_id`` recorded (its
    release fields name the commands), again: that release may have ended before appending
    them."""
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
    batch: ReleaseBatch,
    *,
    fresh: bool = False,
) -> None:
    """A plan that is not current is not released: its release fields are cleared (once the
    batch's rows are appended). If an earlier release of it ended before concluding (``plan``, as
    the caller read it, has its release fields), what that release recorded is finished first:
    the rows of the commands of its pending entries and of those it superseded, and the task of
    each of its commands still ``pending`` (the release may have ended before creating it, and a
    newer plan may have adopted the command; dispatch decides whether it is still wanted).
    ``fresh``: the plan was written just now, so no earlier release of it exists."""
    plan_id = str(plan["plan_id"])
    store = deps.store
    if not release_unconcluded(plan):
        return  # concluded (or dropped) already: nothing to clear
    if not fresh:
        _export_superseded(deps, batch.analytics, device_id, plan_id, superseded_by_release(plan))
        now = deps.clock.now()
        reach = now + timedelta(minutes=deps.settings.release_ahead_minutes)
        for entry in plan.get("outbox", []):
            if entry.get("status") != "pending" or _instant(entry["at"]) > reach:
                continue  # (no release so far reached a change this late)
            command_id = command_id_for(plan_id, int(entry["slot_index"]))
            command = load_command(store, device_id, command_id)
            if command is None:
                continue
            _rows(batch.analytics, command, [_created_as_stored(command)])
            if command.state is CommandState.PENDING and command.task_name:
                at = max(command.slot_start_at or now, now)
                _enqueue_send(deps, command, command.task_name, at)
    batch.later(plan_id, lambda: _clear_release(store, device_id, plan_id))


def _clear_release(store: DocumentStore, device_id: str, plan_id: str) -> None:
    """Clear the plan's release fields (a plan deleted meanwhile has none left to clear)."""
    with contextlib.suppress(DocumentNotFound):
        store.update(plan_path(device_id, plan_id), concluded_release())


class _NoLongerCurrent(Exception):
    """The plan being released stopped being the device's current plan."""


@dataclass(frozen=True, slots=True)
class _Due:
    """A pending outbox entry still worth a command: its position, instant and command."""

    index: int
    at: datetime
    created: CommandEvent

    @property
    def action(self) -> GenericAction:
        return GenericAction(self.created.detail["generic_action"])


@dataclass
class _Settled:
    """What :func:`_settle`'s transaction did."""

    adopted: dict[int, Command] = field(default_factory=dict)
    """Entry index → the older plan's command that carries its change."""
    superseded: list[Recorded] = field(default_factory=list)
    created: dict[int, tuple[Command, CommandEvent | None]] = field(default_factory=dict)
    """Entry index → its command and its ``created`` event (None: it existed already)."""
    known: dict[int, KnownCommand] = field(default_factory=dict)
    """Entry index → its command's version as created (or found) outside a transaction, for
    its task to carry."""


def supersede_older(deps: Dependencies, device_id: str, plan_id: str) -> list[str]:
    """Supersede the device's unsent commands of other plans, in one transaction that also
    checks this plan is still the current one (two releases racing cannot supersede the newer
    plan's commands) and names them in the plan's release fields; delete their tasks (best effort);
    return their ids. Their ``command_events`` rows are appended before this returns."""
    batch = ReleaseBatch(deps)
    calls = _TaskCalls(deps)
    settled = _settle(deps, device_id, plan_id, [], fresh=True)
    superseded = [] if settled is None else settled.superseded
    for command, events in superseded:
        _rows(batch.analytics, command, events)
        if command.task_name:
            calls.add(_bind_delete(deps, command))
    calls.run()
    try:
        batch.analytics.flush()
    except TransientError as err:
        _log.warning("command_events rows of %d superseded not appended: %s", len(superseded), err)
    return [command.command_id for command, _ in superseded]


def _settle(
    deps: Dependencies,
    device_id: str,
    plan_id: str,
    due: Sequence[_Due],
    *,
    fresh: bool,
    recorded_before: Sequence[str] = (),
    carried: Set[str] = frozenset(),
    older_settled: bool = False,
) -> _Settled | None:
    """Decide, for the device's open commands of other plans, which the plan adopts and which
    it supersedes, and create the commands of its ``due`` entries that adopt none; None if the
    plan is no longer the device's current plan (then nothing was written).

    One query finds the older open commands (``pending``, ``retrying``, ``sent``,
    ``acknowledged``; usually only the unsent changes of the plan before). If none is unsent
    and none makes a change of ``due``, the commands are created without reading anything, one
    ``create()`` each (the common case of a device's first plan). Otherwise one transaction
    first checks that the plan is still current, reading the device, and from the device's
    ``current_plan_*`` fields (:class:`~hpsteer.domain.commands.CurrentPlan`, as dispatch will
    judge them) lets each due entry adopt the older command that makes its change (one already
    sent first, then the oldest); supersedes the other unsent older commands (naming them in the
    plan's release fields, beside ``recorded_before``, and making its release due a grace after
    now: a later release of this plan that finds them unconcluded derives their rows again); and
    creates the remaining entries' commands. So a plan's commands are created only while it is
    current, and a newer plan's release, which starts after it became current, sees all of them.
    A command that is sent, or moved on meanwhile (a dispatch sent it), is never superseded
    here: the dispatcher decides; nor is one of ``carried``, the commands the plan's entries
    already name (an earlier release of this plan adopted them). ``fresh``: no command of this
    plan can exist yet (a release that meets one anyway runs again reading them).
    ``older_settled``: an earlier release of this plan settled the older commands
    (:func:`_older_settled`): the due entries' commands are created without the query."""
    store = deps.store
    if older_settled:
        return _create_alone(store, due)
    now = deps.clock.now()
    page = store.query(
        f"devices/{device_id}/commands", [Filter("state", "in", _MOVING)], limit=_PAGE
    )
    older = [
        Command.parse(document.data)
        for document in page.documents
        if document.data.get("plan_id") not in (plan_id, None)
    ]
    changes = {(d.at, d.action) for d in due}
    candidates = [
        c
        for c in older
        if c.slot_start_at is not None and (c.slot_start_at, c.generic_action) in changes
    ]
    unsent = [c for c in older if c.state.value in _UNSENT and c.command_id not in carried]
    if not candidates and not unsent:
        return _create_alone(store, due)
    by_change: dict[tuple[datetime, GenericAction], list[Command]] = {}
    for command in sorted(candidates, key=_adoption_order):
        assert command.slot_start_at is not None
        by_change.setdefault((command.slot_start_at, command.generic_action), []).append(command)

    def superseded_event(command: Command) -> list[NewEvent]:
        detail = {"reason": "newer_plan", "by_plan_id": plan_id}
        return [NewEvent(CommandEventType.SUPERSEDED, now, command.attempt, detail=detail)]

    def run(tx: Transaction, reading_own: bool) -> _Settled:
        device = tx.get(device_path(device_id))
        if device is None or not _releasable(device.data, plan_id):
            raise _NoLongerCurrent(plan_id)
        settled = _Settled()
        current_plan = CurrentPlan.of_device(device.data)
        for entry in due:
            for command in by_change.get((entry.at, entry.action), []):
                wanted = current_plan.wants(command)
                taken = any(a.command_id == command.command_id for a in settled.adopted.values())
                if (
                    wanted is not None
                    and not taken
                    and (wanted.until is None or wanted.until > now)
                ):
                    settled.adopted[entry.index] = command
                    break
        kept = {c.command_id for c in settled.adopted.values()} | carried
        key = _superseded_key(plan_id)
        # Reads first (Firestore transactions read everything before any write).
        stale = [
            read_command(tx, device_id, c.command_id) for c in unsent if c.command_id not in kept
        ]
        to_create = [d for d in due if d.index not in settled.adopted]
        existing = {
            d.index: read_command(tx, device_id, d.created.command_id)
            for d in (to_create if reading_own else [])
        }
        for read in stale:
            if read is None or read.last_dedup_key == key:
                continue
            try:
                settled.superseded.append(events_after(read, superseded_event(read), key))
            except IllegalTransition:  # it moved on meanwhile (a dispatch sent it)
                continue
        for superseded, written in settled.superseded:
            write_events(tx, device_id, superseded, written)
        if settled.superseded:
            # The plan is not read here: an update of it commits with the transaction all the same.
            ids = [*recorded_before, *(c.command_id for c, _ in settled.superseded)]
            tx.update(
                plan_path(device_id, plan_id),
                {
                    RELEASE_DUE_AT: now + RELEASE_GRACE,
                    RELEASE_SUPERSEDED: list(dict.fromkeys(ids)),
                },
            )
        for entry in to_create:
            found = existing.get(entry.index)
            settled.created[entry.index] = (
                (found, None) if found is not None else create_in(tx, entry.created)
            )
        return settled

    try:
        if fresh:
            try:
                return store.run_transaction(lambda tx: run(tx, False))
            except DocumentAlreadyExists:
                pass  # a release of this plan ran after all: read its commands
        return store.run_transaction(lambda tx: run(tx, True))
    except _NoLongerCurrent:
        return None


def _adoption_order(command: Command) -> tuple[bool, datetime, str]:
    """Which of several older commands making one change is adopted: one already sent (so
    nothing goes out twice), then the oldest."""
    return (command.state.value in _UNSENT, command.created_at, command.command_id)


def _create_alone(store: DocumentStore, due: Sequence[_Due]) -> _Settled:
    """The due entries' commands when no older command needs deciding: one ``create()`` each,
    which reads nothing (a command an earlier release of this outbox created is read and kept as
    it is). Each command's version is known, so its task carries it."""
    settled = _Settled()
    for entry in due:
        made = create_stored(store, entry.created)
        command = made.command
        first = entry.created.model_copy(update={"state": command.state}) if made.is_new else None
        settled.created[entry.index] = (command, first)
        known = known_command(command, made.document)
        if known is not None:
            settled.known[entry.index] = known
    return settled


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
    dropped_plans: int = 0
    """Due plans no longer released (gone, not current, not steered): release fields cleared."""
    requeued_commands: int = 0
    alerts_raised: int = 0


def _sweep_releases(deps: Dependencies, outcome: SweepOutcome) -> None:
    """Settle every plan whose ``release_due_at`` has come (one collection-group query, a page at
    a time: each plan arrives whole with it), on ``sweep_workers`` threads; a plan that fails
    (transiently) does not keep the others back: the first error is raised after them all, for
    the sweep to be delivered again."""
    store = deps.store
    now = deps.clock.now()
    due_plans = every_page(
        lambda cursor: store.collection_group(
            PLANS, [Filter(RELEASE_DUE_AT, "<=", now)], limit=_PAGE, cursor=cursor
        )
    )
    workers = deps.settings.sweep_workers
    errors: list[Exception] = []
    page: list[Document] = []

    def settle(plans: Sequence[Document]) -> None:
        if workers <= 1:
            settled = [_settled_or_error(deps, plan) for plan in plans]
        else:
            with ThreadPoolExecutor(
                max_workers=min(workers, len(plans)), thread_name_prefix="sweep"
            ) as pool:
                settled = list(
                    pool.map(
                        lambda plan: contextvars.copy_context().run(_settled_or_error, deps, plan),
                        plans,
                    )
                )
        for result in settled:
            if isinstance(result, Exception):
                errors.append(result)
            elif result == "released":
                outcome.released_plans += 1
            else:
                outcome.dropped_plans += 1

    for plan in due_plans:
        page.append(plan)
        if len(page) == _PAGE:
            settle(page)
            page = []
    if page:
        settle(page)
    if errors:
        raise errors[0]


def _settled_or_error(deps: Dependencies, plan: Document) -> str | Exception:
    try:
        return _sweep_release(deps, plan)
    except (TransientError, PermanentError) as err:
        _log.warning(
            "release of plan %s not settled (the next sweep will): %s: %s",
            plan.path,
            type(err).__name__,
            err,
        )
        return err


def _sweep_release(deps: Dependencies, plan: Document) -> str:
    """Release a plan whose release came due (``released``), or clear the release fields of one
    no longer current or no longer steered, or whose device is gone (``dropped``). The plan is as
    the sweep's query returned it (``devices/{id}/plans/{plan_id}``): only the device is read."""
    store = deps.store
    device_id = plan.path.split("/")[1]
    plan_id = str(plan.data.get("plan_id") or plan.id)
    with log_context(device_id=device_id, plan_id=plan_id):
        device = store.get(device_path(device_id))
        if device is None:
            _clear_release(store, device_id, plan_id)
            return "dropped"
        if not _releasable(device.data, plan_id):
            batch = ReleaseBatch(deps)
            _drop(deps, device_id, plan.data, batch)
            batch.finish_or_leave()
            return "dropped"
        release_plan(deps, device_id, device.data, plan.data, current=True)
        return "released"


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
    _sweep_releases(deps, outcome)
    _sweep_stuck(deps, outcome)
    _sweep_unalerted_failures(deps, outcome)
    _log.info(
        "sweep: %d plans released, %d stale releases dropped, %d stuck commands re-enqueued, "
        "%d failure alerts raised",
        outcome.released_plans,
        outcome.dropped_plans,
        outcome.requeued_commands,
        outcome.alerts_raised,
    )
    return outcome


def handle_sweep_request(message: PubSubMessage, deps: Dependencies) -> None:
    """``command-sweep-requests``: one sweep (a redelivery sweeps again: harmless)."""
    CommandSweepRequest.parse_json(message.data)
    sweep(deps)
