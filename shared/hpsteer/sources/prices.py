"""The price source protocol, and what a parser hands to validation.

A provider module has two halves: a pure *parser* that turns the provider's payload into
:class:`RawPriceSeries` (prices as the provider states them, keyed by slot start in UTC), and a
*client* (httpx) that fetches the payload and returns the validated day through
:func:`hpsteer.sources.price_validation.normalize_day`. Clients implement :class:`PriceSource`:

- ``fetch`` returns the day, or ``None`` when the provider has not published it (a normal
  outcome before the auction results are out);
- a provider that fails, times out or throttles raises
  :class:`~hpsteer.errors.ProviderUnavailable` (try again later, or the next source);
- a payload that is malformed or fails validation raises :class:`~hpsteer.errors.FeedRejected`,
  naming the slot and the reason; nothing of it is used.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Protocol, runtime_checkable

from hpsteer.domain.market import PriceArea, Resolution
from hpsteer.domain.prices import MarketDayPrices

__all__ = ["PriceSource", "RawPriceSeries"]


@dataclass(frozen=True, slots=True)
class RawPriceSeries:
    """Prices as a provider stated them, before validation.

    ``points`` maps slot starts (aware UTC) to prices in ``currency`` per ``unit`` (``"MWh"`` or
    ``"kWh"``), in the order the payload gave them; a repeated start is kept as a repeat so that
    validation can name it.
    """

    area: PriceArea
    resolution: Resolution
    currency: str
    unit: str
    points: tuple[tuple[datetime, float], ...]
    source: str


@runtime_checkable
class PriceSource(Protocol):
    @property
    def name(self) -> str:
        """``entsoe``, ``energidataservice``, ``energycharts``, ``replay``…"""
        ...

    def supports(self, area: PriceArea) -> bool: ...

    def fetch(self, area: PriceArea, market_date: date) -> MarketDayPrices | None: ...
