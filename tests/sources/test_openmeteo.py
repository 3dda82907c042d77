"""Open-Meteo forecasts: the real response parsed, the wire request, and every way a feed fails.

The fixture is a real ``/v1/forecast`` body (``tests/fixtures/weather/openmeteo/PROVENANCE.md``):
Europe/Paris local labels with ``utc_offset_seconds`` 3600, 288 quarter-hours, wind in km/h.
Malformed feeds are built by mutating it and replayed through ``httpx.MockTransport``.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from hpsteer.domain.devices import Location
from hpsteer.errors import FeedRejected, ProviderUnavailable
from hpsteer.ports.clock import SimulatedClock
from hpsteer.sources.openmeteo import OpenMeteoWeatherSource, parse_forecast
from hpsteer.sources.weather import WeatherSource

FIXTURE = (
    Path(__file__).parents[1]
    / "fixtures/weather/openmeteo/openmeteo_forecast_minutely15_45.84N_6.86E_2025-02-24.json"
)
RAW = FIXTURE.read_bytes()
CHAMONIX = Location(location_id="lat45.83_lon6.86", latitude=45.83, longitude=6.86)
NOW = datetime(2025, 2, 24, 5, 37, 12, tzinfo=UTC)
ISSUED = datetime(2025, 2, 24, 5, 0, tzinfo=UTC)

Handler = Callable[[httpx.Request], httpx.Response]


def payload() -> dict[str, Any]:
    return copy.deepcopy(json.loads(RAW))


def body(data: dict[str, Any]) -> bytes:
    return json.dumps(data, ensure_ascii=False).encode()


def source_answering(handler: Handler) -> OpenMeteoWeatherSource:
    client = httpx.Client(transport=httpx.MockTransport(handler))
    return OpenMeteoWeatherSource(client=client, clock=SimulatedClock(NOW))


def answering(status: int, content: bytes, headers: dict[str, str] | None = None) -> Handler:
    return lambda request: httpx.Response(status, content=content, headers=headers)


# The real response


def test_the_real_forecast_has_288_quarter_hours_from_2300z_the_day_before() -> None:
    series = parse_forecast(RAW, CHAMONIX, issued_at=ISSUED)

    assert len(series.points) == 288
    assert series.points[0].at == datetime(2025, 2, 23, 23, 0, tzinfo=UTC)
    assert series.points[-1].at == datetime(2025, 2, 26, 22, 45, tzinfo=UTC)
    steps = {b.at - a.at for a, b in zip(series.points, series.points[1:], strict=False)}
    assert steps == {timedelta(minutes=15)}


def test_the_real_forecast_carries_temperature_irradiance_and_wind_in_our_units() -> None:
    series = parse_forecast(RAW, CHAMONIX, issued_at=ISSUED)

    first = series.points[0]
    assert first.outdoor_temp_c == -15.4
    assert first.solar_irradiance_w_per_m2 == 0.0
    assert first.wind_speed_m_per_s == pytest.approx(13.0 / 3.6, abs=1e-3)  # 13.0 km/h
    # 2025-02-26T12:45 local (UTC+1) is the sunniest quarter-hour of the three days.
    sunniest = max(series.points, key=lambda p: p.solar_irradiance_w_per_m2 or 0.0)
    assert sunniest.at == datetime(2025, 2, 26, 11, 45, tzinfo=UTC)
    assert sunniest.solar_irradiance_w_per_m2 == 698.6
    assert sunniest.outdoor_temp_c == -22.4
    assert sunniest.wind_speed_m_per_s == pytest.approx(25.6 / 3.6, abs=1e-3)


def test_the_series_names_the_requested_location_and_the_issue_time() -> None:
    series = parse_forecast(RAW, CHAMONIX, issued_at=ISSUED)

    assert (series.location_id, series.latitude, series.longitude) == (
        "lat45.83_lon6.86",
        45.83,
        6.86,
    )
    assert series.issued_at == ISSUED
    assert series.source == "openmeteo"


def test_the_client_fetches_the_real_forecast_stamped_with_the_current_hour() -> None:
    source = source_answering(answering(200, RAW))

    assert isinstance(source, WeatherSource)
    series = source.forecast(CHAMONIX)

    assert series.issued_at == ISSUED
    assert len(series.points) == 288


def test_the_client_asks_for_unix_times_metres_per_second_and_two_days() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, content=RAW)

    source_answering(handler).forecast(CHAMONIX)

    (request,) = seen
    assert request.url.host == "api.open-meteo.com"
    assert request.url.path == "/v1/forecast"
    params = request.url.params
    assert (params["latitude"], params["longitude"]) == ("45.8300", "6.8600")
    assert params["timeformat"] == "unixtime"
    assert params["wind_speed_unit"] == "ms"
    assert params["forecast_days"] == "2"
    for block in ("minutely_15", "hourly"):
        assert set(params[block].split(",")) == {
            "temperature_2m",
            "shortwave_radiation_instant",
            "wind_speed_10m",
        }


# Time and units


def test_unix_times_are_utc_whatever_the_offset_says() -> None:
    data = payload()
    block = data["minutely_15"]
    block["time"] = [
        int((datetime.fromisoformat(t) - timedelta(hours=1)).replace(tzinfo=UTC).timestamp())
        for t in block["time"]
    ]
    data["minutely_15_units"]["time"] = "unixtime"
    data["utc_offset_seconds"] = 7200  # must not matter for Unix times

    series = parse_forecast(body(data), CHAMONIX, issued_at=ISSUED)

    assert series.points[0].at == datetime(2025, 2, 23, 23, 0, tzinfo=UTC)
    assert series.points == parse_forecast(RAW, CHAMONIX, issued_at=ISSUED).points


def test_local_labels_across_a_daylight_saving_change_keep_the_single_offset() -> None:
    # Open-Meteo labels the whole series with the offset valid at request time: on
    # 2025-03-30 (CET -> CEST at 02:00 local) the labels run on without a gap, all at UTC+1.
    data = payload()
    start = datetime(2025, 3, 30, 0, 0, tzinfo=UTC)
    data["minutely_15"]["time"] = [
        f"{start + timedelta(minutes=15 * i):%Y-%m-%dT%H:%M}" for i in range(288)
    ]

    series = parse_forecast(body(data), CHAMONIX, issued_at=ISSUED)

    assert series.points[0].at == datetime(2025, 3, 29, 23, 0, tzinfo=UTC)
    assert series.points[12].at == datetime(2025, 3, 30, 2, 0, tzinfo=UTC)  # 03:00 label
    steps = {b.at - a.at for a, b in zip(series.points, series.points[1:], strict=False)}
    assert steps == {timedelta(minutes=15)}


def test_wind_already_in_metres_per_second_is_not_converted() -> None:
    data = payload()
    data["minutely_15_units"]["wind_speed_10m"] = "m/s"

    series = parse_forecast(body(data), CHAMONIX, issued_at=ISSUED)

    assert series.points[0].wind_speed_m_per_s == 13.0


def test_hourly_is_used_when_there_is_no_minutely_15_block() -> None:
    data = payload()
    quarter = data.pop("minutely_15")
    data.pop("minutely_15_units")
    data["hourly"] = {key: values[::4] for key, values in quarter.items()}
    data["hourly_units"] = {"temperature_2m": "°C", "wind_speed_10m": "km/h"}

    series = parse_forecast(body(data), CHAMONIX, issued_at=ISSUED)

    assert len(series.points) == 72
    assert series.points[1].at - series.points[0].at == timedelta(hours=1)


def test_hourly_is_used_when_minutely_15_has_no_temperature_at_all() -> None:
    data = payload()
    quarter = data["minutely_15"]
    data["hourly"] = {key: values[::4] for key, values in quarter.items()}
    quarter["temperature_2m"] = [None] * len(quarter["time"])

    series = parse_forecast(body(data), CHAMONIX, issued_at=ISSUED)

    assert len(series.points) == 72


def test_mean_shortwave_radiation_is_used_when_the_instant_value_is_absent() -> None:
    data = payload()
    block = data["minutely_15"]
    block["shortwave_radiation"] = block.pop("shortwave_radiation_instant")

    series = parse_forecast(body(data), CHAMONIX, issued_at=ISSUED)

    assert max(p.solar_irradiance_w_per_m2 or 0.0 for p in series.points) == 698.6


def test_a_point_without_temperature_is_dropped_and_missing_wind_stays_unknown() -> None:
    data = payload()
    block = data["minutely_15"]
    block["temperature_2m"][0] = None
    block["wind_speed_10m"][1] = None
    block["shortwave_radiation_instant"][1] = None

    series = parse_forecast(body(data), CHAMONIX, issued_at=ISSUED)

    assert len(series.points) == 287
    assert series.points[0].at == datetime(2025, 2, 23, 23, 15, tzinfo=UTC)
    assert series.points[0].wind_speed_m_per_s is None
    assert series.points[0].solar_irradiance_w_per_m2 is None


# Malformed feeds and failing providers


def mutated(change: Callable[[dict[str, Any]], object]) -> bytes:
    data = payload()
    change(data)
    return body(data)


def _set(path: tuple[str, ...], value: object) -> Callable[[dict[str, Any]], object]:
    def change(data: dict[str, Any]) -> None:
        target = data
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value

    return change


def _swap_first_times(data: dict[str, Any]) -> None:
    times = data["minutely_15"]["time"]
    times[0], times[1] = times[1], times[0]


def _temperature_at_0(value: object) -> Callable[[dict[str, Any]], object]:
    return lambda data: data["minutely_15"]["temperature_2m"].__setitem__(0, value)


OPEN_METEO_ERROR = json.dumps(
    {"error": True, "reason": "Latitude must be in range of -90 to 90°. Given: 145.83."}
).encode()

MALFORMED: list[Any] = [
    pytest.param(answering(200, b""), FeedRejected, r"body is empty", id="empty-body"),
    pytest.param(
        answering(200, b"<!DOCTYPE html><html><body>Bad gateway</body></html>"),
        FeedRejected,
        r"not JSON .*<!DOCTYPE html>",
        id="html-page-with-200",
    ),
    pytest.param(
        answering(200, RAW[: len(RAW) // 2]), FeedRejected, r"not JSON", id="truncated-body"
    ),
    pytest.param(
        answering(200, mutated(lambda d: d["minutely_15"].pop("time"))),
        FeedRejected,
        r"minutely_15\.time is missing",
        id="missing-time-array",
    ),
    pytest.param(
        answering(200, mutated(lambda d: d["minutely_15"]["temperature_2m"].pop())),
        FeedRejected,
        r"minutely_15\.temperature_2m has 287 values for 288 times",
        id="arrays-of-different-lengths",
    ),
    pytest.param(
        answering(200, mutated(lambda d: d["minutely_15"].pop("temperature_2m"))),
        FeedRejected,
        r"minutely_15 has no temperature_2m",
        id="no-temperature",
    ),
    pytest.param(
        answering(200, mutated(_temperature_at_0("-15.4"))),
        FeedRejected,
        r"minutely_15\[0\] \(2025-02-23T23:00Z\) temperature_2m is not a number: '-15\.4'",
        id="non-numeric-temperature",
    ),
    pytest.param(
        answering(200, RAW.replace(b'"temperature_2m":[-15.4,', b'"temperature_2m":[NaN,')),
        FeedRejected,
        r"non-finite number NaN",
        id="nan-temperature",
    ),
    pytest.param(
        answering(200, mutated(_temperature_at_0(150.0))),
        FeedRejected,
        r"minutely_15\[0\] \(2025-02-23T23:00Z\): outdoor_temp_c: .*less than or equal to 60",
        id="temperature-out-of-range",
    ),
    pytest.param(
        answering(200, mutated(_set(("minutely_15", "shortwave_radiation_instant", 0), -5.0))),
        FeedRejected,
        r"solar_irradiance_w_per_m2: .*greater than or equal to 0",
        id="negative-irradiance",
    ),
    pytest.param(
        answering(200, mutated(_set(("minutely_15_units", "temperature_2m"), "°F"))),
        FeedRejected,
        r"temperature_2m is in '°F'",
        id="fahrenheit",
    ),
    pytest.param(
        answering(200, mutated(_set(("minutely_15_units", "wind_speed_10m"), "bft"))),
        FeedRejected,
        r"wind_speed_10m is in 'bft'",
        id="unknown-wind-unit",
    ),
    pytest.param(
        answering(200, mutated(_swap_first_times)),
        FeedRejected,
        r"strictly increasing",
        id="times-out-of-order",
    ),
    pytest.param(
        answering(200, mutated(_set(("minutely_15", "time", 5), "24.02.2025 01:15"))),
        FeedRejected,
        r"minutely_15\.time\[5\] is not an ISO time",
        id="unreadable-time",
    ),
    pytest.param(
        answering(200, mutated(_set(("utc_offset_seconds",), "3600"))),
        FeedRejected,
        r"utc_offset_seconds must be an integer",
        id="offset-not-an-integer",
    ),
    pytest.param(
        answering(
            200,
            mutated(
                lambda d: d["minutely_15"].__setitem__(
                    "temperature_2m", [None] * len(d["minutely_15"]["time"])
                )
            ),
        ),
        FeedRejected,
        r"no point with a temperature",
        id="all-temperatures-null",
    ),
    pytest.param(
        answering(200, mutated(lambda d: d.pop("minutely_15"))),
        FeedRejected,
        r"no minutely_15 or hourly block",
        id="no-data-block",
    ),
    pytest.param(
        answering(200, b"[" + RAW + b"," + RAW + b"]"),
        FeedRejected,
        r"got a list of 2",
        id="several-locations",
    ),
    pytest.param(
        answering(400, OPEN_METEO_ERROR),
        FeedRejected,
        r"HTTP 400: Latitude must be in range",
        id="error-json-400",
    ),
    pytest.param(
        answering(200, OPEN_METEO_ERROR),
        FeedRejected,
        r"refused the request: Latitude must be in range",
        id="error-json-200",
    ),
    pytest.param(
        answering(404, b"<html>Not Found</html>"),
        FeedRejected,
        r"HTTP 404: '<html>Not Found",
        id="not-found-404",
    ),
    pytest.param(
        answering(
            429,
            json.dumps({"error": True, "reason": "Minutely API request limit exceeded"}).encode(),
            {"Retry-After": "60"},
        ),
        ProviderUnavailable,
        r"rate limited \(HTTP 429, Retry-After 60 s\)",
        id="rate-limited-429",
    ),
    pytest.param(
        answering(503, b"<html>Service Unavailable</html>"),
        ProviderUnavailable,
        r"HTTP 503",
        id="unavailable-503",
    ),
    pytest.param(answering(500, b""), ProviderUnavailable, r"HTTP 500", id="server-error-500"),
]


def _raise(error: Exception) -> Handler:
    def handler(request: httpx.Request) -> httpx.Response:
        raise error

    return handler


MALFORMED += [
    pytest.param(
        _raise(httpx.ReadTimeout("read timed out")),
        ProviderUnavailable,
        r"timed out \(ReadTimeout\)",
        id="timeout",
    ),
    pytest.param(
        _raise(httpx.ConnectError("connection refused")),
        ProviderUnavailable,
        r"connection failed \(ConnectError\)",
        id="connection-refused",
    ),
]


@pytest.mark.parametrize(("handler", "error", "message"), MALFORMED)
def test_a_failing_or_malformed_feed_raises_the_error_that_says_what_to_do(
    handler: Handler, error: type[Exception], message: str
) -> None:
    source = source_answering(handler)

    with pytest.raises(error, match=message) as raised:
        source.forecast(CHAMONIX)

    assert "\n" not in str(raised.value)
    assert str(raised.value).startswith("Open-Meteo forecast")
