"""Optimize identifies each house from its measured history before planning.

The history is what ingestion appends to ``telemetry_history``: here samples every 10 minutes
of a simulated house (the device's registered plant with its heat loss scaled), stored through
the local analytics backend; prices, forecast and devices as in ``test_optimize``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pytest

from hpsteer.config import Settings
from hpsteer.domain.actions import Mode
from hpsteer.domain.messages import WeatherIngestRequest
from hpsteer.domain.weather import WeatherPoint, WeatherSeries
from hpsteer.errors import AnalyticsUnavailable, StoreUnavailable
from hpsteer.optimizer.identify import loss_scaled
from hpsteer.ports.clock import SimulatedClock
from hpsteer.ports.store import Document, Page
from hpsteer.runtime import bootstrap
from hpsteer.runtime.bootstrap import Dependencies
from hpsteer.services.ingest_telemetry import TELEMETRY_HISTORY
from hpsteer.services.ingest_weather import ingest_weather, past_weather_path
from hpsteer.services.optimize import plan_shard
from hpsteer.services.plan_inputs import HistorySample, better_than_registered, measured_slots
from hpsteer.services.plans_store import plan_path
from hpsteer.sources.replay_weather import ReplayWeatherSource, bundled_weather_dir
from hpsteer.thermal import ARCHETYPES, SlotConditions, plant_from_parameters

from .test_optimize import NOW, STOCKHOLM_ID, register, shard, store_forecast, store_prices
from .test_optimize import clock as clock
from .test_optimize import deps as deps
from .test_optimize import ready as ready

ARCHETYPE = "renovated_radiators"
SAMPLE = timedelta(minutes=10)
MODES = (Mode.MID, Mode.MID, Mode.MAX, Mode.MID, Mode.MIN, Mode.MID)
"""Applied in 3-hour blocks, in turn: the history a steered house shows."""


@dataclass(frozen=True)
class Simulated:
    rows: list[dict[str, Any]]
    mass_c: float
    """The house's envelope temperature at the last row."""


def simulated(
    device_id: str,
    *,
    loss_scale: float,
    days: int = 3,
    end: datetime = NOW,
    every: timedelta = SAMPLE,
    first_at: timedelta = timedelta(0),
) -> Simulated:
    """``telemetry_history`` rows of the registered house with its loss times ``loss_scale``,
    stepped every 10 minutes and sampled ``every`` from ``first_at`` past the start."""
    nominal = plant_from_parameters(ARCHETYPES[ARCHETYPE].parameters)
    truth = loss_scaled(nominal, loss_scale)
    start = end - timedelta(days=days)
    first = SlotConditions(1.0, -5.0, 21.0, 0.0)
    air_c, mass_c = truth.steady_state(first, 0.0)
    air, mass = np.array([air_c]), np.array([mass_c])
    rows: list[dict[str, Any]] = []
    at = start
    while at <= end:
        hours = (at - start) / timedelta(hours=1)
        outdoor = -5.0 + 4.0 * math.sin(2 * math.pi * hours / 24.0)
        mode = MODES[int(hours // 3) % len(MODES)]
        if (at - start - first_at) % every == timedelta(0) and at >= start + first_at:
            rows.append(
                {
                    "device_id": device_id,
                    "sample_id": f"s-{at:%Y%m%dT%H%M}",
                    "observed_at": at,
                    "source": "poll",
                    "indoor_temp_c": round(float(air[0]), 2),
                    "outdoor_temp_c": round(outdoor, 1),
                    "observed_mode": mode.value,
                    "ingested_at": at,
                }
            )
        step = truth.step(
            air, mass, mode.setpoint_offset_k, SlotConditions(1 / 6, outdoor, 21.0, 0.0)
        )
        air, mass = step.air_temp_c, step.mass_temp_c
        at += SAMPLE
    return Simulated(rows, float(mass[0]))


def simulated_rows(device_id: str, **kwargs: Any) -> list[dict[str, Any]]:
    return simulated(device_id, **kwargs).rows


def store_history(deps: Dependencies, rows: list[dict[str, Any]]) -> None:
    deps.analytics.ensure_table(TELEMETRY_HISTORY)
    deps.analytics.append(
        TELEMETRY_HISTORY.name, rows, [f"{r['device_id']}/{r['sample_id']}" for r in rows]
    )


def register_measured(deps: Dependencies, device_id: str, indoor_c: float = 21.0) -> None:
    telemetry = {
        "indoor_temp_c": indoor_c,
        "observed_at": NOW - timedelta(minutes=5),
        "observed_mode": "mid",
    }
    register(deps, device_id, archetype=ARCHETYPE, last_telemetry=telemetry)


def planned_inputs(deps: Dependencies, device_id: str, plan_id: str | None) -> dict[str, Any]:
    assert plan_id is not None
    document = deps.store.get(plan_path(device_id, plan_id))
    assert document is not None
    return document.data


def test_a_house_losing_more_heat_than_registered_is_planned_on_a_higher_loss_factor(
    ready: Dependencies,
) -> None:
    store_history(ready, simulated_rows("leaky", loss_scale=1.3))
    register_measured(ready, "leaky")

    [outcome] = plan_shard(shard("leaky"), ready)

    assert outcome.status == "planned"
    stored = planned_inputs(ready, "leaky", outcome.plan_id)
    identified = stored["inputs"]["identified"]
    assert identified["house"] == "identified"
    assert identified["loss_scale"] >= 1.15
    assert identified["scored_slots"] >= 24
    assert identified["rms_error_k"] < identified["registered_rms_error_k"]
    assert f"identified={identified['loss_scale']:.2f}/" in stored["inputs_key"]


def test_a_house_as_registered_keeps_its_registered_factors_and_gets_its_envelope_from_history(
    ready: Dependencies,
) -> None:
    house = simulated("true", loss_scale=1.0)
    store_history(ready, house.rows)
    register_measured(ready, "true")

    [outcome] = plan_shard(shard("true"), ready)

    stored = planned_inputs(ready, "true", outcome.plan_id)
    identified = stored["inputs"]["identified"]
    assert identified["house"] == "registered"
    assert (identified["loss_scale"], identified["room_gain_scale"]) == (1.0, 1.0)
    assert identified["gain_offset_w"] == 0
    assert identified["mass_temp_c"] == pytest.approx(house.mass_c, abs=0.3)
    assert "registered=1.00/1.00/0@" in stored["inputs_key"]


def test_a_plan_starts_from_the_historys_newest_air_when_the_device_document_is_older(
    ready: Dependencies,
) -> None:
    # The document's temperatures are refreshed hourly; the history has every poll.
    rows = simulated_rows("polled", loss_scale=1.0)
    store_history(ready, rows)
    telemetry = {"indoor_temp_c": 19.0, "observed_at": NOW - timedelta(minutes=50)}
    register(ready, "polled", archetype=ARCHETYPE, last_telemetry=telemetry)
    register_measured(ready, "stored-newer")  # observed 5 minutes ago: newer than its history
    store_history(ready, simulated_rows("stored-newer", loss_scale=1.0, end=NOW - SAMPLE * 3))

    outcomes = plan_shard(shard("polled", "stored-newer"), ready)

    polled, stored_newer = (planned_inputs(ready, o.device_id, o.plan_id) for o in outcomes)
    assert polled["inputs"]["telemetry_observed_at"] == "2023-01-15T12:30:00Z"  # the last row
    assert polled["inputs"]["initial_air_temp_c"] == pytest.approx(rows[-1]["indoor_temp_c"])
    assert stored_newer["inputs"]["telemetry_observed_at"] == "2023-01-15T12:25:00Z"
    assert stored_newer["inputs"]["initial_air_temp_c"] == 21.0


def test_a_house_beyond_the_candidate_bank_is_planned_on_the_nearest_candidates(
    ready: Dependencies,
) -> None:
    store_history(ready, simulated_rows("barn", loss_scale=2.5))  # the bank ends at x1.4
    register_measured(ready, "barn")

    [outcome] = plan_shard(shard("barn"), ready)

    assert outcome.status == "planned"
    identified = planned_inputs(ready, "barn", outcome.plan_id)["inputs"]["identified"]
    assert identified["house"] == "identified"
    assert identified["loss_scale"] == 1.4


def test_hourly_samples_half_an_hour_off_the_clock_still_identify_the_house(
    ready: Dependencies,
) -> None:
    rows = simulated_rows(
        "sparse", loss_scale=1.3, every=timedelta(hours=1), first_at=timedelta(minutes=30)
    )
    store_history(ready, rows)
    register_measured(ready, "sparse")

    [outcome] = plan_shard(shard("sparse"), ready)

    identified = planned_inputs(ready, "sparse", outcome.plan_id)["inputs"]["identified"]
    assert identified["scored_slots"] >= 60
    assert identified["house"] == "identified"
    assert identified["loss_scale"] >= 1.15


def test_a_device_without_history_plans_on_its_registered_parameters(
    ready: Dependencies,
) -> None:
    store_history(ready, simulated_rows("other", loss_scale=1.3))
    register_measured(ready, "fresh")

    [outcome] = plan_shard(shard("fresh"), ready)

    assert outcome.status == "planned"
    stored = planned_inputs(ready, "fresh", outcome.plan_id)
    assert stored["inputs"]["identified"] is None
    assert "identified=" not in stored["inputs_key"]
    assert "registered=" not in stored["inputs_key"]


def test_a_short_history_plans_on_the_registered_parameters(ready: Dependencies) -> None:
    store_history(ready, simulated_rows("new", loss_scale=1.3, days=1)[-60:])  # 10 hours
    register_measured(ready, "new")

    [outcome] = plan_shard(shard("new"), ready)

    assert planned_inputs(ready, "new", outcome.plan_id)["inputs"]["identified"] is None


def test_with_identification_switched_off_no_history_is_read(clock: SimulatedClock) -> None:
    off = bootstrap.local(Settings(identify_houses=False), clock=clock)
    store_prices(off, NOW.date(), NOW.date() + timedelta(days=1))
    store_forecast(off)
    store_history(off, simulated_rows("leaky", loss_scale=1.3))
    register_measured(off, "leaky")
    queried: list[str] = []
    original = off.analytics.query

    def counting(sql: str, params: Any = None) -> list[dict[str, Any]]:
        queried.append(sql)
        return original(sql, params)

    off.analytics.query = counting  # type: ignore[method-assign]  # a spy on the local backend

    [outcome] = plan_shard(shard("leaky"), off)

    assert outcome.status == "planned"
    assert planned_inputs(off, "leaky", outcome.plan_id)["inputs"]["identified"] is None
    assert not [sql for sql in queried if "telemetry_history" in sql]


def test_the_history_is_read_in_one_query_per_shard(
    ready: Dependencies, monkeypatch: pytest.MonkeyPatch
) -> None:
    for device_id in ("a", "b", "c"):
        store_history(ready, simulated_rows(device_id, loss_scale=1.2, days=2))
        register_measured(ready, device_id)
    analytics = ready.analytics
    original = analytics.query
    queried: list[str] = []

    def counting(sql: str, params: Any = None) -> list[dict[str, Any]]:
        queried.append(sql)
        return original(sql, params)

    monkeypatch.setattr(analytics, "query", counting)

    outcomes = plan_shard(shard("a", "b", "c"), ready)

    assert [o.status for o in outcomes] == ["planned"] * 3
    assert len([sql for sql in queried if "telemetry_history" in sql]) == 1
    for outcome in outcomes:
        inputs = planned_inputs(ready, outcome.device_id, outcome.plan_id)["inputs"]
        assert inputs["identified"] is not None


def store_earlier_forecasts(deps: Dependencies, *hours_before: int) -> None:
    for hours in hours_before:
        earlier = SimulatedClock(NOW - timedelta(hours=hours))
        source = ReplayWeatherSource(bundled_weather_dir(), clock=earlier)
        request = WeatherIngestRequest(location_ids=(STOCKHOLM_ID,), scheduled_at=NOW)
        ingest_weather(request, deps, source)


def test_earlier_forecasts_are_read_in_one_document_per_location_and_shard(
    ready: Dependencies, monkeypatch: pytest.MonkeyPatch
) -> None:
    store_earlier_forecasts(ready, 72, 48, 24)
    for device_id in ("a", "b"):
        store_history(ready, simulated_rows(device_id, loss_scale=1.2, days=2))
        register_measured(ready, device_id)
    store = ready.store
    original_query, original_get = store.query, store.get
    collections: list[str] = []
    read: list[str] = []

    def counting(collection: str, *args: Any, **kwargs: Any) -> Page:
        collections.append(collection)
        return original_query(collection, *args, **kwargs)

    def getting(path: str) -> Document | None:
        read.append(path)
        return original_get(path)

    monkeypatch.setattr(store, "query", counting)
    monkeypatch.setattr(store, "get", getting)

    outcomes = plan_shard(shard("a", "b"), ready)

    assert [o.status for o in outcomes] == ["planned"] * 2
    assert read.count(past_weather_path(STOCKHOLM_ID)) == 1
    assert f"locations/{STOCKHOLM_ID}/forecasts" not in collections


def test_a_location_without_past_weather_reads_its_earlier_forecasts_in_one_query(
    ready: Dependencies, monkeypatch: pytest.MonkeyPatch
) -> None:
    store_earlier_forecasts(ready, 72, 48, 24)
    ready.store.delete(past_weather_path(STOCKHOLM_ID))  # forecasts stored before the digest
    for device_id in ("a", "b"):
        store_history(ready, simulated_rows(device_id, loss_scale=1.2, days=2))
        register_measured(ready, device_id)
    store = ready.store
    original = store.query
    collections: list[str] = []

    def counting(collection: str, *args: Any, **kwargs: Any) -> Page:
        collections.append(collection)
        return original(collection, *args, **kwargs)

    monkeypatch.setattr(store, "query", counting)

    outcomes = plan_shard(shard("a", "b"), ready)

    assert [o.status for o in outcomes] == ["planned"] * 2
    assert collections.count(f"locations/{STOCKHOLM_ID}/forecasts") == 1


def test_unreadable_earlier_forecasts_never_fail_the_plan(
    ready: Dependencies, monkeypatch: pytest.MonkeyPatch
) -> None:
    store_history(ready, simulated_rows("leaky", loss_scale=1.3))
    register_measured(ready, "leaky")
    store = ready.store
    original_query, original_get = store.query, store.get

    def failing(collection: str, *args: Any, **kwargs: Any) -> Page:
        if collection.endswith("/forecasts"):
            raise StoreUnavailable("firestore is down")
        return original_query(collection, *args, **kwargs)

    def failing_get(path: str) -> Document | None:
        if path.endswith("/past_weather/digest"):
            raise StoreUnavailable("firestore is down")
        return original_get(path)

    monkeypatch.setattr(store, "query", failing)
    monkeypatch.setattr(store, "get", failing_get)

    [outcome] = plan_shard(shard("leaky"), ready)

    assert outcome.status == "planned"
    identified = planned_inputs(ready, "leaky", outcome.plan_id)["inputs"]["identified"]
    assert identified["house"] == "identified"  # outdoor measured; no irradiance in January


def test_a_missing_history_table_never_fails_the_plan(ready: Dependencies) -> None:
    register_measured(ready, "first")  # no telemetry_history table yet

    [outcome] = plan_shard(shard("first"), ready)

    assert outcome.status == "planned"
    assert planned_inputs(ready, "first", outcome.plan_id)["inputs"]["identified"] is None


def test_an_unreadable_history_never_fails_the_plan(
    ready: Dependencies, monkeypatch: pytest.MonkeyPatch
) -> None:
    store_history(ready, simulated_rows("down", loss_scale=1.3))
    register_measured(ready, "down")

    def unavailable(sql: str, params: Any = None) -> list[dict[str, Any]]:
        raise AnalyticsUnavailable("bigquery is down")

    monkeypatch.setattr(ready.analytics, "query", unavailable)

    [outcome] = plan_shard(shard("down"), ready)

    assert outcome.status == "planned"
    assert planned_inputs(ready, "down", outcome.plan_id)["inputs"]["identified"] is None


def test_malformed_history_rows_never_fail_the_plan(
    ready: Dependencies, monkeypatch: pytest.MonkeyPatch
) -> None:
    register_measured(ready, "odd")
    garbage: list[dict[str, Any]] = [
        {"device_id": "odd", "observed_at": "yesterday", "indoor_temp_c": 21.0},
        {"device_id": "odd", "observed_at": NOW - timedelta(hours=30), "indoor_temp_c": "hot"},
        {"device_id": 7, "observed_at": NOW - timedelta(hours=29), "indoor_temp_c": 21.0},
        {"device_id": "odd", "observed_at": datetime(2023, 1, 14, 6)},  # noqa: DTZ001 - naive
        *(
            {
                "device_id": "odd",
                "observed_at": NOW - timedelta(hours=h),
                "indoor_temp_c": float("nan") if h % 2 else 21.0 + h,
                "outdoor_temp_c": None,
                "observed_mode": "turbo" if h % 3 else "max",
                "setpoint_offset_k": float("inf"),
            }
            for h in range(48, 0, -1)
        ),
    ]
    monkeypatch.setattr(ready.analytics, "query", lambda sql, params=None: garbage)

    [outcome] = plan_shard(shard("odd"), ready)

    assert outcome.status == "planned"


# -- the slots --------------------------------------------------------------------------------

HOUR = timedelta(hours=1)
START = NOW.replace(minute=0) - timedelta(hours=3)


def forecast(issued_at: datetime, *points: tuple[datetime, float, float | None]) -> WeatherSeries:
    return WeatherSeries(
        location_id="x",
        latitude=59.3,
        longitude=18.2,
        issued_at=issued_at,
        source="test",
        points=tuple(
            WeatherPoint(at=at, outdoor_temp_c=t, solar_irradiance_w_per_m2=s)
            for at, t, s in points
        ),
    )


FUTURE_ONLY = forecast(NOW, (NOW + HOUR, 0.0, None))


def test_slots_are_hourly_and_a_slot_without_outdoor_temperature_is_not_scored() -> None:
    samples = [
        HistorySample(START + k * SAMPLE, 21.0 + 0.01 * k, None if 6 <= k < 12 else -3.0, 0.0)
        for k in range(19)
    ]

    slots = measured_slots(samples, [FUTURE_ONLY], 21.0, START + timedelta(hours=3, minutes=1))

    assert [s.conditions.duration_h for s in slots] == [1.0, 1.0, 1.0]
    assert [s.air_end_c is not None for s in slots] == [True, False, True]
    assert slots[1].conditions.outdoor_temp_c == -3.0  # held, to step the envelope on
    assert [s.conditions.solar_irradiance_w_per_m2 for s in slots] == [0.0, 0.0, 0.0]


def test_a_slot_runs_between_the_samples_nearest_the_clock_hours() -> None:
    samples = [
        HistorySample(START + k * HOUR - timedelta(minutes=25), 21.0 + k, -3.0, 0.0)
        for k in range(4)
    ]

    slots = measured_slots(samples, [FUTURE_ONLY], 21.0, START + timedelta(hours=3))

    assert [s.conditions.duration_h for s in slots] == [1.0, 1.0, 1.0]
    assert [(s.air_start_c, s.air_end_c) for s in slots] == [
        (21.0, 22.0),
        (22.0, 23.0),
        (23.0, 24.0),
    ]


def test_a_clock_hour_without_a_sample_within_half_an_hour_is_not_measured() -> None:
    at = (START, START + timedelta(minutes=20), START + timedelta(hours=2))
    samples = [HistorySample(t, 21.0, -3.0, 0.0) for t in at]
    samples.insert(2, HistorySample(START + timedelta(minutes=90), None, -3.0, 0.0))

    slots = measured_slots(samples, [FUTURE_ONLY], 21.0, START + timedelta(hours=2))

    assert [(s.air_start_c, s.air_end_c) for s in slots] == [(21.0, None), (None, 21.0)]


def test_a_mode_change_counts_from_midway_between_the_samples_either_side() -> None:
    samples = [
        HistorySample(START, 21.0, -3.0, 0.0),
        HistorySample(START + timedelta(minutes=20), 21.0, -3.0, 0.0),
        HistorySample(START + timedelta(minutes=40), 21.0, -3.0, 2.0),
        HistorySample(START + HOUR, 21.0, -3.0, 2.0),
    ]

    [slot] = measured_slots(samples, [FUTURE_ONLY], 21.0, START + HOUR)

    assert slot.offset_k == pytest.approx(2.0 * 30 / 60)


def test_past_irradiance_is_what_the_forecast_issued_last_before_the_slot_said() -> None:
    samples = [HistorySample(START + k * SAMPLE, 21.0, -3.0, 0.0) for k in range(19)]
    older = forecast(START - 6 * HOUR, (START - 6 * HOUR, 0.0, 50.0), (NOW, 0.0, 50.0))
    before = forecast(START - HOUR, (START - HOUR, 0.0, 300.0), (NOW, 0.0, 300.0))
    after = forecast(START + 2 * HOUR, (START, 0.0, 900.0), (NOW, 0.0, 900.0))

    slots = measured_slots(samples, [after, older, before], 21.0, START + 3 * HOUR)

    assert [s.conditions.solar_irradiance_w_per_m2 for s in slots] == [300.0, 300.0, 900.0]


def test_a_slot_no_forecast_covers_counts_no_irradiance() -> None:
    samples = [HistorySample(START + k * SAMPLE, 21.0, -3.0, 0.0) for k in range(7)]
    later = forecast(START + HOUR, (START + HOUR, 0.0, 500.0), (NOW, 0.0, 500.0))

    [slot] = measured_slots(samples, [later], 21.0, START + HOUR)

    assert slot.conditions.solar_irradiance_w_per_m2 == 0.0


# -- the choice -------------------------------------------------------------------------------


def test_the_identified_house_must_beat_the_registered_one_by_more_than_its_factors_would() -> None:
    # n ln(registered / best) > 3 ln n: at 24 slots the ratio must exceed 24^(3/24) = 1.488
    assert not better_than_registered(24, 1.0, 1.48)
    assert better_than_registered(24, 1.0, 1.50)
    assert not better_than_registered(168, 1.0, 1.09)
    assert better_than_registered(168, 1.0, 1.10)


def test_a_perfect_fit_wins_and_no_error_at_all_keeps_the_registered_house() -> None:
    assert better_than_registered(30, 0.0, 0.5)
    assert not better_than_registered(30, 0.0, 0.0)
