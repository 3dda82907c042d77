"""The shape of a household tariff, as data: what a tariff file holds once it has been read.

A tariff is the part of a household's bill that is not the spot price: the supplier's markup, the
grid company's time-of-use tariff, flat per-kWh fees and taxes, and VAT on the lot. Every
component changes over time, so every component is a list of *versions*, each in force from its
``valid_from`` (a local date in the tariff's time zone) until the next version's ``valid_from``.
A backtest over 2023 therefore prices 2023 with the values of 2023, and a change in the middle of
the year takes effect on its date.

The grid tariff of a version is a set of *seasons* (month sets that together cover the year), each
with *bands*: a price for a range of local hours ``[start, end)`` on weekdays, weekends or all
days. Public holidays count as weekdays or as weekends, as the tariff says.

Amounts are in the tariff's own currency per kWh, excluding VAT (as grid companies and tax
authorities publish them); conversion to EUR happens when prices are computed. These classes are
pure: reading and checking files is :mod:`hpsteer.tariffs.files`, computing prices is
:mod:`hpsteer.tariffs.pricing`.
"""

from __future__ import annotations

from datetime import date
from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "Band",
    "DayKind",
    "Fee",
    "FeeCategory",
    "FlatVersion",
    "GridVersion",
    "HolidayRule",
    "PriceBreakdown",
    "RateVersion",
    "Season",
    "VatVersion",
]

PerKwh = Annotated[float, Field(allow_inf_nan=False)]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class DayKind(StrEnum):
    """Which days a band applies to. Monday-Friday are weekdays."""

    ALL = "all"
    WEEKDAY = "weekday"
    WEEKEND = "weekend"


class HolidayRule(StrEnum):
    """How a public holiday that falls on a weekday is priced."""

    AS_WEEKDAY = "as_weekday"
    AS_WEEKEND = "as_weekend"


class FeeCategory(StrEnum):
    """Where a flat per-kWh fee shows in a :class:`PriceBreakdown`."""

    GRID = "grid"
    TAX = "tax"


class Band(_Frozen):
    """A price for local hours ``hours[0] <= hour < hours[1]`` on the given kind of day."""

    days: DayKind = DayKind.ALL
    hours: tuple[int, int]
    per_kwh: PerKwh


class Season(_Frozen):
    """The bands in force in some months (1 = January)."""

    name: str
    months: tuple[int, ...]
    bands: tuple[Band, ...]


class GridVersion(_Frozen):
    """The grid company's time-of-use tariff from ``valid_from`` on."""

    valid_from: date
    seasons: tuple[Season, ...]
    note: str = ""


class FlatVersion(_Frozen):
    """A flat amount per kWh from ``valid_from`` on (a supplier markup, a fee or a tax)."""

    valid_from: date
    per_kwh: PerKwh
    note: str = ""


class VatVersion(_Frozen):
    """The VAT rate (0.25 = 25 %) from ``valid_from`` on."""

    valid_from: date
    rate: float
    note: str = ""


class Fee(_Frozen):
    """A named flat per-kWh fee or tax (elafgift, Energinet's tariffs, Swedish energiskatt)."""

    name: str
    category: FeeCategory
    versions: tuple[FlatVersion, ...]


class RateVersion(_Frozen):
    """Units of a currency per euro from ``valid_from`` on (EUR 1 = ``per_eur`` units)."""

    valid_from: date
    per_eur: float
    source: str = ""


class PriceBreakdown(_Frozen):
    """What one kWh costs in a slot, EUR per kWh, by component.

    ``grid`` is the grid company's band plus the flat fees of category grid; ``taxes`` the flat
    fees of category tax; ``vat`` is charged on the sum of the four before it, so
    ``total = spot + markup + grid + taxes + vat``.
    """

    spot: float
    markup: float
    grid: float
    taxes: float
    vat: float
    total: float
