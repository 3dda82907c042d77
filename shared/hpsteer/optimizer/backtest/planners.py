"""Planners a backtest can run, by name, imported only when asked for.

``ortools`` is :class:`hpsteer.optimizer.planner.OrToolsPlanner` (built with its defaults),
``cheapest_hours`` :class:`~hpsteer.optimizer.baselines.CheapestHours` in the area's local time,
``own_control`` :class:`~hpsteer.optimizer.baselines.OwnControl`. An unknown name, or a planner
whose module cannot be imported, raises :class:`~hpsteer.errors.InvalidInput` in one line.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from datetime import tzinfo

from hpsteer.errors import InvalidInput
from hpsteer.optimizer.baselines import CheapestHours, OwnControl
from hpsteer.optimizer.problem import Planner

__all__ = ["PLANNER_NAMES", "make_planner"]


def _ortools(_timezone: tzinfo) -> Planner:
    try:
        module = importlib.import_module("hpsteer.optimizer.planner")
    except ImportError as err:
        raise InvalidInput(f"planner 'ortools' is not available: {err}") from err
    planner: Planner = module.OrToolsPlanner()
    return planner


_FACTORIES: dict[str, Callable[[tzinfo], Planner]] = {
    "ortools": _ortools,
    "cheapest_hours": lambda timezone: CheapestHours(timezone=timezone),
    "own_control": lambda _timezone: OwnControl(),
}
PLANNER_NAMES: tuple[str, ...] = tuple(_FACTORIES)


def make_planner(name: str, *, timezone: tzinfo) -> Planner:
    """The planner called ``name``; ``timezone`` is the market's (local days)."""
    if name not in _FACTORIES:
        raise InvalidInput(f"unknown planner {name!r}; known: {', '.join(PLANNER_NAMES)}")
    return _FACTORIES[name](timezone)
