"""Price areas and the market time grid.

Day-ahead markets trade *delivery days* in the area's local time: a day runs from local midnight
to the next local midnight, which is 24 hours except on daylight-saving days (23 in spring,
25 in autumn). A day is cut into slots of the market time unit: 60 minutes until the Single
Day-Ahead Coupling moved to 15 minutes on 2025-10-01. So a delivery day holds 23/24/25 hourly
slots or 92/96/100 quarter-hour slots. Inside hpsteer every slot boundary is a UTC instant;
local time appears only to name the delivery day.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from enum import IntEnum, StrEnum
from zoneinfo import ZoneInfo

from hpsteer.domain.instants import UTC, ensure_utc
from hpsteer.errors import InvalidInput

__all__ = [
    "PriceArea",
    "Resolution",
    "Slot",
    "delivery_day",
    "delivery_day_bounds",
    "market_date_of",
    "slot_count",
    "slot_index",
    "slots_between",
    "slots_of_day",
]


class PriceArea(StrEnum):
    """Bidding zones hpsteer knows, named as ENTSO-E and Nord Pool name them."""

    SE1 = "SE1"
    SE2 = "SE2"
    SE3 = "SE3"
    SE4 = "SE4"
    DK1 = "DK1"
    DK2 = "DK2"
    NO1 = "NO1"
    NO2 = "NO2"
    NO3 = "NO3"
    NO4 = "NO4"
    NO5 = "NO5"
    FI = "FI"
    EE = "EE"
    LV = "LV"
    LT = "LT"
    DE_LU = "DE-LU"
    AT = "AT"
    NL = "NL"
    BE = "BE"
    FR = "FR"
    PL = "PL"

    @property
    def timezone(self) -> ZoneInfo:
        return ZoneInfo(_TIMEZONES[self])

    @classmethod
    def parse(cls, value: str) -> PriceArea:
        try:
            return cls(value)
        except ValueError as err:
            known = ", ".join(area.value for area in cls)
            raise InvalidInput(f"unknown price area {value!r}; known: {known}") from err


_TIMEZONES: dict[PriceArea, str] = {
    PriceArea.SE1: "Europe/Stockholm",
    PriceArea.SE2: "Europe/Stockholm",
    PriceArea.SE3: "Europe/Stockholm",
    PriceArea.SE4: "Europe/Stockholm",
    PriceArea.DK1: "Europe/Copenhagen",
    PriceArea.DK2: "Europe/Copenhagen",
    PriceArea.NO1: "Europe/Oslo",
    PriceArea.NO2: "Europe/Oslo",
    PriceArea.NO3: "Europe/Oslo",
    PriceArea.NO4: "Europe/Oslo",
    PriceArea.NO5: "Europe/Oslo",
    PriceArea.FI: "Europe/Helsinki",
    PriceArea.EE: "Europe/Tallinn",
    PriceArea.LV: "Europe/Riga",
    PriceArea.LT: "Europe/Vilnius",
    PriceArea.DE_LU: "Europe/Berlin",
    PriceArea.AT: "Europe/Vienna",
    PriceArea.NL: "Europe/Amsterdam",
    PriceArea.BE: "Europe/Brussels",
    PriceArea.FR: "Europe/Paris",
    PriceArea.PL: "Europe/Warsaw",
}


class Resolution(IntEnum):
    """The market time unit, in minutes."""

    PT15M = 15
    PT60M = 60

    @property
    def duration(self) -> timedelta:
        return timedelta(minutes=int(self))

    @classmethod
    def parse(cls, value: int | str) -> Resolution:
        names = {"PT15M": cls.PT15M, "PT60M": cls.PT60M, "15": cls.PT15M, "60": cls.PT60M}
        key = str(value).upper()
        if key not in names:
            raise InvalidInput(f"unknown resolution {value!r}; expected PT15M or PT60M")
        return names[key]


@dataclass(frozen=True, slots=True, order=True)
class Slot:
    """One market time unit: ``[start_at, end_at)`` in UTC."""

    start_at: datetime
    end_at: datetime

    @property
    def duration(self) -> timedelta:
        return self.end_at - self.start_at

    @property
    def hours(self) -> float:
        return self.duration.total_seconds() / 3600.0


def delivery_day_bounds(area: PriceArea, market_date: date) -> tuple[datetime, datetime]:
    """UTC instants of local midnight at the start and end of a delivery day."""
    tz = area.timezone
    start_local = datetime(market_date.year, market_date.month, market_date.day, tzinfo=tz)
    next_day = market_date + timedelta(days=1)
    end_local = datetime(next_day.year, next_day.month, next_day.day, tzinfo=tz)
    return start_local.astimezone(UTC), end_local.astimezone(UTC)


def delivery_day(area: PriceArea, market_date: date) -> Slot:
    start, end = delivery_day_bounds(area, market_date)
    return Slot(start, end)


def market_date_of(area: PriceArea, instant: datetime) -> date:
    """The delivery day that contains ``instant``."""
    return ensure_utc(instant, field="instant").astimezone(area.timezone).date()


def slot_count(area: PriceArea, market_date: date, resolution: Resolution) -> int:
    """92/96/100 quarter-hours or 23/24/25 hours, as the day has."""
    start, end = delivery_day_bounds(area, market_date)
    return int((end - start) / resolution.duration)


def slots_between(start_at: datetime, end_at: datetime, resolution: Resolution) -> list[Slot]:
    """Consecutive slots from ``start_at`` to ``end_at``, which must be aligned to the unit."""
    start = ensure_utc(start_at, field="start_at")
    end = ensure_utc(end_at, field="end_at")
    step = resolution.duration
    if end <= start:
        raise InvalidInput(f"empty interval {start.isoformat()} .. {end.isoformat()}")
    if (end - start) % step:
        raise InvalidInput(f"interval of {end - start} is not a whole number of {step} slots")
    if start.minute % int(resolution) or start.second or start.microsecond:
        raise InvalidInput(f"{start.isoformat()} is not on a {int(resolution)}-minute boundary")
    count = (end - start) // step
    return [Slot(start + i * step, start + (i + 1) * step) for i in range(count)]


def slots_of_day(area: PriceArea, market_date: date, resolution: Resolution) -> list[Slot]:
    start, end = delivery_day_bounds(area, market_date)
    return slots_between(start, end, resolution)


def slot_index(area: PriceArea, market_date: date, resolution: Resolution, at: datetime) -> int:
    """Index within the delivery day of the slot containing ``at``; InvalidInput outside it."""
    start, end = delivery_day_bounds(area, market_date)
    instant = ensure_utc(at, field="at")
    if not start <= instant < end:
        raise InvalidInput(f"{instant.isoformat()} is outside delivery day {market_date} in {area}")
    return int((instant - start) // resolution.duration)
