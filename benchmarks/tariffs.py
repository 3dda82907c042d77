"""What planning on the household's tariff is worth: bill savings planned on the tariff against
bill savings planned on spot alone, per archetype, on the tuning area and the held-out one.

Runs ``hpsteer backtest --tariff`` for every archetype over the planner benchmark's season
(``benchmarks/backtest.py``: ``--days`` days from 1 January): SE3 2023 with Vattenfall's T4
tariff (``se3-vattenfall-t4``; SE3 is where the planner is tuned) and DK1 2024 with N1's
(``dk1-n1``; held out: never tuned on, reported for honesty). For each house the backtest plans
the period twice on the same true house, weather and forecasts: on the effective price, and on
spot alone; both runs are billed on the tariff. Prints, per archetype: ``bill_savings_pct`` (planned
on the tariff), ``bill_savings_if_planned_on_spot_pct``, their difference, the spot savings, and
both runs' spot savings, comfort below the band and mean indoor temperature (a colder home is
not a saving).
The issue's rule: the first is never below the second. About two minutes per area for 90 days
on this machine (three planned runs per house instead of two).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from datetime import date
from typing import Any

from hpsteer.domain.market import PriceArea
from hpsteer.optimizer.backtest import BacktestScenario, run_backtest

RUNS = (
    ("SE3", date(2023, 1, 1), "se3-vattenfall-t4", "tuning"),
    ("DK1", date(2024, 1, 1), "dk1-n1", "held out"),
)
FIELDS = (
    "bill_savings_pct",
    "bill_savings_if_planned_on_spot_pct",
    "perfect_model_bill_savings_pct",
    "savings_pct",
    "baseline_cost_eur",
    "spot_planned_cost_eur",
    "bill_eur",
    "spot_planned_bill_eur",
    "baseline_bill_eur",
    "comfort_kh_below_per_day",
    "spot_planned_comfort_kh_below_per_day",
    "mean_indoor_temp_c",
    "spot_planned_mean_indoor_temp_c",
    "baseline_mean_indoor_temp_c",
    "mode_changes_per_day",
)


def _figures(report: dict[str, Any]) -> dict[str, Any]:
    row = {field: report[field] for field in FIELDS}
    row["tariff_aware_gain_pct_points"] = round(
        report["bill_savings_pct"] - report["bill_savings_if_planned_on_spot_pct"], 3
    )
    baseline = report["baseline_cost_eur"]
    row["savings_if_planned_on_spot_pct"] = round(
        100.0 * (baseline - report["spot_planned_cost_eur"]) / baseline, 3
    )
    return row


def measure(days: int) -> list[dict[str, Any]]:
    rows = []
    for area, start, tariff, role in RUNS:
        scenario = BacktestScenario(
            area=PriceArea.parse(area),
            start=start,
            days=days,
            archetype="all",
            planner="ortools",
            seed=0,
            tariff=tariff,
        )
        report = run_backtest(scenario).to_dict()
        rows.append(
            {
                "area": area,
                "start": start.isoformat(),
                "days": days,
                "tariff": tariff,
                "set": role,
                "archetypes": {
                    name: _figures(figures) for name, figures in report["archetypes"].items()
                },
                "average": _figures(report),
            }
        )
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument("--days", type=int, default=90)
    args = parser.parse_args(argv)
    rows = measure(args.days)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"tariff-aware planning, all archetypes, {args.days} days from 1 January")
    for row in rows:
        print(f"  {row['area']} {row['start'][:4]} ({row['set']}), tariff {row['tariff']}:")
        for name, f in [*row["archetypes"].items(), ("average", row["average"])]:
            print(
                f"    {name:<20} bill saved {f['bill_savings_pct']:5.1f} % planned on the tariff, "
                f"{f['bill_savings_if_planned_on_spot_pct']:5.1f} % planned on spot "
                f"({f['tariff_aware_gain_pct_points']:+.1f} points); spot saved "
                f"{f['savings_pct']:.1f} vs {f['savings_if_planned_on_spot_pct']:.1f} %; "
                f"{f['comfort_kh_below_per_day']:.2f} vs "
                f"{f['spot_planned_comfort_kh_below_per_day']:.2f} K·h/day below, "
                f"{f['mean_indoor_temp_c']:.2f} vs {f['spot_planned_mean_indoor_temp_c']:.2f} °C"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
