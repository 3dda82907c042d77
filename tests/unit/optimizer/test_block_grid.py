"""The planner's block grid anchored to absolute time (``anchored_blocks``, not yet the default), so
successive plans share boundaries; and counted from each plan's start, as by default."""

from __future__ import annotations

import itertools
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from hpsteer.optimizer.planner import block_starts
from hpsteer.optimizer.problem import PlanningProblem
from hpsteer.thermal import RENOVATED_RADIATORS
from tests.unit.optimizer.test_planner import problem_for

BLOCK, TAIL = 4, 8


def plan_at(start: datetime, slot_hours: float, hours: int = 48) -> PlanningProblem:
    problem = problem_for(
        RENOVATED_RADIATORS.plant, [50.0] * round(hours / slot_hours), slot_hours=slot_hours
    )
    return replace(problem, start_at=start)


def boundaries(problem: PlanningProblem) -> list[datetime]:
    """The instants at which a block starts, the plan's own start first."""
    return [problem.slot_start(t) for t in block_starts(problem, BLOCK, TAIL, anchored=True)]


def within(instants: list[datetime], after: datetime, before: datetime) -> set[datetime]:
    return {i for i in instants if after < i < before}


@pytest.mark.parametrize("slot_hours", [0.25, 1.0])
@pytest.mark.parametrize(("hour", "minute"), [(0, 0), (1, 0), (10, 0), (23, 0), (10, 30), (9, 45)])
def test_two_plans_started_3_h_apart_share_their_block_boundaries_after_the_first(
    slot_hours: float, hour: int, minute: int
) -> None:
    early_start = datetime(2023, 1, 9, hour, minute, tzinfo=UTC)
    late_start = early_start + timedelta(hours=3)
    early, late = plan_at(early_start, slot_hours), plan_at(late_start, slot_hours)
    early_end, day = early_start + timedelta(hours=48), timedelta(hours=24)

    # Both plans in their first day (fine blocks): the same boundaries.
    assert within(boundaries(late), late_start, early_start + day) == within(
        boundaries(early), late_start, early_start + day
    )
    # Both plans in their tail (coarse blocks): the same boundaries.
    assert within(boundaries(late), late_start + day, early_end) == within(
        boundaries(early), late_start + day, early_end
    )
    # And those shared boundaries are really there (the first day has more than one block).
    assert len(within(boundaries(late), late_start, early_start + day)) >= 2


@pytest.mark.parametrize(
    ("start", "slot_hours"),
    [
        (datetime(2023, 1, 9, 10, tzinfo=UTC), 0.25),
        (datetime(2023, 1, 9, 10, 15, tzinfo=UTC), 0.25),
        (datetime(2023, 1, 9, 13, tzinfo=UTC), 1.0),
        (datetime(2023, 1, 9, 11, 45, tzinfo=UTC), 0.25),
        # A local midnight on the spring DST day (a 23 h local day): the grid is UTC.
        (datetime(2023, 3, 26, tzinfo=ZoneInfo("Europe/Stockholm")), 0.25),
        (datetime(2023, 10, 29, 1, tzinfo=ZoneInfo("Europe/Stockholm")), 1.0),
    ],
)
def test_blocks_start_at_the_plan_start_then_on_the_absolute_grid_or_a_24_h_window(
    start: datetime, slot_hours: float
) -> None:
    problem = plan_at(start, slot_hours)
    starts = block_starts(problem, BLOCK, TAIL, anchored=True)
    per_day = problem.slots_per_day()
    epoch = datetime(1970, 1, 1, tzinfo=UTC)

    assert starts[0] == 0
    assert all(a < b for a, b in itertools.pairwise(starts))
    assert set(range(0, problem.slots, per_day)) <= set(starts)  # no block straddles a window
    for previous, t in itertools.pairwise(starts):
        length = BLOCK if previous < per_day else TAIL
        assert t - previous <= length
        absolute_slot = (problem.slot_start(t) - epoch) / timedelta(hours=slot_hours)
        assert t % per_day == 0 or absolute_slot % length == 0, (t, problem.slot_start(t))


def test_a_plan_started_off_the_slot_grid_ends_its_first_block_at_the_slot_nearest_the_hour() -> (
    None
):
    # Slots at 10:10, 10:25, 10:40, 10:55, 11:10: 10:55 is the slot start nearest 11:00.
    problem = plan_at(datetime(2023, 1, 9, 10, 10, tzinfo=UTC), 0.25)
    starts = block_starts(problem, BLOCK, TAIL, anchored=True)

    assert starts[:3] == [0, 3, 7]
    assert problem.slot_start(3) == datetime(2023, 1, 9, 10, 55, tzinfo=UTC)


def test_a_plan_started_on_the_grid_has_full_blocks_and_a_coarser_tail() -> None:
    problem = plan_at(datetime(2023, 1, 9, 8, tzinfo=UTC), 0.25)  # 8:00 and 8:00 + 24 h on grid

    assert block_starts(problem, BLOCK, TAIL, anchored=True) == [
        *range(0, 96, BLOCK),
        *range(96, 192, TAIL),
    ]


def test_by_default_blocks_are_counted_from_the_plan_start() -> None:
    problem = plan_at(datetime(2024, 1, 15, 10, 30, tzinfo=UTC), 1.0)
    assert block_starts(problem, BLOCK, TAIL) == [*range(0, 24, BLOCK), *range(24, 48, TAIL)]
