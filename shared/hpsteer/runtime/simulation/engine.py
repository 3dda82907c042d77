"""``hpsteer simulate``: the whole system on one machine, on a simulated clock.

What runs is what the cloud runs. :class:`Simulation` builds a
:class:`~hpsteer.runtime.local_fleet.LocalFleet` (local backends, the simulated fleet of the
area's homes behind the manufacturers' emulated APIs, the real adapters, breakers and budgets,
Cloud Tasks deliveries reaching the dispatch and verify handlers with Cloud Tasks' headers), and
subscribes on the local bus, for every trigger of :data:`~.topology.TRIGGERS`, the Cloud Function
entry point itself, loaded from ``functions/<name>/main.py``, which receives the CloudEvent
Eventarc would build. Cloud Scheduler's jobs are clock ticks that publish the messages the
scheduler publishes (:class:`Scheduler`): prices at 13:00 market time for the next day (and, at
the start, the first day's, as the day before would have), weather every 3 hours, reconciliation
every ``reconcile_interval_minutes``, the command sweep every 30 minutes. Like a Cloud Scheduler
job with a Pub/Sub target, a tick publishes a fixed body (no ``scheduled_at``): the handler takes
the publish time as the tick.

Time moves from one thing due to the next (a tick, a task, a message waiting out its retry
backoff, a truth sample). At each instant every ready message and due task is delivered until
nothing is left, so a chain (prices → optimize fan-out → shards → plans → tasks) completes at the
instant it starts, as it would within seconds in the cloud. The homes' physics is stepped in
quarter hours and at each sample; prices and weather are the bundled real ones of the area.

Each home's device carries its area's default tariff when one covers the run
(:mod:`.tariffs`): optimize plans it on what the household pays, and the fleet keeps each home's
and twin's bill beside their spot cost.

Faults (:mod:`.chaos`): a profile's message and task copies are delivered one after another;
a crash at a command-path checkpoint fails that delivery (Cloud Tasks retries it); a crash after
a Pub/Sub handler's work fails its acknowledgement (Pub/Sub delivers it again).

After the last day the run **settles** for :data:`SETTLE` (tasks and reconciliation go on, no
new prices or weather), so commands in flight at the end can finish; costs, comfort and samples
cover the simulated days only. Ctrl-C stops the loop; what was simulated so far is reported.

While the loop runs, Python's cyclic garbage collector is tuned for a long run over a large heap
(:func:`_collector_for_a_long_run`): what was built before it (the fleet, the area's data, the
modules) is frozen out of its scans, and it collects every :data:`GC_YOUNG_THRESHOLD` container
allocations rather than every 700, so the collections of the whole heap come far less often
(at the default settings, collecting took about 8 % of the time around the planner in a run
of 80 homes for 3 days). Its settings are restored when the run ends. Nothing the run computes
depends on when garbage is collected.
"""

from __future__ import annotations

import gc
import logging
import os
import signal
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Protocol, cast

from cloudevents.http import CloudEvent

from hpsteer.backends.local.bus import DeadLetter
from hpsteer.config import Settings
from hpsteer.domain.base import Record
from hpsteer.domain.market import delivery_day_bounds
from hpsteer.domain.messages import (
    CommandSweepRequest,
    PriceIngestRequest,
    ReconcileRequest,
    Topic,
    WeatherIngestRequest,
)
from hpsteer.messaging.envelope import encode_json_message
from hpsteer.observability.metrics import metrics
from hpsteer.observability.tracing import JsonLinesSpanExporter, configure_tracing, use_clock
from hpsteer.ports.bus import MessageBus, Subscriber
from hpsteer.ports.clock import SimulatedClock
from hpsteer.ports.store import DocumentStore
from hpsteer.runtime.entrypoint import use_dependencies
from hpsteer.runtime.local_fleet import LocalFleet
from hpsteer.runtime.simulation.audit import CountingGateway
from hpsteer.runtime.simulation.chaos import Chaos, Crash, chaos_for
from hpsteer.runtime.simulation.observer import Observer
from hpsteer.runtime.simulation.options import AreaData, SimulationOptions
from hpsteer.runtime.simulation.tariffs import bill_price, run_tariff
from hpsteer.runtime.simulation.topology import TRIGGERS, load_entry_point

__all__ = ["SETTLE", "Simulation", "Tick"]

_log = logging.getLogger(__name__)

SETTLE = timedelta(hours=2)
WEATHER_EVERY = timedelta(hours=3)
SWEEP_EVERY = timedelta(minutes=30)
PRICE_HOUR_LOCAL = 13
"""Day-ahead prices are published around 12:45-13:00 CET; the scheduler asks at 13:00."""


@dataclass(frozen=True, slots=True)
class Tick:
    """What the progress line shows."""

    now: datetime
    fraction: float
    devices: int
    commands: int
    plans: int


class SimulationBus(MessageBus, Subscriber, Protocol):
    """A bus whose deliveries the simulation drives: the in-process one, or the emulator's."""

    def deliver(self) -> int: ...

    def next_due(self) -> datetime | None: ...

    def dead_letters(self) -> list[DeadLetter]: ...


# -- the scheduler ---------------------------------------------------------------------------


@dataclass
class _Job:
    topic: Topic
    next_at: datetime
    every: timedelta | None
    message: Record
    until: datetime


class Scheduler:
    """Cloud Scheduler's jobs as clock ticks (see the module docstring)."""

    def __init__(self, options: SimulationOptions, interval: timedelta) -> None:
        area, start, end = options.area, options.start_at, options.end_at
        settled = end + SETTLE
        self.jobs = [
            _Job(
                Topic.RECONCILE_REQUESTS,
                start,
                interval,
                ReconcileRequest(),
                settled,
            ),
            _Job(
                Topic.COMMAND_SWEEP_REQUESTS,
                start + SWEEP_EVERY,
                SWEEP_EVERY,
                CommandSweepRequest(),
                settled,
            ),
            _Job(
                Topic.WEATHER_INGEST_REQUESTS,
                start,
                WEATHER_EVERY,
                WeatherIngestRequest(),
                end,
            ),
        ]
        self.jobs.append(
            _Job(
                Topic.PRICE_INGEST_REQUESTS,
                start,
                None,
                PriceIngestRequest(areas=(area,), market_date=options.start, scheduled_at=start),
                end,
            )
        )
        for offset in range(options.days):
            day = options.start + timedelta(days=offset)
            self.jobs.append(
                _Job(
                    Topic.PRICE_INGEST_REQUESTS,
                    _local_hour(options, day, PRICE_HOUR_LOCAL),
                    None,
                    PriceIngestRequest(areas=(area,)),
                    end,
                )
            )

    def next_at(self) -> datetime | None:
        return min((j.next_at for j in self.jobs if j.next_at < j.until), default=None)

    def due(self, now: datetime) -> Iterator[tuple[Topic, Record]]:
        """The messages due at or before ``now``, each job moved to its next run."""
        for job in self.jobs:
            while job.next_at <= now and job.next_at < job.until:
                yield job.topic, job.message
                job.next_at = job.next_at + job.every if job.every else job.until


def _local_hour(options: SimulationOptions, day: date, hour: int) -> datetime:
    start, _ = delivery_day_bounds(options.area, day)
    local = start.astimezone(options.area.timezone).replace(hour=hour)
    return local.astimezone(start.tzinfo)


# -- the simulation -----------------------------------------------------------------------------


class _SimulatedTime(logging.Filter):
    """Stamps each log line with the simulated instant (``sim_time``) beside the wall time."""

    def __init__(self, clock: SimulatedClock) -> None:
        super().__init__()
        self.clock = clock

    def filter(self, record: logging.LogRecord) -> bool:
        record.sim_time = self.clock.now().isoformat()
        return True


GC_YOUNG_THRESHOLD = 20_000
"""Container allocations (net of deallocations) between two collections of the youngest
generation during a run (Python's default: 700); the older generations keep their own
thresholds, so they are collected proportionally less often too."""


@contextmanager
def _collector_for_a_long_run() -> Iterator[None]:
    """The cyclic garbage collector tuned for the run's loop (module docstring), restored after:
    garbage from the build is collected, what survives is frozen (never scanned again until the
    run ends), and young collections come every :data:`GC_YOUNG_THRESHOLD` allocations."""
    thresholds = gc.get_threshold()
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_YOUNG_THRESHOLD, *thresholds[1:])
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)
        gc.unfreeze()


def _ignore_interrupts() -> None:
    """Ctrl-C is the simulation's to handle: a planner worker ignores it and is shut down."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _planning_pool(processes: int) -> Executor:
    """Worker processes for the planner (a shard's devices solved on every core), forked now,
    while the run's state is still small."""
    count = processes or os.cpu_count() or 1
    pool = ProcessPoolExecutor(max_workers=count, initializer=_ignore_interrupts)
    list(pool.map(abs, range(count)))
    return pool


@dataclass
class Simulation:
    options: SimulationOptions
    data: AreaData
    local: LocalFleet
    chaos: Chaos
    observer: Observer
    scheduler: Scheduler
    interrupted: bool = False
    wall_s: float = 0.0
    planning_s: float = 0.0
    homes_s: float = 0.0
    """Wall time spent stepping every home's physics to each sample and observing it (the
    simulator's, not the pipeline's; the physics a manufacturer's answer steps is in
    :attr:`manufacturer_apis_s`)."""
    home_figures: dict[str, dict[str, float]] = field(default_factory=dict)
    tariff_id: str | None = None
    """The tariff every home's device carries (None: planned and billed at spot)."""
    _deliveries: Counter[str] = field(default_factory=Counter)
    _planning_pool: Executor | None = None

    @classmethod
    def build(
        cls,
        options: SimulationOptions,
        data: AreaData,
        *,
        store: DocumentStore | None = None,
        bus: SimulationBus | None = None,
    ) -> Simulation:
        """The run's wiring; ``store`` and ``bus`` replace the in-process ones (emulators)."""
        start = options.start_at
        chaos = chaos_for(options.faults, options.seed, start, options.days)
        settings = Settings(backend="local", price_feed="replay", weather_feed="replay")
        local = LocalFleet.build(
            start=start,
            homes=options.devices,
            seed=options.seed,
            faults=chaos.faults,
            settings=settings,
            outdoor=data.weather.outdoor_temperature(data.location),
            price=data.prices.price_at(options.area),
            gateway_class=CountingGateway,
            wrap_store=(lambda _local: store) if store is not None else None,
            bus=bus,
        )
        local.register_devices(options.area, data.location)
        tariff = run_tariff(options)
        if tariff is not None:
            for home in local.fleet:
                local.deps.store.update(f"devices/{home.home_id}", {"tariff_id": tariff.id})
            local.fleet.bill_price = bill_price(tariff)
        interval = timedelta(minutes=settings.reconcile_interval_minutes)
        window = 2 * timedelta(seconds=settings.verify_delay_seconds) + timedelta(minutes=5)
        sampled = frozenset(h.home_id for h in list(local.fleet)[: options.sample_homes])
        observer = Observer(
            local.fleet, local.deps.store, options.area, window, interval, sampled, start
        )
        observer.blackout = chaos.in_outage
        simulation = cls(options, data, local, chaos, observer, Scheduler(options, interval))
        simulation.tariff_id = None if tariff is None else tariff.id
        simulation._wire()
        if options.planning_processes != 1:
            pool = _planning_pool(options.planning_processes)
            simulation._planning_pool = pool
            local.deps.singleton("planning_executor", lambda: pool)
        return simulation

    @property
    def bus(self) -> SimulationBus:
        return cast(SimulationBus, self.local.deps.bus)

    @property
    def interval(self) -> timedelta:
        return self.observer.interval

    def _wire(self) -> None:
        chaos = self.chaos

        def checkpoint(step: str) -> None:
            if chaos.crashes():
                raise Crash(step)

        self.local.copies = chaos.copies
        self.local.checkpoint = checkpoint
        for trigger in TRIGGERS:
            entry = load_entry_point(trigger.function, trigger.entry_point)
            self.bus.subscribe(
                trigger.topic.value,
                self._subscriber(trigger.topic, entry),
                name=f"{trigger.function}-{trigger.entry_point}-{trigger.topic.value}",
            )
        self.bus.subscribe(Topic.ALERTS.value, lambda event: None, name="alerts-notifications")

    def _subscriber(
        self, topic: Topic, entry: Callable[[CloudEvent], None]
    ) -> Callable[[CloudEvent], None]:
        chaos, counts = self.chaos, self._deliveries
        planning = topic is Topic.OPTIMIZE_REQUESTS

        def handle(event: CloudEvent) -> None:
            for _ in range(chaos.copies()):
                counts[topic.value] += 1
                began = time.perf_counter()
                try:
                    entry(event)
                finally:
                    if planning:
                        self.planning_s += time.perf_counter() - began
            if chaos.crashes():
                raise Crash(f"after {topic.value}")

        return handle

    # -- running --------------------------------------------------------------------------------

    def run(
        self, progress: Callable[[Tick], None] | None = None, *, traces: Path | None = None
    ) -> None:
        """Simulate the days, then settle; Ctrl-C ends it early (``interrupted``). With
        ``traces``, every span goes there, one JSON object per line."""
        if traces is not None:
            configure_tracing(JsonLinesSpanExporter(traces))
            use_clock(self.local.clock)  # spans in simulated time: the timelines of the day
        try:
            self._run(progress)
        finally:
            if traces is not None:
                configure_tracing(None)
                use_clock(None)

    def _run(self, progress: Callable[[Tick], None] | None) -> None:
        metrics.reset()  # the process-wide registry the Pub/Sub handlers count in: this run's
        began = time.perf_counter()
        use_dependencies(self.local.deps)
        stamp = _SimulatedTime(self.local.clock)
        handlers = list(logging.getLogger().handlers)
        for handler in handlers:
            handler.addFilter(stamp)
        try:
            with _collector_for_a_long_run():
                self._loop(progress)
        except KeyboardInterrupt:
            self.interrupted = True
        finally:
            for handler in handlers:
                handler.removeFilter(stamp)
            use_dependencies(None)
            if self._planning_pool is not None:
                self._planning_pool.shutdown(cancel_futures=True)
            if not self.home_figures:
                self._close_books()
            self.wall_s = time.perf_counter() - began

    @property
    def manufacturer_apis_s(self) -> float:
        """Wall time the simulated manufacturers took to answer the adapters' calls."""
        return self.local.manufacturer_apis_s

    @property
    def judged_until(self) -> datetime:
        """Commands whose slot began before this must have ended: the last day's end, or for an
        interrupted run the settling time before the interruption."""
        if self.interrupted:
            return min(self.options.end_at, self.local.clock.now() - SETTLE)
        return self.options.end_at

    @property
    def simulated_days(self) -> float:
        """Days simulated (all of them unless interrupted)."""
        last = self.observer.last_sample_at or self.options.start_at
        span = (min(last, self.options.end_at) - self.options.start_at) / timedelta(days=1)
        return span if self.interrupted else float(self.options.days)

    def _loop(self, progress: Callable[[Tick], None] | None) -> None:
        clock, end = self.local.clock, self.options.end_at
        next_sample = self.options.start_at
        last_report = 0.0
        settle_end = end + SETTLE
        while True:
            now = clock.now()
            candidates = [
                at
                for at in (
                    self.scheduler.next_at(),
                    self.local.tasks.next_due_at(),
                    self.bus.next_due(),
                    next_sample if next_sample <= end else None,
                )
                if at is not None
            ]
            at = max(min(candidates, default=settle_end), now)
            if at > settle_end:
                break
            self.local.move_to(at)
            self.chaos.apply_outage(at)
            if next_sample <= end and at >= next_sample:
                began = time.perf_counter()
                self.local.fleet.advance(at)
                self.observer.sample(at)
                self.homes_s += time.perf_counter() - began
                if at >= end:
                    self._close_books()
                next_sample += self.interval
            for topic, message in self.scheduler.due(at):
                self.bus.publish(topic.value, encode_json_message(message))
            self._deliver_everything_ready()
            if progress is not None and time.perf_counter() - last_report > 0.25:
                last_report = time.perf_counter()
                progress(self.tick())
            if at >= settle_end:
                break

    def _deliver_everything_ready(self) -> None:
        while True:
            moved = self.bus.deliver() + self.local.tasks.run_due()
            if not moved:
                return

    def _close_books(self) -> None:
        """Each home's cost and comfort at the end of the simulated days (the settling after
        them is not part of the figures)."""
        for home in self.local.fleet:
            twin = home.twin
            self.home_figures[home.home_id] = {
                "cost_eur": home.cost_eur,
                "baseline_cost_eur": twin.cost_eur if twin else home.cost_eur,
                "kh_below": home.kh_below,
                "baseline_kh_below": twin.kh_below if twin else home.kh_below,
                "electricity_kwh": home.electricity_kwh,
                "baseline_electricity_kwh": twin.electricity_kwh if twin else 0.0,
                "commands_received": float(home.commands_received),
            }
            if self.tariff_id is not None:
                self.home_figures[home.home_id]["bill_eur"] = home.bill_eur
                self.home_figures[home.home_id]["baseline_bill_eur"] = (
                    twin.bill_eur if twin else home.bill_eur
                )

    def tick(self) -> Tick:
        now = self.local.clock.now()
        span = self.options.end_at + SETTLE - self.options.start_at
        return Tick(
            now=now,
            fraction=min(1.0, (now - self.options.start_at) / span),
            devices=self.options.devices,
            commands=sum(home.commands_received for home in self.local.fleet),
            plans=self._deliveries[Topic.OPTIMIZE_REQUESTS.value],
        )
