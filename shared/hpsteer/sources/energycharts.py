"""Energy-Charts (Fraunhofer ISE): day-ahead prices from ``GET /price``, no key needed.

Promises:

- :func:`parse_price` is pure: body in, :class:`~hpsteer.sources.prices.RawPriceSeries` out. It
  reads the parallel arrays ``unix_seconds`` (interval starts, UTC) and ``price``, infers the
  resolution from the spacing (uniformly 15 or 60 minutes; mixed or uneven spacing is refused,
  on the assumption that a missing price comes as ``null`` at its place rather than being left
  out [unconfirmed]), and reads the currency and unit from ``unit`` (``"EUR / MWh"``,
  ``"EUR/MWh"``, kWh variants). A null price leaves its slot missing and
  :func:`~hpsteer.sources.price_validation.normalize_day` names it.
- :class:`EnergyChartsPriceSource` fetches one delivery day and returns it validated, ``None``
  when the API has no point in the day (HTTP 404 or an empty answer), raises
  :class:`~hpsteer.errors.ProviderUnavailable` on timeouts, connection errors, 429 and 5xx,
  :class:`~hpsteer.errors.InvalidInput` on other refusals (400, 422) and
  :class:`~hpsteer.errors.FeedRejected` on a body that is malformed or fails validation.

What is confirmed, and where:

- Response shape ``{"license_info", "unix_seconds", "price", "unit", "deprecated"}``: sample
  response in github.com/mampfes/ha_epex_spot/issues/179 (DE-LU, hourly, 2024-12-08) and the
  ``PriceResponse`` types of several clients; the AT 15-minute values in the test fixtures come
  from this endpoint (re-serialised by awattar-backtesting, values unchanged).
- ``unit`` was ``"No Unit"`` in that 2024 sample; it is read as EUR/MWh, the unit of every
  value in it [assumption, as in ../shared/reference/provider-apis.md section 3].
- 404 when the range holds no data (ha_epex_spot issues 302 and 313); the 404 body text is
  unconfirmed, so every 404 is read as "no data".
- ``start``/``end`` as ISO timestamps with ``Z`` (``2025-10-25T23:00Z``) are sent by
  TeslaSolarCharger (a test of its URL builder); dates and Unix seconds are also used by
  clients. Whether ``end`` is inclusive for timestamps is unconfirmed: a point at the next day's
  start, if returned, is ignored by validation.
- What ``deprecated: true`` means, rate limits: unconfirmed. ``license_info`` (CC BY 4.0 from
  Bundesnetzagentur | SMARD.de for DE-LU/AT) is not carried by RawPriceSeries; it is the
  attribution to show with the data.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Mapping
from datetime import date, datetime
from itertools import pairwise
from typing import Any, Final

import httpx

from hpsteer.domain.instants import UTC
from hpsteer.domain.market import PriceArea, Resolution, delivery_day_bounds
from hpsteer.domain.prices import MarketDayPrices
from hpsteer.errors import FeedRejected, InvalidInput
from hpsteer.ports.clock import Clock, SystemClock
from hpsteer.sources import http
from hpsteer.sources.price_validation import normalize_day
from hpsteer.sources.prices import RawPriceSeries

__all__ = [
    "BIDDING_ZONES",
    "DEFAULT_BASE_URL",
    "QUARTER_HOUR_MTU_FIRST_DAY",
    "EnergyChartsPriceSource",
    "parse_price",
]

SOURCE_NAME: Final = "energycharts"
DEFAULT_BASE_URL: Final = "https://api.energy-charts.info"
_TIMEOUT: Final = httpx.Timeout(15.0, connect=5.0)
# SDAC's first 15-minute delivery day (go-live 30 Sep 2025 for delivery 1 Oct 2025; OKTE news
# 2025-10-09, entsoe-py QUARTER_MTU_SDAC_GOLIVE). Energy-Charts AT turns 15-minute that day.
QUARTER_HOUR_MTU_FIRST_DAY: Final = date(2025, 10, 1)
_FIFTEEN_MINUTES_S: Final = 900
_SIXTY_MINUTES_S: Final = 3600
_RESOLUTIONS_BY_STEP_S: Final[Mapping[int, Resolution]] = {
    _FIFTEEN_MINUTES_S: Resolution.PT15M,
    _SIXTY_MINUTES_S: Resolution.PT60M,
}

# ``bzn`` codes. Every code below is in the API's zone list as quoted in ha_epex_spot issue 179
# and in ha_epex_spot's ``EnergyCharts/__init__.py`` BIDDING_ZONES; they equal our names. Prices
# actually served: confirmed for AT (fixtures) and DE-LU (issue 179 sample); NL and AT have had
# days of 404 (issues 302, 313). The others are [unconfirmed beyond the zone list].
BIDDING_ZONES: Final[Mapping[PriceArea, str]] = {
    area: area.value
    for area in (
        PriceArea.DE_LU,
        PriceArea.AT,
        PriceArea.BE,
        PriceArea.NL,
        PriceArea.FR,
        PriceArea.PL,
        PriceArea.DK1,
        PriceArea.DK2,
        PriceArea.NO1,
        PriceArea.NO2,
        PriceArea.NO3,
        PriceArea.NO4,
        PriceArea.NO5,
        PriceArea.SE1,
        PriceArea.SE2,
        PriceArea.SE3,
        PriceArea.SE4,
        PriceArea.FI,
        PriceArea.EE,
        PriceArea.LV,
        PriceArea.LT,
    )
}

# The unit strings we understand, spaces removed and upper-cased: (currency, unit).
_UNITS: Final[Mapping[str, tuple[str, str]]] = {
    "EUR/MWH": ("EUR", "MWh"),
    "EUR/KWH": ("EUR", "kWh"),
    "NOUNIT": ("EUR", "MWh"),  # 2024 responses; values were EUR/MWh (see module docstring)
}


def parse_price(
    body: bytes | str, area: PriceArea, resolution_hint: Resolution | None = None
) -> RawPriceSeries:
    """The points of a ``/price`` body for ``area``.

    The resolution comes from the spacing of ``unix_seconds``; ``resolution_hint`` is used only
    when the spacing cannot tell (fewer than two points; an empty series without a hint is
    hourly, having no slot to contradict it).
    """
    return _parse(body, area, resolution_hint)[0]


def _parse(
    body: bytes | str, area: PriceArea, resolution_hint: Resolution | None
) -> tuple[RawPriceSeries, tuple[datetime, ...]]:
    """The series, and every interval start of the body (priced or null)."""
    label = f"{SOURCE_NAME} {area}"
    document = _decode(body, label)
    if not isinstance(document, dict):
        raise FeedRejected(f"{label}: expected a JSON object, got {type(document).__name__}")
    starts_s = _array(document, "unix_seconds", label)
    prices = _array(document, "price", label)
    if len(starts_s) != len(prices):
        raise FeedRejected(
            f"{label}: {len(starts_s)} unix_seconds but {len(prices)} prices; arrays must pair"
        )
    currency, unit = _unit(document.get("unit"), label)
    starts = tuple(_instant(value, index, label) for index, value in enumerate(starts_s))
    resolution = _resolution(starts, resolution_hint, label)

    points: list[tuple[datetime, float]] = []
    for index, (start, price) in enumerate(zip(starts, prices, strict=True)):
        if price is None:
            continue  # no price: the slot stays missing and validation names it
        if isinstance(price, bool) or not isinstance(price, int | float):
            raise FeedRejected(
                f"{label}: price {index} ({start:%Y-%m-%dT%H:%MZ}) {price!r} is not a number"
            )
        points.append((start, float(price)))
    series = RawPriceSeries(
        area=area,
        resolution=resolution,
        currency=currency,
        unit=unit,
        points=tuple(points),
        source=SOURCE_NAME,
    )
    return series, starts


def _decode(body: bytes | str, label: str) -> Any:
    try:
        text = body.decode("utf-8") if isinstance(body, bytes) else body
    except UnicodeDecodeError as err:
        raise FeedRejected(f"{label}: body is not UTF-8 text ({err.reason})") from err
    stripped = text.lstrip()
    if not stripped:
        raise FeedRejected(f"{label}: empty body")
    if stripped.startswith("<"):
        raise FeedRejected(f"{label}: body is an HTML/XML page, not JSON: {http.snippet(stripped)}")
    try:
        return json.loads(stripped)
    except json.JSONDecodeError as err:
        raise FeedRejected(f"{label}: body is not JSON ({err.msg} at offset {err.pos})") from err


def _array(document: dict[str, Any], key: str, label: str) -> list[Any]:
    value = document.get(key)
    if not isinstance(value, list):
        keys = ", ".join(sorted(str(k) for k in document)) or "none"
        raise FeedRejected(f"{label}: no {key!r} array in the body (keys: {keys})")
    return value


def _unit(value: Any, label: str) -> tuple[str, str]:
    if not isinstance(value, str):
        raise FeedRejected(f"{label}: 'unit' is {value!r}, expected text such as 'EUR / MWh'")
    key = "".join(value.split()).upper()
    if key in _UNITS:
        return _UNITS[key]
    currency, slash, per = key.partition("/")
    if slash and per in ("MWH", "KWH") and currency.isalpha():
        # another currency: kept as stated, so that validation refuses it by name
        return currency, "MWh" if per == "MWH" else "kWh"
    raise FeedRejected(f"{label}: unit {value!r} is not a price per MWh or kWh")


def _instant(value: Any, index: int, label: str) -> datetime:
    whole = (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and value == int(value)
    )
    if not whole:
        raise FeedRejected(f"{label}: unix_seconds[{index}] {value!r} is not whole seconds")
    try:
        return datetime.fromtimestamp(int(value), tz=UTC)
    except (OverflowError, OSError, ValueError) as err:
        raise FeedRejected(f"{label}: unix_seconds[{index}] {value!r} is out of range") from err


def _resolution(starts: tuple[datetime, ...], hint: Resolution | None, label: str) -> Resolution:
    steps_s = [int((b - a).total_seconds()) for a, b in pairwise(starts)]
    for index, step in enumerate(steps_s, start=1):
        if step < 0:
            raise FeedRejected(
                f"{label}: unix_seconds[{index}] ({starts[index]:%Y-%m-%dT%H:%MZ}) is earlier "
                "than the point before it"
            )
    forward = [step for step in steps_s if step > 0]  # a repeat (step 0) is left to validation
    if not forward:
        return hint if hint is not None else Resolution.PT60M
    counts = Counter(forward)
    if len(counts) > 1:
        usual, _ = counts.most_common(1)[0]
        first_odd = next(i for i, step in enumerate(steps_s, start=1) if step not in (0, usual))
        minutes = ", ".join(f"{step // 60}" for step in sorted(counts))
        kind = (
            "mixed 15- and 60-minute spacing"
            if {_FIFTEEN_MINUTES_S, _SIXTY_MINUTES_S} <= counts.keys()
            else "uneven spacing"
        )
        raise FeedRejected(
            f"{label}: {kind} (steps of {minutes} minutes; the first odd one ends at "
            f"unix_seconds[{first_odd}], {starts[first_odd]:%Y-%m-%dT%H:%MZ})"
        )
    (step,) = counts
    resolution = _RESOLUTIONS_BY_STEP_S.get(step)
    if resolution is None:
        raise FeedRejected(f"{label}: points are {step / 60:g} minutes apart, not 15 or 60")
    return resolution


def _iso_minute(instant: datetime) -> str:
    return f"{instant.astimezone(UTC):%Y-%m-%dT%H:%M}Z"


class EnergyChartsPriceSource:
    """A :class:`~hpsteer.sources.prices.PriceSource` over the Energy-Charts API."""

    def __init__(
        self,
        client: httpx.Client | None = None,
        base_url: str = DEFAULT_BASE_URL,
        clock: Clock | None = None,
    ) -> None:
        self._client = client if client is not None else httpx.Client(timeout=_TIMEOUT)
        self._base_url = base_url.rstrip("/")
        self._clock: Clock = clock if clock is not None else SystemClock()

    @property
    def name(self) -> str:
        return SOURCE_NAME

    def supports(self, area: PriceArea) -> bool:
        return area in BIDDING_ZONES

    def __repr__(self) -> str:
        return f"EnergyChartsPriceSource(base_url={self._base_url!r})"

    def fetch(self, area: PriceArea, market_date: date) -> MarketDayPrices | None:
        if not self.supports(area):
            raise InvalidInput(f"{SOURCE_NAME} has no bidding zone for {area}")
        label = f"{SOURCE_NAME} {area} {market_date}"
        day_start, day_end = delivery_day_bounds(area, market_date)
        params = {
            "bzn": BIDDING_ZONES[area],
            "start": _iso_minute(day_start),
            "end": _iso_minute(day_end),
        }
        response = self._get(f"{self._base_url}/price", params, label)
        if response is None:
            return None
        # The hint matters only for a day of fewer than two points, which validation refuses.
        hint = Resolution.PT15M if market_date >= QUARTER_HOUR_MTU_FIRST_DAY else Resolution.PT60M
        series, starts = _parse(response.content, area, hint)
        if not any(day_start <= start < day_end for start in starts):
            return None  # no point in the day: not published yet
        return normalize_day(series, market_date, fetched_at=self._clock.now())

    def _get(self, url: str, params: Mapping[str, str], label: str) -> httpx.Response | None:
        response = http.get(self._client, url, params, label, _TIMEOUT)
        status = response.status_code
        if status == httpx.codes.NOT_FOUND:
            return None  # the API's "no data for this range"
        if 400 <= status < 500:
            # Bad parameters, 403, 411 and other refusals: the same request fails again.
            refusal = f"request refused, HTTP {status} {http.error_detail(response)}"
            raise InvalidInput(f"{label}: {refusal}")
        if status != httpx.codes.OK:
            raise FeedRejected(f"{label}: unexpected HTTP {status}")
        return response
