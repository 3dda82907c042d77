"""Optimize: fan an area's event out into shards, and plan each shard's devices.

**Fan-out** (:func:`fan_out`, topic triggers ``spot-price-updates``, ``weather-updates``,
``replan-requests``): the steered devices (``steering_enabled == True``) the event concerns are
read in pages, in document-path order, grouped by price area and cut into
:class:`~hpsteer.domain.messages.OptimizeRequest` shards of at most ``shard_size`` (100) ids on
``optimize-requests``. The same event over the same fleet gives the same shards, so a redelivery
publishes the same shards again (harmless: planning is idempotent). Which devices:

- :class:`SpotPricesUpdated`: the devices with ``price_area == area``;
- :class:`WeatherUpdated`: the devices whose coordinates round to the forecast's location (the
  store cannot query a rounded coordinate, so the steered fleet is read and filtered; a stored
  ``forecast_location_id`` on each device would make this a query);
- :class:`ReplanRequest`: one device (``device_id``), else an area's devices.

Each shard's ``trigger`` names its cause: ``prices:SE3:2024-01-15:<hash16>:v1``,
``weather:lat59.30_lon18.16:20240115T060000Z``, ``replan:SE3:<requested_at>``.

**A shard** (:func:`plan_shard`) plans each of its devices (inputs:
:mod:`hpsteer.services.plan_inputs`): the plan id is :func:`~hpsteer.domain.plans.plan_id_for`
of the device, the horizon's start and the inputs' key, so a redelivery finds the plan already
written and only makes sure it is current and recorded (nothing new is written). It is looked
for only when the device document (read to prepare the inputs) names it current: a new plan
costs no read of its own, and the rare delivery that ended between writing a plan and making it
current is solved again, ``write_plan`` then finding the plan written. Otherwise
:class:`~hpsteer.optimizer.planner.OrToolsPlanner` solves; the schedule and the baseline
(:class:`~hpsteer.optimizer.baselines.OwnControl`) are both judged by
:func:`~hpsteer.optimizer.problem.evaluate` on the same inputs; the plan is written with its
outbox, made current and recorded (:mod:`hpsteer.services.plans_store`), and its outbox released
into commands and Cloud Tasks (:mod:`hpsteer.services.outbox`) once it is the current plan.
Each house is planned on what its measured history says (:mod:`~hpsteer.services.plan_inputs`):
the shard reads its devices' ``telemetry_history`` over ``identify_history_days`` in one
analytics query, with the first device prepared, and each location's forecasts issued over that
history (for the history's irradiance) in one document read (the location's past weather digest,
:mod:`~hpsteer.services.ingest_weather`), with its first device that has a history. A history
query that fails is logged and the shard plans on registered parameters; a forecast read that
fails is logged and the history's weather is the latest forecast's alone.
``identify_houses`` off: neither is read, and every device is planned on its registered
parameters.

**One batch per shard.** The shard's analytics rows (``plans``, ``cost_savings`` and the
``command_events`` of its releases) wait in one :class:`~hpsteer.services.outbox.ReleaseBatch` and
go out at the shard's end, one insert per table (per 500 rows), with their insert ids; only then are
the released outboxes concluded (entries marked ``queued`` and the plan's release fields cleared in
one update, or its release due again when changes are left for later). A shard that ends before (a
crash, analytics unavailable: raised after the shard as a transient failure) is delivered again and
loses no row: its plans exist, so each is made current and recorded again (its rows again), and
each outbox not concluded is released again, which derives its commands' rows from the store
(:mod:`hpsteer.services.outbox`); a plan that a redelivery no longer reaches keeps its release
fields, and the sweep does the same for it. Appending a row again adds nothing (insert ids).

**On the household's bill.** A device with a ``tariff_id`` is planned on the effective price of
each slot (:mod:`hpsteer.optimizer.bill_prices`: spot + markup + grid time-of-use + taxes, VAT on
the lot, from the tariff version in force at the slot), so heat moves to the hours that are cheap
on the bill, not only on the exchange. The plan stores both: ``expected_cost_eur`` and
``baseline_cost_eur`` at spot (as for every plan, so savings audits keep their meaning) and
``expected_bill_eur`` and ``baseline_bill_eur`` at the effective price, with ``tariff_id``, each
slot's ``bill_price_eur_per_kwh``, and the tariff's content hash and versions in ``inputs`` (its
hash is part of the plan id: changed tariff values make a new plan). A tariff that is unknown,
broken, meant for another price area or not in force for some slot of the horizon never fails
the plan: the device is planned on spot, the plan says why (``tariff_note``, no bill figures) and
a WARNING is logged. The tariff module (and the ``holidays`` calendar it needs) is imported only
when a shard meets a device with a tariff; a tariff is read once per instance (``cached_tariff``)
and priced once per shard and price area.

**Devices at once.** A shard mostly waits on round trips (store reads, the plan's writes, Cloud
Tasks calls) that have nothing to do with the solver's CPU. With ``optimize_io_workers`` above 1
(terraform sets 16 for ``optimize_shard``), each device goes to one of that many threads of the
shard (each in a copy of the caller's context: log fields and the trace follow it), which reads
its inputs, hands its solve to the planning executor (:func:`planning_executor`: bounded to the
CPUs) and waits for it, then writes, makes current and releases its plan, so the devices' round
trips overlap. Every device's steps keep their order, and nothing a device writes depends on
another's: the inputs the shard shares (prices per area, forecasts per location, the history
query, earlier forecasts, tariffs) are read once whichever thread asks first (the others wait
for that read), the release batch is shared under a lock, outcomes are returned and transient
failures named in the request's order, and the shard's rows still go out at its end. With 1
(the default, which the local runtime keeps) every device is read in turn, the solves run
together, and every device is written in turn: the same writes in one reproducible order.

A device whose planning fails for good (unknown device, infeasible comfort band, missing prices
for the next slot, no forecast, absurd thermal parameters, an infeasible plan) is logged once
with its id and its error's type, and **keeps its previous plan**; the shard goes on. A device
under a household override (``override_until`` in the future) is skipped. A transient failure
(store, tasks) of any device, or of the shard's rows, is raised after the shard, so Pub/Sub
delivers it again: the devices already planned are found and not solved again then.
"""

from __future__ import annotations

import contextvars
import dataclasses
import functools
import logging
import math
import os
import threading
from collections import defaultdict
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeVar

import pydantic

from hpsteer.domain.instants import format_instant
from hpsteer.domain.market import PriceArea
from hpsteer.domain.messages import (
    OptimizeRequest,
    ReplanRequest,
    SpotPricesUpdated,
    Topic,
    WeatherUpdated,
)
from hpsteer.domain.plans import Plan, PlanSlot, plan_id_for
from hpsteer.domain.weather import WeatherSeries
from hpsteer.errors import MalformedMessage, PermanentError, TransientError, UnknownDevice
from hpsteer.messaging.envelope import PubSubMessage, encode_json_message
from hpsteer.observability.logging import log_context
from hpsteer.observability.metrics import ESTIMATED_COST_SAVINGS_EUR, metrics
from hpsteer.observability.tracing import span
from hpsteer.ports.store import Document, DocumentStore, Filter, every_page
from hpsteer.runtime.bootstrap import Dependencies
from hpsteer.services.ingest_weather import forecast_location_id
from hpsteer.services.outbox import ReleaseBatch, release_plan
from hpsteer.services.plan_inputs import (
    HistorySample,
    HorizonPrices,
    PlanInputs,
    PlanningOptions,
    assemble,
    device_path,
    horizon_prices,
    latest_forecast,
    load_device,
    load_histories,
    past_forecasts,
)
from hpsteer.services.plans_store import (
    COST_SAVINGS,
    PLANS,
    cost_by_day,
    first_run_commanded,
    make_current,
    mode_to_start_from,
    plan_document,
    plan_from_document,
    plan_path,
    record_plan,
    write_plan,
)

if TYPE_CHECKING:
    from hpsteer.optimizer.planner import OrToolsPlanner

__all__ = [
    "Billing",
    "DeviceOutcome",
    "OptimizeTrigger",
    "decode_trigger",
    "fan_out",
    "handle_optimize_request",
    "handle_optimize_trigger",
    "plan_shard",
    "tariff_billing",
]

_log = logging.getLogger(__name__)

OptimizeTrigger = SpotPricesUpdated | WeatherUpdated | ReplanRequest
DEVICE_PAGE_SIZE = 300
PAST_FORECAST_MARGIN = timedelta(days=1)
"""Forecasts issued this long before the history's start are read too: the first slots' weather
is the forecast issued last before them."""


# -- fan-out ----------------------------------------------------------------------------------


def _steered(store: DocumentStore, area: PriceArea | None) -> Iterator[dict[str, Any]]:
    filters = [Filter("steering_enabled", "==", True)]
    if area is not None:
        filters.insert(0, Filter("price_area", "==", area.value))
    pages = every_page(
        lambda cursor: store.query("devices", filters, limit=DEVICE_PAGE_SIZE, cursor=cursor)
    )
    for document in pages:
        yield {"device_id": document.id, **document.data}


def _at_location(device: dict[str, Any], location_id: str) -> bool:
    where = device.get("location")
    if not isinstance(where, dict):
        return False
    lat, lon = where.get("latitude"), where.get("longitude")
    if not isinstance(lat, int | float) or not isinstance(lon, int | float):
        return False
    return forecast_location_id(lat, lon) == location_id


def _targets(event: OptimizeTrigger, store: DocumentStore) -> tuple[str, dict[str, list[str]]]:
    """The trigger name and the device ids per area (in document-path order)."""
    by_area: dict[str, list[str]] = defaultdict(list)
    if isinstance(event, SpotPricesUpdated):
        trigger = (
            f"prices:{event.area.value}:{event.market_date}:{event.content_hash[:16]}:"
            f"v{event.version}"
        )
        for device in _steered(store, event.area):
            by_area[event.area.value].append(device["device_id"])
    elif isinstance(event, WeatherUpdated):
        trigger = f"weather:{event.location_id}:{event.issued_at:%Y%m%dT%H%M%SZ}"
        for device in _steered(store, None):
            if _at_location(device, event.location_id) and isinstance(
                device.get("price_area"), str
            ):
                by_area[device["price_area"]].append(device["device_id"])
    else:
        requested = format_instant(event.requested_at)
        if event.device_id is not None:
            trigger = f"replan:{event.device_id}:{requested}"
            snapshot = store.get(device_path(event.device_id))
            if snapshot is None or not isinstance(snapshot.data.get("price_area"), str):
                raise UnknownDevice(f"replan requested for unknown device {event.device_id}")
            by_area[snapshot.data["price_area"]].append(event.device_id)
        elif event.area is not None:
            trigger = f"replan:{event.area.value}:{requested}"
            for device in _steered(store, event.area):
                by_area[event.area.value].append(device["device_id"])
        else:
            raise MalformedMessage("a replan request names neither an area nor a device")
    return trigger[:300], by_area


def fan_out(
    event: OptimizeTrigger, deps: Dependencies, options: PlanningOptions | None = None
) -> list[OptimizeRequest]:
    """Publish the shards ``event`` asks for on ``optimize-requests``; return them."""
    size = (options or PlanningOptions()).shard_size
    trigger, by_area = _targets(event, deps.store)
    shards: list[OptimizeRequest] = []
    for area, ids in sorted(by_area.items()):
        for first in range(0, len(ids), size):
            shard = OptimizeRequest(
                area=PriceArea(area),
                device_ids=tuple(ids[first : first + size]),
                trigger=trigger,
                requested_at=deps.clock.now(),
            )
            deps.bus.publish(
                Topic.OPTIMIZE_REQUESTS,
                encode_json_message(shard),
                attributes={
                    "message_type": "OptimizeRequest",
                    "area": area,
                    "trigger": trigger,
                    "shard": str(first // size),
                },
            )
            shards.append(shard)
    _log.info("%s: %d shards for %d devices", trigger, len(shards), sum(map(len, by_area.values())))
    return shards


# -- one shard --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DeviceOutcome:
    device_id: str
    status: Literal["planned", "unchanged", "skipped", "failed"]
    plan_id: str | None = None
    error: str | None = None


@dataclass(frozen=True, slots=True)
class Billing:
    """What a device's tariff makes of its horizon (plain data: it travels to the planning
    executor's workers)."""

    tariff_id: str
    prices_eur_per_mwh: tuple[float, ...] | None
    """The effective price of each slot, EUR/MWh; None: the tariff cannot price the horizon and
    the device is planned on spot (``note`` says why)."""
    inputs: dict[str, Any]
    """What the plan's ``inputs`` record of the tariff: id, content hash, versions in force."""
    note: str | None = None

    @property
    def key(self) -> str:
        """The tariff's part of the plan's inputs key."""
        if self.prices_eur_per_mwh is None:
            return f"tariff={self.tariff_id}:spot"
        return f"tariff={self.tariff_id}@{self.inputs['content_hash']}"


def tariff_billing(tariff_id: str, area: PriceArea, prices: HorizonPrices) -> Billing:
    """The effective prices of ``prices``' slots under the tariff ``tariff_id``, or why the
    horizon is planned on spot instead (module docstring)."""
    from hpsteer.optimizer.bill_prices import bill_prices_eur_per_mwh, why_unusable
    from hpsteer.tariffs import TariffError, cached_tariff

    starts = [slot.start_at for slot in prices.slots]
    try:
        tariff = cached_tariff(tariff_id)
        reason = why_unusable(tariff, area, starts)
        bill = (
            None
            if reason is not None
            else bill_prices_eur_per_mwh(tariff, starts, prices.prices_eur_per_mwh)
        )
    except TariffError as err:
        return Billing(tariff_id, None, {"tariff_id": tariff_id}, str(err).splitlines()[0])
    recorded = {"tariff_id": tariff_id, "content_hash": tariff.content_hash}
    if bill is None:
        return Billing(tariff_id, None, recorded, reason)
    days = sorted({tariff.local_date(start) for start in starts})
    versions = sorted({v.isoformat() for day in days if (v := tariff.version_on(day))})
    return Billing(tariff_id, tuple(float(p) for p in bill), {**recorded, "valid_from": versions})


def _inputs_key(inputs: PlanInputs, billing: Billing | None) -> str:
    """What names the plan (its id is a hash of it): the inputs' key, and the tariff's part
    when the device has one (a device without keeps the key it always had)."""
    return inputs.inputs_key() if billing is None else f"{inputs.inputs_key()}|{billing.key}"


@dataclass(frozen=True, slots=True)
class _ToSolve:
    device_id: str
    inputs: PlanInputs
    plan_id: str
    device_data: dict[str, Any]
    billing: Billing | None = None
    device_read: Document | None = None
    """The device document as prepared from (``make_current``'s ``read``)."""


Solved = tuple[Plan, dict[str, Any]] | BaseException
_K = TypeVar("_K")
_V = TypeVar("_V")


class _Once(Generic[_K, _V]):
    """Values read once per key for the whole shard, whichever of its threads asks first: the
    others asking for that key meanwhile wait for its value (no second read). A read that
    raises keeps nothing, so the next device to ask reads again (as it did one device at a
    time)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: dict[_K, _V] = {}
        self._reading: dict[_K, threading.Lock] = {}

    def get(self, key: _K, read: Callable[[], _V]) -> _V:
        with self._lock:
            if key in self._values:
                return self._values[key]
            reading = self._reading.setdefault(key, threading.Lock())
        with reading:
            with self._lock:
                if key in self._values:
                    return self._values[key]
            value = read()
            with self._lock:
                self._values[key] = value
            return value


@dataclass
class _Shard:
    """What one shard's devices share: the inputs read once per shard (each a :class:`_Once`,
    so the devices' threads read each once between them) and the batch of their releases."""

    deps: Dependencies
    options: PlanningOptions
    planner: OrToolsPlanner
    trigger: str
    now: datetime
    prices: _Once[str, HorizonPrices] = field(default_factory=_Once)
    forecasts: _Once[str, WeatherSeries] = field(default_factory=_Once)
    billings: _Once[tuple[str, str], Billing] = field(default_factory=_Once)
    batch: ReleaseBatch | None = None
    """Where the shard's analytics rows and outbox conclusions wait for its end."""
    device_ids: tuple[str, ...] = ()
    histories: _Once[str, dict[str, list[HistorySample]]] = field(default_factory=_Once)
    """The shard's devices' measured histories (one key), read with the first device
    prepared."""
    earlier_forecasts: _Once[str, list[WeatherSeries]] = field(default_factory=_Once)
    """Each location's forecasts issued over the history, read with its first device that has
    a history."""
    _batching: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def releases(self) -> ReleaseBatch:
        with self._batching:
            if self.batch is None:
                self.batch = ReleaseBatch(self.deps)
            return self.batch

    def horizon(self, area: PriceArea) -> HorizonPrices:
        return self.prices.get(
            area.value,
            lambda: horizon_prices(self.deps.store, area, self.now, self.options.max_horizon),
        )

    def forecast(self, latitude: float, longitude: float) -> WeatherSeries:
        return self.forecasts.get(
            forecast_location_id(latitude, longitude),
            lambda: latest_forecast(self.deps.store, latitude, longitude),
        )

    def history(self, device_id: str) -> list[HistorySample]:
        """The device's samples from ``telemetry_history`` (one query for the whole shard, over
        ``identify_history_days``); none when the query fails (logged: the shard plans on the
        registered parameters)."""
        return self.histories.get("shard", functools.partial(self._histories, device_id)).get(
            device_id, []
        )

    def _histories(self, device_id: str) -> dict[str, list[HistorySample]]:
        if not self.deps.settings.identify_houses:
            return {}
        try:
            return load_histories(
                self.deps.analytics,
                self.device_ids or (device_id,),
                now=self.now,
                history=timedelta(days=self.deps.settings.identify_history_days),
            )
        except Exception as err:  # noqa: BLE001 - a missing history never fails a plan
            _log.warning(
                "shard planned without identification: telemetry history unreadable: %s: %s",
                type(err).__name__,
                str(err).splitlines()[0] if str(err) else "",
                extra={"error_type": type(err).__name__},
            )
            return {}

    def past_forecasts(self, latitude: float, longitude: float) -> list[WeatherSeries]:
        """The location's forecasts issued over the history (and a day before it), for the
        history's weather (one store query per location and shard); none when the read fails
        (logged: the latest forecast alone then covers what it covers)."""
        key = forecast_location_id(latitude, longitude)
        return self.earlier_forecasts.get(
            key, functools.partial(self._past_forecasts, key, latitude, longitude)
        )

    def _past_forecasts(self, key: str, latitude: float, longitude: float) -> list[WeatherSeries]:
        history = timedelta(days=self.deps.settings.identify_history_days)
        try:
            return past_forecasts(
                self.deps.store,
                latitude,
                longitude,
                since=self.now - history - PAST_FORECAST_MARGIN,
                until=self.now,
            )
        except Exception as err:  # noqa: BLE001 - the history's weather never fails a plan
            _log.warning(
                "location %s: earlier forecasts unreadable, the history's weather is the "
                "latest forecast's: %s: %s",
                key,
                type(err).__name__,
                str(err).splitlines()[0] if str(err) else "",
                extra={"error_type": type(err).__name__},
            )
            return []

    def billing(self, device_id: str, tariff_id: str | None, area: PriceArea) -> Billing | None:
        """The device's tariff over the area's horizon (None: the device has no tariff)."""
        if tariff_id is None:
            return None
        billing = self.billings.get(
            (area.value, tariff_id),
            lambda: tariff_billing(tariff_id, area, self.horizon(area)),
        )
        if billing.note is not None:
            _log.warning(
                "device %s planned on spot: %s",
                device_id,
                billing.note,
                extra={"tariff_id": tariff_id},
            )
        return billing

    def record(self, plan: Plan, document: dict[str, Any]) -> None:
        """The plan's ``plans`` and ``cost_savings`` rows, sent at the shard's end."""
        analytics = self.releases().analytics
        analytics.ensure_table(PLANS)
        analytics.ensure_table(COST_SAVINGS)
        record_plan(analytics, plan, document, self.trigger)

    def settle(
        self,
        plan: Plan,
        document: dict[str, Any],
        device: dict[str, Any],
        *,
        fresh: bool,
        read: Document | None = None,
    ) -> None:
        """Make the plan current (only forward), record it, and release its outbox if it is
        the device's current plan now (``fresh``: this call wrote the plan; ``read``: the
        device document as prepared from)."""
        store = self.deps.store
        moved = make_current(
            store,
            plan.device_id,
            plan.plan_id,
            plan.start_at,
            plan.created_at,
            plan.mode_runs(),
            plan.end_at,
            plan.indoor_track(),
            read=read,
            first_run_commanded=first_run_commanded(document, plan.mode_runs()),
        )
        self.record(plan, document)
        if not moved:
            current = store.get(device_path(plan.device_id))
            if current is None or current.data.get("current_plan_id") != plan.plan_id:
                return  # a newer plan is current: this one's outbox is moot
        release_plan(
            self.deps,
            plan.device_id,
            device,
            document,
            batch=self.releases(),
            current=True,  # made current just now, or just read
            fresh=fresh,
        )

    def prepare(self, device_id: str) -> DeviceOutcome | _ToSolve:
        """The device's planning problem, or its outcome when there is nothing to solve."""
        store = self.deps.store
        record = load_device(store, device_id, now=self.now, options=self.options)
        device = record.device
        if not device.is_steerable(self.now):
            _log.info("device %s is not steerable now (override or off): skipped", device_id)
            return DeviceOutcome(device_id, "skipped")
        prices = self.horizon(device.price_area)
        forecast = self.forecast(device.location.latitude, device.location.longitude)
        history = self.history(device_id)
        inputs = assemble(
            record,
            prices,
            forecast,
            self.options,
            history=history,
            past_forecasts=(
                self.past_forecasts(device.location.latitude, device.location.longitude)
                if history
                else ()
            ),
            now=self.now,
        )
        billing = self.billing(device_id, record.tariff_id, device.price_area)
        plan_id = plan_id_for(device_id, inputs.problem.start_at, _inputs_key(inputs, billing))
        # A plan already made from these inputs is the device's current plan, unless a delivery
        # ended between writing it and making it current: only then is it looked for here (no
        # read for a new plan); that rare one is solved again and write_plan finds it.
        read = record.snapshot
        existing = (
            store.get(plan_path(device_id, plan_id))
            if read is None or read.data.get("current_plan_id") == plan_id
            else None
        )
        device_data = {"manufacturer": device.manufacturer}
        if existing is not None:
            plan = plan_from_document(existing.data)
            self.settle(plan, existing.data, device_data, fresh=False, read=read)
            return DeviceOutcome(device_id, "unchanged", plan_id)
        return _ToSolve(device_id, inputs, plan_id, device_data, billing, read)

    def complete(self, job: _ToSolve, plan: Plan, document: dict[str, Any]) -> DeviceOutcome:
        """Write the solved plan, make it current and release it."""
        device_id, store, device_data = job.device_id, self.deps.store, job.device_data
        stored, created = write_plan(store, plan, document)
        if not created:
            plan = plan_from_document(stored)
        self.settle(plan, stored, device_data, fresh=created, read=job.device_read)
        if created:
            metrics.observe(
                ESTIMATED_COST_SAVINGS_EUR,
                plan.baseline_cost_eur - plan.expected_cost_eur,
                oem=str(device_data["manufacturer"]),
                price_area=plan.price_area.value,
            )
        bill, baseline_bill = stored.get("expected_bill_eur"), stored.get("baseline_bill_eur")
        _log.info(
            "planned %s: %s, expected %.3f EUR vs baseline %.3f EUR at spot%s",
            device_id,
            plan.plan_id,
            plan.expected_cost_eur,
            plan.baseline_cost_eur,
            ""
            if bill is None or baseline_bill is None
            else f"; bill {bill:.3f} EUR vs {baseline_bill:.3f} EUR ({stored.get('tariff_id')})",
            extra={"plan_id": plan.plan_id},
        )
        return DeviceOutcome(device_id, "planned" if created else "unchanged", plan.plan_id)

    def solve_all(self, jobs: list[_ToSolve]) -> list[Solved]:
        """Every job's plan (or the error solving it raised), solved on the instance's
        planning executor (:func:`planning_executor`) while the reads before and the writes
        after stay in device order (:func:`plan_shard` with one I/O worker: reproducible
        runs)."""
        work = self._work()
        if len(jobs) <= 1:
            return [work(job) for job in jobs]
        return list(planning_executor(self.deps).map(work, jobs))

    def solve(self, job: _ToSolve, executor: Executor) -> Solved:
        """One job's plan (or the error solving it raised), solved on ``executor`` (the
        planning executor) while the calling I/O thread waits for it."""
        return executor.submit(self._work(), job).result()

    def _work(self) -> Callable[[_ToSolve], Solved]:
        return functools.partial(_solve_job, self.planner, now=self.now, trigger=self.trigger)


def planning_executor(deps: Dependencies) -> Executor:
    """Where a shard's devices are solved: by default a thread per core (the solver releases
    the GIL while it searches); the local runtime installs a process pool under the same name
    (``deps.singleton("planning_executor", ...)``) to plan on every core."""
    return deps.singleton(
        "planning_executor", lambda: ThreadPoolExecutor(max_workers=os.cpu_count() or 1)
    )


def _solve_job(planner: OrToolsPlanner, job: _ToSolve, *, now: datetime, trigger: str) -> Solved:
    """One device's plan, or the error solving it raised (handed back to the device's turn)."""
    with log_context(device_id=job.device_id, trigger=trigger):
        try:
            return solve_plan(
                planner, job.inputs, job.plan_id, now=now, trigger=trigger, billing=job.billing
            )
        except Exception as err:  # noqa: BLE001 - re-raised in the device's turn
            return err


def solve_plan(
    planner: OrToolsPlanner,
    inputs: PlanInputs,
    plan_id: str,
    *,
    now: datetime,
    trigger: str,
    billing: Billing | None = None,
) -> tuple[Plan, dict[str, Any]]:
    """The plan of one device's inputs, and its document (pure: no I/O). With ``billing``
    prices, the planner sees the effective prices; costs are stated at spot and on the bill."""
    import numpy as np

    from hpsteer.optimizer.baselines import OwnControl
    from hpsteer.optimizer.problem import evaluate

    problem = inputs.problem
    bill_prices = None if billing is None else billing.prices_eur_per_mwh
    if bill_prices is not None:
        problem = dataclasses.replace(problem, prices_eur_per_mwh=np.array(bill_prices))
    result = planner.solve(problem)
    planned = evaluate(problem, result.modes)
    baseline = evaluate(problem, OwnControl().plan(problem))
    spot = np.array(inputs.prices.prices_eur_per_mwh)
    expected_cost, baseline_cost = planned.energy_cost_eur, baseline.energy_cost_eur
    if bill_prices is not None:
        expected_cost = float(spot @ planned.electricity_kwh) / 1000.0
        baseline_cost = float(spot @ baseline.electricity_kwh) / 1000.0
    slots = tuple(
        PlanSlot(
            start_at=slot.start_at,
            end_at=slot.end_at,
            mode=mode,
            price_eur_per_mwh=price,
            expected_power_kw=max(0.0, float(kwh) / problem.slot_hours),
            predicted_indoor_temp_c=round(float(temp), 3),
        )
        for slot, mode, price, kwh, temp in zip(
            inputs.prices.slots,
            result.modes,
            inputs.prices.prices_eur_per_mwh,
            planned.electricity_kwh,
            planned.mean_air_temp_c,
            strict=True,
        )
    )
    plan = Plan(
        plan_id=plan_id,
        device_id=inputs.record.device.device_id,
        price_area=inputs.prices.area,
        resolution=inputs.prices.resolution,
        created_at=now,
        slots=slots,
        expected_cost_eur=expected_cost,
        baseline_cost_eur=baseline_cost,
        price_content_hashes=tuple(d.content_hash for d in inputs.prices.days),
        weather_issued_at=inputs.forecast.issued_at,
        solver=result.solver,
        solver_gap=None if math.isnan(result.gap) else result.gap,  # NaN: no LP bound
    )
    held = inputs.weather_held_after_at
    record = inputs.record
    document = plan_document(
        plan,
        mode_to_start_from(
            record.observed_mode, record.snapshot.data if record.snapshot else None, plan.start_at
        ),
        {
            "solve_ms": result.solve_ms,
            "solver_termination": result.termination,
            "trigger": trigger,
            "inputs": inputs.versions() | ({} if billing is None else {"tariff": billing.inputs}),
            "inputs_key": _inputs_key(inputs, billing),
            "weather_held": held is not None,
            "weather_held_after_at": held,
            "horizon_truncated": inputs.prices.truncated_reason,
            "expected_comfort_kh_below": planned.comfort_kh_below,
            "baseline_comfort_kh_below": baseline.comfort_kh_below,
            "expected_mean_indoor_temp_c": float(planned.mean_air_temp_c.mean()),
            "baseline_mean_indoor_temp_c": float(baseline.mean_air_temp_c.mean()),
            "expected_objective_eur": planned.objective_eur,
            "cost_by_day": cost_by_day(
                plan, list(planned.electricity_kwh), list(baseline.electricity_kwh)
            ),
            "tariff_id": None if billing is None else billing.tariff_id,
            "tariff_note": None if billing is None else billing.note,
            "expected_bill_eur": None if bill_prices is None else planned.energy_cost_eur,
            "baseline_bill_eur": None if bill_prices is None else baseline.energy_cost_eur,
        },
    )
    if bill_prices is not None:
        for slot, price in zip(document["slots"], bill_prices, strict=True):
            slot["bill_price_eur_per_kwh"] = price / 1000.0
    return plan, document


_Step = Callable[
    [str, Callable[[], DeviceOutcome | _ToSolve], str], DeviceOutcome | _ToSolve | None
]
"""One step of one device, guarded (:func:`plan_shard`): (device id, step, span name)."""


def plan_shard(
    request: OptimizeRequest,
    deps: Dependencies,
    planner: OrToolsPlanner | None = None,
    options: PlanningOptions | None = None,
    *,
    workers: int | None = None,
) -> list[DeviceOutcome]:
    """Plan every device of the shard (see the module docstring); raise a transient failure
    after the shard when any device met one. ``workers``: devices whose reads and writes run at
    once (default ``settings.optimize_io_workers``; 1: in turn)."""
    if planner is None:
        from hpsteer.optimizer.planner import OrToolsPlanner

        planner = OrToolsPlanner()
    device_ids = tuple(dict.fromkeys(request.device_ids))
    shard = _Shard(
        deps,
        options or PlanningOptions(),
        planner,
        request.trigger,
        deps.clock.now(),
        device_ids=device_ids,
    )
    transient: list[tuple[str, TransientError]] = []
    noting = threading.Lock()

    def guarded(
        device_id: str, step: Callable[[], DeviceOutcome | _ToSolve], name: str
    ) -> DeviceOutcome | _ToSolve | None:
        with (
            span(name, {"device_id": device_id}),
            log_context(device_id=device_id, trigger=request.trigger),
        ):
            try:
                return step()
            except PermanentError as err:
                _log.error(
                    "device %s keeps its previous plan: %s: %s",
                    device_id,
                    type(err).__name__,
                    err,
                    extra={"error_type": type(err).__name__},
                )
                return DeviceOutcome(device_id, "failed", error=type(err).__name__)
            except TransientError as err:
                _log.warning("device %s not planned, will retry: %s", device_id, err)
                with noting:
                    transient.append((device_id, err))
                return None

    workers = deps.settings.optimize_io_workers if workers is None else workers
    if workers <= 1 or len(device_ids) <= 1:
        outcomes = _in_turn(shard, device_ids, guarded)
    else:
        outcomes = _at_once(shard, device_ids, guarded, workers)
    order = {device_id: n for n, device_id in enumerate(device_ids)}
    transient.sort(key=lambda failed: order[failed[0]])  # the first in the request's order
    if shard.batch is not None:
        try:
            shard.batch.finish()
        except TransientError as err:
            _log.warning("shard's rows or outbox conclusions not stored, will retry: %s", err)
            transient.append(("(the shard's rows and outboxes)", err))
    if transient:
        first_id, first = transient[0]
        raise type(first)(
            f"{len(transient)} of {len(request.device_ids)} devices failed transiently "
            f"(first {first_id}: {first}); the shard is delivered again"
        ) from first
    return [outcomes[d] for d in device_ids if d in outcomes]


def _in_turn(
    shard: _Shard, device_ids: tuple[str, ...], guarded: _Step
) -> dict[str, DeviceOutcome]:
    """Every device prepared in turn, the solves together on the planning executor, every
    device completed in turn: one I/O thread, the order of the reads and writes fixed."""
    outcomes: dict[str, DeviceOutcome] = {}
    jobs: list[_ToSolve] = []
    for device_id in device_ids:
        prepared = guarded(device_id, functools.partial(shard.prepare, device_id), "plan_device")
        if isinstance(prepared, _ToSolve):
            jobs.append(prepared)
        elif isinstance(prepared, DeviceOutcome):
            outcomes[device_id] = prepared
    for job, solved in zip(jobs, shard.solve_all(jobs), strict=True):
        finished = guarded(
            job.device_id, functools.partial(_finish, shard, job, solved), "release_plan"
        )
        if isinstance(finished, DeviceOutcome):
            outcomes[job.device_id] = finished
    return outcomes


def _at_once(
    shard: _Shard, device_ids: tuple[str, ...], guarded: _Step, workers: int
) -> dict[str, DeviceOutcome]:
    """Each device on one of ``workers`` threads (a pool of this shard, each task in a copy of
    the caller's context, so log fields and the trace follow it): prepared, solved on the
    planning executor (bounded to the CPUs; the thread waits), completed. A device's steps stay
    in order on its thread; devices overlap, so the shard waits about its round trips / the
    workers instead of all of them in turn."""
    executor = planning_executor(shard.deps)

    def plan_one(device_id: str) -> DeviceOutcome | None:
        prepared = guarded(device_id, functools.partial(shard.prepare, device_id), "plan_device")
        if not isinstance(prepared, _ToSolve):
            return prepared
        solved = shard.solve(prepared, executor)
        finished = guarded(
            device_id, functools.partial(_finish, shard, prepared, solved), "release_plan"
        )
        return finished if isinstance(finished, DeviceOutcome) else None

    with ThreadPoolExecutor(
        max_workers=min(workers, len(device_ids)), thread_name_prefix="optimize-io"
    ) as pool:
        futures = [
            pool.submit(contextvars.copy_context().run, plan_one, device_id)
            for device_id in device_ids
        ]
        finished = [future.result() for future in futures]
    return {
        device_id: outcome
        for device_id, outcome in zip(device_ids, finished, strict=True)
        if outcome is not None
    }


def _finish(shard: _Shard, job: _ToSolve, solved: Solved) -> DeviceOutcome:
    if isinstance(solved, BaseException):
        raise solved
    plan, document = solved
    return shard.complete(job, plan, document)


# -- handlers ---------------------------------------------------------------------------------

_TYPES: dict[str, type[OptimizeTrigger]] = {
    "SpotPricesUpdated": SpotPricesUpdated,
    "WeatherUpdated": WeatherUpdated,
    "ReplanRequest": ReplanRequest,
}


def decode_trigger(message: PubSubMessage) -> OptimizeTrigger:
    """The event in a trigger message.

    A ``message_type`` attribute names the type when the publisher set one. Else the attributes
    the publishers set today decide: ``content_hash`` (ingest_prices) → prices, ``location_id``
    (ingest_weather) → weather. Else each type is tried: the models refuse unknown fields, so
    exactly one fits a well-formed message; none or several is :class:`MalformedMessage`.
    """
    attributes = message.attributes
    named = attributes.get("message_type")
    if named is None and "content_hash" in attributes:
        named = "SpotPricesUpdated"
    elif named is None and "location_id" in attributes:
        named = "WeatherUpdated"
    if named is not None:
        if named not in _TYPES:
            raise MalformedMessage(f"message_type {named!r} is not one optimize handles")
        return _TYPES[named].parse_json(message.data)
    fits: list[OptimizeTrigger] = []
    for model in _TYPES.values():
        try:
            fits.append(model.parse_json(message.data))
        except (MalformedMessage, pydantic.ValidationError):
            continue
    if len(fits) != 1:
        raise MalformedMessage(
            f"message {message.message_id} is {'none' if not fits else 'more than one'} of "
            f"{', '.join(_TYPES)}"
        )
    return fits[0]


def handle_optimize_trigger(message: PubSubMessage, deps: Dependencies) -> None:
    """``spot-price-updates`` / ``weather-updates`` / ``replan-requests``: fan out."""
    fan_out(decode_trigger(message), deps)


def handle_optimize_request(message: PubSubMessage, deps: Dependencies) -> None:
    """``optimize-requests``: plan one shard."""
    request = OptimizeRequest.parse_json(message.data)
    outcomes = plan_shard(request, deps)
    counts: dict[str, int] = defaultdict(int)
    for outcome in outcomes:
        counts[outcome.status] += 1
    _log.info("shard of %s planned: %s", request.trigger, dict(counts))
