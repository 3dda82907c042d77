"""With a tariff's price, each simulated home and its never-steered twin keep what the household
pays for their electricity beside its spot cost, slot by slot at the price of the slot."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from hpsteer.ports.clock import SimulatedClock
from hpsteer.sim import Fleet

T0 = datetime(2023, 1, 9, 0, 0, tzinfo=UTC)


def spot(at: datetime) -> float:
    """EUR/MWh: cheap at night, dear in the day, one value per quarter hour."""
    return 20.0 if at.hour < 6 else 150.0


def bill(at: datetime, spot_eur_per_mwh: float) -> float:
    """EUR/kWh: spot plus a grid tariff that is dear 17-20 UTC, VAT 25 %."""
    grid = 0.30 if 17 <= at.hour < 20 else 0.05
    return (spot_eur_per_mwh / 1000.0 + grid) * 1.25


def test_homes_and_twins_are_billed_at_the_tariff_price_of_each_slot() -> None:
    clock = SimulatedClock(T0)
    fleet = Fleet(clock, homes=2, seed=4, price=spot, bill_price=bill)
    plain_fleet = Fleet(SimulatedClock(T0), homes=2, seed=4, price=spot)
    for at in (T0 + timedelta(minutes=15 * q) for q in range(1, 97)):
        fleet.advance(at)
        plain_fleet.advance(at)

    for home, plain in zip(fleet, plain_fleet, strict=True):
        assert home.twin is not None
        assert plain.bill_eur == 0.0  # no tariff, no bill
        assert home.cost_eur == pytest.approx(plain.cost_eur)
        # Above the spot cost by the grid tariff and VAT, below an all-peak bill.
        kwh = home.electricity_kwh
        assert home.bill_eur > 1.25 * home.cost_eur + 0.05 * 1.25 * kwh * 0.99
        assert home.bill_eur < 1.25 * home.cost_eur + 0.30 * 1.25 * kwh
        assert home.twin.bill_eur > 1.25 * home.twin.cost_eur


def test_a_quarter_hour_is_billed_at_its_own_price() -> None:
    clock = SimulatedClock(T0)
    fleet = Fleet(clock, homes=1, seed=4, price=spot, bill_price=bill)
    [home] = list(fleet)
    fleet.advance(T0 + timedelta(minutes=15))

    assert home.electricity_kwh > 0
    assert home.bill_eur == pytest.approx(home.electricity_kwh * bill(T0, spot(T0)))
