"""Assemble one device's :class:`~hpsteer.optimizer.problem.PlanningProblem` from stored inputs.

What a plan is built from, and what happens when an input is missing or absurd:

- **Device.** ``devices/{id}``: the :class:`~hpsteer.domain.devices.Device` fields (the document
  carries more, e.g. ``current_plan_id``; only the model's fields are read). A missing document is
  :class:`~hpsteer.errors.UnknownDevice`; a comfort band whose minimum, setpoint and maximum are
  not in order is :class:`InfeasibleComfortBand`; any other invalid field is
  :class:`~hpsteer.errors.MalformedMessage` naming it.
- **Horizon and prices.** From the next slot boundary (``now`` itself when it is one) to the end of
  the last stored delivery day, at most ``max_horizon`` (48 h). Days are read from
  ``price_areas/{area}/days/{date}`` in order from the day holding the start; the first missing
  day ends the horizon there (**a gap in the middle: plan only up to the gap**). No prices for the
  first slot is :class:`MissingPrices` (the device keeps its previous plan). Days of different
  resolutions (the move to 15 minutes) are planned at the finest: an hourly price is repeated
  over its quarter-hours.
- **Weather.** The latest stored forecast of the device's forecast location
  (``locations/{forecast_location_id}`` → ``forecasts/{issued_at}``); none is
  :class:`MissingForecast`. Per slot, the outdoor temperature and irradiance at the slot's middle,
  linear between points (a missing irradiance counts as 0). **A forecast shorter than the horizon
  is held at its last value**, and :attr:`PlanInputs.weather_held_after_at` says from when (the
  plan is flagged with it).
- **Measured state.** ``last_telemetry`` (else ``state``) on the device document, or the newest
  sample of the history read for identification (below) when that is newer
  (:func:`with_newest_air`: the document's temperatures are refreshed hourly): its
  ``indoor_temp_c`` is the air temperature; without a usable history (below) the envelope is
  **estimated equal to it** (no sensor measures it). Telemetry older than ``max_telemetry_age``
  or without an indoor temperature is ignored, and the plant's steady state under the first
  slot's conditions in the current mode is used instead. ``observed_mode`` is the current mode
  (unknown, or from telemetry older than ``max_telemetry_age``: ``mid`` for the planner, and the
  outbox then sets the first mode explicitly; the outbox also does when the current plan holds
  the device in another mode: :func:`~hpsteer.services.plans_store.mode_to_start_from`).
- **Plant.** :func:`~hpsteer.thermal.plant_from_parameters`; a :class:`ValueError` from the
  physics, or a steady state outside -60..80 °C, is :class:`AbsurdThermalParameters`.
- **The house, from its history.** With a measured air temperature now and a measured history
  (:func:`load_histories`: ``telemetry_history``, one query for a shard's devices over
  ``identify_history_days``), the history is cut into slots (:func:`measured_slots`) and replayed
  through the bank of :mod:`hpsteer.optimizer.identify` (started as
  :func:`~hpsteer.optimizer.identify.identify` starts it; the registered house is one of its
  candidates). A slot per clock hour (the identification was tuned and measured on hourly slots),
  from the indoor sample nearest one hour (within 30 minutes) to the one nearest the next: polls
  every 10 minutes give whole clock hours, hourly polls half an hour off the clock still give
  measured slots, and an hour with no sample that near is stepped, not scored. Over a slot, the
  applied offset is time-weighted (a change counts from midway between the samples either side of
  it), the outdoor temperature is the samples' mean (else the forecast's), and the irradiance is
  what the forecast issued last before the slot said (:func:`past_forecasts`: the location's
  forecasts over the history, one document read per location and shard: its past weather digest),
  0 W/m² where none covers it. With at least ``min_identified_slots`` (24) slots measured at both
  ends, the plan is on the bank's best (factors rounded to 0.01, internal gains to 1 W) when it
  explains the history better than the registered house by more than fitting three factors to noise
  would (:func:`better_than_registered`, the Bayesian information criterion), else on the registered
  house; either way **with the envelope at that house's own estimate from the history** (0.1 K). The
  plan's inputs record which (``identified.house``), the factors, the envelope and both houses' rms
  one-slot errors. Fewer slots, no history, an unreadable or malformed one, or an implausible
  envelope: the registered plant with the envelope equal to the air, and ``identified: null``; so
  too for every device when the ``identify_houses`` setting is off (no history is read). A history
  never fails a plan.

  Measured: on ``hpsteer simulate`` (30 homes, 2 days of SE3 from 2023-01-09, realistic faults,
  seeds 0, 1, 2), against planning every house on its registered parameters: spot savings 9.5,
  8.1, 10.9 % instead of 11.0, 10.1, 12.2 %, comfort below the band 0.044, 0.052, 0.055 instead
  of 0.132, 0.144, 0.131 K·h per home and day, the homes 0.04 to 0.09 K warmer, and energy cost
  plus the planner's comfort penalty (1 EUR/K·h) 1.8 to 2.7 EUR lower over the fleet. Past
  irradiance (the DK1 2024 backtest, 30 days, the identifier fed each kind): the forecast
  issued last before each slot keeps the share of the bound and comfort of the measured
  irradiance (January 96.3 % and 0.18 K·h/day against 96.4 % and 0.18; March 97.2 % and 0.001
  against 96.9 % and 0.0002), where 0 W/m² ran the homes 0.1 to 0.2 K colder (0.25 and 0.37
  K·h/day below the band).

:func:`inputs_key` names every input that changes the plan: the price days' hashes and versions,
the forecast's issue time, the device's comfort and thermal settings, the measured state
(rounded to 0.1 K) and, when the history gave the house, which house, its factors and its
envelope estimate. The same inputs give the same key, so a redelivered message finds its plan.
"""

from __future__ import annotations

import bisect
import contextlib
import dataclasses
import hashlib
import json
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from itertools import pairwise
from typing import TYPE_CHECKING, Any, Literal

from hpsteer.domain.actions import Mode
from hpsteer.domain.devices import Device
from hpsteer.domain.instants import format_instant, instant_or_none
from hpsteer.domain.market import PriceArea, Resolution, Slot, market_date_of, slots_between
from hpsteer.domain.weather import WeatherPoint, WeatherSeries
from hpsteer.errors import InvalidInput, UnknownDevice
from hpsteer.ports.analytics import Analytics
from hpsteer.ports.store import Document, DocumentStore
from hpsteer.services.ingest_weather import (
    forecast_location_id,
    forecast_path,
    location_path,
    past_weather_path,
    past_weather_series,
    series_from_document,
    stored_forecasts,
)
from hpsteer.services.paths import device_path
from hpsteer.services.price_days import load_day

if TYPE_CHECKING:
    # numpy, the thermal model and the problem load with the first device planned
    # (optimize_shard), not at import: optimize_trigger, deployed from the same source, never
    # needs them.
    from hpsteer.optimizer.identify import MeasuredSlot, PlantIdentifier
    from hpsteer.optimizer.problem import PlanningProblem
    from hpsteer.thermal import Plant

__all__ = [
    "AbsurdThermalParameters",
    "DeviceRecord",
    "HistorySample",
    "HorizonPrices",
    "IdentifiedFactors",
    "InfeasibleComfortBand",
    "MissingForecast",
    "MissingPrices",
    "PlanInputs",
    "PlanningOptions",
    "assemble",
    "better_than_registered",
    "device_path",
    "horizon_prices",
    "latest_forecast",
    "load_device",
    "load_histories",
    "measured_slots",
    "past_forecasts",
]

_log = logging.getLogger(__name__)

_PLAUSIBLE_TEMP_C = (-60.0, 80.0)


class MissingPrices(InvalidInput):
    """No stored prices for the first slot of the horizon."""


class MissingForecast(InvalidInput):
    """No stored forecast for the device's location."""


class InfeasibleComfortBand(InvalidInput):
    """A comfort band with minimum, setpoint and maximum out of order."""


class AbsurdThermalParameters(InvalidInput):
    """Thermal parameters the physics refuses, or whose steady state is implausible."""


@dataclass(frozen=True, slots=True)
class PlanningOptions:
    """Wear rules and limits of planning (defaults until settings carry them)."""

    shard_size: int = 100
    max_horizon: timedelta = timedelta(hours=48)
    max_telemetry_age: timedelta = timedelta(hours=6)
    min_dwell_minutes: int = 60
    max_changes_per_day: int = 6
    switch_penalty_eur: float = 0.02
    comfort_penalty_eur_per_kh: float = 1.0
    min_identified_slots: int = 24
    """Hourly slots measured at both ends the identification needs; fewer: the nominal plant."""


@dataclass(frozen=True, slots=True)
class DeviceRecord:
    device: Device
    indoor_temp_c: float | None
    observed_mode: Mode | None
    telemetry_observed_at: datetime | None
    tariff_id: str | None = None
    """The household tariff the device is planned on (None: spot)."""
    snapshot: Document | None = dataclasses.field(default=None, repr=False, compare=False)
    """The device document as read (:func:`load_device`): optimize judges from it whether the
    plan may exist already and makes the plan current on it
    (:func:`~hpsteer.services.plans_store.make_current`'s ``read``)."""


def _check_comfort(device_id: str, comfort: object) -> None:
    if not isinstance(comfort, Mapping):
        return  # the model names it
    low, mid, high = (
        comfort.get(k) for k in ("min_indoor_temp_c", "setpoint_c", "max_indoor_temp_c")
    )
    if all(isinstance(v, int | float) for v in (low, mid, high)) and not (
        low <= mid <= high  # type: ignore[operator]  # checked numeric just above
    ):
        raise InfeasibleComfortBand(
            f"device {device_id}: comfort band needs min <= setpoint <= max, got "
            f"{low} / {mid} / {high} °C; no plan can keep it"
        )


def load_device(
    store: DocumentStore, device_id: str, *, now: datetime, options: PlanningOptions
) -> DeviceRecord:
    import numpy as np

    snapshot = store.get(device_path(device_id))
    if snapshot is None:
        raise UnknownDevice(f"no device {device_id}")
    data = snapshot.data
    _check_comfort(device_id, data.get("comfort"))
    fields = {k: v for k, v in data.items() if k in Device.model_fields}
    device = Device.parse(fields)
    telemetry = data.get("last_telemetry") or data.get("state") or {}
    indoor: float | None = None
    mode: Mode | None = None
    observed_at: datetime | None = None
    if isinstance(telemetry, Mapping):
        observed_at = instant_or_none(telemetry.get("observed_at"))
        if observed_at is not None and now - observed_at <= options.max_telemetry_age:
            temp = telemetry.get("indoor_temp_c")
            if isinstance(temp, int | float) and np.isfinite(temp):
                indoor = float(temp)
            with contextlib.suppress(ValueError):
                mode = Mode(telemetry["observed_mode"]) if telemetry.get("observed_mode") else None
        else:
            observed_at = None  # too old to tell anything
    tariff = data.get("tariff_id")
    tariff_id = tariff if isinstance(tariff, str) and tariff else None
    return DeviceRecord(device, indoor, mode, observed_at, tariff_id, snapshot)


def with_newest_air(
    record: DeviceRecord, history: Sequence[HistorySample], now: datetime, options: PlanningOptions
) -> DeviceRecord:
    """``record`` with the history's newest measured air temperature when it is newer than the
    device document's (and not older than ``max_telemetry_age``). The document's telemetry is
    rewritten at once when anything decisions use changes, but its temperatures only hourly
    (:data:`~hpsteer.domain.telemetry.POLL_REFRESH`); ``telemetry_history`` has every sample,
    and the shard reads it anyway."""
    newest = next((s for s in reversed(history) if s.indoor_temp_c is not None), None)
    if newest is None or now - newest.observed_at > options.max_telemetry_age:
        return record
    stored_at = record.telemetry_observed_at
    if stored_at is not None and newest.observed_at <= stored_at:
        return record
    return dataclasses.replace(
        record, indoor_temp_c=newest.indoor_temp_c, telemetry_observed_at=newest.observed_at
    )


# -- prices -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PriceDayVersion:
    market_date: date
    content_hash: str
    version: int


@dataclass(frozen=True, slots=True)
class HorizonPrices:
    area: PriceArea
    resolution: Resolution
    slots: tuple[Slot, ...]
    prices_eur_per_mwh: tuple[float, ...]
    days: tuple[PriceDayVersion, ...]
    truncated_reason: str | None
    """Why the horizon ends before ``max_horizon`` (a missing day), None when it does not."""


def _ceil(instant: datetime, resolution: Resolution) -> datetime:
    step = resolution.duration
    floor = instant.replace(minute=0, second=0, microsecond=0)
    while floor < instant:
        floor += step
    return floor


def horizon_prices(
    store: DocumentStore, area: PriceArea, now: datetime, max_horizon: timedelta
) -> HorizonPrices:
    """The stored prices from the next slot boundary on (see the module docstring)."""
    first_day = market_date_of(area, now)
    stored = []
    day = first_day
    truncated: str | None = None
    limit = now + max_horizon + timedelta(days=1)
    while True:
        found = load_day(store, area, day)
        if found is None:
            truncated = f"no prices stored for {area.value} {day}"
            break
        stored.append(found)
        day += timedelta(days=1)
        if found.prices.slots()[-1].end_at >= limit:
            break
    if not stored:
        raise MissingPrices(
            f"no prices stored for {area.value} {first_day}: nothing to plan the next slot with"
        )
    resolution = min(s.prices.resolution for s in stored)
    start = _ceil(now, resolution)
    end = min(stored[-1].prices.slots()[-1].end_at, start + max_horizon)
    if end <= start:
        raise MissingPrices(f"the stored prices for {area.value} end before {format_instant(now)}")
    if end == start + max_horizon:
        truncated = None
    elif truncated is None:
        truncated = f"prices stored only until {format_instant(end)}"
    slots = slots_between(start, end, resolution)
    priced = [pair for s in stored for pair in s.prices.priced_slots()]
    prices: list[float] = []
    index = 0
    for slot in slots:
        while priced[index][0].end_at <= slot.start_at:
            index += 1
        prices.append(priced[index][1])
    used = [s for s in stored if s.prices.slots()[0].start_at < end]
    return HorizonPrices(
        area=area,
        resolution=resolution,
        slots=tuple(slots),
        prices_eur_per_mwh=tuple(prices),
        days=tuple(
            PriceDayVersion(s.prices.market_date, s.prices.content_hash, s.version) for s in used
        ),
        truncated_reason=truncated,
    )


# -- weather ----------------------------------------------------------------------------------


def latest_forecast(store: DocumentStore, latitude: float, longitude: float) -> WeatherSeries:
    location_id = forecast_location_id(latitude, longitude)
    location = store.get(location_path(location_id))
    issued = None if location is None else location.data.get("latest_forecast_issued_at")
    issued_at = instant_or_none(issued)
    if issued_at is None:
        raise MissingForecast(f"no forecast stored for location {location_id}")
    document = store.get(forecast_path(location_id, issued_at))
    if document is None:
        raise MissingForecast(
            f"location {location_id} names forecast {format_instant(issued_at)}, which is missing"
        )
    return series_from_document(document.data)


def _interpolate(points: Sequence[WeatherPoint], at: datetime, solar: bool) -> float:
    def value(point: WeatherPoint) -> float:
        if solar:
            return point.solar_irradiance_w_per_m2 or 0.0
        return point.outdoor_temp_c

    if at <= points[0].at:
        return value(points[0])
    for before, after in pairwise(points):
        if before.at <= at <= after.at:
            weight = (at - before.at) / (after.at - before.at)
            return value(before) + weight * (value(after) - value(before))
    return value(points[-1])


# -- measured history -------------------------------------------------------------------------

TELEMETRY_HISTORY_TABLE = "telemetry_history"
"""The analytics table ingestion appends every telemetry sample to (``ingest_telemetry``)."""
_HOUR = timedelta(hours=1)
_ANCHOR_TOLERANCE = timedelta(minutes=30)
"""A clock hour's boundary is the indoor sample nearest to it within this (module docstring)."""
_MIN_SLOT = timedelta(minutes=30)
"""Consecutive measured boundaries are at least this far apart."""
_IDENTIFIED_FACTORS = 3
"""What identification fits beyond the registered house: heat loss, room gain, internal gains."""


@dataclass(frozen=True, slots=True)
class HistorySample:
    """What identification reads of one ``telemetry_history`` row."""

    observed_at: datetime
    indoor_temp_c: float | None
    outdoor_temp_c: float | None
    offset_k: float | None
    """The applied mode's setpoint offset (``observed_mode``, else ``setpoint_offset_k``)."""


def history_sql(device_count: int) -> str:
    """One query for ``device_count`` devices' samples since ``@since`` (parameters ``@d0`` ...,
    scalars: both backends bind them, neither shares the other's array syntax)."""
    ids = ", ".join(f"@d{i}" for i in range(device_count))
    return (
        "SELECT device_id, observed_at, indoor_temp_c, outdoor_temp_c, observed_mode, "
        f"setpoint_offset_k FROM `{TELEMETRY_HISTORY_TABLE}` "
        f"WHERE device_id IN ({ids}) AND observed_at >= @since ORDER BY device_id, observed_at"
    )


def _finite(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def _sample(row: Mapping[str, Any]) -> HistorySample | None:
    """The row's sample, None when it cannot be one (no aware time)."""
    at = row.get("observed_at")
    if not isinstance(at, datetime) or at.tzinfo is None:
        return None
    offset: float | None = None
    try:
        mode = row.get("observed_mode")
        offset = Mode(mode).setpoint_offset_k if isinstance(mode, str) and mode else None
    except ValueError:
        offset = None
    if offset is None:
        offset = _finite(row.get("setpoint_offset_k"))
    return HistorySample(
        at, _finite(row.get("indoor_temp_c")), _finite(row.get("outdoor_temp_c")), offset
    )


def load_histories(
    analytics: Analytics, device_ids: Sequence[str], *, now: datetime, history: timedelta
) -> dict[str, list[HistorySample]]:
    """Each device's samples over ``history`` before ``now``, oldest first, in one query (rows
    that cannot be read are left out). Raises what the analytics port raises."""
    ids = list(dict.fromkeys(device_ids))
    if not ids:
        return {}
    params: dict[str, Any] = {f"d{i}": device_id for i, device_id in enumerate(ids)}
    params["since"] = now - history
    found: dict[str, list[HistorySample]] = {}
    for row in analytics.query(history_sql(len(ids)), params):
        sample = _sample(row)
        device_id = row.get("device_id")
        if sample is not None and isinstance(device_id, str) and sample.observed_at <= now:
            found.setdefault(device_id, []).append(sample)
    for samples in found.values():
        samples.sort(key=lambda sample: sample.observed_at)
    return found


def past_forecasts(
    store: DocumentStore, latitude: float, longitude: float, *, since: datetime, until: datetime
) -> list[WeatherSeries]:
    """What the location's forecasts issued from ``since`` to ``until`` tell identification,
    oldest first: one document read, the location's past weather digest
    (``locations/{id}/past_weather/digest``, which weather ingestion keeps:
    :func:`~hpsteer.services.ingest_weather.past_weather_document`). Each forecast comes with
    only the points identification can read of it (:class:`_PastWeather` gives the same values
    from these as from the whole forecasts). A location without a digest, or with one that
    cannot be read (logged), falls back to the stored forecasts themselves: one query on
    ``locations/{id}/forecasts``, one read per forecast. Raises what the store raises."""
    location_id = forecast_location_id(latitude, longitude)
    digest = store.get(past_weather_path(location_id))
    if digest is not None:
        try:
            return [
                series
                for series in past_weather_series(digest.data)
                if since <= series.issued_at <= until
            ]
        except InvalidInput as err:
            _log.warning(
                "location %s: past weather digest unreadable, its forecasts are read instead: %s",
                location_id,
                err,
            )
    return stored_forecasts(store, location_id, since=since, until=until)


class _PastWeather:
    """What the stored forecasts said about a past instant: the forecast issued last at or
    before the slot's start that covers it; when none issued before covers it, the first issued
    after that does."""

    def __init__(self, forecasts: Sequence[WeatherSeries]) -> None:
        self._forecasts = sorted((f for f in forecasts if f.points), key=lambda f: f.issued_at)
        self._issued = [f.issued_at for f in self._forecasts]

    def at(self, start: datetime, middle: datetime) -> tuple[float, float] | None:
        """(outdoor °C, irradiance W/m²) at ``middle`` of a slot from ``start``; None: no
        stored forecast covers it."""
        k = bisect.bisect_right(self._issued, start)
        for i in (*range(k - 1, -1, -1), *range(k, len(self._forecasts))):
            points = self._forecasts[i].points
            if points[0].at <= middle <= points[-1].at:
                return (
                    _interpolate(points, middle, solar=False),
                    _interpolate(points, middle, solar=True),
                )
        return None


class _AppliedOffsets:
    """The applied offset over time, from the samples that show it: each holds from halfway
    since the sample before to halfway to the next (a change is placed midway between the two
    samples either side of it), the last until now."""

    def __init__(self, history: Sequence[HistorySample]) -> None:
        shown = [(s.observed_at, s.offset_k) for s in history if s.offset_k is not None]
        self.values = [offset for _, offset in shown]
        self.starts = [at for at, _ in shown[:1]] + [
            a + (b - a) / 2 for (a, _), (b, _) in pairwise(shown)
        ]

    @property
    def first_at(self) -> datetime | None:
        return self.starts[0] if self.starts else None

    def mean(self, start: datetime, end: datetime) -> float | None:
        """The time-weighted mean over ``start``..``end``; None unless known over all of it."""
        if not self.values or start < self.starts[0] or end <= start:
            return None
        k = bisect.bisect_right(self.starts, start) - 1
        total = 0.0
        while k < len(self.values) and self.starts[k] < end:
            lo = max(start, self.starts[k])
            hi = end if k + 1 == len(self.values) else min(end, self.starts[k + 1])
            total += (hi - lo).total_seconds() * self.values[k]
            k += 1
        return total / (end - start).total_seconds()


def _boundaries(
    history: Sequence[HistorySample], first: datetime, now: datetime
) -> list[tuple[datetime, float | None]]:
    """Each clock hour from the first at or after ``first`` to the last before ``now``: the
    indoor sample nearest to it within :data:`_ANCHOR_TOLERANCE` (the earlier on a tie), at
    least :data:`_MIN_SLOT` after the previous boundary and not before ``first``, as (time,
    air); else (the hour, None)."""
    indoor = [(s.observed_at, s.indoor_temp_c) for s in history if s.indoor_temp_c is not None]
    times = [at for at, _ in indoor]
    hour = first.replace(minute=0, second=0, microsecond=0)
    if hour < first:
        hour += _HOUR
    found: list[tuple[datetime, float | None]] = []
    earliest = first
    while hour <= now:
        lo = bisect.bisect_left(times, max(earliest, hour - _ANCHOR_TOLERANCE))
        hi = bisect.bisect_right(times, min(now, hour + _ANCHOR_TOLERANCE))
        if lo < hi:
            j = min(range(lo, hi), key=lambda j: (abs(times[j] - hour), times[j]))
            found.append(indoor[j])
            earliest = times[j] + _MIN_SLOT
        else:
            found.append((hour, None))
            earliest = max(earliest, hour + _MIN_SLOT)
        hour += _HOUR
    return found


def measured_slots(
    history: Sequence[HistorySample],
    forecasts: Sequence[WeatherSeries],
    setpoint_c: float,
    now: datetime,
) -> list[MeasuredSlot]:
    """``history`` as slots for :func:`~hpsteer.optimizer.identify.identify`, oldest first,
    between the clock hours' boundaries (:func:`_boundaries`) up to the last hour before
    ``now``, from the first sample that shows the applied offset.

    A slot's offset is the time-weighted applied offset (:class:`_AppliedOffsets`); its outdoor
    temperature the mean of the samples' within it, else what ``forecasts`` said at its middle
    (:class:`_PastWeather`); its irradiance what they said, else 0 (no forecast covers it). A
    slot without an outdoor temperature is stepped on the previous slot's and not scored (its
    end's air is dropped); leading slots without one are left out.
    """
    from hpsteer.optimizer.identify import MeasuredSlot
    from hpsteer.thermal import SlotConditions

    offsets = _AppliedOffsets(history)
    if offsets.first_at is None:
        return []
    weather = _PastWeather(forecasts)
    outdoors = [(s.observed_at, s.outdoor_temp_c) for s in history if s.outdoor_temp_c is not None]
    outdoor_times = [at for at, _ in outdoors]
    slots: list[MeasuredSlot] = []
    outdoor: float | None = None
    for (start, air_start), (end, air_end) in pairwise(_boundaries(history, offsets.first_at, now)):
        offset = offsets.mean(start, end)
        if offset is None:
            continue
        middle = start + (end - start) / 2
        forecast = weather.at(start, middle)
        inside = outdoors[
            bisect.bisect_left(outdoor_times, start) : bisect.bisect_left(outdoor_times, end)
        ]
        measured: float | None = None
        if inside:
            measured = sum(value for _, value in inside) / len(inside)
        elif forecast is not None:
            measured = forecast[0]
        outdoor = measured if measured is not None else outdoor
        if outdoor is None:
            continue
        solar = forecast[1] if forecast is not None else 0.0
        slots.append(
            MeasuredSlot(
                air_start_c=air_start,
                offset_k=offset,
                conditions=SlotConditions((end - start) / _HOUR, outdoor, setpoint_c, solar),
                air_end_c=air_end if measured is not None else None,
            )
        )
    return slots


@dataclass(frozen=True, slots=True)
class IdentifiedFactors:
    """What the history says, rounded as the plan records it: the house the plan is on
    (``identified``: the bank's best; ``registered``: factors 1, 1 and 0 W), its envelope
    temperature now, and how well the bank's best and the registered house each explain the
    history (root-mean-square one-slot error)."""

    house: Literal["identified", "registered"]
    loss_scale: float
    room_gain_scale: float
    gain_offset_w: float
    mass_temp_c: float
    scored_slots: int
    rms_error_k: float
    registered_rms_error_k: float

    def recorded(self) -> dict[str, Any]:
        return {
            "house": self.house,
            "loss_scale": self.loss_scale,
            "room_gain_scale": self.room_gain_scale,
            "gain_offset_w": self.gain_offset_w,
            "mass_temp_c": self.mass_temp_c,
            "scored_slots": self.scored_slots,
            "rms_error_k": self.rms_error_k,
            "registered_rms_error_k": self.registered_rms_error_k,
        }

    @property
    def key(self) -> str:
        return (
            f"{self.house}={self.loss_scale:.2f}/{self.room_gain_scale:.2f}/"
            f"{self.gain_offset_w:.0f}@{self.mass_temp_c:.1f}"
        )


def _replayed(plant: Plant, slots: Sequence[MeasuredSlot]) -> PlantIdentifier:
    """The bank of :class:`~hpsteer.optimizer.identify.PlantIdentifier` on ``plant`` fed
    ``slots``, started as :func:`~hpsteer.optimizer.identify.identify` starts it (every
    candidate's envelope from the registered house's steady state in the first slot)."""
    from hpsteer.optimizer.identify import PlantIdentifier

    first = slots[0]
    steady_air, steady_mass = plant.steady_state(first.conditions, first.offset_k)
    shift = 0.0 if first.air_start_c is None else first.air_start_c - steady_air
    bank = PlantIdentifier(plant, steady_mass + shift)
    for slot in slots:
        bank.update(slot.air_start_c, slot.offset_k, slot.conditions, slot.air_end_c)
    return bank


def _registered_index(bank: PlantIdentifier) -> int:
    """Where the registered house (factors 1, 1 and 0 W) is among the bank's candidates: its
    scores and envelopes run over loss x room gain x internal gains, in that order."""
    import numpy as np

    axes = (bank.loss_scales, bank.room_gain_scales, bank.gain_offsets_w)
    at = (axes[0].index(1.0), axes[1].index(1.0), axes[2].index(0.0))
    return int(np.ravel_multi_index(at, tuple(len(axis) for axis in axes)))


def better_than_registered(scored: int, error: float, registered_error: float) -> bool:
    """Whether the bank's best summed squared one-slot error ``error`` beats the registered
    house's ``registered_error`` over ``scored`` slots by more than fitting three factors to
    noise would: the Bayesian information criterion with Gaussian errors,
    ``n ln(registered / best) > 3 ln n`` (at 24 slots the registered house's error must be 1.49
    times the best's, at 48 1.27 times, at a week of hourly slots 1.10 times)."""
    if scored < 2 or registered_error <= 0.0:
        return False
    if error <= 0.0:
        return True
    return scored * math.log(registered_error / error) > _IDENTIFIED_FACTORS * math.log(scored)


def _identified(
    plant: Plant,
    record: DeviceRecord,
    history: Sequence[HistorySample],
    forecasts: Sequence[WeatherSeries],
    now: datetime,
    options: PlanningOptions,
) -> tuple[Plant, IdentifiedFactors] | None:
    """The house to plan on and what the history says, or None: no measured air now, too few
    measured slots, an implausible envelope, or anything in the history identification cannot
    use (logged; the plan goes on). The house is the bank's best when it explains the history
    better than the registered one (:func:`better_than_registered`), else the registered one;
    either way with its own envelope estimate from the history."""
    if record.indoor_temp_c is None or not history:
        return None
    device_id = record.device.device_id
    try:
        slots = measured_slots(history, forecasts, record.device.comfort.setpoint_c, now)
        scored = sum(1 for s in slots if s.air_start_c is not None and s.air_end_c is not None)
        if scored < options.min_identified_slots:
            return None
        bank = _replayed(plant, slots)
        found = bank.best()
        registered = _registered_index(bank)
        error, registered_error = float(bank.score.min()), float(bank.score[registered])
    except Exception as err:  # noqa: BLE001 - a history never fails the plan
        _log.warning(
            "device %s planned on its registered parameters: identification failed: %s: %s",
            device_id,
            type(err).__name__,
            err,
        )
        return None
    n = bank.scored_slots
    rms, registered_rms = (round(math.sqrt(e / n), 3) for e in (error, registered_error))
    if better_than_registered(n, error, registered_error):
        house: Literal["identified", "registered"] = "identified"
        factors = (found.loss_scale, found.room_gain_scale, found.gain_offset_w)
        mass = found.mass_temp_c
    else:
        house, factors, mass = "registered", (1.0, 1.0, 0.0), float(bank.mass[registered])
        _log.info(
            "device %s planned on its registered parameters: over %d measured slots they explain "
            "the history about as well (rms %.3f K) as the best identified house (%.3f K)",
            device_id,
            n,
            registered_rms,
            rms,
        )
    low, high = _PLAUSIBLE_TEMP_C
    if not (math.isfinite(mass) and low <= mass <= high):
        _log.warning(
            "device %s planned on its registered parameters: estimated envelope %.1f °C",
            device_id,
            mass,
        )
        return None
    said = IdentifiedFactors(
        house=house,
        loss_scale=round(factors[0], 2),
        room_gain_scale=round(factors[1], 2),
        gain_offset_w=round(factors[2]),
        mass_temp_c=round(mass, 1),
        scored_slots=n,
        rms_error_k=rms,
        registered_rms_error_k=registered_rms,
    )
    if house == "registered":
        return plant, said
    from hpsteer.optimizer.identify import scaled_plant

    scaled = scaled_plant(plant, said.loss_scale, said.room_gain_scale, said.gain_offset_w)
    return scaled, said


# -- the problem ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PlanInputs:
    record: DeviceRecord
    prices: HorizonPrices
    forecast: WeatherSeries
    problem: PlanningProblem
    weather_held_after_at: datetime | None
    initial_state: str
    """``telemetry`` or ``steady_state``."""
    identified: IdentifiedFactors | None = None
    """What identification found when the plan is on the identified house (None: nominal)."""

    def inputs_key(self) -> str:
        return inputs_key(self)

    def versions(self) -> dict[str, Any]:
        """The inputs' versions, as stored on the plan."""
        return {
            "price_days": [
                {"market_date": d.market_date.isoformat(), "content_hash": d.content_hash}
                | {"version": d.version}
                for d in self.prices.days
            ],
            "weather_location_id": self.forecast.location_id,
            "weather_issued_at": format_instant(self.forecast.issued_at),
            "device_settings_hash": _settings_hash(self.record.device),
            "initial_state": self.initial_state,
            "initial_air_temp_c": round(self.problem.initial_air_temp_c, 2),
            "telemetry_observed_at": (
                None
                if self.record.telemetry_observed_at is None
                else format_instant(self.record.telemetry_observed_at)
            ),
            "identified": None if self.identified is None else self.identified.recorded(),
        }


def _settings_hash(device: Device) -> str:
    settings = {"comfort": device.comfort.model_dump(), "thermal": device.thermal.model_dump()}
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


def inputs_key(inputs: PlanInputs) -> str:
    days = ",".join(
        f"{d.market_date}:{d.content_hash[:16]}:v{d.version}" for d in inputs.prices.days
    )
    state = (
        "steady"
        if inputs.initial_state == "steady_state"
        else f"{inputs.problem.initial_air_temp_c:.1f}"
    )
    mode = inputs.record.observed_mode.value if inputs.record.observed_mode else "-"
    parts = [
        f"prices={days}",
        f"weather={inputs.forecast.location_id}@{format_instant(inputs.forecast.issued_at)}",
        f"device={_settings_hash(inputs.record.device)}",
        f"state={state}/{mode}",
    ]
    if inputs.identified is not None:
        parts.append(inputs.identified.key)
    return "|".join(parts)


def _plant(device: Device) -> Plant:
    from hpsteer.thermal import plant_from_parameters

    try:
        return plant_from_parameters(device.thermal)
    except ValueError as err:
        raise AbsurdThermalParameters(
            f"device {device.device_id}: thermal parameters refused by the physics: {err}"
        ) from err


def assemble(
    record: DeviceRecord,
    prices: HorizonPrices,
    forecast: WeatherSeries,
    options: PlanningOptions,
    *,
    history: Sequence[HistorySample] = (),
    past_forecasts: Sequence[WeatherSeries] = (),
    now: datetime | None = None,
) -> PlanInputs:
    """The device's problem; with a ``history`` of enough measured slots before ``now`` (default:
    the horizon's start) that identifies a house explaining it better than the registered one,
    on that house with the envelope at its estimate. The history's weather is read from
    ``past_forecasts`` (earlier issues) and ``forecast``."""
    import numpy as np

    from hpsteer.optimizer.problem import PlanningProblem
    from hpsteer.thermal import SlotConditions

    slots = prices.slots
    record = with_newest_air(record, history, now or slots[0].start_at, options)
    device = record.device
    plant = _plant(device)
    hours = slots[0].hours
    middles = [s.start_at + (s.end_at - s.start_at) / 2 for s in slots]
    points = forecast.points
    outdoor = np.array([_interpolate(points, m, solar=False) for m in middles])
    solar = np.array([_interpolate(points, m, solar=True) for m in middles])
    held = next(
        (s.start_at for s, m in zip(slots, middles, strict=True) if m > points[-1].at), None
    )
    current = record.observed_mode or Mode.MID
    comfort = device.comfort
    weather = [f for f in past_forecasts if f.issued_at != forecast.issued_at] + [forecast]
    identified = _identified(plant, record, history, weather, now or slots[0].start_at, options)
    factors: IdentifiedFactors | None = None
    if identified is not None and record.indoor_temp_c is not None:
        plant, factors = identified
        air, mass = record.indoor_temp_c, factors.mass_temp_c
        initial = "telemetry"
    elif record.indoor_temp_c is not None:
        air = mass = record.indoor_temp_c
        initial = "telemetry"
    else:
        conditions = SlotConditions(hours, float(outdoor[0]), comfort.setpoint_c, float(solar[0]))
        try:
            air, mass = plant.steady_state(conditions, current.setpoint_offset_k)
        except ValueError as err:
            raise AbsurdThermalParameters(
                f"device {device.device_id}: no steady state: {err}"
            ) from err
        initial = "steady_state"
    low, high = _PLAUSIBLE_TEMP_C
    if not (low <= air <= high and low <= mass <= high):
        raise AbsurdThermalParameters(
            f"device {device.device_id}: thermal parameters give an implausible state "
            f"(air {air:.1f} °C, envelope {mass:.1f} °C)"
        )
    problem = PlanningProblem(
        plant=plant,
        start_at=slots[0].start_at,
        slot_hours=hours,
        prices_eur_per_mwh=np.array(prices.prices_eur_per_mwh, dtype=np.float64),
        outdoor_temp_c=outdoor,
        solar_irradiance_w_per_m2=solar,
        setpoint_c=comfort.setpoint_c,
        comfort_min_c=comfort.min_indoor_temp_c,
        comfort_max_c=comfort.max_indoor_temp_c,
        initial_air_temp_c=float(air),
        initial_mass_temp_c=float(mass),
        current_mode=current,
        comfort_penalty_eur_per_kh=options.comfort_penalty_eur_per_kh,
        switch_penalty_eur=options.switch_penalty_eur,
        min_dwell_slots=max(1, round(options.min_dwell_minutes / (hours * 60))),
        max_changes_per_day=options.max_changes_per_day,
    )
    return PlanInputs(record, prices, forecast, problem, held, initial, factors)
