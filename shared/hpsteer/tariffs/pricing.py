"""From tariff components to the price of each local hour of one day.

Prices are looked up by the *local* date and hour of a slot's start in the tariff's time zone, so
daylight-saving days need no special case: on the 23-hour spring day local hour 2 never occurs,
on the 25-hour autumn day it occurs twice and both get the band of hour 2, and a 15-minute slot
takes the band of the hour it starts in. Everything that depends only on the date (versions in
force, season, weekday/weekend/holiday, exchange rate) is computed once per local date into a
:class:`DayTable`; pricing a slot is then a table look-up and a multiplication.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from functools import lru_cache
from typing import Protocol, TypeVar

import holidays

from hpsteer.tariffs.model import (
    DayKind,
    Fee,
    FeeCategory,
    FlatVersion,
    GridVersion,
    HolidayRule,
    RateVersion,
    Season,
    VatVersion,
)

__all__ = [
    "Components",
    "DayTable",
    "build_day_table",
    "hourly_band_prices",
    "is_public_holiday",
    "version_at",
]

HOURS_PER_DAY = 24


class _Dated(Protocol):
    @property
    def valid_from(self) -> date: ...


_V = TypeVar("_V", bound=_Dated)


def version_at(versions: Sequence[_V], day: date) -> _V | None:
    """The version in force on ``day``: the last one whose ``valid_from`` is not after it.

    ``versions`` must be sorted by ``valid_from`` (the loader checks this). ``None`` before the
    first version.
    """
    index = bisect.bisect_right([version.valid_from for version in versions], day)
    return versions[index - 1] if index else None


@lru_cache(maxsize=32)
def _calendar(country: str, subdivision: str | None) -> holidays.HolidayBase:
    return holidays.country_holidays(country, subdiv=subdivision)


def is_public_holiday(day: date, country: str, subdivision: str | None = None) -> bool:
    """Whether ``day`` is a public holiday in ``country`` (ISO 3166-1 alpha-2) per ``holidays``."""
    return day in _calendar(country, subdivision)


def _season_of(version: GridVersion, month: int) -> Season:
    for season in version.seasons:
        if month in season.months:
            return season
    raise LookupError(f"no season for month {month}")  # the loader guarantees one


def hourly_band_prices(season: Season, weekend: bool) -> tuple[float, ...]:
    """The grid band price of each local hour 0..23 on a weekday (or weekend) of ``season``."""
    wanted = DayKind.WEEKEND if weekend else DayKind.WEEKDAY
    prices = [0.0] * HOURS_PER_DAY
    for band in season.bands:
        if band.days in (DayKind.ALL, wanted):
            for hour in range(band.hours[0], band.hours[1]):
                prices[hour] = band.per_kwh
    return tuple(prices)


@dataclass(frozen=True, slots=True)
class DayTable:
    """Everything but the spot price for one local date, in EUR per kWh excluding VAT.

    ``grid`` has one entry per local hour 0..23 (band plus the flat fees of category grid).
    """

    markup: float
    grid: tuple[float, ...]
    taxes: float
    vat_rate: float

    def price(self, hour: int, spot_eur_per_kwh: float) -> float:
        """Effective EUR per kWh: (spot + markup + grid + taxes) * (1 + VAT)."""
        net = spot_eur_per_kwh + self.markup + self.grid[hour] + self.taxes
        return net * (1.0 + self.vat_rate)


@dataclass(frozen=True, slots=True)
class Components:
    """A tariff's versioned components, as :func:`build_day_table` needs them."""

    markup: Sequence[FlatVersion]
    vat: Sequence[VatVersion]
    grid: Sequence[GridVersion]
    fees: Sequence[Fee]
    rates: Sequence[RateVersion]
    currency: str
    country: str
    holiday_subdivision: str | None
    public_holidays: HolidayRule


def build_day_table(components: Components, day: date) -> DayTable | None:
    """The :class:`DayTable` for local date ``day``; ``None`` if some component has no version
    in force yet on that date."""
    markup = version_at(components.markup, day)
    vat = version_at(components.vat, day)
    grid = version_at(components.grid, day)
    if markup is None or vat is None or grid is None:
        return None
    per_eur = 1.0
    if components.currency != "EUR":
        rate = version_at(components.rates, day)
        if rate is None:
            return None
        per_eur = rate.per_eur
    grid_fees = 0.0
    taxes = 0.0
    for fee in components.fees:
        version = version_at(fee.versions, day)
        if version is None:
            return None
        if fee.category is FeeCategory.GRID:
            grid_fees += version.per_kwh
        else:
            taxes += version.per_kwh
    weekend = day.weekday() >= 5 or (
        components.public_holidays is HolidayRule.AS_WEEKEND
        and is_public_holiday(day, components.country, components.holiday_subdivision)
    )
    bands = hourly_band_prices(_season_of(grid, day.month), weekend)
    return DayTable(
        markup=markup.per_kwh / per_eur,
        grid=tuple((band + grid_fees) / per_eur for band in bands),
        taxes=taxes / per_eur,
        vat_rate=vat.rate,
    )
