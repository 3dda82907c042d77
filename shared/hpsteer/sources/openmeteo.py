"""Open-Meteo ``/v1/forecast``: a pure parser and an httpx client behind :class:`WeatherSource`.

:func:`parse_forecast` turns one response body into a :class:`WeatherSeries` or raises
:class:`~hpsteer.errors.FeedRejected` naming what is wrong. It promises:

- the ``minutely_15`` block is used when it holds at least one temperature, else ``hourly``
  (Open-Meteo serves ``minutely_15`` natively only in Central Europe and North America and
  interpolates it from hourly data elsewhere);
- times may be Unix seconds (``timeformat=unixtime``: UTC) or Open-Meteo's local ISO labels
  without offset (``2025-02-24T00:00``), which are shifted by the response's single
  ``utc_offset_seconds`` (Open-Meteo applies the offset valid at request time to the whole series,
  so local labels are wrong by an hour across a daylight-saving change: the client therefore asks
  for Unix time);
- outdoor temperature from ``temperature_2m``; solar irradiance from
  ``shortwave_radiation_instant`` (the value at the instant, like the temperature), else
  ``shortwave_radiation`` (the mean over the interval *ending* at the instant); wind from
  ``wind_speed_10m`` converted to m/s from the unit the response declares (km/h by default);
- ``null`` values: a point whose temperature is null is dropped (Open-Meteo pads with nulls where
  a model has no data; a point without temperature is of no use to the planner); a null
  irradiance or wind stays ``None`` in the point. A response with no temperature at all is refused;
- malformed (empty body, not JSON, an HTML page, Open-Meteo's ``{"error": true, "reason": ...}``,
  missing or ragged arrays, non-numeric or non-finite values, unknown units, values out of range,
  times out of order) is refused as a whole.

:class:`OpenMeteoWeatherSource` fetches the forecast (``timeformat=unixtime``,
``wind_speed_unit=ms``; both are parsed either way) and maps failures: connection errors,
timeouts, 429 (with its ``Retry-After``) and 5xx raise :class:`~hpsteer.errors.ProviderUnavailable`;
any other 4xx raises :class:`~hpsteer.errors.FeedRejected` with Open-Meteo's reason. The free API
needs no key, so no secret is involved. ``issued_at``: Open-Meteo's response does not say which
model run produced it (``generationtime_ms`` is the time spent answering, not a timestamp;
open-meteo/open-meteo issue 165 asks for the run time and is open), so the forecast is stamped
with the clock's current hour (truncated): fetching twice within one hour gives the same
``issued_at``, which is what makes ingestion idempotent.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from pydantic import ValidationError

from hpsteer.domain.base import describe_validation_error
from hpsteer.domain.devices import Location
from hpsteer.domain.weather import WeatherPoint, WeatherSeries
from hpsteer.errors import FeedRejected
from hpsteer.ports.clock import Clock, SystemClock
from hpsteer.sources import http

__all__ = ["OpenMeteoWeatherSource", "parse_forecast"]

SOURCE = "openmeteo"

# Blocks in order of preference.
_BLOCKS = ("minutely_15", "hourly")
# Response variables for each quantity, in order of preference.
_TEMPERATURE_KEYS = ("temperature_2m",)
_IRRADIANCE_KEYS = ("shortwave_radiation_instant", "shortwave_radiation")
_WIND_KEYS = ("wind_speed_10m",)
# Units the response may declare (``<block>_units``), as factors to ours. A variable without a
# declared unit is in Open-Meteo's default unit (the first entry).
_TEMPERATURE_UNITS = {"°C": 1.0}
_IRRADIANCE_UNITS = {"W/m²": 1.0, "W/m2": 1.0}
_WIND_UNITS = {"km/h": 1 / 3.6, "m/s": 1.0, "mph": 0.44704, "kn": 1852 / 3600}
_MAX_UTC_OFFSET_S = 18 * 3600
_REQUESTED = "temperature_2m,shortwave_radiation_instant,wind_speed_10m"


def _reject(what: str) -> FeedRejected:
    return FeedRejected(f"Open-Meteo forecast: {what}")


def _refuse_constant(name: str) -> float:
    raise _reject(f"the body contains the non-finite number {name}")


def _load(body: bytes | str) -> Mapping[str, Any]:
    text = body.decode("utf-8", errors="replace") if isinstance(body, bytes) else body
    if not text.strip():
        raise _reject("the body is empty")
    try:
        payload = json.loads(text, parse_constant=_refuse_constant)
    except json.JSONDecodeError as err:
        start = text.lstrip()[:40].replace("\n", " ")
        raise _reject(f"the body is not JSON ({err.msg}; it starts with {start!r})") from err
    if isinstance(payload, list):
        raise _reject(f"expected one location's object, got a list of {len(payload)}")
    if not isinstance(payload, dict):
        raise _reject(f"expected a JSON object, got {type(payload).__name__}")
    if payload.get("error") is True:
        raise _reject(f"the API refused the request: {payload.get('reason', '(no reason given)')}")
    return payload


def _utc_offset(payload: Mapping[str, Any]) -> timedelta:
    offset = payload.get("utc_offset_seconds")
    if isinstance(offset, bool) or not isinstance(offset, int):
        raise _reject(f"utc_offset_seconds must be an integer, got {offset!r}")
    if abs(offset) > _MAX_UTC_OFFSET_S:
        raise _reject(f"utc_offset_seconds {offset} is beyond ±18 h")
    return timedelta(seconds=offset)


def _instant(value: object, offset: timedelta, where: str) -> datetime:
    if isinstance(value, int) and not isinstance(value, bool):
        try:
            return datetime.fromtimestamp(value, tz=UTC)
        except (OverflowError, OSError, ValueError) as err:
            raise _reject(f"{where} is not a Unix time: {value!r}") from err
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError as err:
            raise _reject(f"{where} is not an ISO time: {value!r}") from err
        if parsed.tzinfo is None:  # a local label: the response's one offset applies
            return (parsed - offset).replace(tzinfo=UTC)
        return parsed.astimezone(UTC)
    raise _reject(f"{where} must be a Unix time or an ISO string, got {value!r}")


def _number(value: object, where: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _reject(f"{where} is not a number: {value!r}")
    number = float(value)
    if not math.isfinite(number):
        raise _reject(f"{where} is not finite: {value!r}")
    return number


def _value(block: Mapping[str, Any], key: str | None, i: int, where: str) -> float | None:
    return None if key is None else _number(block[key][i], f"{where} {key}")


def _factor(units: Mapping[str, Any], key: str, table: Mapping[str, float]) -> float:
    unit = units.get(key)
    if unit is None:
        return next(iter(table.values()))
    if unit not in table:
        raise _reject(f"{key} is in {unit!r}; expected one of {', '.join(table)}")
    return table[unit]


def _column(block: Mapping[str, Any], keys: Sequence[str], name: str, n: int) -> str | None:
    for key in keys:
        if key in block:
            values = block[key]
            if not isinstance(values, list):
                raise _reject(f"{name}.{key} must be an array, got {type(values).__name__}")
            if len(values) != n:
                raise _reject(f"{name}.{key} has {len(values)} values for {n} times")
            return key
    return None


def _has_temperature(block: object) -> bool:
    if not isinstance(block, Mapping):
        return False
    values = block.get(_TEMPERATURE_KEYS[0])
    return isinstance(values, list) and any(v is not None for v in values)


def _choose_block(payload: Mapping[str, Any]) -> str:
    present = [name for name in _BLOCKS if name in payload]
    if not present:
        raise _reject(f"no {' or '.join(_BLOCKS)} block")
    for name in present:
        if _has_temperature(payload[name]):
            return name
    return present[0]  # parsing it names what is wrong with it


def _points(payload: Mapping[str, Any], name: str) -> list[WeatherPoint]:
    block = payload[name]
    if not isinstance(block, Mapping):
        raise _reject(f"{name} must be an object, got {type(block).__name__}")
    times = block.get("time")
    if not isinstance(times, list) or not times:
        raise _reject(f"{name}.time is missing or empty")
    n = len(times)
    temperature_key = _column(block, _TEMPERATURE_KEYS, name, n)
    if temperature_key is None:
        raise _reject(f"{name} has no {' or '.join(_TEMPERATURE_KEYS)}")
    irradiance_key = _column(block, _IRRADIANCE_KEYS, name, n)
    wind_key = _column(block, _WIND_KEYS, name, n)
    units = payload.get(f"{name}_units") or {}
    if not isinstance(units, Mapping):
        raise _reject(f"{name}_units must be an object")
    temperature_factor = _factor(units, temperature_key, _TEMPERATURE_UNITS)
    irradiance_factor = _factor(units, irradiance_key, _IRRADIANCE_UNITS) if irradiance_key else 1.0
    wind_factor = _factor(units, wind_key, _WIND_UNITS) if wind_key else 1.0
    offset = _utc_offset(payload)

    points: list[WeatherPoint] = []
    for i, raw_time in enumerate(times):
        at = _instant(raw_time, offset, f"{name}.time[{i}]")
        where = f"{name}[{i}] ({at:%Y-%m-%dT%H:%MZ})"
        temp = _value(block, temperature_key, i, where)
        irradiance = _value(block, irradiance_key, i, where)
        wind = _value(block, wind_key, i, where)
        if temp is None:
            continue
        try:
            points.append(
                WeatherPoint(
                    at=at,
                    outdoor_temp_c=temp * temperature_factor,
                    solar_irradiance_w_per_m2=None
                    if irradiance is None
                    else irradiance * irradiance_factor,
                    wind_speed_m_per_s=None if wind is None else round(wind * wind_factor, 3),
                )
            )
        except ValidationError as err:
            raise _reject(f"{where}: {describe_validation_error(err)}") from err
    return points


def parse_forecast(body: bytes | str, location: Location, *, issued_at: datetime) -> WeatherSeries:
    """The forecast in ``body`` for ``location``, issued at ``issued_at``; FeedRejected if bad.

    The series carries the requested location's id and coordinates (Open-Meteo answers with its
    grid cell's centre, which may differ by a few kilometres).
    """
    payload = _load(body)
    name = _choose_block(payload)
    points = _points(payload, name)
    if not points:
        raise _reject(f"{name} has no point with a temperature (all null)")
    try:
        return WeatherSeries(
            location_id=location.location_id,
            latitude=location.latitude,
            longitude=location.longitude,
            issued_at=issued_at,
            source=SOURCE,
            points=tuple(points),
        )
    except ValidationError as err:
        raise _reject(f"{name}: {describe_validation_error(err)}") from err


class OpenMeteoWeatherSource:
    """:class:`~hpsteer.sources.weather.WeatherSource` on the free Open-Meteo forecast API."""

    def __init__(
        self,
        client: httpx.Client | None = None,
        base_url: str = "https://api.open-meteo.com",
        clock: Clock | None = None,
        forecast_days: int = 2,
        *,
        timeout_s: float = 10.0,
    ) -> None:
        """``forecast_days`` counts UTC days from today's midnight (Open-Meteo's definition), so
        2 always covers the rest of tomorrow: the next CET delivery day once its prices are out.
        """
        if not 1 <= forecast_days <= 16:
            raise ValueError(
                f"forecast_days must be 1..16 (Open-Meteo's range), got {forecast_days}"
            )
        self._owns_client = client is None
        self._timeout = httpx.Timeout(timeout_s)
        self._client = client or httpx.Client(timeout=self._timeout)
        self._url = f"{base_url.rstrip('/')}/v1/forecast"
        self._clock = clock or SystemClock()
        self._forecast_days = forecast_days

    @property
    def name(self) -> str:
        return SOURCE

    def close(self) -> None:
        """Release the HTTP client if this source created it."""
        if self._owns_client:
            self._client.close()

    def _params(self, location: Location) -> dict[str, str | int]:
        return {
            "latitude": f"{location.latitude:.4f}",
            "longitude": f"{location.longitude:.4f}",
            "minutely_15": _REQUESTED,
            "hourly": _REQUESTED,
            "timeformat": "unixtime",
            "wind_speed_unit": "ms",
            "forecast_days": self._forecast_days,
        }

    def forecast(self, location: Location) -> WeatherSeries:
        issued_at = self._clock.now().astimezone(UTC).replace(minute=0, second=0, microsecond=0)
        what = f"Open-Meteo forecast for {location.location_id}"
        response = http.get(self._client, self._url, self._params(location), what, self._timeout)
        status = response.status_code
        if status != 200:
            raise FeedRejected(f"{what}: HTTP {status}: {_reason(response)}")
        return parse_forecast(response.content, location, issued_at=issued_at)


def _reason(response: httpx.Response) -> str:
    """Open-Meteo's ``reason`` from an error body, else the start of the body."""
    try:
        payload = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        payload = None
    if isinstance(payload, dict) and isinstance(payload.get("reason"), str):
        return str(payload["reason"])[:300]
    return repr(response.text[:120])
