"""Own control holds the setpoint; cheapest hours boosts in cheap hours, saves in dear ones."""

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from hpsteer.domain.actions import Mode
from hpsteer.errors import InvalidInput
from hpsteer.optimizer.baselines import CheapestHours, OwnControl, keep_wear_rules
from hpsteer.optimizer.problem import Planner, PlanningProblem, count_changes
from hpsteer.thermal import ARCHETYPES

STOCKHOLM = ZoneInfo("Europe/Stockholm")
LOCAL_MIDNIGHT = datetime(2023, 1, 9, tzinfo=STOCKHOLM).astimezone(UTC)
MIN, MID, MAX = Mode.MIN, Mode.MID, Mode.MAX


def problem(
    prices: list[float],
    *,
    start_at: datetime = LOCAL_MIDNIGHT,
    slot_hours: float = 1.0,
    current_mode: Mode = Mode.MID,
    min_dwell_slots: int = 1,
    max_changes_per_day: int = 48,
) -> PlanningProblem:
    n = len(prices)
    return PlanningProblem(
        plant=ARCHETYPES["renovated_radiators"].plant,
        start_at=start_at,
        slot_hours=slot_hours,
        prices_eur_per_mwh=np.array(prices, dtype=np.float64),
        outdoor_temp_c=np.zeros(n),
        solar_irradiance_w_per_m2=np.zeros(n),
        setpoint_c=21.0,
        comfort_min_c=20.0,
        comfort_max_c=23.0,
        initial_air_temp_c=21.0,
        initial_mass_temp_c=21.0,
        current_mode=current_mode,
        min_dwell_slots=min_dwell_slots,
        max_changes_per_day=max_changes_per_day,
    )


def violations(
    modes: tuple[Mode, ...], current: Mode, dwell: int, max_changes: int, window: int
) -> list[str]:
    """An independent reading of the wear rules (first and last runs exempt from dwell)."""
    found = []
    runs: list[tuple[Mode, int, int]] = []
    for index, mode in enumerate(modes):
        if runs and runs[-1][0] == mode:
            runs[-1] = (mode, runs[-1][1], runs[-1][2] + 1)
        else:
            runs.append((mode, index, 1))
    for k, (mode, start, length) in enumerate(runs[:-1]):
        if not (k == 0 and mode == current) and length < dwell:
            found.append(f"run at {start} lasts {length} < {dwell}")
    previous = current
    per_window: dict[int, int] = {}
    for index, mode in enumerate(modes):
        if mode != previous:
            per_window[index // window] = per_window.get(index // window, 0) + 1
        previous = mode
    found += [f"window {w}: {c} changes" for w, c in per_window.items() if c > max_changes]
    return found


def test_own_control_holds_the_setpoint_in_every_slot():
    planner = OwnControl()
    assert isinstance(planner, Planner)
    assert planner.name == "own_control"
    assert planner.plan(problem([10.0, 50.0, 30.0])) == (MID, MID, MID)


def test_cheapest_hours_boosts_the_cheapest_and_saves_in_the_dearest_hours_of_a_day():
    prices = [50.0] * 24
    for hour, price in {3: 10.0, 4: 11.0, 14: 12.0, 8: 90.0, 18: 95.0, 19: 91.0}.items():
        prices[hour] = price
    planner = CheapestHours(boost_hours=3, eco_hours=3, timezone=STOCKHOLM)
    modes = planner.plan(problem(prices))
    assert [h for h, m in enumerate(modes) if m == MAX] == [3, 4, 14]
    assert [h for h, m in enumerate(modes) if m == MIN] == [8, 18, 19]
    assert planner.name == "cheapest_hours"


def test_cheapest_hours_chooses_per_local_day_not_per_utc_day():
    # Two local days; day 2's cheap hours are dearer than anything of day 1 but still boosted.
    day1 = [float(p) for p in range(10, 34)]
    day2 = [float(p) for p in range(110, 134)]
    modes = CheapestHours(boost_hours=2, eco_hours=2, timezone=STOCKHOLM).plan(problem(day1 + day2))
    assert [i for i, m in enumerate(modes) if m == MAX] == [0, 1, 24, 25]
    assert [i for i, m in enumerate(modes) if m == MIN] == [22, 23, 46, 47]


def test_a_day_the_horizon_cuts_gets_counts_scaled_by_its_share_of_the_day():
    # Re-planning at 13:00 local: 11 hours of today (3 * 11/24 = 1.4 -> 1), then a full day.
    start = datetime(2023, 1, 9, 13, tzinfo=STOCKHOLM).astimezone(UTC)
    prices = [float(p) for p in range(11)] + [float(p) for p in range(24)]
    modes = CheapestHours(boost_hours=3, eco_hours=3, timezone=STOCKHOLM).plan(
        problem(prices, start_at=start)
    )
    assert [i for i, m in enumerate(modes[:11]) if m != MID] == [0, 10]
    assert modes[11:14] == (MAX, MAX, MAX)
    assert modes[-3:] == (MIN, MIN, MIN)


def test_quarter_hour_slots_boost_four_slots_per_hour():
    prices = [float(p) for p in range(96)]
    modes = CheapestHours(boost_hours=1, eco_hours=0.5, timezone=UTC).plan(
        problem(prices, start_at=datetime(2025, 11, 3, tzinfo=UTC), slot_hours=0.25)
    )
    assert modes.count(MAX) == 4
    assert modes.count(MIN) == 2


def test_a_daylight_saving_day_of_23_hours_is_a_whole_day():
    spring = datetime(2023, 3, 26, tzinfo=STOCKHOLM).astimezone(UTC)
    modes = CheapestHours(boost_hours=3, eco_hours=3, timezone=STOCKHOLM).plan(
        problem([float(p) for p in range(23)], start_at=spring)
    )
    assert modes.count(MAX) == modes.count(MIN) == 3


def test_cheapest_hours_refuses_more_special_hours_than_a_day_has():
    with pytest.raises(InvalidInput):
        CheapestHours(boost_hours=20, eco_hours=10)


def test_cheapest_hours_keeps_the_problems_dwell_and_change_rules():
    rng = np.random.default_rng(3)
    prices = rng.uniform(0, 100, 48).tolist()
    p = problem(prices, min_dwell_slots=3, max_changes_per_day=4, current_mode=MIN)
    modes = CheapestHours(timezone=STOCKHOLM).plan(p)
    assert violations(modes, MIN, 3, 4, 24) == []
    assert MAX in modes
    assert MIN in modes


def test_repair_holds_a_new_mode_for_the_minimum_dwell_whatever_the_wish():
    wish = (MID, MAX, MID, MIN, MIN, MID, MAX, MID)
    repaired = keep_wear_rules(
        wish, current_mode=MID, min_dwell_slots=2, max_changes_per_day=10, slots_per_window=24
    )
    # MAX at 1 holds through 2 (the wished MID there is lost); MIN at 3-4 as wished; MID at 5
    # holds through 6 (the wished MAX there is lost).
    assert repaired == (MID, MAX, MAX, MIN, MIN, MID, MID, MID)


def test_repair_lets_the_first_run_continue_the_current_mode_and_the_last_run_end_short():
    wish = (MAX, MID, MID, MID, MIN)
    repaired = keep_wear_rules(
        wish, current_mode=MAX, min_dwell_slots=3, max_changes_per_day=10, slots_per_window=24
    )
    assert repaired == wish


def test_repair_merges_the_shortest_runs_until_a_window_has_few_enough_changes():
    wish = (MID, MAX, MAX, MAX, MID, MIN, MID, MID, MAX, MAX, MID)
    repaired = keep_wear_rules(
        wish, current_mode=MID, min_dwell_slots=1, max_changes_per_day=4, slots_per_window=24
    )
    assert repaired == (MID, MAX, MAX, MAX, MID, MID, MID, MID, MAX, MAX, MID)


def test_repair_with_no_changes_allowed_stays_in_the_current_mode():
    repaired = keep_wear_rules(
        (MAX, MIN, MID),
        current_mode=MIN,
        min_dwell_slots=1,
        max_changes_per_day=0,
        slots_per_window=24,
    )
    assert repaired == (MIN, MIN, MIN)


def test_repair_counts_changes_per_window_from_the_horizons_start():
    wish = (MID, MAX) * 4
    repaired = keep_wear_rules(
        wish, current_mode=MID, min_dwell_slots=1, max_changes_per_day=2, slots_per_window=4
    )
    assert violations(repaired, MID, 1, 2, 4) == []
    assert 0 < count_changes(repaired, MID) <= 4


def test_repair_refuses_rules_that_make_no_sense():
    with pytest.raises(InvalidInput):
        keep_wear_rules(
            (MID,), current_mode=MID, min_dwell_slots=0, max_changes_per_day=1, slots_per_window=24
        )


schedules = st.lists(st.sampled_from(list(Mode)), min_size=1, max_size=60)


@given(
    wish=schedules,
    current=st.sampled_from(list(Mode)),
    dwell=st.integers(1, 5),
    max_changes=st.integers(0, 8),
    window=st.integers(1, 30),
)
def test_repair_always_keeps_the_rules_never_adds_changes_and_is_idempotent(
    wish, current, dwell, max_changes, window
):
    rules = {
        "min_dwell_slots": dwell,
        "max_changes_per_day": max_changes,
        "slots_per_window": window,
    }
    repaired = keep_wear_rules(wish, current_mode=current, **rules)
    assert len(repaired) == len(wish)
    assert violations(repaired, current, dwell, max_changes, window) == []
    assert count_changes(repaired, current) <= count_changes(wish, current)
    assert keep_wear_rules(repaired, current_mode=current, **rules) == repaired


def test_a_schedule_that_keeps_the_rules_is_left_alone():
    wish = (MID, MID, MAX, MAX, MAX, MID, MID, MIN, MIN, MIN)
    assert violations(wish, MID, 2, 4, 24) == []
    assert (
        keep_wear_rules(
            wish, current_mode=MID, min_dwell_slots=2, max_changes_per_day=4, slots_per_window=24
        )
        == wish
    )


def test_the_horizon_start_does_not_need_to_be_local_midnight():
    start = LOCAL_MIDNIGHT + timedelta(hours=5)
    modes = CheapestHours(boost_hours=1, eco_hours=1, timezone=STOCKHOLM).plan(
        problem([float(p) for p in range(19)], start_at=start)
    )
    assert modes.count(MAX) == modes.count(MIN) == 1  # 19/24 of one hour rounds to 1
