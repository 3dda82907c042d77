"""When a newer telemetry sample is worth a document write (hpsteer.domain.telemetry)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from hpsteer.domain.actions import Mode
from hpsteer.domain.telemetry import (
    DECIDING_FIELDS,
    POLL_REFRESH,
    TelemetrySample,
    TelemetrySource,
    refresh_bound,
    shows_household_setting,
    worth_storing,
)

T0 = datetime(2025, 2, 24, 5, 0, tzinfo=UTC)
STORED = {
    "observed_mode": "max",
    "setpoint_offset_k": 2.0,
    "online": True,
    "changed_by_user": False,
    "room_setpoint_c": 21.0,
    "manufacturer": "viessmann",
    "indoor_temp_c": 21.0,
}


def sample(minutes_after: float, **fields: Any) -> TelemetrySample:
    values: dict[str, Any] = {
        "observed_mode": Mode.MAX,
        "setpoint_offset_k": 2.0,
        "online": True,
        "changed_by_user": False,
        "room_setpoint_c": 21.0,
        "manufacturer": "viessmann",
        "indoor_temp_c": 22.5,
        **fields,
    }
    return TelemetrySample(
        sample_id=f"s{minutes_after}",
        device_id="d1",
        observed_at=T0 + timedelta(minutes=minutes_after),
        source=TelemetrySource.WEBHOOK,
        **values,
    )


BOUND = timedelta(minutes=5)


def test_the_first_sample_is_always_worth_storing() -> None:
    assert worth_storing(sample(1), None, None, BOUND)


def test_new_temperatures_alone_wait_for_the_bound() -> None:
    assert not worth_storing(sample(4.9), STORED, T0, BOUND)
    assert worth_storing(sample(5), STORED, T0, BOUND)


def test_every_deciding_field_is_compared() -> None:
    changes = {
        "observed_mode": Mode.MIN,
        "setpoint_offset_k": 0.0,
        "online": False,
        "changed_by_user": None,
        "room_setpoint_c": 20.0,
        "manufacturer": "nibe_myuplink",
    }
    assert set(changes) == set(DECIDING_FIELDS)
    for name, value in changes.items():
        assert worth_storing(sample(1, **{name: value}), STORED, T0, BOUND), name


def test_a_field_the_sample_does_not_report_differs_from_a_stored_value() -> None:
    """None means not reported: the stored setting is no longer known to hold."""
    assert worth_storing(sample(1, room_setpoint_c=None), STORED, T0, BOUND)


def test_the_households_own_setting_is_always_worth_storing() -> None:
    by_user = {**STORED, "changed_by_user": True}
    assert worth_storing(sample(1, changed_by_user=True), by_user, T0, BOUND)
    unplaced = {**STORED, "observed_mode": None, "changed_by_user": None}
    assert worth_storing(sample(1, observed_mode=None, changed_by_user=None), unplaced, T0, BOUND)


@pytest.mark.parametrize(
    ("by_user", "mode", "offset", "shows"),
    [
        (True, Mode.MAX, 2.0, True),
        (None, None, 1.5, True),
        (None, Mode.MID, 0.0, False),
        (False, None, 1.5, False),
        (None, None, None, False),
    ],
)
def test_the_households_own_setting_is_what_the_manufacturer_says_or_none_of_our_modes(
    by_user: bool | None, mode: Mode | None, offset: float | None, shows: bool
) -> None:
    assert shows_household_setting(by_user, mode, offset) is shows


def test_polls_keep_half_an_hour_and_pushed_samples_a_quarter_interval() -> None:
    interval = timedelta(minutes=10)
    assert refresh_bound(TelemetrySource.POLL, interval) == POLL_REFRESH == timedelta(hours=1)
    assert refresh_bound(TelemetrySource.WEBHOOK, interval) == timedelta(minutes=2.5)
    assert refresh_bound(TelemetrySource.SIMULATION, timedelta(minutes=15)) == timedelta(
        minutes=3.75
    )
