"""What ``hpsteer simulate`` costs around the planner: wall time, planning time, the rest per
device-day, and peak memory.

``python -m benchmarks.simulate --json`` runs 200 homes for 7 days in SE3 from 2023-01-09
(``realistic`` faults, seed 0) on the local backends, each run in a fresh process so that its
peak resident memory is its own (``ru_maxrss`` of the child, the planner's worker processes
included through ``RUSAGE_CHILDREN`` of the run's process). Figures per backend:

- ``wall_s``: the whole run (building the fleet, simulating, settling; not writing the report);
- ``planning_s``: wall time spent in the ``optimize-requests`` handler (the OR-Tools planner and
  the reads and writes of a shard around it; planning runs on every core);
- ``overhead_ms_per_device_day``: ``(wall_s - planning_s) / (devices · days)`` in milliseconds:
  everything else (ingestion, fan-out, dispatch, verification, reconciliation, telemetry, the
  simulated manufacturers and homes), goal ≤ 5;
- ``peak_rss_mib``: the largest resident set of the run's process or of any planner worker,
  goal ≤ 2,048;
- ``simulator_s``: the part of the overhead that is the simulator's, not hpsteer's: the
  simulated manufacturers answering the adapters' calls (their side of each call, which in the
  cloud runs on the manufacturers' servers; :attr:`~hpsteer.sim.transport.SimTransport.served_s`)
  and stepping and observing the homes at each sample;
- ``pipeline_ms_per_device_day``: the overhead without ``simulator_s``, what hpsteer's own code
  costs per device-day (the adapters' HTTP client side included). For reading the overhead
  only: the goal is on ``overhead_ms_per_device_day``.

The same for 50 homes and 1 day on the Firestore and Pub/Sub emulators (``emulators``; the
emulators' own Java processes are not in ``peak_rss_mib``).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import resource
import sys
from collections.abc import Sequence
from datetime import date
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

from hpsteer.domain.market import PriceArea


def _run(devices: int, days: int, backend: str, out: str, queue: Any) -> None:
    import logging

    from hpsteer.config import Settings
    from hpsteer.observability.logging import configure_logging
    from hpsteer.runtime.simulation.emulated import emulated_backends
    from hpsteer.runtime.simulation.engine import Simulation
    from hpsteer.runtime.simulation.options import SimulationOptions, check_options

    options = SimulationOptions(
        area=PriceArea.SE3,
        start=date(2023, 1, 9),
        days=days,
        devices=devices,
        out=Path(out),
        backend="emulators" if backend == "emulators" else "local",
    )
    data = check_options(options)
    with (Path(out) / "hpsteer.log").open("w") as log:
        configure_logging("WARNING", stream=log)
        logging.getLogger("httpx").setLevel(logging.WARNING)
        if backend == "emulators":
            with emulated_backends(Settings(backend="local").project) as backends:
                simulation = Simulation.build(options, data, store=backends.store, bus=backends.bus)
                simulation.run()
        else:
            simulation = Simulation.build(options, data)
            simulation.run()
    simulator_s = simulation.manufacturer_apis_s + simulation.homes_s
    device_days = devices * days
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    workers = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    queue.put(
        {
            "devices": devices,
            "days": days,
            "wall_s": round(simulation.wall_s, 1),
            "planning_s": round(simulation.planning_s, 1),
            "overhead_ms_per_device_day": round(
                1000.0 * (simulation.wall_s - simulation.planning_s) / (devices * days), 2
            ),
            "peak_rss_mib": round(max(own, workers) / 1024.0, 1),
            "simulator_s": round(simulator_s, 1),
            "pipeline_ms_per_device_day": round(
                1000.0 * (simulation.wall_s - simulation.planning_s - simulator_s) / device_days, 2
            ),
        }
    )


def measure(devices: int, days: int, backend: str = "local") -> dict[str, Any]:
    """One run in a fresh process (its own peak memory)."""
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    with TemporaryDirectory() as out:
        process = context.Process(target=_run, args=(devices, days, backend, out, queue))
        process.start()
        result: dict[str, Any] = queue.get()
        process.join()
    return result


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--devices", type=int, default=200)
    parser.add_argument("--days", type=int, default=7)
    parser.add_argument("--emulator-devices", type=int, default=50)
    parser.add_argument("--emulator-days", type=int, default=1)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    figures = {
        "local": measure(args.devices, args.days),
        "emulators": measure(args.emulator_devices, args.emulator_days, "emulators"),
        "goals": {"overhead_ms_per_device_day": 5.0, "peak_rss_mib": 2048.0},
    }
    if args.json:
        print(json.dumps(figures, indent=2))
    else:
        for backend in ("local", "emulators"):
            run = figures[backend]
            print(
                f"simulate {run['devices']} homes x {run['days']} days ({backend}): "
                f"{run['wall_s']} s, planning {run['planning_s']} s, "
                f"{run['overhead_ms_per_device_day']} ms per device-day around the planner "
                f"(goal 5), peak {run['peak_rss_mib']} MiB (goal 2048)"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
