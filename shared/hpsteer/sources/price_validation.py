"""From what a provider said to a normalized market day, or a refusal that names the slot.

:func:`normalize_day` takes one :class:`~hpsteer.sources.prices.RawPriceSeries` (which may cover
more than the day: documents often span two) and returns the :class:`MarketDayPrices` of one
delivery day, or raises :class:`~hpsteer.errors.FeedRejected`. It accepts a day only when it is
complete and clean:

- currency EUR (other currencies are refused, not converted: no rate is known here), unit MWh or
  kWh (kWh prices are multiplied by 1000; the original unit is kept on the day);
- one price per slot of the delivery day at the series' resolution: 92/96/100 quarter-hours or
  23/24/25 hours on daylight-saving days; a missing, repeated or misaligned slot is named with
  its index, its UTC start and its market-local time;
- every price a finite number inside the configured limits (the SDAC harmonised range by
  default); negative prices are normal.

Nothing is ever partly accepted: the first problem found refuses the whole day.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date, datetime

from hpsteer.domain.market import delivery_day_bounds, slots_of_day
from hpsteer.domain.prices import MarketDayPrices
from hpsteer.errors import FeedRejected
from hpsteer.sources.prices import RawPriceSeries

__all__ = ["PriceLimits", "normalize_day"]

_UNIT_FACTORS = {"MWH": 1.0, "KWH": 1000.0}


@dataclass(frozen=True, slots=True)
class PriceLimits:
    """Plausible clearing prices in EUR/MWh.

    The defaults are SDAC's harmonised minimum and maximum clearing prices (-500 and +4000
    EUR/MWh since the 2022 increase). The maximum rises automatically when prices approach it,
    so it is configuration, not a constant of nature.
    """

    min_eur_per_mwh: float = -500.0
    max_eur_per_mwh: float = 4000.0


def _where(index: int, start: datetime, series: RawPriceSeries) -> str:
    local = start.astimezone(series.area.timezone)
    return f"slot {index} ({start:%Y-%m-%dT%H:%MZ}, {local:%H:%M %Z})"


def normalize_day(
    series: RawPriceSeries,
    market_date: date,
    *,
    fetched_at: datetime,
    limits: PriceLimits | None = None,
) -> MarketDayPrices:
    """The delivery day ``market_date`` out of ``series``; FeedRejected if it is not clean."""
    limits = limits or PriceLimits()
    area = series.area
    label = f"{series.source} {area} {market_date}"
    if series.currency.upper() != "EUR":
        raise FeedRejected(f"{label}: prices are in {series.currency!r}, expected EUR")
    factor = _UNIT_FACTORS.get(series.unit.upper())
    if factor is None:
        raise FeedRejected(f"{label}: unit {series.unit!r} is neither MWh nor kWh")

    slots = slots_of_day(area, market_date, series.resolution)
    index_of = {slot.start_at: i for i, slot in enumerate(slots)}
    day_start, day_end = delivery_day_bounds(area, market_date)
    prices: list[float | None] = [None] * len(slots)
    for start, value in series.points:
        if not day_start <= start < day_end:
            continue
        index = index_of.get(start)
        if index is None:
            raise FeedRejected(
                f"{label}: a price starts at {start:%Y-%m-%dT%H:%MZ}, which is not on the "
                f"{int(series.resolution)}-minute grid of the day"
            )
        where = _where(index, start, series)
        if prices[index] is not None:
            raise FeedRejected(f"{label}: {where} has more than one price")
        if not isinstance(value, float | int) or not math.isfinite(value):
            raise FeedRejected(f"{label}: {where} has no finite price ({value!r})")
        price = float(value) * factor
        if not limits.min_eur_per_mwh <= price <= limits.max_eur_per_mwh:
            raise FeedRejected(
                f"{label}: {where} price {price:g} EUR/MWh is outside "
                f"[{limits.min_eur_per_mwh:g}, {limits.max_eur_per_mwh:g}]"
            )
        prices[index] = price

    missing = [i for i, price in enumerate(prices) if price is None]
    if missing:
        if len(missing) == len(slots):
            raise FeedRejected(f"{label}: no price for any slot of the day")
        first = _where(missing[0], slots[missing[0]].start_at, series)
        raise FeedRejected(
            f"{label}: {len(slots) - len(missing)} of {len(slots)} slots have a price; "
            f"{len(missing)} missing, the first {first}"
        )
    return MarketDayPrices(
        area=area,
        market_date=market_date,
        resolution=series.resolution,
        prices_eur_per_mwh=tuple(p for p in prices if p is not None),
        source=series.source,
        original_currency=series.currency.upper(),
        original_unit=series.unit,
        fetched_at=fetched_at,
    )
