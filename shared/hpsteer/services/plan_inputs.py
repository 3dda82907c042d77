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
- **Measured state.** ``last_telemetry`` (else ``state``) on the device document: its
  ``indoor_temp_c`` is the air temperature; the envelope is **estimated equal to it** (no sensor
  measures it). Telemetry older than ``max_telemetry_age`` or without an indoor temperature is
  ignored, and the plant's steady state under the first slot's conditions in the current mode is
  used instead. ``observed_mode`` is the current mode (unknown: ``mid`` for the planner, and the
  outbox then sets the first mode explicitly).
- **Plant.** :func:`~hpsteer.thermal.plant_from_parameters`; a :class:`ValueError` from the
  physics, or a steady state outside -60..80 °C, is :class:`AbsurdThermalParameters`.

:func:`inputs_key` names every input that changes the plan: the price days' hashes and versions,
the forecast's issue time, the device's comfort and thermal settings and the measured state
(rounded to 0.1 K). The same inputs give the same key, so a redelivered message finds its plan.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from itertools import pairwise
from typing import TYPE_CHECKING, Any

from hpsteer.domain.actions import Mode
from hpsteer.domain.devices import Device
from hpsteer.domain.instants import format_instant, instant_or_none
from hpsteer.domain.market import PriceArea, Resolution, Slot, market_date_of, slots_between
from hpsteer.domain.weather import WeatherPoint, WeatherSeries
from hpsteer.errors import InvalidInput, UnknownDevice
from hpsteer.ports.store import DocumentStore
from hpsteer.services.ingest_weather import (
    forecast_location_id,
    forecast_path,
    location_path,
    series_from_document,
)
from hpsteer.services.paths import device_path
from hpsteer.services.price_days import load_day

if TYPE_CHECKING:
    # numpy, the thermal model and the problem load with the first device planned
    # (optimize_shard), not at import: optimize_trigger, deployed from the same source, never
    # needs them.
    from hpsteer.optimizer.problem import PlanningProblem
    from hpsteer.thermal import Plant

__all__ = [
    "AbsurdThermalParameters",
    "DeviceRecord",
    "HorizonPrices",
    "InfeasibleComfortBand",
    "MissingForecast",
    "MissingPrices",
    "PlanInputs",
    "PlanningOptions",
    "assemble",
    "device_path",
    "horizon_prices",
    "latest_forecast",
    "load_device",
]

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


@dataclass(frozen=True, slots=True)
class DeviceRecord:
    device: Device
    indoor_temp_c: float | None
    observed_mode: Mode | None
    telemetry_observed_at: datetime | None
    tariff_id: str | None = None
    """The household tariff the device is planned on (None: spot)."""


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
        fresh = observed_at is not None and now - observed_at <= options.max_telemetry_age
        temp = telemetry.get("indoor_temp_c")
        if fresh and isinstance(temp, int | float) and np.isfinite(temp):
            indoor = float(temp)
        try:
            mode = Mode(telemetry["observed_mode"]) if telemetry.get("observed_mode") else None
        except ValueError:
            mode = None
        if not fresh:
            observed_at = None
    tariff = data.get("tariff_id")
    tariff_id = tariff if isinstance(tariff, str) and tariff else None
    return DeviceRecord(device, indoor, mode, observed_at, tariff_id)


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
    return "|".join(
        (
            f"prices={days}",
            f"weather={inputs.forecast.location_id}@{format_instant(inputs.forecast.issued_at)}",
            f"device={_settings_hash(inputs.record.device)}",
            f"state={state}/{mode}",
        )
    )


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
) -> PlanInputs:
    import numpy as np

    from hpsteer.optimizer.problem import PlanningProblem
    from hpsteer.thermal import SlotConditions

    device = record.device
    plant = _plant(device)
    slots = prices.slots
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
    if record.indoor_temp_c is not None:
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
    return PlanInputs(record, prices, forecast, problem, held, initial)
