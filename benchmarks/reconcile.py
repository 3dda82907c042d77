"""Reconciliation over a simulated day: drift corrected, overrides respected, reads, time per pass.

The rig is :class:`~hpsteer.runtime.local_fleet.LocalFleet` (local backends on a simulated clock,
the real adapters, breakers and budgets, homes of all three manufacturers behind their emulated
APIs, a task queue whose deliveries call the dispatch and verify handlers). Every home gets one
current plan for the day, made of mode runs (``mid``/``max``/``min``, each a different mode from
the one before, 1 to 4 hours long, drawn from ``--seed``; the OR-Tools planner is not run), stored,
made current and released as optimize does it (:func:`~hpsteer.services.plans_store.write_plan`,
:func:`~hpsteer.services.plans_store.make_current` with the plan's mode runs and end,
:func:`~hpsteer.services.outbox.release_plan`). The day starts at 00:00 CET (23:00 UTC), the
start of SE3's delivery day, so a household override pauses steering to the end of the run.

Every ``reconcile_interval_minutes`` (10) a tick: :meth:`LocalFleet.run_until` delivers the
tasks due (dispatch, verification, remediation), the fleet's true state is sampled, then Cloud
Scheduler's message is published on ``reconcile-requests`` and the local bus is drained with the
subscriptions the cloud has: ``reconcile-requests`` →
:func:`~hpsteer.services.reconcile.reconcile_page` (200 devices per page, each page publishing
the next) and ``device-telemetry`` → :func:`~hpsteer.services.ingest_telemetry.
handle_telemetry_message` (so reconcile's own polls become ``last_telemetry``, as in the cloud).

Faults (:class:`~hpsteer.sim.faults.FaultSpec`, on every manufacturer):

- ``not_applied_rate`` 0.05: 5 % of accepted commands (plan commands, the command path's own
  remediations and reconcile's) are silently not applied;
- ``reboot_rate_per_day`` r such that 1 % of applied commands are reverted: a command holds for
  its run, whose length d is 1, 2, 3 or 4 h with equal chance, and a reboot within the run
  reverts it, so r solves ``mean_d(1 - exp(-r·d/24 h)) = 0.01`` (:func:`rate_for_share`;
  ≈ 0.097 per day). A reboot in a ``mid`` run reverts nothing visible;
- ``user_change_rate_per_day`` by the same formula for 2 % **per command** (2 % of the plan's
  mode runs see the household change the setpoint in the app while they hold; ≈ 0.19 per day,
  so about 18 % of devices see a change in a day). Per command, like the two rates above, and
  ten times more override episodes than 2 % per device-day would give, so that a figure whose
  goal is 0 is tested on more than a handful of cases.

Figures (``python -m benchmarks.reconcile --json``), all from the fleet's truth (each home's
``applied_lever`` against its household setting at the start, the plan's schedule, its reboot
count and household setting), never from reconcile's own counters (those are shown beside):

- ``drift_corrected_within_interval_pct`` (goal ≥ 99): a **drift** is an episode of a device
  sampled out of the plan's mode, with no household change that day, for another reason than
  the user (a command not applied, a reboot, a command that never reached the device). It
  **could first be seen** by reconciliation at the first tick at or after both its first
  sighting and the end of the command path's window (``2 * verify_delay + 5 min`` after the
  plan's mode changed, the window in which :func:`~hpsteer.domain.reconciliation.diff` leaves
  the device to dispatch and verification). It is **corrected within one interval** when the
  sample one interval after that tick shows the plan's mode (tasks due at that instant
  included). Drift corrected before it could be seen is counted apart
  (``fixed_by_command_path``); drift whose run ended (the plan moved on), whose household
  changed the setting, or that the day's end cut off before the interval was over is excluded
  from the share and counted under ``excluded``.
- ``remediations_against_override`` (goal 0): remediation commands (``remedy-…``, reconcile's)
  created for a device at or after a household change materialised on it and before the plan
  day's end (the override's pause). A change is seen in the truth as a new household setting
  (``household_lever``); its instant is the home's ``changed_at`` when nothing changed the lever
  since, else the previous sample (the earliest it can have been).
- ``reads_per_device_day`` per manufacturer, per device and simulated day: ``reads``, the HTTP
  GETs the manufacturer's emulated API answered (counted by :class:`CountingSimApp` below the
  adapters: every state, feature-list or points request, whoever asked: reconcile, dispatch's
  translation, verification), split by caller; ``read_units_asked``, the read units asked of
  the account's budget (the gateway's ``read_state`` and ``prepare``, counted by
  :class:`CountingGateway`, every attempt, ``admitted`` or ``refused``); beside them the
  account's limits from the adapter's ``rate_limits``: the tightest window scaled to a day
  (``daily_limit``), the budget's read share of it, and ``half_left_for_commands`` (the read
  units asked stay within half the daily limit).
- ``seconds_per_1000_devices``: wall-clock time of one reconciliation pass (every page of one
  tick, run one after another here; in the cloud the pages run in parallel), scaled to 1,000
  devices, median over the day's ticks; ingesting the polled telemetry is timed apart.

``--without-ingest`` is a diagnosis, not the cloud: reconcile's polls are not fed back as
``last_telemetry``, so reconcile reads every device it judges at every tick (what judging on
the previous tick's poll costs shows in the difference). ``--hours`` shortens the day.

Why :class:`CountingSimApp`, :class:`CountingGateway` and :class:`_Observer` are written here:
nothing in the code under test counts what the manufacturer sees or knows what really happened
to a home, and the figures must not trust the reconciliation they judge.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import random
import statistics
import sys
import time
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from cloudevents.http import CloudEvent

from hpsteer.adapters.budget import BookedCall, Booking, Schedule, plan_windows
from hpsteer.adapters.gateway import ManufacturerGateway
from hpsteer.adapters.protocol import DeviceRef, DeviceState, RateLimitConfig, ValidationResult
from hpsteer.backends.local.bus import LocalMessageBus
from hpsteer.domain.actions import GenericAction, Mode
from hpsteer.domain.commands import Command
from hpsteer.domain.market import PriceArea, Resolution
from hpsteer.domain.messages import ReconcileRequest, Topic
from hpsteer.domain.plans import Plan, PlanSlot, plan_id_for
from hpsteer.errors import CircuitOpen, HpsteerError, OemRateLimited
from hpsteer.messaging.envelope import encode_json_message, read_pubsub_message
from hpsteer.runtime.local_fleet import LocalFleet
from hpsteer.services.ingest_telemetry import handle_telemetry_message
from hpsteer.services.outbox import release_plan
from hpsteer.services.plans_store import make_current, plan_document, write_plan
from hpsteer.services.reconcile import (
    RECONCILIATION_FAILURE_TOTAL,
    RECONCILIATION_SUCCESS_TOTAL,
    STATE_DRIFT_DETECTED_TOTAL,
    USER_OVERRIDES_TOTAL,
    DeviceOutcome,
    reconcile_page,
)
from hpsteer.sim import MANUFACTURERS, Home, Request, Response, SimApp, SimTransport
from hpsteer.sim.faults import FaultPlan, FaultSpec
from hpsteer.sim.fleet import ROOM_K_PER_OFFSET_STEP

START = datetime(2025, 1, 14, 23, tzinfo=UTC)
"""00:00 CET on 15 January 2025: the start of SE3's delivery day (the plan day)."""
DAY = timedelta(days=1)
PAGE_SIZE = 200
RUN_HOURS = (1, 2, 3, 4)
NOT_APPLIED_RATE = 0.05
REVERTED_SHARE = 0.01
USER_CHANGE_SHARE = 0.02
GOAL_CORRECTED_PCT = 99.0
GOAL_AGAINST_OVERRIDE = 0
API_PREFIXES = {
    "/iot/": "viessmann",
    "/idp/": "viessmann",
    "/v2/": "nibe_myuplink",
    "/oauth/": "nibe_myuplink",
    "/v1/": "daikin_onecta",
}
"""Where each emulated manufacturer API lives (the route table of :mod:`hpsteer.sim.app`)."""


# -- fault rates ----------------------------------------------------------------------------


def share_with_event(rate_per_day: float, run_hours: Sequence[int] = RUN_HOURS) -> float:
    """The share of runs (of equally likely lengths) in which a Poisson event happens."""
    return statistics.fmean(1.0 - math.exp(-rate_per_day * h / 24.0) for h in run_hours)


def rate_for_share(share: float, run_hours: Sequence[int] = RUN_HOURS) -> float:
    """The rate per day at which ``share`` of the runs see the event (bisection: monotone)."""
    low, high = 0.0, 1.0
    while share_with_event(high, run_hours) < share:
        high *= 2.0
    for _ in range(60):
        middle = (low + high) / 2.0
        low, high = (middle, high) if share_with_event(middle, run_hours) < share else (low, middle)
    return (low + high) / 2.0


def fault_plan(seed: int) -> FaultPlan:
    spec = FaultSpec(
        not_applied_rate=NOT_APPLIED_RATE,
        reboot_rate_per_day=rate_for_share(REVERTED_SHARE),
        user_change_rate_per_day=rate_for_share(USER_CHANGE_SHARE),
    )
    plan = FaultPlan(seed=seed)
    for manufacturer in MANUFACTURERS:
        plan.set_manufacturer(manufacturer, spec)
    return plan


# -- plans ------------------------------------------------------------------------------------


def draw_schedule(rng: random.Random, hours: int) -> list[Mode]:
    """One mode per hour: runs of 1 to 4 hours, each run's mode differing from the one before."""
    modes: list[Mode] = []
    previous: Mode | None = None
    while len(modes) < hours:
        mode = rng.choice([m for m in Mode if m is not previous])
        modes += [mode] * rng.choice(RUN_HOURS)
        previous = mode
    return modes[:hours]


def day_plan(device_id: str, modes: Sequence[Mode], now: datetime) -> Plan:
    """A plan of one hourly slot per mode from :data:`START` (prices are placeholders)."""
    step = Resolution.PT60M.duration
    slots = tuple(
        PlanSlot(
            start_at=START + index * step,
            end_at=START + (index + 1) * step,
            mode=mode,
            price_eur_per_mwh=50.0 + 5.0 * (index % 7),
            expected_power_kw=1.5,
            predicted_indoor_temp_c=21.0,
        )
        for index, mode in enumerate(modes)
    )
    return Plan(
        plan_id=plan_id_for(device_id, START, "benchmark-reconcile"),
        device_id=device_id,
        price_area=PriceArea.SE3,
        resolution=Resolution.PT60M,
        created_at=now,
        slots=slots,
        expected_cost_eur=1.0,
        baseline_cost_eur=1.2,
        solver="benchmark",
    )


def publish_plans(local: LocalFleet, hours: int, seed: int) -> dict[str, Plan]:
    """Store, make current and release every home's plan, as optimize's ``settle`` does."""
    rng = random.Random(seed)
    store, now = local.deps.store, local.clock.now()
    plans: dict[str, Plan] = {}
    for home in local.fleet:
        plan = day_plan(home.home_id, draw_schedule(rng, hours), now)
        document, _ = write_plan(store, plan, plan_document(plan, None, {}))
        make_current(
            store,
            plan.device_id,
            plan.plan_id,
            plan.start_at,
            plan.created_at,
            plan.mode_runs(),
            plan.end_at,
        )
        release_plan(local.deps, home.home_id, {"manufacturer": home.manufacturer}, document)
        plans[home.home_id] = plan
    return plans


# -- what the manufacturers see -------------------------------------------------------------------


class CountingSimApp(SimApp):
    """The emulated clouds, counting requests by (phase, manufacturer, HTTP method or
    ``token`` for the OAuth endpoints)."""

    def __init__(self, app: SimApp) -> None:
        super().__init__(app.fleet)
        self.phase = "setup"
        self.calls: Counter[tuple[str, str, str]] = Counter()

    def handle(self, request: Request) -> Response:
        manufacturer = next(
            (m for prefix, m in API_PREFIXES.items() if request.path.startswith(prefix)), "other"
        )
        kind = "token" if request.path.endswith("/token") else request.method
        self.calls[(self.phase, manufacturer, kind)] += 1
        return super().handle(request)


def count_requests(local: LocalFleet) -> CountingSimApp:
    """Put a :class:`CountingSimApp` behind the gateway's transport (before any request)."""
    transport = local.gateway.context.transport
    assert isinstance(transport, SimTransport)
    counting = CountingSimApp(transport.app)
    transport.app = counting
    return counting


class CountingGateway(ManufacturerGateway):
    """The gateway, counting the calls that take a unit of the account's budget, by (phase,
    manufacturer, call, outcome): ``admitted``, ``refused`` (the budget or a 429),
    ``circuit_open`` or ``failed`` (admitted, then the manufacturer failed)."""

    def __init__(self, gateway: ManufacturerGateway) -> None:
        super().__init__(gateway.context)
        self.phase = "setup"
        self.calls: Counter[tuple[str, str, str, str]] = Counter()

    @contextmanager
    def _tally(self, call: str, device: DeviceRef) -> Iterator[None]:
        outcome = "admitted"
        try:
            yield
        except OemRateLimited:
            outcome = "refused"
            raise
        except CircuitOpen:
            outcome = "circuit_open"
            raise
        except HpsteerError:
            outcome = "failed"
            raise
        finally:
            self.calls[(self.phase, device.manufacturer, call, outcome)] += 1

    def read_state(
        self, device: DeviceRef, *, for_command: bool = False, booked: BookedCall | None = None
    ) -> DeviceState:
        with self._tally("read_state", device):
            return super().read_state(device, for_command=for_command, booked=booked)

    def poll_state(self, device: DeviceRef, schedule: Schedule) -> DeviceState:
        """Reconciliation's polls (paid by a booking): a read of the state as ``read_state``."""
        with self._tally("read_state", device):
            return super().poll_state(device, schedule)

    def prepare(
        self, device: DeviceRef, action: GenericAction, *, admitted: bool = False
    ) -> tuple[dict[str, Any], ValidationResult]:
        with self._tally("prepare", device):
            return super().prepare(device, action, admitted=admitted)

    def admit_command(
        self,
        device: DeviceRef,
        *,
        with_read: bool = False,
        verify_at: datetime | None = None,
        holder: str = "",
    ) -> Booking | None:
        with self._tally("admit_command", device):
            return super().admit_command(
                device, with_read=with_read, verify_at=verify_at, holder=holder
            )


def count_gateway_calls(local: LocalFleet) -> CountingGateway:
    """Put a :class:`CountingGateway` in the fleet's place (before any call: the breakers and
    budgets live in the store, so nothing is lost)."""
    counting = CountingGateway(local.gateway)
    local.gateway = counting
    return counting


# -- the truth ----------------------------------------------------------------------------------


@dataclass
class Drift:
    device_id: str
    manufacturer: str
    cause: str
    intended: Mode
    run_since: datetime
    started_at: datetime
    visible_at: datetime | None = None
    corrected_at: datetime | None = None
    ended: str | None = None
    """corrected, plan_moved_on, user_change, day_end."""
    ended_at: datetime | None = None


@dataclass
class UserChange:
    device_id: str
    at: datetime
    exact: bool


@dataclass
class _HomeTruth:
    baseline: float
    household: float
    reboots: int
    received: int


class _Observer:
    """Samples every home at each tick and keeps the drift episodes and household changes."""

    def __init__(self, local: LocalFleet, plans: Mapping[str, Plan], window: timedelta) -> None:
        self.local = local
        self.plans = plans
        self.window = window
        self.truth = {
            h.home_id: _HomeTruth(h.household_lever, h.household_lever, h.reboots, 0)
            for h in local.fleet
        }
        self.open: dict[str, Drift] = {}
        self.closed: list[Drift] = []
        self.user_changes: list[UserChange] = []
        self.first_change: dict[str, datetime] = {}
        self.last_sample_at = local.clock.now()
        self.samples = Counter[str]()

    def true_mode(self, home: Home) -> Mode | None:
        unit_k = ROOM_K_PER_OFFSET_STEP if home.lever.kind == "offset_steps" else 1.0
        offset_k = (home.applied_lever - self.truth[home.home_id].baseline) * unit_k
        return next((m for m in Mode if abs(offset_k - m.setpoint_offset_k) < 1e-6), None)

    def overridden(self, device_id: str, at: datetime) -> bool:
        since = self.first_change.get(device_id)
        return since is not None and since <= at < START + DAY

    def sample(self, at: datetime) -> None:
        for home in self.local.fleet:
            self.sample_home(home, at)
        self.last_sample_at = at

    def sample_home(self, home: Home, at: datetime) -> None:
        truth = self.truth[home.home_id]
        rebooted = home.reboots > truth.reboots
        received = home.commands_received > truth.received
        if home.household_lever != truth.household:
            exact = home.changed_by == "user" and home.changed_at is not None
            when = home.changed_at if exact and home.changed_at else self.last_sample_at
            self.user_changes.append(UserChange(home.home_id, when, exact))
            self.first_change.setdefault(home.home_id, when)
        truth.household, truth.reboots, truth.received = (
            home.household_lever,
            home.reboots,
            home.commands_received,
        )
        plan = self.plans[home.home_id]
        intended = plan.mode_at(at)
        actual = self.true_mode(home)
        overridden = self.overridden(home.home_id, at)
        self.samples[
            "overridden" if overridden else "in_sync" if actual is intended else "off"
        ] += 1
        drift = self.open.get(home.home_id)
        if drift is not None:
            ended = self.ending(drift, intended, actual, overridden)
            if ended is not None:
                self.close(drift, ended, at)
                drift = None
        if drift is None and not overridden and intended is not None and actual is not intended:
            cause = "reverted" if rebooted else "not_applied" if received else "not_sent"
            drift = Drift(
                home.home_id, home.manufacturer, cause, intended, _run_start(plan, at), at
            )
            self.open[home.home_id] = drift
        if drift is not None and drift.visible_at is None and at >= drift.run_since + self.window:
            drift.visible_at = at

    @staticmethod
    def ending(drift: Drift, intended: Mode | None, actual: Mode | None, user: bool) -> str | None:
        if user:
            return "user_change"
        if intended is not drift.intended:
            return "plan_moved_on"
        if actual is intended:
            return "corrected"
        return None

    def close(self, drift: Drift, ended: str, at: datetime) -> None:
        drift.ended, drift.ended_at = ended, at
        if ended == "corrected":
            drift.corrected_at = at
        self.closed.append(drift)
        del self.open[drift.device_id]

    def finish(self) -> list[Drift]:
        for drift in list(self.open.values()):
            self.close(drift, "day_end", self.last_sample_at)
        return self.closed


def _run_start(plan: Plan, at: datetime) -> datetime:
    """When the run of the plan's mode at ``at`` began."""
    return next(start for start, _ in reversed(plan.mode_runs()) if start <= at)


# -- the reconciliation, as the cloud wires it -----------------------------------------------------


@dataclass
class _Cloud:
    """The subscriptions of ``reconcile-requests`` and ``device-telemetry`` on the local bus."""

    local: LocalFleet
    reconcile_seconds: float = 0.0
    ingest_seconds: float = 0.0
    outcomes: list[tuple[datetime, DeviceOutcome]] = field(default_factory=list)

    @property
    def bus(self) -> LocalMessageBus:
        bus = self.local.deps.bus
        assert isinstance(bus, LocalMessageBus)
        return bus

    def subscribe(self, *, ingest: bool = True) -> None:
        bus = self.bus
        bus.subscribe(Topic.RECONCILE_REQUESTS.value, self.reconcile, name="reconcile")
        if ingest:
            bus.subscribe(Topic.DEVICE_TELEMETRY.value, self.ingest, name="ingest-telemetry")

    def reconcile(self, event: CloudEvent) -> None:
        request = ReconcileRequest.parse_json(read_pubsub_message(event).data)
        local = self.local
        began = time.perf_counter()
        page = reconcile_page(request, local.deps, gateway=local.gateway, counters=local.metrics)
        self.reconcile_seconds += time.perf_counter() - began
        self.outcomes += [(request.scheduled_at, outcome) for outcome in page]

    def ingest(self, event: CloudEvent) -> None:
        began = time.perf_counter()
        handle_telemetry_message(read_pubsub_message(event), self.local.deps)
        self.ingest_seconds += time.perf_counter() - began

    def tick(self, at: datetime) -> tuple[float, float]:
        """Cloud Scheduler's message for ``at``, every page and sample handled; the seconds
        spent reconciling and ingesting."""
        self.reconcile_seconds = self.ingest_seconds = 0.0
        request = ReconcileRequest(scheduled_at=at, shard_size=PAGE_SIZE)
        self.bus.publish(Topic.RECONCILE_REQUESTS.value, encode_json_message(request))
        self.bus.drain()
        return self.reconcile_seconds, self.ingest_seconds


class _LogCounter(logging.Handler):
    """Counts hpsteer's log records by level instead of printing thousands of them."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.counts: Counter[str] = Counter()

    def emit(self, record: logging.LogRecord) -> None:
        self.counts[record.levelname] += 1


# -- the day ---------------------------------------------------------------------------------------


@dataclass
class Day:
    devices: int
    hours: int
    seed: int
    ingest: bool
    local: LocalFleet
    plans: dict[str, Plan]
    observer: _Observer
    cloud: _Cloud
    requests: CountingSimApp
    gateway: CountingGateway
    logs: _LogCounter
    reconcile_seconds: list[float] = field(default_factory=list)
    ingest_seconds: list[float] = field(default_factory=list)
    command_path_seconds: float = 0.0
    wall_seconds: float = 0.0

    @property
    def device_manufacturer(self) -> dict[str, str]:
        return {h.home_id: h.manufacturer for h in self.local.fleet}


def simulate(devices: int, hours: int, seed: int, *, ingest: bool = True) -> Day:
    began = time.perf_counter()
    logs = _LogCounter()
    logger = logging.getLogger("hpsteer")
    logger.addHandler(logs)
    logger.setLevel(logging.INFO)
    local = LocalFleet.build(start=START, homes=devices, seed=seed, faults=fault_plan(seed))
    local.register_devices()
    requests = count_requests(local)
    gateway = count_gateway_calls(local)
    settings = local.deps.settings
    window = timedelta(seconds=2 * settings.verify_delay_seconds + 300)
    plans = publish_plans(local, hours, seed)
    cloud = _Cloud(local)
    cloud.subscribe(ingest=ingest)
    observer = _Observer(local, plans, window)
    day = Day(devices, hours, seed, ingest, local, plans, observer, cloud, requests, gateway, logs)
    interval = timedelta(minutes=settings.reconcile_interval_minutes)
    try:
        for index in range(int(timedelta(hours=hours) / interval)):
            run_tick(day, START + index * interval)
    finally:
        logger.removeHandler(logs)
    day.observer.finish()
    day.wall_seconds = time.perf_counter() - began
    return day


def run_tick(day: Day, at: datetime) -> None:
    day.requests.phase = day.gateway.phase = "commands"
    began = time.perf_counter()
    day.local.run_until(at)
    day.command_path_seconds += time.perf_counter() - began
    day.observer.sample(at)
    day.requests.phase = day.gateway.phase = "reconcile"
    reconcile_s, ingest_s = day.cloud.tick(at)
    day.reconcile_seconds.append(reconcile_s)
    day.ingest_seconds.append(ingest_s)


# -- figures ------------------------------------------------------------------------------------


def drift_figures(
    drifts: Sequence[Drift],
    interval: timedelta,
    outcomes: Mapping[tuple[str, datetime], DeviceOutcome],
) -> dict[str, Any]:
    """The drift episodes, sorted by what became of them (see the module docstring)."""
    seen = [d for d in drifts if d.visible_at is not None]
    verdicts = {id(d): _verdict(d, interval) for d in seen}
    within = [d for d in seen if verdicts[id(d)] == "within"]
    late = [d for d in seen if verdicts[id(d)] == "late"]
    judged = within + late
    return {
        "pct": round(100.0 * len(within) / len(judged), 2) if judged else None,
        "episodes": len(drifts),
        "fixed_by_command_path": sum(
            1 for d in drifts if d.visible_at is None and d.ended == "corrected"
        ),
        "ended_before_visible": dict(
            Counter(str(d.ended) for d in drifts if d.visible_at is None and d.ended != "corrected")
        ),
        "seen_by_reconcile": len(seen),
        "seen_by_cause": dict(Counter(d.cause for d in seen)),
        "judged": len(judged),
        "corrected_within_interval": len(within),
        "not_corrected_within_interval": len(late),
        "excluded": dict(Counter(v for v in verdicts.values() if v not in ("within", "late"))),
        "by_cause": {
            cause: _share(
                sum(1 for d in within if d.cause == cause),
                sum(1 for d in judged if d.cause == cause),
            )
            for cause in sorted({d.cause for d in judged})
        },
        "by_manufacturer": {
            m: _share(
                sum(1 for d in within if d.manufacturer == m),
                sum(1 for d in judged if d.manufacturer == m),
            )
            for m in MANUFACTURERS
        },
        "late_reconcile_verdict_at_first_sight": dict(
            Counter(_first_verdict(d, outcomes) for d in late)
        ),
        "late_by_intervals_to_correct": dict(
            sorted(Counter(_intervals_to_correct(d, interval) for d in late).items())
        ),
        "late_examples": [_drift_row(d) for d in late[:6]],
    }


def _first_verdict(drift: Drift, outcomes: Mapping[tuple[str, datetime], DeviceOutcome]) -> str:
    """What reconcile did when it could first see the drift, and on what it judged."""
    assert drift.visible_at is not None
    outcome = outcomes.get((drift.device_id, drift.visible_at))
    if outcome is None:
        return "not reconciled"
    source = "read" if outcome.read else "stored telemetry"
    return f"{'+'.join(outcome.actions)} on {source}" + (
        f" ({outcome.error})" if outcome.error else ""
    )


def _share(within: int, judged: int) -> dict[str, Any]:
    pct = round(100.0 * within / judged, 2) if judged else None
    return {"judged": judged, "within": within, "pct": pct}


def _verdict(drift: Drift, interval: timedelta) -> str:
    """``within``, ``late``, or why the episode is not judged (it ended otherwise in time)."""
    assert drift.visible_at is not None
    deadline = drift.visible_at + interval
    if drift.corrected_at is not None and drift.corrected_at <= deadline:
        return "within"
    if drift.ended != "corrected" and drift.ended_at is not None and drift.ended_at <= deadline:
        return str(drift.ended)
    return "late"


def _intervals_to_correct(drift: Drift, interval: timedelta) -> str:
    if drift.corrected_at is None or drift.visible_at is None:
        return f"never ({drift.ended})"
    return str(round((drift.corrected_at - drift.visible_at) / interval))


def _drift_row(drift: Drift) -> dict[str, Any]:
    return {
        "device_id": drift.device_id,
        "manufacturer": drift.manufacturer,
        "cause": drift.cause,
        "intended": drift.intended.value,
        "run_since": drift.run_since.isoformat(),
        "started_at": drift.started_at.isoformat(),
        "visible_at": drift.visible_at.isoformat() if drift.visible_at else None,
        "ended": drift.ended,
        "ended_at": drift.ended_at.isoformat() if drift.ended_at else None,
    }


def all_commands(local: LocalFleet) -> list[Command]:
    store, commands = local.deps.store, []
    cursor: str | None = None
    while True:
        page = store.collection_group("commands", limit=500, cursor=cursor)
        commands += [Command.parse(doc.data) for doc in page.documents]
        if page.next_cursor is None:
            return commands
        cursor = page.next_cursor


def is_remediation(command: Command) -> bool:
    return command.command_id.startswith("remedy-")


def command_figures(commands: Sequence[Command]) -> dict[str, Any]:
    def states(chosen: list[Command]) -> dict[str, int]:
        return dict(sorted(Counter(c.state.value for c in chosen).items()))

    plan = [c for c in commands if not is_remediation(c)]
    remedies = [c for c in commands if is_remediation(c)]
    failed = [c for c in commands if c.state.value == "failed"]
    return {
        "plan": states(plan),
        "plan_by_manufacturer": {
            m: states([c for c in plan if c.manufacturer == m]) for m in MANUFACTURERS
        },
        "remediation": states(remedies),
        "completed": sum(1 for c in commands if c.state.value == "completed"),
        "failed": len(failed),
        "superseded": sum(1 for c in commands if c.state.value == "superseded"),
        "failed_by_error": dict(
            Counter((c.last_error or "?").split(":")[0].split(",")[0] for c in failed)
        ),
    }


def override_figures(day: Day, commands: Sequence[Command]) -> dict[str, Any]:
    """Household changes from the truth, and what reconciliation and the commands did after."""
    changes = day.observer.user_changes
    first_change = day.observer.first_change

    def in_force(device_id: str, at: datetime | None) -> bool:
        since = first_change.get(device_id)
        return since is not None and at is not None and since <= at < START + DAY

    against = [c for c in commands if is_remediation(c) and in_force(c.device_id, c.created_at)]
    over = [c for c in commands if not is_remediation(c) and in_force(c.device_id, c.sent_at)]
    overrides = [(at, o) for at, o in day.cloud.outcomes if "Override" in o.actions]
    seen_at: dict[str, datetime] = {}
    for at, outcome in overrides:
        if in_force(outcome.device_id, at):
            seen_at.setdefault(outcome.device_id, at)
    delays = sorted((seen_at[d] - first_change[d]) / timedelta(minutes=1) for d in seen_at)
    missed = set(first_change) - set(seen_at)
    manufacturer_of = day.device_manufacturer
    overwritten = {c.device_id for c in over}
    unreadable = {
        o.device_id
        for at, o in day.cloud.outcomes
        if o.device_id in missed and o.error and in_force(o.device_id, at)
    }
    return {
        "remediations_against_override": len(against),
        "against_override_examples": [
            {"device_id": c.device_id, "command_id": c.command_id, "state": c.state.value}
            for c in against[:6]
        ],
        "user_changes": len(changes),
        "user_changes_timed_exactly": sum(1 for c in changes if c.exact),
        "devices_with_user_change": len(first_change),
        "overrides_recognised_by_reconcile": len(seen_at),
        "minutes_to_recognise": _spread(delays),
        "false_overrides": sum(1 for at, o in overrides if not in_force(o.device_id, at)),
        "user_changes_never_recognised": len(missed),
        "never_recognised_by_manufacturer": dict(Counter(manufacturer_of[d] for d in missed)),
        "never_recognised_overwritten_by_a_plan_command": len(missed & overwritten),
        "never_recognised_device_unreadable_meanwhile": len((missed - overwritten) & unreadable),
        "plan_commands_sent_over_user_change": len(over),
        "plan_commands_sent_over_user_change_by_manufacturer": dict(
            Counter(c.manufacturer for c in over)
        ),
        "devices_whose_change_a_plan_command_overwrote": len(overwritten),
    }


def _spread(values: Sequence[float]) -> dict[str, float] | None:
    if not values:
        return None
    ordered = sorted(values)
    return {
        "median": round(statistics.median(ordered), 1),
        "p90": round(ordered[int(0.9 * (len(ordered) - 1))], 1),
        "max": round(ordered[-1], 1),
    }


def daily_limits(limits: RateLimitConfig) -> tuple[float, float]:
    """The account's calls per day under its tightest window, and the read share of that."""
    windows = plan_windows(limits)
    total = min(w.limit * (DAY / w.window) for w in windows)
    reads = min(w.read_cap * (DAY / w.window) for w in windows)
    return total, reads


def read_figures(day: Day) -> dict[str, Any]:
    """Per manufacturer and device-day: the reads the manufacturer answered (HTTP GETs), the
    read units asked of the budget (``read_state`` and ``prepare``, every attempt) and what was
    refused, beside the account's limits."""
    homes = Counter(h.manufacturer for h in day.local.fleet)
    manufacturer_of = day.device_manufacturer
    skipped_reads = Counter(
        manufacturer_of[o.device_id]
        for _, o in day.cloud.outcomes
        if o.read and o.actions == ("Skip",)
    )
    out: dict[str, Any] = {}
    for manufacturer in MANUFACTURERS:
        devices_days = homes[manufacturer] * day.hours / 24.0
        if devices_days:
            out[manufacturer] = _manufacturer_reads(
                day, manufacturer, devices_days, skipped_reads[manufacturer]
            )
    return out


def _manufacturer_reads(
    day: Day, manufacturer: str, devices_days: float, skipped_reads: int
) -> dict[str, Any]:
    def per(count: float) -> float:
        return round(count / devices_days, 1)

    def http(kind: str, phase: str | None = None) -> float:
        return per(
            sum(
                n
                for (p, m, k), n in day.requests.calls.items()
                if m == manufacturer and k == kind and phase in (None, p)
            )
        )

    def units(outcome: str | None, phase: str | None = None, calls: tuple[str, ...] = ()) -> float:
        return per(
            sum(
                n
                for (p, m, c, o), n in day.gateway.calls.items()
                if m == manufacturer
                and c in (calls or ("read_state", "prepare"))
                and outcome in (None, o)
                and phase in (None, p)
            )
        )

    total, read_cap = daily_limits(day.local.gateway.adapter(manufacturer).rate_limits)
    reads, asked = http("GET"), units(None)
    return {
        "reads": reads,
        "reads_by_caller": {
            "reconcile": http("GET", "reconcile"),
            "commands": http("GET", "commands"),
        },
        "read_units_asked": asked,
        "read_units_asked_by_caller": {
            caller: {"admitted": units("admitted", caller), "refused": units("refused", caller)}
            for caller in ("reconcile", "commands")
        },
        "reconcile_reads_of_devices_it_then_skipped": per(skipped_reads),
        "command_calls": round(http("POST") + http("PATCH"), 1),
        "command_units_refused": units("refused", None, ("admit_command",)),
        "token_calls": http("token"),
        "daily_limit": round(total),
        "read_share_per_day": round(read_cap),
        "within_read_share": reads <= read_cap and units("refused") == 0,
        "reads_share_of_daily_limit_pct": round(100.0 * reads / total, 1),
        "read_units_asked_share_of_daily_limit_pct": round(100.0 * asked / total, 1),
        "half_left_for_commands": asked <= total / 2.0,
    }


def timing_figures(day: Day) -> dict[str, Any]:
    scale = 1000.0 / day.devices
    passes = sorted(s * scale for s in day.reconcile_seconds)
    return {
        "seconds_per_1000_devices": round(statistics.median(passes), 3),
        "seconds_per_1000_devices_p90": round(passes[int(0.9 * (len(passes) - 1))], 3),
        "seconds_per_1000_devices_max": round(passes[-1], 3),
        "ingest_seconds_per_1000_devices": round(statistics.median(day.ingest_seconds) * scale, 3),
        "command_path_and_physics_seconds": round(day.command_path_seconds, 1),
        "wall_seconds": round(day.wall_seconds, 1),
    }


def figures(day: Day) -> dict[str, Any]:
    settings = day.local.deps.settings
    interval = timedelta(minutes=settings.reconcile_interval_minutes)
    by_tick = {(o.device_id, at): o for at, o in day.cloud.outcomes}
    drifts = drift_figures(day.observer.closed, interval, by_tick)
    commands = all_commands(day.local)
    overrides = override_figures(day, commands)
    reads = read_figures(day)
    timing = timing_figures(day)
    metrics = day.local.metrics
    outcomes = [o for _, o in day.cloud.outcomes]
    alerts = [doc.data for doc in day.local.deps.store.query("alerts", limit=10_000).documents]
    return {
        "benchmark": "reconcile",
        "devices": day.devices,
        "hours": day.hours,
        "seed": day.seed,
        "telemetry_ingested": day.ingest,
        "ticks": len(day.reconcile_seconds),
        "interval_minutes": settings.reconcile_interval_minutes,
        "page_size": PAGE_SIZE,
        "command_window_minutes": day.observer.window / timedelta(minutes=1),
        "faults": {
            "not_applied_rate": NOT_APPLIED_RATE,
            "reboot_rate_per_day": round(rate_for_share(REVERTED_SHARE), 4),
            "reverted_share_of_applied_commands": REVERTED_SHARE,
            "user_change_rate_per_day": round(rate_for_share(USER_CHANGE_SHARE), 4),
            "user_change_share": f"{USER_CHANGE_SHARE} per command (mode run)",
            "run_hours": list(RUN_HOURS),
        },
        "drift_corrected_within_interval_pct": drifts["pct"],
        "goal_drift_corrected_within_interval_pct": GOAL_CORRECTED_PCT,
        "remediations_against_override": overrides["remediations_against_override"],
        "goal_remediations_against_override": GOAL_AGAINST_OVERRIDE,
        "reads_per_device_day": reads,
        "seconds_per_1000_devices": timing["seconds_per_1000_devices"],
        "drifts": drifts,
        "overrides": overrides,
        "commands": command_figures(commands),
        "alerts": dict(Counter(str(a.get("kind")) for a in alerts)),
        "alerts_resolved": sum(1 for a in alerts if a.get("resolved_at") is not None),
        "reconcile_actions": dict(Counter(n for o in outcomes for n in o.actions or ("none",))),
        "reconcile_errors": dict(Counter(o.error for o in outcomes if o.error)),
        "reconcile_reads": sum(1 for o in outcomes if o.read),
        "reconcile_counters": {
            name: metrics.counter(name)
            for name in (
                STATE_DRIFT_DETECTED_TOTAL,
                USER_OVERRIDES_TOTAL,
                RECONCILIATION_SUCCESS_TOTAL,
                RECONCILIATION_FAILURE_TOTAL,
            )
        },
        "truth_samples": dict(day.observer.samples),
        "log_records": dict(day.logs.counts),
        "timing": timing,
    }


def _print_text(result: Mapping[str, Any]) -> None:
    drifts, overrides = result["drifts"], result["overrides"]
    print(
        f"reconciliation, {result['devices']} devices over {result['hours']} h, "
        f"{result['ticks']} ticks of {result['interval_minutes']} min"
    )
    print(
        f"  drift corrected within one interval: {result['drift_corrected_within_interval_pct']} % "
        f"of {drifts['judged']} (goal {GOAL_CORRECTED_PCT}); {drifts['fixed_by_command_path']} "
        f"fixed by the command path first"
    )
    print(
        f"  remediations against an override: {result['remediations_against_override']} "
        f"(goal 0); {overrides['user_changes']} household changes"
    )
    for manufacturer, reads in result["reads_per_device_day"].items():
        print(
            f"  {manufacturer}: {reads['reads']} reads per device-day (limit {reads['daily_limit']}"
            f", read share {reads['read_share_per_day']}, half left: "
            f"{reads['half_left_for_commands']})"
        )
    print(f"  {result['seconds_per_1000_devices']} s per 1,000 devices per pass (median)")
    print(f"  commands {result['commands']}; alerts {result['alerts']}")


def measure(
    devices: int = 1000, hours: int = 24, seed: int = 7, *, ingest: bool = True
) -> dict[str, Any]:
    return figures(simulate(devices, hours, seed, ingest=ingest))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument("--devices", type=int, default=1000)
    parser.add_argument("--hours", type=int, default=24, choices=range(1, 25), metavar="1..24")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--without-ingest",
        action="store_true",
        help="diagnosis, not the cloud: reconcile's polls never become last_telemetry, so every "
        "tick reads every device it judges",
    )
    args = parser.parse_args(argv)
    result = measure(args.devices, args.hours, args.seed, ingest=not args.without_ingest)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        _print_text(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
