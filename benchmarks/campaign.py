"""Fault campaigns: many seeded simulations under the ``heavy`` profile, judged together.

``python -m benchmarks.campaign --runs 100 --json`` runs ``hpsteer simulate`` ``--runs`` times
(seeds 1..runs; 12 homes for one day in SE3 from 2023-01-09 by default, ``--devices`` and
``--days`` change that) with the ``heavy`` fault profile (:mod:`hpsteer.runtime.simulation.chaos`:
30 % manufacturer 5xx, 429 storms, a one-hour outage of one manufacturer, 5 % of accepted
commands not applied, every message and task delivered two or three times, crashes between
handler steps) and reports, for all runs together:

- ``commands_lost`` (goal 0), ``forked_histories`` (goal 0), ``duplicate_side_effects``
  (goal 0), as :mod:`hpsteer.runtime.simulation.audit` defines them;
- ``drift_corrected_within_interval_pct`` (goal ≥ 99) over every run's judged drift episodes
  (:mod:`hpsteer.runtime.simulation.observer`), and their verdicts by manufacturer;
- ``remediations_against_override`` (goal 0);
- ``failing_seeds``: the seeds of runs with a lost command, a forked history, a duplicate side
  effect or a remediation against an override (``hpsteer simulate --faults heavy --seed N``
  replays one).

Runs go to worker processes (``--jobs``, default one per core), each run planning in its own
process.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from datetime import date
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

from hpsteer.domain.market import PriceArea


def one_run(seed: int, devices: int, days: int) -> dict[str, Any]:
    """One heavy-profile simulation's summary."""
    import logging

    from hpsteer.observability.logging import configure_logging
    from hpsteer.runtime.simulation.engine import Simulation
    from hpsteer.runtime.simulation.options import SimulationOptions, check_options
    from hpsteer.runtime.simulation.results import build_record

    with TemporaryDirectory() as out:
        options = SimulationOptions(
            area=PriceArea.SE3,
            start=date(2023, 1, 9),
            days=days,
            devices=devices,
            seed=seed,
            faults="heavy",
            out=Path(out),
            planning_processes=1,
        )
        data = check_options(options)
        with (Path(out) / "hpsteer.log").open("w") as log:
            configure_logging("WARNING", stream=log)
            logging.getLogger("httpx").setLevel(logging.ERROR)
            simulation = Simulation.build(options, data)
            simulation.run()
            summary = build_record(simulation)["summary"]
    return {"seed": seed, **summary}


def campaign(runs: int, devices: int, days: int, jobs: int | None) -> dict[str, Any]:
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        summaries = list(pool.map(one_run, range(1, runs + 1), [devices] * runs, [days] * runs))
    drift = [s["drift"] for s in summaries]
    within = sum(d["corrected_within_interval"] for d in drift)
    judged = sum(d["judged"] for d in drift)
    by_manufacturer: dict[str, Counter[str]] = {}
    for d in drift:
        for manufacturer, verdicts in d["by_manufacturer"].items():
            by_manufacturer.setdefault(manufacturer, Counter()).update(verdicts)
    failing = [
        s["seed"]
        for s in summaries
        if s["commands_lost"]
        or s["forked_histories"]
        or s["duplicate_side_effects"]
        or s["remediations_against_override"]
    ]
    return {
        "runs": runs,
        "devices_per_run": devices,
        "days_per_run": days,
        "commands": sum(sum(s["commands"].values()) for s in summaries),
        "commands_lost": sum(s["commands_lost"] for s in summaries),
        "forked_histories": sum(s["forked_histories"] for s in summaries),
        "duplicate_side_effects": sum(s["duplicate_side_effects"] for s in summaries),
        "drift_corrected_within_interval_pct": (
            round(100.0 * within / judged, 2) if judged else None
        ),
        "drift_judged": judged,
        "drift_by_manufacturer": {m: dict(v) for m, v in sorted(by_manufacturer.items())},
        "remediations_against_override": sum(s["remediations_against_override"] for s in summaries),
        "household_changes": sum(s["household_changes"] for s in summaries),
        "alerts": dict(sum((Counter(s["alerts"]) for s in summaries), Counter())),
        "messages_dead_lettered": sum(s["messages_dead_lettered"] for s in summaries),
        "failing_seeds": failing,
        "examples": {
            str(s["seed"]): s["lost_examples"][:3] + s["forked_examples"][:3]
            for s in summaries
            if s["seed"] in failing
        },
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--devices", type=int, default=12)
    parser.add_argument("--days", type=int, default=1)
    parser.add_argument("--jobs", type=int, default=None)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    figures = campaign(args.runs, args.devices, args.days, args.jobs)
    if args.json:
        print(json.dumps(figures, indent=2))
    else:
        print(
            f"{figures['runs']} heavy runs: {figures['commands_lost']} commands lost, "
            f"{figures['forked_histories']} forked histories, "
            f"{figures['duplicate_side_effects']} duplicate side effects, drift corrected "
            f"within one interval {figures['drift_corrected_within_interval_pct']} % of "
            f"{figures['drift_judged']}, {figures['remediations_against_override']} "
            f"remediations against overrides, failing seeds {figures['failing_seeds']}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
