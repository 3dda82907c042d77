"""The market time grid: delivery days in local time, slots in UTC, daylight-saving days."""

import itertools
from datetime import UTC, date, datetime, timedelta

import pytest

from hpsteer.domain.market import (
    PriceArea,
    Resolution,
    delivery_day_bounds,
    market_date_of,
    slot_count,
    slot_index,
    slots_between,
    slots_of_day,
)
from hpsteer.errors import InvalidInput, NaiveDatetime


@pytest.mark.parametrize(
    ("area", "day", "resolution", "count"),
    [
        (PriceArea.SE3, date(2024, 1, 15), Resolution.PT60M, 24),
        (PriceArea.SE3, date(2024, 3, 31), Resolution.PT60M, 23),
        (PriceArea.SE3, date(2024, 10, 27), Resolution.PT60M, 25),
        (PriceArea.DK1, date(2025, 10, 26), Resolution.PT15M, 100),
        (PriceArea.DK1, date(2026, 3, 29), Resolution.PT15M, 92),
        (PriceArea.DK1, date(2025, 11, 12), Resolution.PT15M, 96),
        (PriceArea.FI, date(2024, 3, 31), Resolution.PT60M, 23),
    ],
)
def test_a_delivery_day_has_as_many_slots_as_its_local_hours(area, day, resolution, count):
    assert slot_count(area, day, resolution) == count
    assert len(slots_of_day(area, day, resolution)) == count


def test_a_delivery_day_runs_from_local_midnight_to_local_midnight_in_utc():
    start, end = delivery_day_bounds(PriceArea.SE3, date(2024, 1, 15))
    assert start == datetime(2024, 1, 14, 23, tzinfo=UTC)
    assert end == datetime(2024, 1, 15, 23, tzinfo=UTC)
    summer_start, _ = delivery_day_bounds(PriceArea.SE3, date(2024, 7, 1))
    assert summer_start == datetime(2024, 6, 30, 22, tzinfo=UTC)
    helsinki_start, _ = delivery_day_bounds(PriceArea.FI, date(2024, 1, 15))
    assert helsinki_start == datetime(2024, 1, 14, 22, tzinfo=UTC)


def test_slots_on_the_autumn_day_are_contiguous_and_utc():
    slots = slots_of_day(PriceArea.DK1, date(2024, 10, 27), Resolution.PT60M)
    assert slots[0].start_at == datetime(2024, 10, 26, 22, tzinfo=UTC)
    assert slots[-1].end_at == datetime(2024, 10, 27, 23, tzinfo=UTC)
    for before, after in itertools.pairwise(slots):
        assert before.end_at == after.start_at
        assert after.start_at.tzinfo is UTC
    # The repeated local hour 02:00-03:00 is two distinct UTC slots.
    assert slots[2].start_at == datetime(2024, 10, 27, 0, tzinfo=UTC)
    assert slots[3].start_at == datetime(2024, 10, 27, 1, tzinfo=UTC)


def test_an_instant_belongs_to_the_local_delivery_day():
    assert market_date_of(PriceArea.SE3, datetime(2024, 1, 14, 23, 30, tzinfo=UTC)) == date(
        2024, 1, 15
    )
    assert market_date_of(PriceArea.SE3, datetime(2024, 1, 14, 22, 59, tzinfo=UTC)) == date(
        2024, 1, 14
    )


def test_slot_index_counts_from_local_midnight_and_refuses_other_days():
    day = date(2024, 3, 31)
    assert (
        slot_index(PriceArea.SE3, day, Resolution.PT60M, datetime(2024, 3, 31, 1, tzinfo=UTC)) == 2
    )
    assert (
        slot_index(PriceArea.SE3, day, Resolution.PT15M, datetime(2024, 3, 31, 21, 45, tzinfo=UTC))
        == 91
    )
    with pytest.raises(InvalidInput, match="outside delivery day"):
        slot_index(PriceArea.SE3, day, Resolution.PT60M, datetime(2024, 3, 31, 22, tzinfo=UTC))


def test_naive_datetimes_are_refused_everywhere_in_the_grid():
    with pytest.raises(NaiveDatetime):
        market_date_of(PriceArea.SE3, datetime(2024, 1, 1, 12))  # noqa: DTZ001 - the point
    with pytest.raises(NaiveDatetime):
        slots_between(
            datetime(2024, 1, 1),  # noqa: DTZ001 - the point of the test
            datetime(2024, 1, 2, tzinfo=UTC),
            Resolution.PT60M,
        )


def test_slots_between_refuses_misaligned_or_empty_intervals():
    start = datetime(2024, 1, 1, tzinfo=UTC)
    with pytest.raises(InvalidInput, match="boundary"):
        slots_between(
            start + timedelta(minutes=10), start + timedelta(hours=1, minutes=10), Resolution.PT15M
        )
    with pytest.raises(InvalidInput, match="whole number"):
        slots_between(start, start + timedelta(minutes=50), Resolution.PT15M)
    with pytest.raises(InvalidInput, match="empty"):
        slots_between(start, start, Resolution.PT60M)


def test_unknown_price_areas_and_resolutions_are_named_in_the_error():
    with pytest.raises(InvalidInput, match="unknown price area 'SE9'"):
        PriceArea.parse("SE9")
    assert PriceArea.parse("DE-LU") is PriceArea.DE_LU
    assert Resolution.parse("PT15M") is Resolution.PT15M
    with pytest.raises(InvalidInput, match="PT30M"):
        Resolution.parse("PT30M")
