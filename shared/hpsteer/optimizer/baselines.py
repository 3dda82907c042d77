"""The two schedules every planner is measured against, and the wear repair they share.

- :class:`OwnControl` ("own_control"): the heat pump's own control, ``mid`` (the comfort setpoint)
  in every slot. It is the baseline every saving is counted from.
- :class:`CheapestHours` ("cheapest_hours"): the heuristic people configure by hand. Per local
  day of the horizon: ``max`` in the day's cheapest ``boost_hours``, ``min`` in its most expensive
  ``eco_hours``, ``mid`` otherwise; then :func:`keep_wear_rules` makes it keep the problem's
  dwell and daily-change rules.

Rules of :class:`CheapestHours`, exactly:

1. Slots are grouped by the local date (``timezone``) of their start.
2. A day wholly inside the horizon gets ``boost_hours / slot_hours`` boost slots and
   ``eco_hours / slot_hours`` eco slots (rounded half up). A day the horizon cuts (re-planning at
   13:00 sees 11 hours of today) gets those counts scaled by the share of the day's hours it
   holds, rounded half up, so re-planning mid-day does not boost a whole day's worth again.
3. Boost slots are the cheapest (ties: the earlier slot), eco slots the most expensive of the
   rest (ties: the earlier slot).

Defaults (3 boost hours, 5 eco hours) were picked on SE3 and SE4 2023 only (renovated radiator
house, 21-day backtests from 2023-01-09 SE3, 2023-02-06 SE4, 2023-11-06 SE3; 3/3, 3/5, 4/6, 2/4
tried): 3/5 saved 3.7-5.4 % on spot cost with the home 0.04-0.10 K warmer than under own control
and at most 0.05 K·h a day below the band; 4/6 saved about the same but ran 0.34 K·h a day below
the band in November, 3/3 saved half as much in a warmer home, 2/4 as much in a slightly colder
one. DK1 2024 was not looked at.

Rules of :func:`keep_wear_rules` (a pure function; it never lengthens a change count):

1. Dwell, by holding forward: when the schedule changes mode, the new mode is held for
   ``min_dwell_slots`` slots whatever the wish was, then the wish is followed again. The first
   run continues ``current_mode`` and is exempt; so is the last run (it may continue after the
   horizon).
2. Changes per 24 h window (windows of ``slots_per_window`` slots from the horizon's start, as
   :mod:`.problem` counts them): while a window holds more than ``max_changes_per_day`` changes,
   the shortest run that starts with a change in that window takes the mode of the run before it
   (``current_mode`` for the first run). Ties go first to a run whose neighbours share a mode
   (merging it removes two changes: a lone eco hour between two normal ones goes, rather than a
   boost stretching over it), then to the earliest. Merging only lengthens runs, so
   rule 1 still holds afterwards.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, tzinfo

import numpy as np

from hpsteer.domain.actions import Mode
from hpsteer.errors import InvalidInput
from hpsteer.optimizer.problem import PlanningProblem

__all__ = ["CheapestHours", "OwnControl", "keep_wear_rules"]


class OwnControl:
    """The heat pump's own control: ``mid`` throughout (the setpoint, no offset)."""

    @property
    def name(self) -> str:
        return "own_control"

    def plan(self, problem: PlanningProblem) -> tuple[Mode, ...]:
        return (Mode.MID,) * problem.slots


def _round_half_up(value: float) -> int:
    return math.floor(value + 0.5)


def _day_hours(day: date, timezone: tzinfo) -> float:
    start = datetime(day.year, day.month, day.day, tzinfo=timezone)
    nxt = day + timedelta(days=1)
    end = datetime(nxt.year, nxt.month, nxt.day, tzinfo=timezone)
    return (end.astimezone(UTC) - start.astimezone(UTC)).total_seconds() / 3600.0


@dataclass(frozen=True, slots=True)
class CheapestHours:
    """``max`` in each local day's cheapest hours, ``min`` in its dearest (module docstring)."""

    boost_hours: float = 3.0
    eco_hours: float = 5.0
    timezone: tzinfo = UTC

    def __post_init__(self) -> None:
        if self.boost_hours < 0 or self.eco_hours < 0:
            raise InvalidInput("boost_hours and eco_hours must be >= 0")
        if self.boost_hours + self.eco_hours > 24:
            raise InvalidInput("boost_hours + eco_hours cannot exceed a day")

    @property
    def name(self) -> str:
        return "cheapest_hours"

    def wish(self, problem: PlanningProblem) -> tuple[Mode, ...]:
        """The schedule before the wear rules (rules 1-3 of the module docstring)."""
        prices = np.asarray(problem.prices_eur_per_mwh, dtype=np.float64)
        days = [problem.slot_start(i).astimezone(self.timezone).date() for i in range(len(prices))]
        modes = [Mode.MID] * len(prices)
        for day in dict.fromkeys(days):
            index = np.array([i for i, d in enumerate(days) if d == day])
            share = min(1.0, len(index) * problem.slot_hours / _day_hours(day, self.timezone))
            boost = min(len(index), _round_half_up(self.boost_hours / problem.slot_hours * share))
            eco = min(
                len(index) - boost, _round_half_up(self.eco_hours / problem.slot_hours * share)
            )
            day_prices = prices[index]
            cheap_first = index[np.argsort(day_prices, kind="stable")]
            dear_first = index[np.argsort(-day_prices, kind="stable")]
            boosted = set(cheap_first[:boost].tolist())
            for i in boosted:
                modes[i] = Mode.MAX
            for i in [j for j in dear_first.tolist() if j not in boosted][:eco]:
                modes[i] = Mode.MIN
        return tuple(modes)

    def plan(self, problem: PlanningProblem) -> tuple[Mode, ...]:
        return keep_wear_rules(
            self.wish(problem),
            current_mode=problem.current_mode,
            min_dwell_slots=problem.min_dwell_slots,
            max_changes_per_day=problem.max_changes_per_day,
            slots_per_window=problem.slots_per_day(),
        )


def _hold_forward(modes: Sequence[Mode], current_mode: Mode, min_dwell_slots: int) -> list[Mode]:
    out: list[Mode] = []
    previous, hold = current_mode, 0
    for mode in modes:
        if hold > 0:
            hold -= 1
        elif mode != previous:
            previous, hold = mode, min_dwell_slots - 1
        out.append(previous)
    return out


@dataclass(slots=True)
class _Run:
    mode: Mode
    start: int
    length: int


def _runs(modes: Sequence[Mode]) -> list[_Run]:
    runs: list[_Run] = []
    for index, mode in enumerate(modes):
        if runs and runs[-1].mode == mode:
            runs[-1].length += 1
        else:
            runs.append(_Run(mode, index, 1))
    return runs


def keep_wear_rules(
    modes: Sequence[Mode],
    *,
    current_mode: Mode,
    min_dwell_slots: int,
    max_changes_per_day: int,
    slots_per_window: int,
) -> tuple[Mode, ...]:
    """``modes`` changed only as the rules of the module docstring need, to keep the wear rules."""
    if min_dwell_slots < 1 or max_changes_per_day < 0 or slots_per_window < 1:
        raise InvalidInput("min_dwell_slots >= 1, max_changes_per_day >= 0, slots_per_window >= 1")
    held = _hold_forward(modes, current_mode, min_dwell_slots)
    while True:
        runs = _runs(held)
        changing = [(k, run) for k, run in enumerate(runs) if k > 0 or run.mode != current_mode]
        per_window: dict[int, list[tuple[int, _Run]]] = {}
        for k, run in changing:
            per_window.setdefault(run.start // slots_per_window, []).append((k, run))
        crowded = [w for w in sorted(per_window) if len(per_window[w]) > max_changes_per_day]
        if not crowded:
            return tuple(held)

        def merge_order(pair: tuple[int, _Run], runs: list[_Run] = runs) -> tuple[int, int, int]:
            k, run = pair
            before = runs[k - 1].mode if k > 0 else current_mode
            flanked = k + 1 < len(runs) and runs[k + 1].mode == before
            return (run.length, 0 if flanked else 1, run.start)

        k, run = min(per_window[crowded[0]], key=merge_order)
        before = runs[k - 1].mode if k > 0 else current_mode
        held[run.start : run.start + run.length] = [before] * run.length
