"""What the simulated households pay: their area's default tariff, when it covers the run.

Every home of a run gets the tariff :data:`DEFAULT_TARIFFS` names for the area (the grid company
of the area's largest city, or the only one bundled) as its device's ``tariff_id``, so optimize
plans it on the effective price as it would a real household with that tariff; the fleet bills
each home and its never-steered twin at that price, so the report shows bill savings beside spot
savings. An area without a default, or whose default does not price every simulated day (the
bundled tariff files cover 2023-2024, Germany's from April 2025), runs without a tariff:
planned and reported at spot alone, as before.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from hpsteer.domain.market import PriceArea, delivery_day_bounds
from hpsteer.runtime.simulation.options import SimulationOptions

if TYPE_CHECKING:
    from hpsteer.tariffs import Tariff

__all__ = ["DEFAULT_TARIFFS", "bill_price", "run_tariff"]

DEFAULT_TARIFFS: dict[PriceArea, str] = {
    PriceArea.DK1: "dk1-n1",
    PriceArea.DK2: "dk2-radius",
    PriceArea.SE3: "se3-vattenfall-t4",
    PriceArea.DE_LU: "de-ew-wanfried-14a-modul3",
}


def run_tariff(options: SimulationOptions) -> Tariff | None:
    """The area's default tariff if it prices every hour of every simulated day, else None."""
    tariff_id = DEFAULT_TARIFFS.get(options.area)
    if tariff_id is None:
        return None
    from hpsteer.tariffs import cached_tariff

    tariff = cached_tariff(tariff_id)
    for offset in range(options.days):
        start, end = delivery_day_bounds(options.area, options.start + timedelta(days=offset))
        if not (tariff.covers(start) and tariff.covers(end - timedelta(minutes=1))):
            return None
    return tariff


def bill_price(tariff: Tariff) -> Callable[[datetime, float], float]:
    """The fleet's ``bill_price``: EUR/kWh at an instant from the spot price then (0 outside the
    tariff's data: the settling after the last day is not billed)."""
    from hpsteer.tariffs import TariffNotInForce

    def price(at: datetime, spot_eur_per_mwh: float) -> float:
        try:
            return tariff.effective_price_eur_per_kwh(at, spot_eur_per_mwh)
        except TariffNotInForce:
            return 0.0

    return price
