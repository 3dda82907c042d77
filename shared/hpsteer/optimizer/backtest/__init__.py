"""Backtests: a simulated house on real prices and weather, with physics the planner does not know.

:mod:`.scenario` says what is simulated, :mod:`.inputs` loads the real days and makes forecasts,
:mod:`.simulate` runs the MPC loop for one house, :mod:`.run` puts the runs together and
:mod:`.report` states the figures. ``hpsteer backtest`` is the command line over
:func:`run_backtest`.
"""

from hpsteer.optimizer.backtest.planners import PLANNER_NAMES, make_planner
from hpsteer.optimizer.backtest.report import BacktestResult, HouseResult, format_table
from hpsteer.optimizer.backtest.run import run_backtest
from hpsteer.optimizer.backtest.scenario import (
    ARCHETYPE_ALIASES,
    WEATHER_SITES,
    BacktestScenario,
    resolve_archetypes,
)

__all__ = [
    "ARCHETYPE_ALIASES",
    "PLANNER_NAMES",
    "WEATHER_SITES",
    "BacktestResult",
    "BacktestScenario",
    "HouseResult",
    "format_table",
    "make_planner",
    "resolve_archetypes",
    "run_backtest",
]
