"""Services ask a clock for the time; the simulated one moves only when told, never backwards."""

from datetime import UTC, datetime, timedelta, timezone

import pytest

from hpsteer.errors import NaiveDatetime
from hpsteer.ports.clock import Clock, SimulatedClock, SystemClock

T0 = datetime(2024, 3, 31, 0, 30, tzinfo=UTC)


def test_the_system_clock_tells_aware_utc_time():
    now = SystemClock().now()
    assert now.tzinfo is UTC
    assert isinstance(SystemClock(), Clock)


def test_a_simulated_clock_stands_still_until_advanced():
    clock = SimulatedClock(T0)
    assert clock.now() == clock.now() == T0
    assert clock.advance(timedelta(minutes=90)) == T0 + timedelta(minutes=90)
    assert clock.now() == T0 + timedelta(minutes=90)


def test_a_simulated_clock_starts_in_utc_whatever_zone_it_is_given():
    cest = timezone(timedelta(hours=2))
    clock = SimulatedClock(datetime(2024, 7, 1, 8, tzinfo=cest))
    assert clock.now() == datetime(2024, 7, 1, 6, tzinfo=UTC)
    assert clock.now().tzinfo is UTC


def test_a_simulated_clock_never_goes_backwards():
    clock = SimulatedClock(T0)
    with pytest.raises(ValueError, match="backwards"):
        clock.advance(timedelta(seconds=-1))
    assert clock.advance_to(T0 - timedelta(hours=1)) == T0
    assert clock.advance_to(T0 + timedelta(hours=1)) == T0 + timedelta(hours=1)


def test_a_simulated_clock_refuses_naive_times():
    with pytest.raises(NaiveDatetime):
        SimulatedClock(datetime(2024, 1, 1))  # noqa: DTZ001 - the point of the test
    with pytest.raises(NaiveDatetime):
        SimulatedClock(T0).advance_to(datetime(2024, 1, 2))  # noqa: DTZ001 - the point
