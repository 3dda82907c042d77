"""Prices per delivery day and plans per device."""

from datetime import UTC, date, datetime, timedelta

import pydantic
import pytest

from hpsteer.domain.actions import GenericAction, Mode
from hpsteer.domain.market import PriceArea, Resolution
from hpsteer.domain.plans import Plan, PlanSlot, plan_id_for
from hpsteer.domain.prices import MarketDayPrices

FETCHED = datetime(2024, 10, 26, 12, tzinfo=UTC)


def day_prices(day: date, count: int, resolution: Resolution = Resolution.PT60M) -> MarketDayPrices:
    return MarketDayPrices(
        area=PriceArea.SE3,
        market_date=day,
        resolution=resolution,
        prices_eur_per_mwh=tuple(float(i) - 5 for i in range(count)),
        source="test",
        fetched_at=FETCHED,
    )


def test_a_25_hour_day_needs_25_prices_and_negative_prices_are_fine():
    prices = day_prices(date(2024, 10, 27), 25)
    assert prices.prices_eur_per_mwh[0] == -5.0
    assert prices.price_at(datetime(2024, 10, 27, 1, 30, tzinfo=UTC)) == -2.0
    with pytest.raises(pydantic.ValidationError, match="has 25 slots, got 24 prices"):
        day_prices(date(2024, 10, 27), 24)


def test_a_quarter_hour_spring_day_has_92_prices():
    assert len(day_prices(date(2026, 3, 29), 92, Resolution.PT15M).slots()) == 92
    with pytest.raises(pydantic.ValidationError, match="has 92 slots, got 96"):
        day_prices(date(2026, 3, 29), 96, Resolution.PT15M)


def test_prices_must_be_finite():
    values = [1.0] * 24
    values[7] = float("nan")
    with pytest.raises(pydantic.ValidationError, match="slot 7: price nan"):
        MarketDayPrices(
            area=PriceArea.SE3,
            market_date=date(2024, 1, 15),
            resolution=Resolution.PT60M,
            prices_eur_per_mwh=tuple(values),
            source="test",
            fetched_at=FETCHED,
        )


def test_the_content_hash_names_the_prices_not_the_fetch():
    first = day_prices(date(2024, 1, 15), 24)
    again = first.model_copy(update={"fetched_at": FETCHED + timedelta(hours=1), "source": "other"})
    changed = day_prices(date(2024, 1, 15), 24).model_copy(
        update={"prices_eur_per_mwh": (0.0,) * 24}
    )
    assert first.content_hash == again.content_hash
    assert first.content_hash != changed.content_hash


START = datetime(2024, 1, 15, 6, tzinfo=UTC)


def a_plan(modes: list[Mode]) -> Plan:
    slots = tuple(
        PlanSlot(
            start_at=START + timedelta(hours=i),
            end_at=START + timedelta(hours=i + 1),
            mode=mode,
            price_eur_per_mwh=50.0,
            expected_power_kw=1.0,
            predicted_indoor_temp_c=21.0,
        )
        for i, mode in enumerate(modes)
    )
    return Plan(
        plan_id="p1",
        device_id="d1",
        price_area=PriceArea.SE3,
        resolution=Resolution.PT60M,
        created_at=START,
        slots=slots,
        expected_cost_eur=1.0,
        baseline_cost_eur=1.2,
    )


def test_the_outbox_holds_one_entry_per_change_of_mode():
    plan = a_plan([Mode.MAX, Mode.MAX, Mode.MIN, Mode.MIN, Mode.MID])
    changes = plan.mode_changes()
    assert [(c.slot_index, c.action) for c in changes] == [
        (0, GenericAction.SET_MODE_MAX),
        (2, GenericAction.SET_MODE_MIN),
        (4, GenericAction.SET_MODE_MID),
    ]
    assert changes[1].at == START + timedelta(hours=2)
    assert [c.slot_index for c in plan.mode_changes(current_mode=Mode.MAX)] == [2, 4]


def test_a_plan_refuses_gaps_between_slots():
    plan = a_plan([Mode.MID, Mode.MID])
    broken = (
        plan.slots[0],
        plan.slots[1].model_copy(
            update={"start_at": START + timedelta(hours=2), "end_at": START + timedelta(hours=3)}
        ),
    )
    with pytest.raises(pydantic.ValidationError, match="does not start where slot 0 ends"):
        Plan.model_validate({**plan.model_dump(), "slots": broken})


def test_plan_ids_are_deterministic_so_a_redelivered_request_rewrites_the_same_plan():
    assert plan_id_for("d1", START, "prices:abc") == plan_id_for("d1", START, "prices:abc")
    assert plan_id_for("d1", START, "prices:abc") != plan_id_for("d1", START, "prices:abd")
    assert plan_id_for("d1", START, "x").startswith("20240115T0600Z-")
