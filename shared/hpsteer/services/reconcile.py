"""Reconcile: compare every device with its plan, and act on what differs.

Cloud Scheduler publishes a :class:`~hpsteer.domain.messages.ReconcileRequest` on
``reconcile-requests`` every ``reconcile_interval_minutes``. Each message is **one page** of the
device query (``shard_size`` devices from ``shard_cursor``): the handler first claims the page
(creates ``reconcile_runs/{scheduled_at}~{page}`` with the next page's cursor), publishes the next
page's request (so pages run in parallel instances, never one giant query), then reconciles its
own devices, then records the page as done on the same document (``done_at``): a redelivered page
that finds it done does nothing; one that finds it claimed but not done (its first delivery
failed, or still runs) reconciles the page again and publishes the next page the claim recorded,
whatever its own query found, so a duplicate never doubles or forks the pages after it.

Per device (:func:`reconcile_device`): what is intended comes from the device document alone
(the current plan's mode runs, ``current_plan_modes``, kept there by optimize); what the device
shows comes from fresh telemetry (``last_telemetry`` younger than the interval) or else one read
through the manufacturer gateway (breaker and read budget, paid ahead: below; a read that failed
on the manufacturer's 5xx is tried once more after the page's other devices, :func:`_second_look`;
a refused read, or one failed twice, leaves the device for the next run; a device the
manufacturer reports offline counts as unreachable). The pure
:func:`~hpsteer.domain.reconciliation.diff` decides; the actions are applied here:

- ``Override``: ``override_until`` on the device (steering pauses: the dispatcher supersedes the
  plan's commands meanwhile), the sighting kept in ``reconcile.last_override``, a
  :class:`~hpsteer.domain.messages.ReplanRequest` so the next plan starts from the user's choice,
  ``user_overrides_total``;
- ``Remediate``: a command through the dispatch path (``devices/{id}/commands/remedy-…``, its
  named task now), ``state_drift_detected_total``;
- ``RaiseAlert`` / ``ResolveAlert``: ``alerts/{kind}-{device}-{since}`` raised once per episode,
  resolved (``resolved_at``) when the device is back in sync;
- reconciliation's memory (``devices/{id}.reconcile``) is written only when it changes, so a
  device in sync costs one read per run and no write (but its poll's, when the poll is worth
  storing: "Polled telemetry"); judged by fresh telemetry it costs no manufacturer read either.

**Polls paid ahead.** A device's polls fall on ticks known in advance (every ``poll_stride``-th
tick), so they are paid from a booking of the account's read budget (:mod:`hpsteer.adapters.
budget`, "Bookings"; :meth:`~hpsteer.adapters.gateway.ManufacturerGateway.poll_state`): the
device's first poll books its polls of the next :data:`BOOKING_HORIZON` (12 hours), each to be
made within half an interval of its tick, in one transaction that writes the account's document
and a copy on the device (``poll_booking``); every later poll finds the copy on the device
document the page has just read and costs no store operation at all. Before, each poll was a
transaction on the account's document: about 90 reads and 90 writes per device-day, now about 7
and 7 (the bookings, and the retries of reads). A booking pays for each booked poll once, so
each must be made at most once: only the delivery that created the page's claim polls on
bookings, and only at a tick on the schedule's grid (a whole multiple of the interval since the
epoch, as Cloud Scheduler's ``*/interval`` gives them). A redelivered or duplicated page (its
claim exists: it never forks the chain, above), a scheduler's duplicate published in a later
minute (a tick off the grid), and a poll later than half an interval after its tick pay poll by
poll as before; so do the retries of a read (:data:`~hpsteer.adapters.gateway.READ_ATTEMPTS`).
The claim costs one write per page (200 devices).

**Post-command check.** Where a manufacturer's read share cannot pay a poll every run (Onecta),
a device is also read, off its stride, at the first run after the command path's window of its
current mode run (:meth:`_Context.first_after_command_window`): that is when a command that
failed, or was accepted and not applied, leaves the device off its plan for reconciliation to
correct, and waiting for the device's next stride tick made that correction up to two intervals
late. The read is paid from the command share (``for_command``, as the command's verification
is: it is the command's follow-up), about one read per mode change, which Onecta's command share
(140 calls a day, of which a day's commands use about 40 to 60) pays, each in one transaction on
the account's budget as an unbooked verification read is; the read share's bookings stay as they
were. A check whose read fails (an outage: the commands failed for the same reason) is owed:
``reconcile.look_owed_for`` holds the mode run's ``since`` (one write), and every run reads the
device off its stride until a read answers (one more write clears it) or the mode run changes.

**Polled telemetry.** A polled state is telemetry too, and the history (``telemetry_history``)
keeps every one. One worth storing against the device document the page just read
(:func:`~hpsteer.services.ingest_telemetry.state_update_needed`: newer, and something decisions
are made by changed, or the stored sample is past its refresh bound, or the home is off its
plan) is stored by reconciliation itself, as ingestion stores a sample
(:func:`~hpsteer.services.ingest_telemetry.store_sample`, one definition of it): one update of
the device document conditional on its ``update_time`` as the page read it, with
``last_telemetry`` (and ``drift_replan`` when the home left its plan, then the same re-plan
request as ingestion's, and the ``energy_consumption_kwh`` observation). Should the document
have been written since (a pushed sample, optimize, this poll's own booking), ingestion's
transaction stores it instead, judging it again on what is stored, so a newer sample stored in
between stays. (Publishing it for ``ingest_telemetry`` to store cost a publish, a delivery, a
request and a transaction's read besides the write.) A sample observed more than
``max_clock_skew`` in the future is refused as ingestion refuses it (logged, neither stored nor
recorded). A store or bus error while storing is logged and does not fail the device (its
reconciliation's own writes are separate, and unconditional): the sample still goes to the
history, and the next poll stores a newer one. Reconciliation's own later write of the device
(its memory, an override) is a plain update and does not mind the telemetry's write before it.

Every polled sample, stored or not, would otherwise be appended to the history by ingestion,
each at the price of a publish, a delivery, a request and a streaming insert: instead the page
keeps them (its workers add to one thread-safe list) and, once every device is reconciled (also
when one failed the page) and before the run record, appends them to ``telemetry_history``
itself, in one append (:data:`~hpsteer.ports.analytics.MAX_ROWS_PER_APPEND` rows per append at
most), with ingestion's own rows and insert ids
(:func:`~hpsteer.services.ingest_telemetry.append_history`, the table ensured once per
instance), so a sample recorded both ways, or by a redelivered page, is one row.

Should that append fail (analytics unavailable, or its rows refused: one bad row refuses them
all), its samples are published record-only instead (attribute ``record_only``: ingestion
appends each on its own to the history without reading the device, retried by Pub/Sub until
analytics answers; their state was stored already, or needed no storing). The page is not
failed for it: a redelivered page would not bring those samples back (it polls its devices
anew, spending a second read of every device's budget, for new samples) and would re-examine
what was already applied, and an analytics outage would hold up reconciliation, which steers
the fleet, for the sake of its history. A sample that cannot be published either is lost to
the history; the warning counts them.

**Concurrency.** A page waits on the manufacturers almost all the time (a poll is one round trip
to their cloud), so its devices are reconciled on ``reconcile_workers`` threads at once
(:func:`reconcile_all`; 1: one after another). What a device does touches only its own
documents (the device, its commands and tasks, its alerts), and what the threads share is
thread-safe: the gateway (breakers and adapters behind locks, budgets and bookings in store
transactions: workers booking devices of one account meet in its document's transaction),
the metrics, the ports, the polls kept for the history (behind a lock). The outcomes come back
in document order; each worker runs in a copy of the page's context (log ids, trace span), so
its lines and spans are the page's. The page's own steps (the next page's request; the
history's append, the run record) stay on the calling thread, before and after. The messages
the devices publish (re-plan requests, alerts) go out in the order the devices finish, which
Pub/Sub does not keep anyway. A device whose reconciliation
raises (a store that failed: transient) does not stop the others: every device of the page is
reconciled, then the first such error in document order fails the page, so Pub/Sub delivers it
again (the run record is not written), and the redelivered page finds what was done done (an open
remediation, an override in force, a command or task that exists) and does the rest.

Log volume: one INFO line per page (its outcome counts); per device only what a person may need
(an override, a drift's remediation, an alert, a failure).

A device with an unknown manufacturer or a broken document is reported (logged, counted), never
crashes the page.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import hashlib
import logging
import math
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Final

from hpsteer.adapters.budget import BOOKING_FIELD, Schedule, plan_windows
from hpsteer.adapters.gateway import ManufacturerGateway, device_ref
from hpsteer.adapters.protocol import DeviceRef, DeviceState, RateLimitConfig
from hpsteer.domain.actions import Mode
from hpsteer.domain.commands import CommandEvent, CommandEventType, mode_run_since
from hpsteer.domain.instants import instant_or_none
from hpsteer.domain.market import PriceArea, delivery_day_bounds, market_date_of
from hpsteer.domain.messages import (
    Alert,
    AlertSeverity,
    ReconcileRequest,
    ReplanRequest,
    Topic,
    schedule_tick,
)
from hpsteer.domain.reconciliation import (
    Action,
    AlertKind,
    InSync,
    Intended,
    MarkReachable,
    MarkUnreachable,
    Memory,
    Observed,
    Override,
    Policy,
    RaiseAlert,
    Remediate,
    ResolveAlert,
    Skip,
    diff,
    needs_no_look,
)
from hpsteer.domain.telemetry import TelemetrySample
from hpsteer.errors import (
    DeviceOffline,
    DocumentAlreadyExists,
    OemUnavailable,
    PermanentError,
    TaskAlreadyExists,
    TransientError,
)
from hpsteer.messaging.envelope import PubSubMessage, encode_json_message
from hpsteer.observability.logging import log_context
from hpsteer.observability.metrics import (
    RECONCILIATION_FAILURE_TOTAL,
    RECONCILIATION_SKIPPED_TOTAL,
    RECONCILIATION_SUCCESS_TOTAL,
    STATE_DRIFT_DETECTED_TOTAL,
    USER_OVERRIDES_TOTAL,
    Metrics,
    metrics,
)
from hpsteer.observability.tracing import span
from hpsteer.ports.analytics import MAX_ROWS_PER_APPEND
from hpsteer.ports.store import Document
from hpsteer.runtime.bootstrap import Dependencies
from hpsteer.services.alerts import alert_path, raise_alert
from hpsteer.services.command_log import (
    append_event_rows,
    create_command,
    last_accepted_mode,
)
from hpsteer.services.command_tasks import dispatch_task
from hpsteer.services.ingest_telemetry import (
    append_history,
    publish_sample,
    refuse_future,
    sample_from_device_state,
    store_sample,
    telemetry_options,
)
from hpsteer.services.paths import device_path
from hpsteer.services.recheck_tasks import recheck_at, recheck_task
from hpsteer.services.replan_requests import publish_replan_request

__all__ = [
    "RECONCILIATION_FAILURE_TOTAL",
    "RECONCILIATION_SUCCESS_TOTAL",
    "STATE_DRIFT_DETECTED_TOTAL",
    "USER_OVERRIDES_TOTAL",
    "DeviceOutcome",
    "handle_reconcile_request",
    "intended_now",
    "reconcile_all",
    "reconcile_context",
    "reconcile_device",
    "reconcile_page",
    "record_polls",
]

_log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class DeviceOutcome:
    device_id: str
    actions: tuple[str, ...]
    read: bool = False
    """Whether the manufacturer was asked (no fresh telemetry)."""
    error: str | None = None
    retry_at: datetime | None = None
    """When the failed read's manufacturer, budget or breaker will let a read through again, if
    it said so (a 429's ``Retry-After``, the window of a spent share, a breaker's half-open)."""


class _Polls:
    """A page's polled samples, stored or not, kept for the history's one append at the page's
    end (:func:`record_polls`). Thread-safe: the page's workers add to it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._samples: list[TelemetrySample] = []

    def add(self, sample: TelemetrySample) -> None:
        with self._lock:
            self._samples.append(sample)

    def take(self) -> list[TelemetrySample]:
        """What was kept, in the order it came, and forget it."""
        with self._lock:
            taken, self._samples = self._samples, []
        return taken


@dataclass
class _Context:
    deps: Dependencies
    gateway: ManufacturerGateway
    counters: Metrics
    now: datetime
    scheduled_at: datetime
    policy: Policy
    strides: dict[str, int] = field(default_factory=dict)
    polled: _Polls = field(default_factory=_Polls)
    """The page's polled samples, for :func:`record_polls`."""
    books: bool = False
    """Whether this page's polls are paid from bookings (:meth:`schedule`): the first delivery
    of a page of a tick on the interval's grid (module docstring, "Polls paid ahead")."""
    _strides_lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    @property
    def interval(self) -> timedelta:
        return timedelta(minutes=self.deps.settings.reconcile_interval_minutes)

    def stride(self, manufacturer: str) -> int:
        with self._strides_lock:  # the page's workers share it
            stride = self.strides.get(manufacturer)
            if stride is None:
                limits = self.gateway.adapter(manufacturer).rate_limits
                stride = self.strides[manufacturer] = poll_stride(limits, self.interval)
        return stride

    def poll_due(self, device: DeviceRef) -> bool:
        """Whether this run may poll the device: every run, or every k-th (by a hash of the
        device, so the polls spread over the runs) where the manufacturer's read share cannot
        pay for a poll every run."""
        stride = self.stride(device.manufacturer)
        if stride == 1:
            return True
        tick = (
            int(self.scheduled_at.timestamp() // 60)
            // self.deps.settings.reconcile_interval_minutes
        )
        offset = int(hashlib.sha256(device.device_id.encode()).hexdigest()[:8], 16)
        return (tick + offset) % stride == 0

    def first_after_command_window(self, intended: Intended) -> bool:
        """Whether this run is the first after the command path's window of the current mode run
        (its send, verification and re-send): the run that sees whether the command path brought
        the device there. A device whose manufacturer is polled only every k-th run is read at
        that run all the same (:meth:`_Device.observe`, "Post-command check" in the module
        docstring)."""
        if intended.since is None:
            return False
        opens = intended.since + self.policy.command_window
        return opens <= self.scheduled_at < opens + self.interval

    def schedule(self, device: DeviceRef, data: Mapping[str, Any]) -> Schedule | None:
        """The device's polls from this tick on, as its booking pays for them (``None``: this
        page pays poll by poll): every stride-th tick, each within half an interval of its
        tick, booked :data:`BOOKING_HORIZON` ahead, held by the device's document."""
        if not self.books:
            return None
        return Schedule(
            at=self.scheduled_at,
            period=self.interval * self.stride(device.manufacturer),
            span=self.interval / 2,
            horizon=max(BOOKING_HORIZON, self.interval * self.stride(device.manufacturer)),
            holder=device_path(device.device_id),
            held=data.get(BOOKING_FIELD),
        )


def _mode(value: Any) -> Mode | None:
    try:
        return Mode(value) if value is not None else None
    except ValueError:
        return None


def intended_now(device: Mapping[str, Any], now: datetime) -> tuple[Intended, frozenset[Mode]]:
    """The current plan's mode now (from the device document), and the modes we commanded: the
    plan's so far and the mode the plan before it held the device in (``previous_plan_mode``).
    The mode's ``since`` is when its run began: the run's start, or, for a first run that
    continues the outgoing plan's mode without a command of its own, the ``since`` stored with
    it (:func:`~hpsteer.services.plans_store.make_current`)."""
    runs = [
        (at, mode, mode_run_since(run, at))
        for run in device.get("current_plan_modes") or []
        if isinstance(run, Mapping)
        and (at := instant_or_none(run.get("at"))) is not None
        and (mode := _mode(run.get("mode"))) is not None
    ]
    end_at = instant_or_none(device.get("current_plan_end_at"))
    plan_id = device.get("current_plan_id")
    past = [(at, mode, since) for at, mode, since in runs if at <= now]
    if not past or (end_at is not None and now >= end_at):
        return Intended(None, plan_id=plan_id), frozenset()
    _, mode, since = past[-1]  # since: begun under an older plan, or at its start
    later = [at for at, _, _ in runs if at > now]
    until = later[0] if later else end_at
    commanded = {m for _, m, _ in past}
    previous = _mode(device.get("previous_plan_mode"))
    if previous is not None:
        commanded.add(previous)  # the outgoing plan's mode: ours, if the new plan's command failed
    return Intended(mode, since, until, plan_id), frozenset(commanded)


def _memory(device: Mapping[str, Any], commanded: frozenset[Mode]) -> Memory:
    state = device.get("reconcile") or {}
    alert = state.get("open_alert")
    sighting = device.get("override_seen")
    seen_at = instant_or_none(sighting.get("at")) if isinstance(sighting, Mapping) else None
    seen_mode = _mode(sighting.get("observed_mode")) if isinstance(sighting, Mapping) else None
    return Memory(
        household_change_seen_at=seen_at,
        household_change_mode=seen_mode,
        steering_enabled=device.get("steering_enabled") is not False,
        override_until=instant_or_none(device.get("override_until")),
        remediations_in_a_row=int(state.get("remediations_in_a_row") or 0),
        open_remediation_until=instant_or_none(state.get("open_remediation_until")),
        unreachable_since=instant_or_none(state.get("unreachable_since")),
        open_alert=AlertKind(alert) if alert in {k.value for k in AlertKind} else None,
        commanded_modes=commanded,
    )


def _fresh_telemetry(device: Mapping[str, Any], now: datetime, fresh: timedelta) -> Observed | None:
    telemetry = device.get("last_telemetry")
    if not isinstance(telemetry, Mapping):
        return None
    observed_at = instant_or_none(telemetry.get("observed_at"))
    if observed_at is None or now - observed_at > fresh:
        return None
    if telemetry.get("observed_mode") is None and telemetry.get("setpoint_offset_k") is None:
        return None  # a sample of temperatures only says nothing of the mode: read instead
    online = telemetry.get("online")
    by_user = telemetry.get("changed_by_user")
    offset = telemetry.get("setpoint_offset_k")
    return Observed(
        online=online is not False,
        mode=_own_control_if_unplaced(
            _mode(telemetry.get("observed_mode")),
            float(offset) if isinstance(offset, int | float) else None,
        ),
        observed_at=observed_at,
        changed_by_user=by_user if isinstance(by_user, bool) else None,
    )


def _own_control_if_unplaced(mode: Mode | None, offset_k: float | None) -> Mode | None:
    """A device whose setting the adapter cannot place against the household's own (no offset:
    hpsteer never steered it, so no baseline was learnt) runs on its own control: ``mid``."""
    if mode is None and offset_k is None:
        return Mode.MID
    return mode


POLL_SHARE_USED = 0.8
"""Of the read share, what polling plans to use (the rest absorbs retries and refused reads)."""
BOOKING_HORIZON = timedelta(hours=12)
"""How far ahead a device's polls are booked (module docstring, "Polls paid ahead")."""
NOT_POLLED = "not_polled"


def poll_stride(limits: RateLimitConfig, interval: timedelta) -> int:
    """Poll every k-th run: the smallest k whose polls fit every window's read share."""
    stride = 1
    for plan in plan_windows(limits):
        polls_per_window = POLL_SHARE_USED * plan.read_cap / limits.calls_per_state_read
        runs_per_window = plan.window / interval
        if polls_per_window <= 0:
            return 1_000_000  # no read share at all: never poll
        stride = max(stride, math.ceil(runs_per_window / polls_per_window))
    return stride


def _pause_until(area: Any, now: datetime) -> datetime:
    """The end of the current plan day: the market-local day of now, in the device's area."""
    try:
        price_area = PriceArea(area)
    except ValueError:
        return now + timedelta(hours=12)
    return delivery_day_bounds(price_area, market_date_of(price_area, now))[1]


class _Device:
    """One device's reconciliation: observe, decide, apply."""

    def __init__(self, ctx: _Context, document: Document) -> None:
        self.ctx = ctx
        self.device_id = document.id
        self.data = document.data
        self.update_time = document.update_time
        """When the page's query read :attr:`data`: the precondition of storing a poll."""
        self.changes: dict[str, Any] = {}
        self.after_save: list[Callable[[], None]] = []
        """What must wait until :attr:`changes` are stored (:meth:`save`)."""
        self.state: dict[str, Any] = dict(self.data.get("reconcile") or {})
        self.read = False
        self.retry_at: datetime | None = None
        """When a read that failed may pass again, if its failure said so."""

    def observe(self, intended: Intended) -> Observed | str | None:
        """What the device shows; a string when it could not be judged now (and why)."""
        ctx = self.ctx
        interval = timedelta(minutes=ctx.deps.settings.reconcile_interval_minutes)
        fresh_for = interval / 2  # never judge by the poll of the last run: it is a run old
        fresh = _fresh_telemetry(self.data, ctx.now, fresh_for)
        if fresh is not None:
            return fresh
        ref = device_ref(self.device_id, self.data)
        polled = ctx.poll_due(ref)
        owed = self.look_owed(intended)
        checks = owed or ctx.first_after_command_window(intended)
        if not polled and not checks:
            return NOT_POLLED
        self.read = True
        schedule = ctx.schedule(ref, self.data) if polled else None
        try:
            if not polled:  # the post-command check: a read for the command, from its share
                state = ctx.gateway.read_state(ref, for_command=True)
            elif schedule is None:
                state = ctx.gateway.read_state(ref)
            else:
                state = ctx.gateway.poll_state(ref, schedule)
        except DeviceOffline:
            if owed:  # answered: the device is offline, and unreachability is judged instead
                self.set_state(look_owed_for=None)
            return None
        except TransientError as err:
            self.retry_at = getattr(err, "retry_at", None)
            if checks and intended.since is not None:
                self.set_state(look_owed_for=intended.since)  # until a read answers
            return type(err).__name__
        if owed:
            self.set_state(look_owed_for=None)
        if state.online and ctx.now - state.observed_at > interval:
            return "StaleTelemetry"  # the manufacturer's figures stopped moving: judge nothing
        self.share(state)
        return Observed(
            online=state.online,
            mode=_own_control_if_unplaced(state.mode, state.setpoint_offset_k),
            observed_at=state.observed_at,
            changed_by_user=state.changed_by_user,
        )

    def look_owed(self, intended: Intended) -> bool:
        """Whether the post-command check of the current mode run failed and is still owed
        (``reconcile.look_owed_for``: the run's ``since``; module docstring)."""
        owed_for = instant_or_none(self.state.get("look_owed_for"))
        return owed_for is not None and owed_for == intended.since

    def share(self, state: DeviceState) -> None:
        """A polled state is telemetry too: kept for the page's append to the history, and,
        when worth storing against the device document the page read, stored as
        ``last_telemetry`` as ingestion stores a sample (one update conditional on that read;
        a re-plan asked when the home left its plan), so the planner's measured start follows
        it (module docstring, "Polled telemetry"). Neither failure fails the device."""
        deps = self.ctx.deps
        options = telemetry_options(deps.settings)
        now = deps.clock.now()
        try:
            sample = sample_from_device_state(state, self.device_id)
            refuse_future(sample, now, options)
        except PermanentError as err:
            _log.warning("polled state of %s refused: %s", self.device_id, err)
            return
        self.ctx.polled.add(sample)
        try:
            store_sample(deps, sample, options, read=(self.data, self.update_time), now=now)
        except (TransientError, PermanentError) as err:
            _log.warning(
                "polled state of %s not stored (or its re-plan not asked): %s: %s",
                self.device_id,
                type(err).__name__,
                err,
            )

    def run(self) -> DeviceOutcome:
        ctx = self.ctx
        intended, commanded = intended_now(self.data, ctx.now)
        memory = _memory(self.data, commanded)
        pause_until = _pause_until(self.data.get("price_area"), ctx.now)
        observed: Observed | None = None
        decided = needs_no_look(
            intended, memory, ctx.now, pause_until=pause_until, policy=ctx.policy
        )
        if decided is not None:
            actions = decided  # nothing to read for these: no budget spent
        else:
            looked = self.observe(intended)
            if isinstance(looked, str):
                if looked != NOT_POLLED:
                    ctx.counters.inc(RECONCILIATION_FAILURE_TOTAL, reason=looked)
                _log.debug("not judged %s: %s", self.device_id, looked)
                self.save()  # a post-command check owed, if this read was one
                return DeviceOutcome(self.device_id, (looked,), self.read, looked, self.retry_at)
            observed = looked
            if observed is not None:
                memory = self.with_our_last_mode(memory, intended, observed)
            actions = diff(
                intended, observed, memory, ctx.now, pause_until=pause_until, policy=ctx.policy
            )
        for action in actions:
            self.apply(action, intended, observed)
        self.save()
        names = tuple(type(a).__name__ for a in actions)
        if _log.isEnabledFor(logging.DEBUG):
            _log.debug(
                "reconciled %s: intended %s, observed %s: %s",
                self.device_id,
                intended.mode.value if intended.mode else None,
                observed.mode.value if observed and observed.mode else None,
                ", ".join(repr(a) for a in actions),
            )
        return DeviceOutcome(self.device_id, names, self.read)

    def with_our_last_mode(self, memory: Memory, intended: Intended, observed: Observed) -> Memory:
        """``memory`` with the observed ``min`` or ``max`` among our modes when our last accepted
        command put the device there (:func:`~hpsteer.services.command_log.last_accepted_mode`).

        Only asked when the rules would otherwise call the sighting the household's (rule 4 of
        :mod:`hpsteer.domain.reconciliation`: ``min``/``max`` outside the modes the current and
        previous plans commanded, the manufacturer silent on who changed it), so the query is
        rare. It matters after failed commands: plans that replaced each other while their
        commands failed (an outage) leave the device where an older plan put it, in a mode no
        current plan names, and that was taken for the household's choice, pausing steering for
        the rest of the day (campaign seed 7). A household setting equal to the mode we last set
        is no change at all."""
        mode = observed.mode
        if (
            observed.changed_by_user is not None
            or mode is None
            or mode is Mode.MID
            or mode is intended.mode
            or mode in memory.commanded_modes
        ):
            return memory
        if last_accepted_mode(self.ctx.deps.store, self.device_id) is not mode:
            return memory
        return dataclasses.replace(memory, commanded_modes=memory.commanded_modes | {mode})

    # -- actions ---------------------------------------------------------------------------

    def apply(self, action: Action, intended: Intended, observed: Observed | None) -> None:
        ctx = self.ctx
        oem = str(self.data.get("manufacturer", "unknown"))
        if isinstance(action, Skip):
            ctx.counters.inc(RECONCILIATION_SKIPPED_TOTAL, reason=action.reason.value)
        elif isinstance(action, InSync):
            ctx.counters.inc(RECONCILIATION_SUCCESS_TOTAL, oem=oem)
            self.set_state(remediations_in_a_row=0, open_remediation_until=None)
        elif isinstance(action, MarkUnreachable):
            self.set_state(unreachable_since=action.since)
        elif isinstance(action, MarkReachable):
            self.set_state(unreachable_since=None)
        elif isinstance(action, Override):
            self.override(action, intended, observed, oem)
        elif isinstance(action, Remediate):
            self.remediate(action, intended, oem)
        elif isinstance(action, RaiseAlert):
            self.raise_alert(action, oem)
        elif isinstance(action, ResolveAlert):
            self.resolve_alert()

    def set_state(self, **values: Any) -> None:
        for key, value in values.items():
            if self.state.get(key) != value:
                self.state[key] = value
                self.changes[f"reconcile.{key}"] = value

    def override(
        self, action: Override, intended: Intended, observed: Observed | None, oem: str
    ) -> None:
        ctx = self.ctx
        self.changes["override_until"] = action.pause_until
        if self.data.get("override_seen") is not None:
            self.changes["override_seen"] = None  # acted on
        self.set_state(
            last_override={
                "seen_at": ctx.now,
                "observed_mode": action.observed_mode.value if action.observed_mode else None,
                "intended_mode": intended.mode.value if intended.mode else None,
                "plan_id": intended.plan_id,
                "pause_until": action.pause_until,
            },
            remediations_in_a_row=0,
            open_remediation_until=None,
        )
        ctx.counters.inc(USER_OVERRIDES_TOTAL, oem=oem)
        self.after_save.append(self.hand_over_to_household)
        _log.info(
            "household override on %s: steering paused until %s",
            self.device_id,
            action.pause_until.isoformat(),
        )

    def hand_over_to_household(self) -> None:
        """Once the pause is stored: the household's new setting is its own control from now on
        (``mid`` after the pause must mean it, not the setting learnt before the change), and the
        next plan starts from it. Not before: were the pause's write to fail, the redelivered
        page must still find the household's setting placeable, and see the override again."""
        ctx = self.ctx
        ctx.gateway.forget_baseline(device_ref(self.device_id, self.data))
        request = ReplanRequest(
            device_id=self.device_id,
            reason=f"user override seen at {ctx.now.isoformat()}",
            requested_at=ctx.now,
        )
        publish_replan_request(ctx.deps.bus, request)

    def remediate(self, action: Remediate, intended: Intended, oem: str) -> None:
        ctx = self.ctx
        stamp = ctx.scheduled_at.strftime("%Y%m%dT%H%MZ")
        command_id = f"remedy-{stamp}"
        name = (
            "remedy-" + hashlib.sha256(f"{self.device_id}|{command_id}".encode()).hexdigest()[:32]
        )
        created = CommandEvent(
            command_id=command_id,
            seq=1,
            type=CommandEventType.CREATED,
            at=ctx.now,
            detail={
                "device_id": self.device_id,
                "manufacturer": oem,
                "generic_action": action.mode.action.value,
                "plan_id": intended.plan_id,
                "slot_start_at": ctx.now.isoformat(),
                "valid_until": intended.until.isoformat() if intended.until else None,
                "task_name": name,
                "correlation_id": f"reconcile-{stamp}",
            },
        )
        command, is_new = create_command(ctx.deps.store, created)
        if is_new:
            append_event_rows(ctx.deps.analytics, command, [created])
        with contextlib.suppress(TaskAlreadyExists):  # a redelivered page: already queued
            ctx.deps.tasks.create_task(
                dispatch_task(ctx.deps.settings, oem, name, self.device_id, command_id, ctx.now)
            )
        self.set_state(
            remediations_in_a_row=action.attempt,
            open_remediation_until=action.open_until,
            last_remediation_command_id=command_id,
        )
        ctx.counters.inc(STATE_DRIFT_DETECTED_TOTAL, oem=oem)
        _log.warning(
            "drift on %s: remediation %d (%s) as command %s",
            self.device_id,
            action.attempt,
            action.mode.value,
            command_id,
        )

    def raise_alert(self, action: RaiseAlert, oem: str) -> None:
        ctx = self.ctx
        since = (
            self.state.get("unreachable_since")
            if action.kind is AlertKind.DEVICE_UNREACHABLE
            else None
        )
        episode = (instant_or_none(since) or ctx.now).strftime("%Y%m%dT%H%MZ")
        alert_id = f"{action.kind.value}-{self.device_id}-{episode}"
        raise_alert(
            ctx.deps.store,
            ctx.deps.bus,
            Alert(
                alert_id=alert_id,
                severity=AlertSeverity.CRITICAL,
                kind=action.kind.value,
                message=f"device {self.device_id}: {action.message}",
                raised_at=ctx.now,
                device_id=self.device_id,
                manufacturer=oem,
            ),
        )
        ctx.counters.inc(RECONCILIATION_FAILURE_TOTAL, reason=action.kind.value)
        self.set_state(open_alert=action.kind.value, open_alert_id=alert_id)

    def resolve_alert(self) -> None:
        alert_id = self.state.get("open_alert_id")
        if isinstance(alert_id, str):
            existing = self.ctx.deps.store.get(alert_path(alert_id))
            if existing is not None and existing.data.get("resolved_at") is None:
                self.ctx.deps.store.update(alert_path(alert_id), {"resolved_at": self.ctx.now})
                _log.info("alert %s resolved: %s back in sync", alert_id, self.device_id)
        self.set_state(open_alert=None, open_alert_id=None)

    def save(self) -> None:
        """Store what changed, then do what had to wait for it (:attr:`after_save`)."""
        if self.changes:
            self.changes["reconcile.updated_at"] = self.ctx.now
            self.ctx.deps.store.update(device_path(self.device_id), self.changes)
        for step in self.after_save:
            step()


def reconcile_device(ctx: _Context, document: Document) -> DeviceOutcome:
    """One device's reconciliation (see the module docstring); a permanent error of the device
    (an unknown manufacturer, a broken document) is its outcome, anything else is raised."""
    with span("reconcile_device", {"device_id": document.id}), log_context(device_id=document.id):
        try:
            return _Device(ctx, document).run()
        except PermanentError as err:
            ctx.counters.inc(RECONCILIATION_FAILURE_TOTAL, reason=type(err).__name__)
            _log.error("device %s not reconciled: %s: %s", document.id, type(err).__name__, err)
            return DeviceOutcome(document.id, ("failed",), error=type(err).__name__)


def reconcile_all(
    ctx: _Context, documents: Sequence[Document], workers: int
) -> list[DeviceOutcome]:
    """Every device's outcome, in document order, reconciled on up to ``workers`` threads at
    once (one: in this thread, one after another). Each device runs in a copy of the caller's
    context (log ids, the current span). Every device is reconciled even when one raises; the
    first error in document order is raised afterwards."""
    if workers <= 1 or len(documents) <= 1:
        return [reconcile_device(ctx, document) for document in documents]
    with ThreadPoolExecutor(
        max_workers=min(workers, len(documents)), thread_name_prefix="reconcile"
    ) as pool:
        futures = [
            pool.submit(contextvars.copy_context().run, reconcile_device, ctx, document)
            for document in documents
        ]
    # Leaving the block waited for every device: result() raises the first failure in order.
    return [future.result() for future in futures]


SECOND_LOOK_AFTER: Final = frozenset({OemUnavailable.__name__})
"""The read failures a page tries once more (:func:`_second_look`): the manufacturer's 5xx and
timeouts. Not a 429 nor a spent budget (the account is blocked for a while: a second read now
would be refused), nor an open breaker."""


def _second_look(
    ctx: _Context, documents: Sequence[Document], outcomes: list[DeviceOutcome], workers: int
) -> list[DeviceOutcome]:
    """``outcomes`` with the devices whose read failed on the manufacturer's 5xx (after the
    read's own :data:`~hpsteer.adapters.gateway.READ_ATTEMPTS`) reconciled once more, after every
    other device of the page, so a few seconds later in the cloud.

    Why: a failed read leaves the device unjudged until the next run, an interval later, and a
    drift that became visible then is corrected an interval late. Against a cloud failing 30 % of
    calls (the ``heavy`` profile) a two-call read fails its three attempts often enough to be
    the commonest cause of such delays after the poll stride (campaign runs). The second look is
    a plain read, paid unit by unit from the read share (its booked poll was spent), so it costs
    budget only for reads that failed, and a store read of each such device's document (the
    first look may have written it)."""
    again = [index for index, outcome in enumerate(outcomes) if outcome.error in SECOND_LOOK_AFTER]
    if not again:
        return outcomes
    unbooked = dataclasses.replace(ctx, books=False)
    # As they are now: the first look may have written them (a post-command check owed).
    fresh = [ctx.deps.store.get(device_path(documents[i].id)) or documents[i] for i in again]
    second = reconcile_all(unbooked, fresh, workers)
    merged = list(outcomes)
    for index, outcome in zip(again, second, strict=True):
        merged[index] = outcome
    return merged


def _schedule_rechecks(ctx: _Context, outcomes: Sequence[DeviceOutcome]) -> None:
    """A recheck task for every device whose read failed in a way a minute may mend
    (:func:`~hpsteer.services.recheck_tasks.recheck_at`). One that cannot be queued is logged
    and left to the next run: the page's work is done and stands."""
    deps = ctx.deps
    now = deps.clock.now()
    for outcome in outcomes:
        at = recheck_at(outcome.error, outcome.retry_at, now, ctx.scheduled_at, ctx.interval)
        if at is None:
            continue
        task = recheck_task(deps.settings, outcome.device_id, ctx.scheduled_at, at)
        try:
            deps.tasks.create_task(task)
        except TaskAlreadyExists:  # a redelivered page: already queued
            continue
        except TransientError as err:
            _log.warning(
                "no recheck of %s queued (%s: %s): the next run judges it",
                outcome.device_id,
                type(err).__name__,
                err,
            )


def reconcile_context(
    deps: Dependencies,
    tick: datetime,
    *,
    gateway: ManufacturerGateway,
    counters: Metrics = metrics,
    policy: Policy | None = None,
    books: bool = False,
) -> _Context:
    """What the devices of the run of ``tick`` are reconciled with, from now on (a page's, or
    a recheck's, :mod:`hpsteer.services.recheck`); the policy from the settings by default."""
    settings = deps.settings
    return _Context(
        deps,
        gateway,
        counters,
        deps.clock.now(),
        tick,
        policy
        or Policy(
            max_remediations=settings.max_remediations,
            unreachable_alert_after=timedelta(minutes=settings.unreachable_alert_after_minutes),
            # A command's send, verification and its one remediation's verification, with margin.
            command_window=timedelta(seconds=2 * settings.verify_delay_seconds + 300),
            remediation_window=timedelta(seconds=2 * settings.verify_delay_seconds + 300),
        ),
        books=books,
    )


def record_polls(ctx: _Context) -> None:
    """Append the page's polled samples to ``telemetry_history``: one append (per
    :data:`~hpsteer.ports.analytics.MAX_ROWS_PER_APPEND` samples). The samples of an append that
    failed are published record-only instead, for ingestion to append (module docstring)."""
    samples = ctx.polled.take()
    deps = ctx.deps
    ingested_at = deps.clock.now()
    for first in range(0, len(samples), MAX_ROWS_PER_APPEND):
        chunk = samples[first : first + MAX_ROWS_PER_APPEND]
        try:
            append_history(deps, chunk, ingested_at)
        except (TransientError, PermanentError) as err:
            lost = 0
            for sample in chunk:
                try:
                    publish_sample(deps.bus, sample, record_only=True)
                except (TransientError, PermanentError):
                    lost += 1
            _log.warning(
                "%d polled samples not appended to telemetry_history (%s: %s): published to be "
                "recorded by ingestion instead, %d of them lost (not published either)",
                len(chunk),
                type(err).__name__,
                err,
                lost,
            )


def _tick(request: ReconcileRequest, deps: Dependencies) -> datetime:
    return schedule_tick(request.scheduled_at, deps.clock.now())


def _done(claim: Document | None) -> bool:
    return claim is not None and claim.data.get("done_at") is not None


def _on_the_grid(tick: datetime, interval_minutes: int) -> bool:
    """Whether ``tick`` is one of the schedule's own (a whole multiple of the interval since the
    epoch, as Cloud Scheduler's ``*/interval`` gives them), not a duplicate's later minute."""
    seconds = tick.timestamp()
    return seconds % 60 == 0 and (int(seconds) // 60) % interval_minutes == 0


def _run_marker(request: ReconcileRequest, tick: datetime) -> str:
    page = hashlib.sha256((request.shard_cursor or "first").encode()).hexdigest()[:16]
    return f"reconcile_runs/{tick.strftime('%Y%m%dT%H%M%SZ')}~{page}"


def reconcile_page(
    request: ReconcileRequest,
    deps: Dependencies,
    *,
    gateway: ManufacturerGateway | None = None,
    counters: Metrics = metrics,
    policy: Policy | None = None,
    workers: int | None = None,
) -> list[DeviceOutcome]:
    """Reconcile one page of devices (see the module docstring); [] for a page already done.
    ``workers``: devices reconciled at once (default ``settings.reconcile_workers``)."""
    from hpsteer.services.dispatch import gateway_for

    store = deps.store
    tick = _tick(request, deps)
    request = request.model_copy(update={"scheduled_at": tick})  # the next pages carry it
    marker = _run_marker(request, tick)
    claim = store.get(marker)
    if _done(claim):
        _log.info("reconcile page %s already done: redelivery ignored", marker)
        return []
    settings = deps.settings
    page = store.query("devices", limit=request.shard_size, cursor=request.shard_cursor)
    first = False
    if claim is None:
        try:
            store.create(marker, {"started_at": deps.clock.now(), "next_cursor": page.next_cursor})
            first = True
        except DocumentAlreadyExists:  # a concurrent delivery of the page claimed it first
            claim = store.get(marker)
            if _done(claim):
                return []
    next_cursor = page.next_cursor
    if claim is not None and "next_cursor" in claim.data:
        next_cursor = claim.data["next_cursor"]  # the chain the first delivery started
    if next_cursor is not None:
        following = request.model_copy(update={"shard_cursor": next_cursor})
        deps.bus.publish(Topic.RECONCILE_REQUESTS.value, encode_json_message(following))
    ctx = reconcile_context(
        deps,
        tick,
        gateway=gateway or gateway_for(deps),
        counters=counters,
        policy=policy,
        books=first and _on_the_grid(tick, settings.reconcile_interval_minutes),
    )
    workers = settings.reconcile_workers if workers is None else workers
    try:
        outcomes = reconcile_all(ctx, page.documents, workers)
        outcomes = _second_look(ctx, page.documents, outcomes, workers)
    finally:
        record_polls(ctx)  # the polls were taken: recorded even when the page fails
    _schedule_rechecks(ctx, outcomes)
    # A concurrent duplicate may have finished first: both did the same, idempotently.
    store.set(marker, {"done_at": ctx.now, "devices": len(outcomes)}, merge=True)
    return outcomes


def handle_reconcile_request(message: PubSubMessage, deps: Dependencies) -> None:
    """``reconcile-requests``: one page of devices."""
    request = ReconcileRequest.parse_json(message.data)
    if request.scheduled_at is None:  # Cloud Scheduler's fixed body: the tick is when it came
        tick = schedule_tick(None, message.publish_time)
        request = request.model_copy(update={"scheduled_at": tick})
    outcomes = reconcile_page(request, deps)
    counts: dict[str, int] = {}
    for outcome in outcomes:
        for name in outcome.actions or ("none",):
            counts[name] = counts.get(name, 0) + 1
    _log.info("reconciled %d devices: %s", len(outcomes), counts)
