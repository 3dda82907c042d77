"""The plan's predicted indoor temperatures on the device, and when a measurement off them is a
reason to re-plan (MPC's measured-state trigger)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from hpsteer.domain.plan_track import IndoorTrack, PlanDrift, drift_replan_due

T0 = datetime(2025, 2, 24, 6, tzinfo=UTC)
HOUR = timedelta(hours=1)
TRACK = IndoorTrack.of_slots(T0, HOUR, [21.0, 22.0, 20.0])


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


@pytest.mark.parametrize(
    ("minutes", "expected"),
    [
        (0, 21.0),  # before the first slot's middle: that slot's mean
        (30, 21.0),  # a slot's middle: its mean
        (60, 21.5),  # halfway between two middles
        (105, 21.5),  # a quarter of the way from 22 towards 20
        (170, 20.0),  # after the last middle
        (179.9, 20.0),
    ],
)
def test_the_expectation_is_each_slots_mean_at_its_middle_interpolated_between(
    minutes: float, expected: float
) -> None:
    assert TRACK.expected_at(at(minutes)) == pytest.approx(expected)


@pytest.mark.parametrize("minutes", [-1, 180, 600])
def test_outside_the_plans_period_there_is_no_expectation(minutes: float) -> None:
    assert TRACK.expected_at(at(minutes)) is None


def test_a_track_survives_its_document_and_a_broken_one_is_no_track() -> None:
    assert IndoorTrack.from_document(TRACK.to_document()) == TRACK
    quarter = IndoorTrack.of_slots(T0, timedelta(minutes=15), [20.5] * 192)
    assert IndoorTrack.from_document(quarter.to_document()) == quarter
    for broken in (
        None,
        "21.0",
        {"start_at": "2025-02-24T06:00:00Z", "step_minutes": 60, "indoor_c": [21.0]},
        {"start_at": T0, "step_minutes": 0, "indoor_c": [21.0]},
        {"start_at": T0, "step_minutes": 60, "indoor_c": []},
        {"start_at": T0, "step_minutes": 60, "indoor_c": [21.0, "warm"]},
        {"start_at": T0, "step_minutes": 60, "indoor_c": [True]},
    ):
        assert IndoorTrack.from_document(broken) is None, broken


def test_a_track_rounds_its_figures_to_hundredths_so_the_document_stays_small() -> None:
    assert IndoorTrack.of_slots(T0, HOUR, [21.23456]).indoor_c == (21.23,)


def device(**fields: Any) -> dict[str, Any]:
    return {
        "steering_enabled": True,
        "current_plan_id": "plan-a",
        "current_plan_track": TRACK.to_document(),
        **fields,
    }


def due(document: dict[str, Any], measured: float | None, minutes: float) -> PlanDrift | None:
    return drift_replan_due(document, measured, at(minutes), band_k=0.5, cooldown=HOUR)


def test_a_measurement_off_the_plan_by_more_than_the_band_is_a_drift_to_replan_for() -> None:
    drift = due(device(), 20.3, 30)  # the plan expects 21.0

    assert drift == PlanDrift("plan-a", at(30), 20.3, 21.0)
    assert drift.deviation_k == pytest.approx(-0.7)
    assert "plan-a" in drift.reason()
    assert "-0.7 K" in drift.reason()


@pytest.mark.parametrize("measured", [20.5, 21.0, 21.5])
def test_a_measurement_within_the_band_is_no_drift(measured: float) -> None:
    assert due(device(), measured, 30) is None


def test_warmer_than_planned_is_a_drift_too() -> None:
    assert due(device(), 21.6, 30) is not None


@pytest.mark.parametrize(
    "document",
    [
        device(steering_enabled=False),
        device(override_until=at(120)),  # the household's own setting: not the plan's to predict
        device(current_plan_id=None),
        device(current_plan_track=None),
    ],
)
def test_no_replan_is_asked_where_the_plan_does_not_steer_the_home(
    document: dict[str, Any],
) -> None:
    assert due(document, 19.0, 30) is None


def test_a_past_override_does_not_stop_the_trigger() -> None:
    assert due(device(override_until=at(0)), 19.0, 30) is not None


def test_no_measurement_of_the_indoor_temperature_is_no_drift() -> None:
    assert due(device(), None, 30) is None


def test_one_replan_is_asked_per_plan_until_the_cooldown_has_passed() -> None:
    asked = device(drift_replan=PlanDrift("plan-a", at(30), 20.0, 21.0).to_document())

    assert due(asked, 19.5, 60) is None
    assert due(asked, 19.5, 89) is None
    assert due(asked, 19.5, 90) is not None  # the re-plan never came: ask again


def test_a_replan_asked_for_an_earlier_plan_does_not_hold_back_the_current_one() -> None:
    asked = device(drift_replan=PlanDrift("plan-old", at(29), 20.0, 21.0).to_document())

    assert due(asked, 19.5, 30) is not None
