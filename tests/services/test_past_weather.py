"""The past weather digest gives identification what the stored forecasts give it.

Weather ingestion keeps, per location, one document with every forecast issued over the
identification history, each cut to the points identification can read of it
(:func:`~hpsteer.services.ingest_weather.past_weather_document`); a shard reads that one document
instead of every forecast (:func:`~hpsteer.services.plan_inputs.past_forecasts`). These specs
hold that the slots identification measures are the same, value for value, from the digest as
from the whole forecasts, whatever order the forecasts arrived in, with forecasts shaped as
Open-Meteo's (from the issue day's midnight, quarter-hourly, two days) and as the replay's (from
the issue hour, hourly), with ingestion outages longer than a forecast, and with histories
polled every 10 minutes or hourly off the clock.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from hpsteer.domain.devices import Location
from hpsteer.domain.weather import WeatherPoint, WeatherSeries
from hpsteer.ports.clock import SimulatedClock
from hpsteer.ports.store import Page
from hpsteer.runtime import bootstrap
from hpsteer.services import plan_inputs
from hpsteer.services.ingest_weather import (
    PAST_WEATHER_LEAD,
    PAST_WEATHER_REACH,
    PAST_WEATHER_SLACK,
    forecast_location,
    forecast_path,
    past_weather_document,
    past_weather_path,
    past_weather_series,
)
from hpsteer.services.optimize import PAST_FORECAST_MARGIN
from hpsteer.services.plan_inputs import HistorySample, measured_slots, past_forecasts

HOUR = timedelta(hours=1)
QUARTER = timedelta(minutes=15)
WHERE = forecast_location(59.2970, 18.1633)
START = datetime(2025, 1, 6, tzinfo=UTC)
HISTORY = timedelta(days=7)
MARGIN = timedelta(days=1)
"""As optimize reads past forecasts: from a day before the history."""
KEEP = HISTORY + timedelta(days=2)
"""As ingestion keeps them: over the history and two days before."""


def forecast(
    issued_at: datetime, rng: random.Random, *, shape: str, where: Location = WHERE
) -> WeatherSeries:
    """A forecast shaped as Open-Meteo's (``openmeteo``: from the issue day's midnight, every 15
    minutes for two days) or the replay's (``replay``: from the issue hour, hourly for 48 h),
    with values of its own (each issue says something else about the same hour)."""
    if shape == "openmeteo":
        first, step, count = issued_at.replace(hour=0), QUARTER, 192
    else:
        first, step, count = issued_at, HOUR, 48
    return WeatherSeries(
        location_id=where.location_id,
        latitude=where.latitude,
        longitude=where.longitude,
        issued_at=issued_at,
        source=shape,
        points=tuple(
            WeatherPoint(
                at=first + k * step,
                outdoor_temp_c=round(rng.uniform(-20.0, 10.0), 2),
                solar_irradiance_w_per_m2=None if rng.random() < 0.05 else rng.uniform(0, 600),
            )
            for k in range(count)
        ),
    )


def issues(rng: random.Random, *, shape: str, days: int, outage: bool) -> list[WeatherSeries]:
    """A forecast every 3 hours (at 7 past: stamped with the hour) for ``days`` days, one in
    ten missing, and with ``outage`` none for three days and a half in the middle (longer than
    a forecast covers; the first after it is issued in the morning)."""
    found = []
    at = START
    while at < START + timedelta(days=days):
        out = outage and START + timedelta(days=5) <= at < START + timedelta(days=8, hours=10)
        if not out and rng.random() > 0.1:
            found.append(forecast(at, rng, shape=shape))
        at += 3 * HOUR
    return found


def ingested(arrivals: Sequence[tuple[datetime, WeatherSeries]]) -> dict[str, Any] | None:
    """The digest after each forecast of ``arrivals`` (arrival time, forecast) was ingested in
    that order, each keeping what ingestion keeps at its arrival."""
    digest: dict[str, Any] | None = None
    for arrived_at, series in arrivals:
        digest = past_weather_document(WHERE, digest, [series], keep_since=arrived_at - KEEP)
    return digest


def history(rng: random.Random, now: datetime, *, hourly: int | None) -> list[HistorySample]:
    """Polls over the history before ``now``: every 10 minutes with a little jitter, or hourly
    at minute ``hourly`` (at 30, slots' middles fall on the hour: on a forecast's point), with
    polls lost now and then (slots of up to 2 hours: read an hour past their start); outdoor
    measured in some polls only (the others' slots read the forecast's), modes changing now and
    then."""
    samples = []
    offset = 0.0
    if hourly is not None:
        at = (now - HISTORY).replace(minute=hourly)
    else:
        at = now - HISTORY + timedelta(seconds=rng.randrange(600))
    while at <= now:
        if rng.random() < 0.05:
            offset = rng.choice((-2.0, 0.0, 2.0))
        outdoor = None if rng.random() < 0.7 else rng.uniform(-10, 5)
        if rng.random() > (0.25 if hourly is not None else 0.02):
            samples.append(HistorySample(at, 21.0 + rng.uniform(-0.5, 0.5), outdoor, offset))
        elif hourly is None:  # a few hours lost, from a poll that may land on the half hour
            at = at.replace(minute=30, second=0) + timedelta(hours=rng.randrange(1, 4))
            continue
        step = HOUR if hourly is not None else timedelta(minutes=10, seconds=rng.randrange(-60, 60))
        at += step
    return samples


def weather(slots: Sequence[Any]) -> list[tuple[float, float, float]]:
    return [
        (
            s.conditions.duration_h,
            s.conditions.outdoor_temp_c,
            s.conditions.solar_irradiance_w_per_m2,
        )
        for s in slots
    ]


def as_assembled(earlier: Sequence[WeatherSeries], now: datetime) -> list[WeatherSeries]:
    """What a shard at ``now`` hands identification (``assemble``): the earlier forecasts issued
    over the history and a day before, with the latest forecast (read whole) in place of its
    entry."""
    since = now - HISTORY - MARGIN
    chosen = [f for f in earlier if since <= f.issued_at <= now]
    latest = max((f for f in earlier if f.issued_at <= now), key=lambda f: f.issued_at)
    return [f for f in chosen if f.issued_at != latest.issued_at] + [latest]


@pytest.mark.parametrize(
    ("shape", "outage", "hourly", "seed"),
    [
        ("openmeteo", False, None, 1),
        ("openmeteo", False, 30, 2),
        ("openmeteo", True, None, 3),
        ("openmeteo", True, 20, 4),
        ("replay", False, None, 5),
        ("replay", True, 30, 6),
    ],
)
def test_identification_measures_the_same_slots_from_the_digest_as_from_the_whole_forecasts(
    shape: str, outage: bool, hourly: int | None, seed: int
) -> None:
    rng = random.Random(seed)
    stored = issues(rng, shape=shape, days=16, outage=outage)
    arrivals = [(f.issued_at + timedelta(minutes=7), f) for f in stored]
    late = rng.sample(range(len(arrivals)), 6)  # some forecasts stored hours late
    for k in late:
        arrived_at, series = arrivals[k]
        arrivals[k] = (arrived_at + timedelta(hours=rng.randrange(2, 12)), series)
    arrivals.sort(key=lambda arrival: arrival[0])
    arrivals += rng.sample(arrivals, 5)  # redelivered (the stored forecast is added again)
    for now in (START + timedelta(days=d, hours=h, minutes=30) for d, h in ((9, 4), (15, 22))):
        digest = ingested([a for a in arrivals if a[0] <= now])
        assert digest is not None
        measured = history(rng, now, hourly=hourly)

        arrived = list({f.issued_at: f for at, f in arrivals if at <= now}.values())
        whole = measured_slots(measured, as_assembled(arrived, now), 21.0, now)
        digested = measured_slots(
            measured, as_assembled(past_weather_series(digest), now), 21.0, now
        )

        assert len(whole) > 24 * 6
        assert weather(digested) == weather(whole)
        assert [(s.air_start_c, s.air_end_c, s.offset_k) for s in digested] == [
            (s.air_start_c, s.air_end_c, s.offset_k) for s in whole
        ]


def test_the_digest_depends_on_the_forecasts_stored_not_on_the_order_they_arrived_in() -> None:
    rng = random.Random(7)
    stored = issues(rng, shape="openmeteo", days=4, outage=False)
    arrived_at = START + timedelta(days=4)
    shuffled = rng.sample(stored, len(stored))

    in_order = ingested([(arrived_at, f) for f in stored])
    out_of_order = ingested([(arrived_at, f) for f in shuffled])
    redelivered = ingested([(arrived_at, f) for f in [*shuffled, *stored]])

    assert in_order == out_of_order == redelivered


def test_the_digest_keeps_only_forecasts_issued_over_its_window_and_few_points_of_each() -> None:
    rng = random.Random(11)
    stored = issues(rng, shape="openmeteo", days=20, outage=False)
    arrived_at = stored[-1].issued_at

    digest = ingested([(f.issued_at, f) for f in stored])

    assert digest is not None
    kept = past_weather_series(digest)
    assert [f.issued_at for f in kept] == [
        f.issued_at for f in stored if f.issued_at >= arrived_at - KEEP
    ]
    # each but the newest up to the next issue and a slot's reach past it, and a point either side
    for series, following in itertools.pairwise(kept):
        span = following.issued_at - series.issued_at + PAST_WEATHER_REACH
        assert len(series.points) <= span / QUARTER + 3
    assert len(kept[-1].points) == len([p for p in stored[-1].points if p.at >= arrived_at]) + 1


def test_a_malformed_entry_is_dropped_from_the_digest_and_the_others_kept() -> None:
    rng = random.Random(13)
    first, second = issues(rng, shape="replay", days=1, outage=False)[:2]
    digest = ingested([(second.issued_at, first), (second.issued_at, second)])
    assert digest is not None
    key = f"{first.issued_at:%Y%m%dT%H%M%SZ}"
    broken = {**digest, "forecasts": {**digest["forecasts"], key: {"at": "garbage"}}}

    repaired = past_weather_document(WHERE, broken, [], keep_since=START)

    assert [f.issued_at for f in past_weather_series(repaired)] == [second.issued_at]


# -- read by a shard ---------------------------------------------------------------------------


def test_a_shard_reads_the_digest_in_one_document_and_no_forecast() -> None:
    rng = random.Random(17)
    stored = issues(rng, shape="replay", days=3, outage=False)
    deps = bootstrap.local(clock=SimulatedClock(START + timedelta(days=3)))
    digest = ingested([(f.issued_at, f) for f in stored])
    assert digest is not None
    deps.store.set(past_weather_path(WHERE.location_id), digest)
    queried: list[str] = []
    original = deps.store.query

    def counting(collection: str, *args: Any, **kwargs: Any) -> Page:
        queried.append(collection)
        return original(collection, *args, **kwargs)

    deps.store.query = counting  # type: ignore[method-assign]
    since, until = START + timedelta(days=1), START + timedelta(days=2)

    found = past_forecasts(deps.store, WHERE.latitude, WHERE.longitude, since=since, until=until)

    assert queried == []
    assert [f.issued_at for f in found] == [
        f.issued_at for f in stored if since <= f.issued_at <= until
    ]


@pytest.mark.parametrize("digest", [None, {"forecasts": "garbage"}], ids=["none", "malformed"])
def test_a_location_without_a_readable_digest_reads_its_stored_forecasts(
    digest: dict[str, Any] | None, caplog: pytest.LogCaptureFixture
) -> None:
    rng = random.Random(19)
    stored = issues(rng, shape="replay", days=2, outage=False)
    deps = bootstrap.local(clock=SimulatedClock(START + timedelta(days=2)))
    for series in stored:
        data = {
            **series.model_dump(),
            "points": [
                {
                    "valid_at": p.at,
                    "outdoor_temp_c": p.outdoor_temp_c,
                    "solar_irradiance_w_per_m2": p.solar_irradiance_w_per_m2,
                }
                for p in series.points
            ],
        }
        deps.store.set(forecast_path(WHERE.location_id, series.issued_at), data)
    if digest is not None:
        deps.store.set(past_weather_path(WHERE.location_id), digest)

    found = past_forecasts(
        deps.store, WHERE.latitude, WHERE.longitude, since=START, until=START + timedelta(days=2)
    )

    assert found == stored
    assert ("digest unreadable" in caplog.text) == (digest is not None)


def test_the_digest_cuts_no_closer_than_identification_and_a_shard_read() -> None:
    # the digest's cuts assume these of plan_inputs (a slot's middle at most an hour after its
    # start) and of optimize (earlier forecasts read from a day before the history)
    longest_slot = plan_inputs._HOUR + 2 * plan_inputs._ANCHOR_TOLERANCE
    assert longest_slot / 2 <= PAST_WEATHER_REACH
    assert PAST_WEATHER_LEAD <= PAST_FORECAST_MARGIN <= PAST_WEATHER_SLACK
