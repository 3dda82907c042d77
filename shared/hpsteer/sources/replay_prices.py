"""Historical prices from the bundled files, served through the :class:`PriceSource` protocol.

The local runtime and the backtests replay real days instead of calling providers. Files are read
once per area and kept in memory. Two formats are understood (see ``data/prices/PROVENANCE.md``):

- Energi Data Service ``Elspotprices`` CSV exports (``eds_elspotprices_<AREA>_<YEAR>.csv``:
  ``;``-separated, decimal comma, ``HourUTC`` the hour's start in UTC), hourly;
- Energy-Charts prices re-serialised as ``start_timestamp_ms,…,start_utc,marketprice_eur_mwh``
  (``energycharts_<AREA>_*.csv``), hourly or 15-minute; the resolution of a day is read from the
  spacing of its rows.

Every day still passes :func:`~hpsteer.sources.price_validation.normalize_day`: replayed data is
held to the same standard as live data.
"""

from __future__ import annotations

import bisect
import csv
import threading
from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from itertools import pairwise
from pathlib import Path

from hpsteer.domain.market import PriceArea, Resolution, delivery_day_bounds, market_date_of
from hpsteer.domain.prices import MarketDayPrices
from hpsteer.errors import FeedRejected, NotFound
from hpsteer.ports.clock import Clock, SystemClock
from hpsteer.sources.price_validation import PriceLimits, normalize_day
from hpsteer.sources.prices import RawPriceSeries

__all__ = ["ReplayPriceSource", "bundled_data_dir"]

_EDS_AREAS = {"DE": PriceArea.DE_LU}
_Points = list[tuple[datetime, float]]
_LONGEST_SLOT_S = 3600.0


def bundled_data_dir() -> Path:
    """The repository's ``data/`` folder (the package is installed from ``shared/``)."""
    return Path(__file__).resolve().parents[3] / "data"


def _eds_area(name: str) -> PriceArea | None:
    if name in _EDS_AREAS:
        return _EDS_AREAS[name]
    try:
        return PriceArea(name)
    except ValueError:
        return None


def _read_eds(path: Path) -> dict[PriceArea, list[tuple[datetime, float]]]:
    points: dict[PriceArea, list[tuple[datetime, float]]] = defaultdict(list)
    with path.open(newline="", encoding="utf-8-sig") as handle:
        for line, row in enumerate(csv.DictReader(handle, delimiter=";"), start=2):
            try:
                area = _eds_area(row["PriceArea"])
                start = datetime.fromisoformat(row["HourUTC"]).replace(tzinfo=UTC)
                price = float(row["SpotPriceEUR"].replace(",", "."))
            except (KeyError, ValueError, AttributeError) as err:
                raise FeedRejected(f"{path.name} line {line}: unreadable row ({err})") from err
            if area is not None:
                points[area].append((start, price))
    return points


def _read_energycharts(path: Path, area: PriceArea) -> dict[PriceArea, _Points]:
    points: list[tuple[datetime, float]] = []
    with path.open(newline="", encoding="utf-8") as handle:
        for line, row in enumerate(csv.DictReader(handle), start=2):
            try:
                start = datetime.fromisoformat(row["start_utc"]).astimezone(UTC)
                points.append((start, float(row["marketprice_eur_mwh"])))
            except (KeyError, ValueError) as err:
                raise FeedRejected(f"{path.name} line {line}: unreadable row ({err})") from err
    return {area: points}


def _resolution_of(day_points: list[tuple[datetime, float]]) -> Resolution:
    starts = sorted({start for start, _ in day_points})
    steps = {b - a for a, b in pairwise(starts)}
    return Resolution.PT15M if steps and min(steps) <= timedelta(minutes=15) else Resolution.PT60M


class ReplayPriceSource:
    """Serves days of real prices from CSV files in ``directory`` (``data/prices`` by default)."""

    def __init__(
        self,
        directory: Path | None = None,
        *,
        clock: Clock | None = None,
        limits: PriceLimits | None = None,
    ) -> None:
        self._directory = directory or bundled_data_dir() / "prices"
        self._clock: Clock = clock or SystemClock()
        self._limits = limits
        self._lock = threading.Lock()
        self._points: dict[PriceArea, list[tuple[datetime, float]]] | None = None

    @property
    def name(self) -> str:
        return "replay"

    def _load(self) -> dict[PriceArea, list[tuple[datetime, float]]]:
        with self._lock:
            if self._points is None:
                merged: dict[PriceArea, list[tuple[datetime, float]]] = defaultdict(list)
                for path in sorted(self._directory.glob("*.csv")):
                    if path.name.startswith("eds_elspotprices_"):
                        found = _read_eds(path)
                    elif path.name.startswith("energycharts_"):
                        area = _eds_area(path.name.split("_")[1])
                        found = _read_energycharts(path, area) if area else {}
                    else:
                        continue
                    for area, points in found.items():
                        merged[area].extend(points)
                for points in merged.values():
                    points.sort()
                self._points = dict(merged)
            return self._points

    def areas(self) -> frozenset[PriceArea]:
        return frozenset(self._load())

    def supports(self, area: PriceArea) -> bool:
        return area in self._load()

    def covered_days(self, area: PriceArea) -> tuple[date, date] | None:
        """The first and last market day of ``area`` the files hold (None: no data)."""
        points = self._load().get(area)
        if not points:
            return None
        return market_date_of(area, points[0][0]), market_date_of(area, points[-1][0])

    def price_at(self, area: PriceArea) -> Callable[[datetime], float]:
        """The price (EUR/MWh) of the slot holding an instant, as published (no validation: the
        simulated homes' bill; the planner sees only validated days through ingestion). An instant
        outside the files raises :class:`~hpsteer.errors.NotFound`."""
        points = self._load().get(area, [])
        stamps = [at.timestamp() for at, _ in points]

        def at(instant: datetime) -> float:
            i = bisect.bisect_right(stamps, instant.timestamp()) - 1
            if i < 0 or instant.timestamp() - stamps[i] >= _LONGEST_SLOT_S:
                raise NotFound(f"no {area.value} price for {instant.isoformat()}")
            return points[i][1]

        return at

    def fetch(self, area: PriceArea, market_date: date) -> MarketDayPrices | None:
        start, end = delivery_day_bounds(area, market_date)
        day_points = [(at, price) for at, price in self._load().get(area, []) if start <= at < end]
        if not day_points:
            return None
        series = RawPriceSeries(
            area=area,
            resolution=_resolution_of(day_points),
            currency="EUR",
            unit="MWh",
            points=tuple(day_points),
            source=self.name,
        )
        return normalize_day(series, market_date, fetched_at=self._clock.now(), limits=self._limits)
