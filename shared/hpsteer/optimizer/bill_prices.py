"""Planning on what the household pays: a tariff's effective price per slot, in the planner's unit.

The planner minimises Σ price_t x electricity_t with prices in EUR/MWh, the day-ahead market's
unit. A household with a tariff pays the effective price of each slot (spot + markup + grid
time-of-use + taxes, VAT on the lot: :meth:`hpsteer.tariffs.Tariff.effective_prices`, EUR/kWh);
handing the planner that price, times 1000, makes it plan on the bill instead of the exchange.
Nothing else changes: the comfort and wear penalties stay in EUR, the physics is the same.

A tariff can plan a horizon only if it is meant for the device's price area and prices every
slot of it; :func:`why_unusable` says why not in one line (the optimize service then plans on
spot and says so in the plan, the backtest refuses to start).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

from hpsteer.domain.market import PriceArea

if TYPE_CHECKING:
    from hpsteer.tariffs import Tariff

__all__ = ["KWH_PER_MWH", "bill_prices_eur_per_mwh", "why_unusable"]

KWH_PER_MWH = 1000.0


def why_unusable(tariff: Tariff, area: PriceArea, starts: Sequence[datetime]) -> str | None:
    """Why ``tariff`` cannot price the slots starting at ``starts`` in ``area`` (None: it can)."""
    if area.value not in tariff.price_areas:
        return (
            f"tariff {tariff.id} is for price area {', '.join(tariff.price_areas)}, "
            f"not {area.value}"
        )
    for start_at in starts:
        if not tariff.covers(start_at):
            until = tariff.in_force_until
            last = f" to {until.isoformat()} (exclusive)" if until is not None else " on"
            return (
                f"tariff {tariff.id} does not price the slot at {start_at.isoformat()}: its "
                f"data covers local dates from {tariff.in_force_from.isoformat()}{last}"
            )
    return None


def bill_prices_eur_per_mwh(
    tariff: Tariff, starts: Sequence[datetime], spot_eur_per_mwh: Sequence[float]
) -> NDArray[np.float64]:
    """The effective price of each slot in EUR/MWh (raises
    :class:`~hpsteer.tariffs.TariffNotInForce` for a slot the tariff does not cover)."""
    per_kwh = tariff.effective_prices(starts, spot_eur_per_mwh)
    return np.asarray(per_kwh, dtype=np.float64) * KWH_PER_MWH
