"""Energi Data Service (Energinet): day-ahead prices from its open API, no key needed.

Promises:

- :func:`parse_day_ahead_prices` (dataset ``DayAheadPrices``, 15-minute rows from delivery day
  2025-10-01) and :func:`parse_elspotprices` (dataset ``Elspotprices``, hourly rows up to
  2025-09-30) are pure: body in, :class:`~hpsteer.sources.prices.RawPriceSeries` out. They accept
  the API envelope ``{"total", "filters", "limit", "dataset", "records": [...]}`` and a bare
  ``records`` array, keep the rows of one price area and ignore the others.
- Instants come from the ``*UTC`` column only (ISO text without offset, read as UTC; an explicit
  zero offset is accepted, any other offset is refused because the column's meaning would then be
  in doubt). The ``*DK`` wall-clock column is never used: it repeats an hour in autumn.
- Prices come from the EUR column (EUR/MWh). A row whose EUR value is null or absent leaves its
  slot missing, and :func:`~hpsteer.sources.price_validation.normalize_day` names it. Where both
  EUR and DKK are present the DKK/EUR ratio is checked, which catches a currency or unit mix-up.
- :class:`EnergiDataServicePriceSource` fetches one delivery day and returns it validated, ``None``
  when the day has no rows yet, raises :class:`~hpsteer.errors.ProviderUnavailable` on timeouts,
  connection errors, 429 and 5xx, :class:`~hpsteer.errors.InvalidInput` when the API refuses the
  request (400, 403, 411 and other 4xx) and :class:`~hpsteer.errors.FeedRejected` on a body that
  is malformed or fails validation.

API facts: ``../shared/reference/provider-apis.md`` section 2, https://energidataservice.dk/guides/api-guides.
Unconfirmed: the API's default ``limit`` (we always send one), its numeric rate limits, the shape
of its JSON error bodies (we quote a ``message``/``error`` field when there is one), and which
areas ``DayAheadPrices`` carries besides DK1 and DK2 (SE3, SE4, NO2, DE are seen in clients).
Licence of the data: CC BY 4.0, "Source: Energinet (www.energidataservice.dk)".
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
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
    "DAY_AHEAD_PRICES",
    "DAY_AHEAD_PRICES_FIRST_DAY",
    "DEFAULT_BASE_URL",
    "EDS_AREA_NAMES",
    "ELSPOTPRICES",
    "EdsDataset",
    "EnergiDataServicePriceSource",
    "dataset_for",
    "parse_day_ahead_prices",
    "parse_elspotprices",
]

SOURCE_NAME: Final = "energidataservice"
DEFAULT_BASE_URL: Final = "https://api.energidataservice.dk"

# First delivery day served by DayAheadPrices; Elspotprices "is no longer updated. For data after
# 2025-09-30 see Day-Ahead Prices" (https://api.energidataservice.dk/meta/dataset/Elspotprices;
# openhab/openhab-addons PR 18695, evcc-io/evcc PR 23986).
DAY_AHEAD_PRICES_FIRST_DAY: Final = date(2025, 10, 1)

# The Danish krone is pegged to the euro in ERM II at 7.46038 DKK/EUR with a band of +-2.25 %
# (7.2925 .. 7.6282). A row whose DKK/EUR ratio is far outside that band holds prices in the wrong
# currency or unit. "Far": the band is widened by 5 %, because real rows stray slightly outside it
# (Elspotprices DK2 and SE3 on 2018-08-04 carry 7.2524 all day) while a mix-up gives ratios near
# 1, 0.13 or 1000. Rows with |EUR| <= 1 are not checked: rounding to 0.01 dominates their ratio.
DKK_PER_EUR_CENTRAL: Final = 7.46038
ERM_II_BAND: Final = 0.0225
_RATIO_TOLERANCE: Final = 0.05
_DKK_PER_EUR_MIN: Final = DKK_PER_EUR_CENTRAL * (1 - ERM_II_BAND) * (1 - _RATIO_TOLERANCE)
_DKK_PER_EUR_MAX: Final = DKK_PER_EUR_CENTRAL * (1 + ERM_II_BAND) * (1 + _RATIO_TOLERANCE)
_RATIO_CHECK_MIN_ABS_EUR: Final = 1.0

# A delivery day has at most 100 quarter-hours of one area; 200 leaves room and is explicit
# because the API's default limit is unconfirmed.
REQUEST_LIMIT: Final = 200
_TIMEOUT: Final = httpx.Timeout(15.0, connect=5.0)


@dataclass(frozen=True, slots=True)
class EdsDataset:
    """The columns of one price dataset of Energi Data Service."""

    name: str
    utc_column: str
    local_column: str
    eur_column: str
    dkk_column: str
    resolution: Resolution


DAY_AHEAD_PRICES: Final = EdsDataset(
    "DayAheadPrices", "TimeUTC", "TimeDK", "DayAheadPriceEUR", "DayAheadPriceDKK", Resolution.PT15M
)
ELSPOTPRICES: Final = EdsDataset(
    "Elspotprices", "HourUTC", "HourDK", "SpotPriceEUR", "SpotPriceDKK", Resolution.PT60M
)

# Our price areas as Energi Data Service names them in ``PriceArea``. Elspotprices: all six are
# in the 2024 CSV exports (../shared/data/prices/eds_elspotprices_*_2024.csv). DayAheadPrices:
# DK1/DK2 confirmed; SE3, SE4, NO2 and DE seen in clients only [unconfirmed].
EDS_AREA_NAMES: Final[Mapping[PriceArea, str]] = {
    PriceArea.DK1: "DK1",
    PriceArea.DK2: "DK2",
    PriceArea.SE3: "SE3",
    PriceArea.SE4: "SE4",
    PriceArea.NO2: "NO2",
    PriceArea.DE_LU: "DE",
}


def dataset_for(market_date: date) -> EdsDataset:
    """The dataset that holds ``market_date``."""
    return DAY_AHEAD_PRICES if market_date >= DAY_AHEAD_PRICES_FIRST_DAY else ELSPOTPRICES


def parse_day_ahead_prices(body: bytes | str, area: PriceArea) -> RawPriceSeries:
    """The ``area`` rows of a ``DayAheadPrices`` body (envelope or bare records), 15-minute."""
    return _read(body, area, DAY_AHEAD_PRICES).series


def parse_elspotprices(body: bytes | str, area: PriceArea) -> RawPriceSeries:
    """The ``area`` rows of an ``Elspotprices`` body (envelope or bare records), hourly."""
    return _read(body, area, ELSPOTPRICES).series


@dataclass(frozen=True, slots=True)
class _Read:
    series: RawPriceSeries
    row_starts: tuple[datetime, ...]  # every row of the area, with or without a price


def _read(body: bytes | str, area: PriceArea, dataset: EdsDataset) -> _Read:
    label = f"{SOURCE_NAME} {dataset.name} {area}"
    eds_area = EDS_AREA_NAMES.get(area)
    if eds_area is None:
        raise InvalidInput(f"{label}: Energi Data Service has no price area for {area}")
    records = _records(_decode(body, label), label, dataset)

    points: list[tuple[datetime, float]] = []
    row_starts: list[datetime] = []
    eur_column_seen = False
    for index, record in enumerate(records):
        if not isinstance(record, dict):
            raise FeedRejected(f"{label}: record {index} is {type(record).__name__}, not an object")
        if record.get("PriceArea") != eds_area:
            continue
        start = _utc_instant(record.get(dataset.utc_column), dataset.utc_column, index, label)
        row_starts.append(start)
        where = f"record {index} ({start:%Y-%m-%dT%H:%MZ})"
        eur_column_seen = eur_column_seen or dataset.eur_column in record
        eur = _number(record.get(dataset.eur_column), dataset.eur_column, where, label)
        if eur is None:
            continue  # no price: the slot stays missing and validation names it
        dkk = _number(record.get(dataset.dkk_column), dataset.dkk_column, where, label)
        _check_dkk_per_eur(eur, dkk, where, label)
        points.append((start, eur))

    if row_starts and not eur_column_seen:
        raise FeedRejected(
            f"{label}: no {eds_area} row has a {dataset.eur_column} column "
            f"(a {dataset.dkk_column}-only payload is not converted)"
        )
    series = RawPriceSeries(
        area=area,
        resolution=dataset.resolution,
        currency="EUR",
        unit="MWh",
        points=tuple(points),
        source=SOURCE_NAME,
    )
    return _Read(series, tuple(row_starts))


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


def _records(document: Any, label: str, dataset: EdsDataset) -> list[Any]:
    if isinstance(document, list):
        return document
    if not isinstance(document, dict):
        raise FeedRejected(
            f"{label}: expected an object with 'records' or a records array, "
            f"got {type(document).__name__}"
        )
    named = document.get("dataset")
    if isinstance(named, str) and named.lower() != dataset.name.lower():
        raise FeedRejected(f"{label}: body is dataset {named!r}, expected {dataset.name!r}")
    records = document.get("records")
    if not isinstance(records, list):
        keys = ", ".join(sorted(str(k) for k in document)) or "none"
        raise FeedRejected(f"{label}: object has no 'records' list (keys: {keys})")
    return records


def _utc_instant(value: Any, column: str, index: int, label: str) -> datetime:
    if not isinstance(value, str):
        raise FeedRejected(f"{label}: record {index} has no {column} text ({value!r})")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as err:
        raise FeedRejected(f"{label}: record {index} {column} {value!r} is not ISO 8601") from err
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=UTC)
    offset = parsed.utcoffset()
    if offset != timedelta(0):
        raise FeedRejected(
            f"{label}: record {index} {column} {value!r} carries offset {offset}; "
            "the column is UTC without offset, so its meaning is in doubt"
        )
    return parsed.astimezone(UTC)


def _number(value: Any, column: str, where: str, label: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise FeedRejected(f"{label}: {where} {column} {value!r} is not a number")
    return float(value)


def _check_dkk_per_eur(eur: float, dkk: float | None, where: str, label: str) -> None:
    if dkk is None or not (math.isfinite(eur) and math.isfinite(dkk)):
        return
    if abs(eur) <= _RATIO_CHECK_MIN_ABS_EUR:
        return
    ratio = dkk / eur
    if not _DKK_PER_EUR_MIN <= ratio <= _DKK_PER_EUR_MAX:
        raise FeedRejected(
            f"{label}: {where} DKK/EUR ratio {ratio:.4g} is far outside the ERM II band "
            f"around {DKK_PER_EUR_CENTRAL} (EUR {eur:g}, DKK {dkk:g}): currency or unit mix-up"
        )


class EnergiDataServicePriceSource:
    """A :class:`~hpsteer.sources.prices.PriceSource` over Energi Data Service."""

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
        return area in EDS_AREA_NAMES

    def __repr__(self) -> str:
        return f"EnergiDataServicePriceSource(base_url={self._base_url!r})"

    def fetch(self, area: PriceArea, market_date: date) -> MarketDayPrices | None:
        if not self.supports(area):
            raise InvalidInput(f"{SOURCE_NAME} has no price area for {area}")
        dataset = dataset_for(market_date)
        label = f"{SOURCE_NAME} {dataset.name} {area} {market_date}"
        # start/end are Danish local time (start inclusive, end exclusive); every area served
        # here trades the CET/CEST day, so the Danish dates are the delivery day's bounds.
        params = {
            "start": market_date.isoformat(),
            "end": (market_date + timedelta(days=1)).isoformat(),
            "filter": json.dumps({"PriceArea": [EDS_AREA_NAMES[area]]}, separators=(",", ":")),
            "sort": f"{dataset.utc_column} asc",
            "limit": str(REQUEST_LIMIT),
        }
        response = self._get(f"{self._base_url}/dataset/{dataset.name}", params, label)
        read = _read(response.content, area, dataset)
        day_start, day_end = delivery_day_bounds(area, market_date)
        if not any(day_start <= start < day_end for start in read.row_starts):
            return None  # not published yet
        return normalize_day(read.series, market_date, fetched_at=self._clock.now())

    def _get(self, url: str, params: Mapping[str, str], label: str) -> httpx.Response:
        response = http.get(self._client, url, params, label, _TIMEOUT)
        status = response.status_code
        if 400 <= status < 500:
            # Bad parameters, 403, 411 and other refusals: the same request fails again.
            refusal = f"request refused, HTTP {status} {http.error_detail(response)}"
            raise InvalidInput(f"{label}: {refusal}")
        if status != httpx.codes.OK:
            raise FeedRejected(f"{label}: unexpected HTTP {status}")
        return response
