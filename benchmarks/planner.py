"""How fast and how close to optimal the OR-Tools planner is on 48 h plans of real days.

Problems: 192 slots (48 h at 15 min) from local midnight, for each archetype, on heating-season
days of 2023 in SE3 (Stockholm weather) and SE4 (Malmö weather). 2023 prices are hourly; each
hourly price is repeated onto its four 15-minute slots. Weather is the replayed actual hourly
series (perfect foresight), likewise repeated. Setpoint 21 °C, band 20-23 °C, comfort penalty
1 EUR/K·h, switch penalty 0.02 EUR, dwell 4 slots, 6 changes a day, starting in mid at the mid
steady state.

Measured per problem, sequentially (one core): the wall time of ``OrToolsPlanner.solve`` (the
first call, which also imports nothing new, is a warm-up and not counted); the same block MILP
solved by HiGHS alone with gap 1e-6 and a long time limit (the reference optimum: if it does not
prove optimality within the limit its best objective is used and ``reference_unproven`` counts
it; ``reference_failed`` counts solves that ended without a usable solution); and
:func:`evaluate` of the plan and of "mid throughout" on the plant. Sample size (``--days`` per
area, default 3: 18 problems; reference limit 15 s) keeps the whole run near 3-4 minutes here,
most of it in the reference solves.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import time
from collections.abc import Iterator
from datetime import date, timedelta

import numpy as np

from hpsteer.domain.actions import Mode
from hpsteer.domain.devices import Location
from hpsteer.domain.market import PriceArea, Resolution, delivery_day_bounds
from hpsteer.errors import InfeasiblePlan
from hpsteer.optimizer.planner import OrToolsPlanner, rule_violations, solve_exact
from hpsteer.optimizer.problem import PlanningProblem, evaluate
from hpsteer.sources.replay_prices import ReplayPriceSource
from hpsteer.sources.replay_weather import ReplayWeatherSource, bundled_weather_dir
from hpsteer.thermal import ARCHETYPES, SlotConditions

LOCATIONS = {
    PriceArea.SE3: Location(location_id="stockholm", latitude=59.3, longitude=18.1),
    PriceArea.SE4: Location(location_id="malmo", latitude=55.6, longitude=12.9),
}
DAYS = (
    date(2023, 1, 10),
    date(2023, 2, 14),
    date(2023, 11, 21),
    date(2023, 12, 5),
    date(2023, 1, 24),
    date(2023, 2, 28),
    date(2023, 11, 7),
    date(2023, 12, 12),
    date(2023, 1, 3),
    date(2023, 3, 7),
)
SLOT_HOURS = 0.25


def problems(days: int) -> list[tuple[str, PlanningProblem]]:
    prices, weather = ReplayPriceSource(), ReplayWeatherSource(bundled_weather_dir())
    found = []
    for area, location in LOCATIONS.items():
        for day in DAYS[:days]:
            values: list[float] = []
            for d in (day, day + timedelta(days=1)):
                market = prices.fetch(area, d)
                assert market is not None, f"no {area} prices on {d}"
                repeat = 4 if market.resolution is Resolution.PT60M else 1
                values += [p for p in market.prices_eur_per_mwh for _ in range(repeat)]
            start, _ = delivery_day_bounds(area, day)
            points = weather.forecast_at(location, start).points
            outdoor = np.repeat([p.outdoor_temp_c for p in points], 4)
            solar = np.repeat([p.solar_irradiance_w_per_m2 or 0.0 for p in points], 4)
            for name, archetype in ARCHETYPES.items():
                plant = archetype.plant
                air, mass = plant.steady_state(
                    SlotConditions(SLOT_HOURS, float(outdoor[0]), 21.0), 0.0
                )
                problem = PlanningProblem(
                    plant=plant,
                    start_at=start,
                    slot_hours=SLOT_HOURS,
                    prices_eur_per_mwh=np.array(values),
                    outdoor_temp_c=outdoor,
                    solar_irradiance_w_per_m2=solar,
                    setpoint_c=21.0,
                    comfort_min_c=20.0,
                    comfort_max_c=23.0,
                    initial_air_temp_c=air,
                    initial_mass_temp_c=mass,
                    min_dwell_slots=4,
                    max_changes_per_day=6,
                )
                found.append((f"{area}/{day}/{name}", problem))
    return found


def run(days: int, reference_limit_s: float) -> dict[str, object]:
    planner = OrToolsPlanner()
    cases = problems(days)
    planner.solve(cases[0][1])  # warm-up: first-call costs are not a plan's
    rows = []
    for label, problem in cases:
        began = time.perf_counter()
        result = planner.solve(problem)
        wall_ms = (time.perf_counter() - began) * 1000.0
        try:
            reference = solve_exact(problem, planner, time_limit_s=reference_limit_s)
        except InfeasiblePlan:  # HiGHS ended without a usable solution within the limit
            reference = None
        plan_eval = evaluate(problem, result.modes)
        mid_eval = evaluate(problem, [Mode.MID] * problem.slots)
        rows.append(
            {
                "problem": label,
                "ms": wall_ms,
                "objective_eur": result.objective_eur,
                "reference_eur": reference.objective_eur if reference else None,
                "reference_proven": bool(reference and reference.termination == "optimal"),
                "reference_ms": reference.solve_ms if reference else None,
                "gap_pct": (
                    100.0
                    * (result.objective_eur - reference.objective_eur)
                    / abs(reference.objective_eur)
                    if reference
                    else None
                ),
                "proven_gap_pct": 100.0 * result.gap,
                "evaluate_eur": plan_eval.objective_eur,
                "mid_evaluate_eur": mid_eval.objective_eur,
                "mean_air_c": float(plan_eval.mean_air_temp_c.mean()),
                "mid_mean_air_c": float(mid_eval.mean_air_temp_c.mean()),
                "rules_kept": not rule_violations(problem, result.modes),
            }
        )
    times = sorted(r["ms"] for r in rows)
    gaps = [float(r["gap_pct"]) for r in rows if r["gap_pct"] is not None]  # type: ignore[arg-type]  # mixed row values
    savings = [
        100.0 * (1 - float(r["evaluate_eur"]) / float(r["mid_evaluate_eur"]))  # type: ignore[arg-type]  # mixed row values
        for r in rows
    ]
    return {
        "plans": len(rows),
        "slots": 192,
        "median_ms": statistics.median(times),
        "p99_ms": float(np.percentile(times, 99)),
        "max_gap_pct": max(gaps),
        "mean_gap_pct": statistics.fmean(gaps),
        "mean_proven_gap_pct": statistics.fmean(float(r["proven_gap_pct"]) for r in rows),  # type: ignore[arg-type]  # mixed
        "reference_unproven": sum(not r["reference_proven"] for r in rows),
        "reference_failed": sum(r["reference_eur"] is None for r in rows),
        "reference_median_ms": statistics.median(
            float(r["reference_ms"])
            for r in rows
            if r["reference_ms"] is not None  # type: ignore[arg-type]  # mixed
        ),
        "savings_vs_mid_pct_mean": statistics.fmean(savings),
        "savings_vs_mid_pct_min": min(savings),
        "mean_air_c": statistics.fmean(float(r["mean_air_c"]) for r in rows),  # type: ignore[arg-type]  # mixed
        "mid_mean_air_c": statistics.fmean(float(r["mid_mean_air_c"]) for r in rows),  # type: ignore[arg-type]  # mixed
        "rules_kept": all(r["rules_kept"] for r in rows),
        "rows": rows,
    }


@contextlib.contextmanager
def _native_stdout_to_stderr() -> Iterator[None]:
    """HiGHS 1.12 prints a debug line to the C stdout during some MIP solves (not silenced by
    its output_flag): send file descriptor 1 to stderr meanwhile so --json stays parseable."""
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument("--days", type=int, default=3, help="start days per area (max 10)")
    parser.add_argument("--reference-limit-s", type=float, default=15.0)
    args = parser.parse_args(argv)
    with _native_stdout_to_stderr():
        figures = run(args.days, args.reference_limit_s)
    if args.json:
        print(json.dumps(figures, indent=1))
    else:
        print("OR-Tools planner, 192-slot plans (48 h at 15 min), real SE3/SE4 2023 days")
        for key, value in figures.items():
            if key != "rows":
                print(f"  {key}: {value:.3f}" if isinstance(value, float) else f"  {key}: {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
