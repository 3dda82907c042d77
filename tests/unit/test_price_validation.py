"""A provider's prices become a market day only when complete and clean; else the slot is named."""

from datetime import UTC, date, datetime, timedelta

import pytest

from hpsteer.domain.market import PriceArea, Resolution, slots_of_day
from hpsteer.errors import FeedRejected
from hpsteer.sources.price_validation import PriceLimits, normalize_day
from hpsteer.sources.prices import RawPriceSeries

FETCHED = datetime(2024, 10, 26, 12, tzinfo=UTC)
AUTUMN = date(2024, 10, 27)  # 25 hours in Copenhagen


def series(
    points: list[tuple[datetime, float]],
    *,
    resolution: Resolution = Resolution.PT60M,
    currency: str = "EUR",
    unit: str = "MWh",
) -> RawPriceSeries:
    return RawPriceSeries(
        area=PriceArea.DK1,
        resolution=resolution,
        currency=currency,
        unit=unit,
        points=tuple(points),
        source="test",
    )


def full_day(day: date = AUTUMN, resolution: Resolution = Resolution.PT60M):
    return [
        (slot.start_at, 10.0 + i)
        for i, slot in enumerate(slots_of_day(PriceArea.DK1, day, resolution))
    ]


def test_a_complete_day_is_normalized_and_points_of_other_days_are_ignored():
    before = (datetime(2024, 10, 26, 21, tzinfo=UTC), 99.0)
    day = normalize_day(series([before, *full_day()]), AUTUMN, fetched_at=FETCHED)
    assert len(day.prices_eur_per_mwh) == 25
    assert day.prices_eur_per_mwh[0] == 10.0
    assert day.source == "test"


def test_kwh_prices_are_converted_and_the_original_unit_kept():
    points = [(at, price / 1000) for at, price in full_day()]
    day = normalize_day(series(points, unit="kWh"), AUTUMN, fetched_at=FETCHED)
    assert day.prices_eur_per_mwh[0] == pytest.approx(10.0)
    assert day.original_unit == "kWh"


def test_negative_prices_down_to_the_harmonised_minimum_are_accepted():
    points = full_day()
    points[3] = (points[3][0], -500.0)
    assert normalize_day(series(points), AUTUMN, fetched_at=FETCHED).prices_eur_per_mwh[3] == -500.0


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (
            lambda p: p[:-1],
            r"24 of 25 slots have a price; 1 missing, "
            r"the first slot 24 \(2024-10-27T22:00Z, 23:00 CET\)",
        ),
        (
            lambda p: [*p, p[5]],
            r"slot 5 \(2024-10-27T03:00Z, 04:00 CET\) has more than one price",
        ),
        (lambda p: [(p[0][0] + timedelta(minutes=30), 1.0), *p], "not on the 60-minute grid"),
        (lambda p: [(p[0][0], float("nan")), *p[1:]], "slot 0 .* has no finite price"),
        (lambda p: [(p[0][0], 4000.5), *p[1:]], r"price 4000.5 EUR/MWh is outside \[-500, 4000\]"),
        (lambda p: [(p[0][0], -500.01), *p[1:]], "outside"),
        (lambda p: [], "no price for any slot"),
    ],
    ids=["missing-last-hour", "duplicate", "misaligned", "nan", "above-max", "below-min", "empty"],
)
def test_a_flawed_day_is_refused_naming_the_slot(mutate, message):
    with pytest.raises(FeedRejected, match=message):
        normalize_day(series(mutate(full_day())), AUTUMN, fetched_at=FETCHED)


def test_the_second_of_two_identical_local_hours_is_a_slot_of_its_own():
    points = full_day()
    del points[3]  # 02:00-03:00 CET, the second of the two local 02:00 hours
    with pytest.raises(FeedRejected, match=r"slot 3 \(2024-10-27T01:00Z, 02:00 CET\)"):
        normalize_day(series(points), AUTUMN, fetched_at=FETCHED)


def test_a_day_of_95_quarter_hours_is_refused():
    day = date(2025, 11, 12)
    points = full_day(day, Resolution.PT15M)[:95]
    with pytest.raises(FeedRejected, match="95 of 96 slots"):
        normalize_day(series(points, resolution=Resolution.PT15M), day, fetched_at=FETCHED)


def test_other_currencies_and_units_are_refused_not_guessed():
    with pytest.raises(FeedRejected, match="'DKK', expected EUR"):
        normalize_day(series(full_day(), currency="DKK"), AUTUMN, fetched_at=FETCHED)
    with pytest.raises(FeedRejected, match="'GWh' is neither MWh nor kWh"):
        normalize_day(series(full_day(), unit="GWh"), AUTUMN, fetched_at=FETCHED)


def test_kwh_values_that_were_really_mwh_end_up_out_of_range():
    with pytest.raises(FeedRejected, match="outside"):
        normalize_day(series(full_day(), unit="kWh"), AUTUMN, fetched_at=FETCHED)


def test_limits_are_configurable():
    points = full_day()
    points[0] = (points[0][0], 4500.0)
    limits = PriceLimits(max_eur_per_mwh=5000)
    day = normalize_day(series(points), AUTUMN, fetched_at=FETCHED, limits=limits)
    assert day.prices_eur_per_mwh[0] == 4500.0
