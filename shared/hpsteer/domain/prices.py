"""Day-ahead prices for one price area and one delivery day.

A :class:`MarketDayPrices` holds exactly one price per slot of its delivery day (92/96/100 or
23/24/25 of them), in EUR/MWh, finite, negative allowed. The original currency and unit of the
source are kept beside it for audit. The content hash names the exact prices, so that a
re-ingested identical day is recognised as already known (the idempotency key of ingestion).
"""

from __future__ import annotations

import hashlib
import json
import math
from datetime import date, datetime
from typing import Self

from pydantic import Field, model_validator

from hpsteer.domain.base import Record, UtcDatetime
from hpsteer.domain.market import PriceArea, Resolution, Slot, slot_count, slots_of_day

__all__ = ["MarketDayPrices"]


class MarketDayPrices(Record):
    area: PriceArea
    market_date: date
    resolution: Resolution
    prices_eur_per_mwh: tuple[float, ...]
    source: str = Field(min_length=1)
    original_currency: str = "EUR"
    original_unit: str = "MWh"
    fetched_at: UtcDatetime

    @model_validator(mode="after")
    def _one_finite_price_per_slot(self) -> Self:
        expected = slot_count(self.area, self.market_date, self.resolution)
        if len(self.prices_eur_per_mwh) != expected:
            raise ValueError(
                f"{self.area} {self.market_date} at {self.resolution.name} has {expected} slots, "
                f"got {len(self.prices_eur_per_mwh)} prices"
            )
        for index, price in enumerate(self.prices_eur_per_mwh):
            if not math.isfinite(price):
                raise ValueError(f"slot {index}: price {price!r} is not a finite number")
        return self

    def slots(self) -> list[Slot]:
        return slots_of_day(self.area, self.market_date, self.resolution)

    def priced_slots(self) -> list[tuple[Slot, float]]:
        return list(zip(self.slots(), self.prices_eur_per_mwh, strict=True))

    def price_at(self, instant: datetime) -> float:
        for slot, price in self.priced_slots():
            if slot.start_at <= instant < slot.end_at:
                return price
        raise KeyError(f"{instant.isoformat()} is not in {self.area} {self.market_date}")

    @property
    def content_hash(self) -> str:
        """SHA-256 over area, day, resolution and prices: equal prices, equal hash."""
        canonical = json.dumps(
            [self.area.value, self.market_date.isoformat(), int(self.resolution)]
            + [repr(float(p)) for p in self.prices_eur_per_mwh],
            separators=(",", ":"),
        )
        return hashlib.sha256(canonical.encode()).hexdigest()
