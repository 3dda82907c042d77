"""A loaded tariff and the prices it gives: what the planner, plans, backtests and reports use.

:class:`Tariff` is immutable and carries its provenance (sources, date taken, what is
unconfirmed) next to its components, so a report can say where a number came from. Prices are
EUR per kWh including VAT; the spot price comes in as EUR per MWh, the unit of the day-ahead
market. Per local date the non-spot part is computed once and cached (see
:mod:`hpsteer.tariffs.pricing`), so pricing a year of 15-minute slots costs one table per day.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Sequence
from datetime import date, datetime
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, PrivateAttr

from hpsteer.domain.instants import ensure_utc
from hpsteer.tariffs.errors import TariffError, TariffNotInForce
from hpsteer.tariffs.model import (
    Fee,
    FlatVersion,
    GridVersion,
    HolidayRule,
    PriceBreakdown,
    RateVersion,
    VatVersion,
)
from hpsteer.tariffs.pricing import Components, DayTable, build_day_table, version_at

__all__ = ["Tariff"]

_KWH_PER_MWH = 1000.0


class Tariff(BaseModel):
    """One household tariff: provenance, versioned components and the prices they give.

    ``in_force_from`` is the first local date on which every component has a value;
    ``in_force_until`` (exclusive, optional) the date the file's data runs to. Outside that period
    the price methods raise :class:`TariffNotInForce` and :meth:`covers` is false.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str
    name: str
    country: str
    price_areas: tuple[str, ...]
    timezone: str
    currency: str
    sources: tuple[str, ...]
    retrieved: date
    unconfirmed: tuple[str, ...]
    estimated: bool = False
    source_file: str = ""
    in_force_until: date | None = None
    public_holidays: HolidayRule = HolidayRule.AS_WEEKDAY
    holiday_subdivision: str | None = None
    markup: tuple[FlatVersion, ...]
    vat: tuple[VatVersion, ...]
    grid: tuple[GridVersion, ...]
    fees: tuple[Fee, ...] = ()
    rates: tuple[RateVersion, ...] = ()

    _days: dict[date, DayTable | None] = PrivateAttr(default_factory=dict)
    _lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def in_force_from(self) -> date:
        """The first local date on which every component (and the exchange rate) has a value."""
        firsts = [self.markup[0].valid_from, self.vat[0].valid_from, self.grid[0].valid_from]
        firsts += [fee.versions[0].valid_from for fee in self.fees]
        if self.currency != "EUR":
            firsts.append(self.rates[0].valid_from)
        return max(firsts)

    def local_date(self, start_at: datetime) -> date:
        """The local date (in the tariff's time zone) of an aware instant."""
        return ensure_utc(start_at, field="start_at").astimezone(self.zone).date()

    def covers(self, start_at: datetime) -> bool:
        """Whether the tariff can price a slot starting at ``start_at`` (aware)."""
        day = self.local_date(start_at)
        return self._day_table_or_none(day) is not None

    def effective_price_eur_per_kwh(self, start_at: datetime, spot_eur_per_mwh: float) -> float:
        """What one kWh bought in the slot starting at ``start_at`` costs, EUR incl. VAT."""
        local = ensure_utc(start_at, field="start_at").astimezone(self.zone)
        table = self._day_table(local.date(), start_at)
        return table.price(local.hour, spot_eur_per_mwh / _KWH_PER_MWH)

    def effective_prices(
        self, starts: Sequence[datetime], spot_eur_per_mwh: Sequence[float]
    ) -> list[float]:
        """:meth:`effective_price_eur_per_kwh` for many slots (a year of 15-minute slots is
        fine: one table per local date)."""
        if len(starts) != len(spot_eur_per_mwh):
            raise TariffError(
                f"tariff {self.id}: {len(starts)} slot starts but "
                f"{len(spot_eur_per_mwh)} spot prices"
            )
        zone = self.zone
        prices: list[float] = []
        for start_at, spot in zip(starts, spot_eur_per_mwh, strict=True):
            local = ensure_utc(start_at, field="start_at").astimezone(zone)
            table = self._day_table(local.date(), start_at)
            prices.append(table.price(local.hour, spot / _KWH_PER_MWH))
        return prices

    def breakdown(self, start_at: datetime, spot_eur_per_mwh: float) -> PriceBreakdown:
        """The effective price of one slot split into spot, markup, grid, taxes and VAT (EUR)."""
        local = ensure_utc(start_at, field="start_at").astimezone(self.zone)
        table = self._day_table(local.date(), start_at)
        spot = spot_eur_per_mwh / _KWH_PER_MWH
        grid = table.grid[local.hour]
        net = spot + table.markup + grid + table.taxes
        vat = net * table.vat_rate
        return PriceBreakdown(
            spot=spot,
            markup=table.markup,
            grid=grid,
            taxes=table.taxes,
            vat=vat,
            total=net + vat,
        )

    @property
    def content_hash(self) -> str:
        """16 hex digits of a hash of everything that prices a slot (not the provenance): a plan
        made with this tariff names it, so changed values make a new plan."""
        priced = self.model_dump_json(
            include={
                "id",
                "country",
                "timezone",
                "currency",
                "in_force_until",
                "public_holidays",
                "holiday_subdivision",
                "markup",
                "vat",
                "grid",
                "fees",
                "rates",
            }
        )
        return hashlib.sha256(priced.encode()).hexdigest()[:16]

    def version_on(self, day: date) -> date | None:
        """The tariff's version on local date ``day``: the latest ``valid_from`` of the
        component versions (markup, VAT, grid, fees, exchange rate) in force that day; None
        when the tariff does not cover the day."""
        if self._day_table_or_none(day) is None:
            return None
        versions: list[Sequence[FlatVersion] | Sequence[VatVersion] | Sequence[GridVersion]]
        versions = [self.markup, self.vat, self.grid, *(fee.versions for fee in self.fees)]
        dates = [v.valid_from for group in versions if (v := version_at(group, day)) is not None]
        rate = version_at(self.rates, day) if self.currency != "EUR" else None
        return max([*dates, *([rate.valid_from] if rate is not None else [])])

    def with_markup(self, per_kwh: float, note: str = "set by the operator") -> Tariff:
        """A copy with one supplier markup (tariff currency per kWh, excl. VAT) for all dates."""
        first = min([self.grid[0].valid_from, self.vat[0].valid_from, self.markup[0].valid_from])
        markup = (FlatVersion(valid_from=first, per_kwh=per_kwh, note=note),)
        # A new model, not model_copy: a copy would share the per-day cache of the original.
        return Tariff.model_validate({**self.model_dump(), "markup": markup})

    def _components(self) -> Components:
        return Components(
            markup=self.markup,
            vat=self.vat,
            grid=self.grid,
            fees=self.fees,
            rates=self.rates,
            currency=self.currency,
            country=self.country,
            holiday_subdivision=self.holiday_subdivision,
            public_holidays=self.public_holidays,
        )

    def _day_table_or_none(self, day: date) -> DayTable | None:
        if self.in_force_until is not None and day >= self.in_force_until:
            return None
        try:
            return self._days[day]
        except KeyError:
            pass
        table = build_day_table(self._components(), day)
        with self._lock:
            self._days[day] = table
        return table

    def _day_table(self, day: date, start_at: datetime) -> DayTable:
        table = self._day_table_or_none(day)
        if table is None:
            until = (
                f" and before {self.in_force_until.isoformat()}"
                if self.in_force_until is not None
                else ""
            )
            raise TariffNotInForce(
                f"tariff {self.id} ({self.source_file or 'no file'}) cannot price the slot at "
                f"{ensure_utc(start_at).isoformat()} (local date {day.isoformat()}): its data "
                f"covers local dates from {self.in_force_from.isoformat()}{until}"
            )
        return table
