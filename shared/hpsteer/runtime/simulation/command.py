"""``hpsteer simulate``: options in, a run, its report out.

Bad input (an area without bundled data, days outside the files, fewer than one device, an
output folder that cannot be written, a malformed date or number) is one line on stderr and exit
code 1, never a traceback. A progress line on stderr shows simulated time, devices, commands
and plans (redrawn in place on a terminal, every tenth of the run otherwise). Ctrl-C stops the
run cleanly: what was simulated is reported (``"interrupted": true``) and the exit code is 130.
"""

from __future__ import annotations

import argparse
import json
import logging
from datetime import date
from pathlib import Path
from typing import TextIO

from hpsteer.domain.market import PriceArea
from hpsteer.errors import HpsteerError
from hpsteer.runtime.emulators import EmulatorUnavailable
from hpsteer.runtime.simulation.options import (
    BACKENDS,
    FAULT_PROFILES,
    AreaData,
    SimulationError,
    SimulationOptions,
    check_options,
)
from hpsteer.runtime.simulation.record import RunRecord

__all__ = ["add_simulate_parser", "run_simulate"]

_DEFAULTS = SimulationOptions()
_BAR = 24


def add_simulate_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    # Values are checked by check_options, not argparse: bad input is one line and exit 1.
    parser = sub.add_parser(
        "simulate",
        help="run the whole system on one machine over real prices and weather",
        description="Run every function of hpsteer on the local backends with a simulated "
        "clock and a simulated fleet of heat pumps behind the manufacturers' emulated APIs, on "
        "the bundled real prices and weather of an area; write a report with pictures.",
    )
    parser.add_argument("--area", default=_DEFAULTS.area.value, help="price area (SE3)")
    parser.add_argument(
        "--start", default=_DEFAULTS.start.isoformat(), help="first market day (2023-01-09)"
    )
    parser.add_argument("--days", default=str(_DEFAULTS.days), help="days to simulate (2)")
    parser.add_argument("--devices", default=str(_DEFAULTS.devices), help="homes (30)")
    parser.add_argument("--seed", default=str(_DEFAULTS.seed), help="seed of homes and faults")
    parser.add_argument(
        "--faults", default=_DEFAULTS.faults, help=f"{'|'.join(FAULT_PROFILES)} (realistic)"
    )
    parser.add_argument(
        "--backend", default=_DEFAULTS.backend, help=f"{'|'.join(BACKENDS)} (local)"
    )
    parser.add_argument(
        "--out", type=Path, default=_DEFAULTS.out, help="output folder (hpsteer-report)"
    )
    parser.add_argument("--json", action="store_true", help="print summary.json on stdout")


def _options(args: argparse.Namespace) -> SimulationOptions:
    try:
        start = date.fromisoformat(args.start)
    except ValueError:
        raise SimulationError(f"--start {args.start!r} is not a date (YYYY-MM-DD)") from None
    numbers = {}
    for name in ("days", "devices", "seed"):
        try:
            numbers[name] = int(getattr(args, name))
        except ValueError:
            value = getattr(args, name)
            raise SimulationError(f"--{name} must be a whole number, got {value!r}") from None
    try:
        area = PriceArea.parse(args.area)
    except HpsteerError as err:
        raise SimulationError(str(err).splitlines()[0]) from None
    return SimulationOptions(
        area=area,
        start=start,
        days=numbers["days"],
        devices=numbers["devices"],
        seed=numbers["seed"],
        faults=args.faults,
        backend=args.backend,
        out=args.out,
    )


class _Progress:
    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.tty = stream.isatty()
        self.shown_tenth = -1

    def __call__(self, tick: object) -> None:
        from hpsteer.runtime.simulation.engine import Tick

        assert isinstance(tick, Tick)
        filled = round(tick.fraction * _BAR)
        line = (
            f"[{'#' * filled}{'.' * (_BAR - filled)}] {100 * tick.fraction:3.0f}%  "
            f"{tick.now:%Y-%m-%d %H:%M} UTC  {tick.devices} homes  "
            f"{tick.commands} commands received  {tick.plans} planning runs"
        )
        if self.tty:
            print(f"\r{line}", end="", file=self.stream, flush=True)
        elif int(tick.fraction * 10) > self.shown_tenth:
            self.shown_tenth = int(tick.fraction * 10)
            print(line, file=self.stream, flush=True)

    def done(self) -> None:
        if self.tty:
            print(file=self.stream, flush=True)


def run_simulate(args: argparse.Namespace, *, out: TextIO, err: TextIO) -> int:
    try:
        options = _options(args)
        data = check_options(options)
    except SimulationError as problem:
        print(f"error: {problem}", file=err)
        return 1
    from hpsteer.observability.logging import configure_logging

    log_path = options.out / "hpsteer.log"
    with log_path.open("w", encoding="utf-8") as log:
        configure_logging("INFO", stream=log)
        logging.getLogger("httpx").setLevel(logging.WARNING)
        print(
            f"simulating {options.devices} homes in {options.area.value} from {options.start} "
            f"for {options.days} days, faults {options.faults} (seed {options.seed}), "
            f"backend {options.backend}",
            file=err,
        )
        try:
            record, interrupted = _run(options, data, err)
        except EmulatorUnavailable as problem:
            print(f"error: {problem}", file=err)
            return 1
        finally:
            logging.getLogger().handlers.clear()
    summary = record["summary"]
    if args.json:
        print(json.dumps(summary, indent=2), file=out)
    else:
        print(_headline(summary), file=out)
    print(f"report: {(options.out / 'report.html').resolve()}", file=err)
    return 130 if interrupted else 0


def _run(options: SimulationOptions, data: AreaData, err: TextIO) -> tuple[RunRecord, bool]:
    from hpsteer.runtime.simulation.engine import Simulation
    from hpsteer.runtime.simulation.results import write_results

    progress = _Progress(err)
    if options.backend == "local":
        simulation = Simulation.build(options, data)
        simulation.run(progress, traces=options.out / "traces.jsonl")
        progress.done()
        return write_results(simulation, options.out), simulation.interrupted
    from hpsteer.config import Settings
    from hpsteer.runtime.simulation.emulated import emulated_backends, snapshot

    print("starting the Firestore and Pub/Sub emulators", file=err)
    with emulated_backends(Settings(backend="local").project) as backends:
        simulation = Simulation.build(options, data, store=backends.store, bus=backends.bus)
        simulation.run(progress, traces=options.out / "traces.jsonl")
        progress.done()
        copy = snapshot(backends.store, backends.client, simulation.local.clock)
        return write_results(simulation, options.out, store_copy=copy), simulation.interrupted


def _headline(summary: dict[str, object]) -> str:
    return "\n".join(
        [
            f"cost {summary['cost_eur']} EUR against {summary['baseline_cost_eur']} EUR under "
            f"the heat pumps' own control: savings {summary['savings_pct']} %"
            + (
                ""
                if summary.get("tariff_id") is None
                else f"; on the bill ({summary['tariff_id']}) {summary['bill_eur']} EUR against "
                f"{summary['baseline_bill_eur']} EUR: bill savings {summary['bill_savings_pct']} %"
            ),
            f"comfort: {summary['comfort_kh_below_per_home_day']} K·h below the band per home "
            f"and day (own control: {summary['baseline_comfort_kh_below_per_home_day']})",
            f"commands by final state: {summary['commands']}; lost: {summary['commands_lost']}",
            f"drift corrected within one interval: "
            f"{summary['drift_corrected_within_interval_pct']} %; household changes respected: "
            f"{summary['overrides_respected']} of {summary['household_changes']}; "
            f"alerts: {summary['alerts']}",
        ]
    )
