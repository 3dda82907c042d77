"""The ``hpsteer`` command line.

``simulate`` (the whole system on one machine, with its report; ``demo`` is its default run),
``inspect`` (a simulated run's devices and commands, as the Firestore console would show them),
``prices parse``, ``backtest`` (a simulated house on real prices and weather), ``sim serve``
(the simulated fleet's manufacturer APIs on 127.0.0.1), ``devices`` and ``alerts`` (the operator
API: on a local run's store as the local admin, or ``--api URL``) and ``version``.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from hpsteer import __version__

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hpsteer", description="Steer heat pumps by day-ahead electricity prices."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    from hpsteer.runtime.inspect import add_inspect_parser
    from hpsteer.runtime.operator_cli import add_operator_parsers
    from hpsteer.runtime.simulation.command import add_simulate_parser

    sub.add_parser("demo", help="the default simulation (hpsteer simulate with its defaults)")
    add_simulate_parser(sub)
    add_inspect_parser(sub)
    add_operator_parsers(sub)

    prices = sub.add_parser("prices", help="day-ahead prices").add_subparsers(
        dest="prices_command", required=True, metavar="SUBCOMMAND"
    )
    parse = prices.add_parser(
        "parse",
        help="print every delivery day of a provider's payload, validated, as JSON",
        description="Read a provider's payload from FILE and print its delivery days as JSON; "
        "exit 1 with a one-line error if the payload is malformed or any day fails validation.",
    )
    parse.add_argument(
        "--source", required=True, choices=["entsoe", "energidataservice", "energycharts"]
    )
    parse.add_argument("--area", help="price area (required for energycharts), e.g. SE3, DE-LU")
    parse.add_argument("file", type=Path, metavar="FILE")

    _add_backtest(sub)
    _add_sim(sub)
    sub.add_parser("version", help="print the version")
    return parser


def _add_sim(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    sim = sub.add_parser("sim", help="the simulated fleet").add_subparsers(
        dest="sim_command", required=True, metavar="SUBCOMMAND"
    )
    serve = sim.add_parser(
        "serve",
        help="serve the simulated fleet's manufacturer APIs on 127.0.0.1",
        description="Serve ViCare's, myUplink's and Onecta's API paths and OAuth token endpoints "
        "over simulated homes on 127.0.0.1 until interrupted; time follows the wall clock. "
        "Prints the address and each account's credentials (simulated, not secrets) as JSON.",
    )
    serve.add_argument("--port", type=int, required=True, help="TCP port (0: a free one)")
    serve.add_argument("--homes", type=int, default=3, help="number of homes (default 3)")
    serve.add_argument("--seed", type=int, default=0, help="seed of homes and faults (default 0)")


def _sim_serve(args: argparse.Namespace) -> int:
    import json
    from datetime import UTC, datetime

    from hpsteer.ports.clock import SimulatedClock
    from hpsteer.sim.app import SimApp
    from hpsteer.sim.fleet import Fleet
    from hpsteer.sim.serve import SimServer

    if args.homes < 0 or not 0 <= args.port <= 65535:
        print("error: --homes must be >= 0 and --port in 0..65535", file=sys.stderr)
        return 1
    fleet = Fleet(SimulatedClock(datetime.now(UTC)), homes=args.homes, seed=args.seed)
    try:
        server = SimServer(SimApp(fleet), port=args.port, follow_wall_clock=True)
    except OSError as err:
        print(f"error: cannot listen on 127.0.0.1:{args.port}: {err.strerror}", file=sys.stderr)
        return 1
    accounts = [
        {
            "manufacturer": c.manufacturer,
            "account_id": c.account_id,
            "external_id": fleet.home(c.account_id).external_id,
            "client_id": c.client_id,
            "client_secret": c.client_secret,
            "refresh_token": c.refresh_token,
        }
        for c in fleet.all_credentials()
    ]
    print(json.dumps({"url": server.url, "accounts": accounts}, indent=2), flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.close()
    return 0


def _add_backtest(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    # Values are checked by the backtest, not by argparse, so bad input is one line and exit 1.
    backtest = sub.add_parser(
        "backtest",
        help="simulate a house on real prices and weather against its own control",
        description="Simulate a house (a perturbed 2R2C model) on bundled real prices and weather "
        "with the planner re-planning as in production, and report cost, comfort and wear "
        "against the heat pump's own control. Exit 1 with a one-line error on bad input.",
    )
    backtest.add_argument("--area", required=True, help="price area: SE3, SE4, DK1 or DK2")
    backtest.add_argument("--start", required=True, help="first local delivery day, YYYY-MM-DD")
    backtest.add_argument("--days", default="7", help="number of days (default 7)")
    backtest.add_argument(
        "--archetype",
        default="renovated_radiators",
        metavar="{old_radiators,renovated_radiators,new_floor_heating,all}",
        help="house type (aliases old, renovated, new; default renovated_radiators)",
    )
    backtest.add_argument(
        "--planner",
        default="ortools",
        metavar="{ortools,cheapest_hours,own_control}",
        help="planner to run (default ortools)",
    )
    backtest.add_argument("--seed", default="0", help="seed of house and forecast noise (0)")
    backtest.add_argument(
        "--tariff",
        metavar="ID",
        help="plan on this household tariff (data/tariffs, e.g. dk1-n1) and report the bill: "
        "bill_eur, baseline_bill_eur, bill_savings_pct, bill_savings_if_planned_on_spot_pct",
    )
    backtest.add_argument("--json", action="store_true", help="print one JSON object")


def _prices_parse(args: argparse.Namespace) -> int:
    import json
    from datetime import UTC, datetime

    from hpsteer.domain.instants import format_instant
    from hpsteer.domain.market import PriceArea
    from hpsteer.errors import HpsteerError
    from hpsteer.sources.feed_files import parse_feed

    try:
        area = PriceArea.parse(args.area) if args.area else None
        body = args.file.read_bytes()
        days = parse_feed(args.source, body, area, fetched_at=datetime.now(UTC))
    except OSError as err:
        print(f"error: cannot read {args.file}: {err.strerror}", file=sys.stderr)
        return 1
    except HpsteerError as err:
        print(f"error: {err}".splitlines()[0], file=sys.stderr)
        return 1
    output = [
        {
            "area": day.area.value,
            "market_date": day.market_date.isoformat(),
            "resolution_minutes": int(day.resolution),
            "source": day.source,
            "original_currency": day.original_currency,
            "original_unit": day.original_unit,
            "content_hash": day.content_hash,
            "slots": [
                {"start_at": format_instant(slot.start_at), "price_eur_per_mwh": price}
                for slot, price in day.priced_slots()
            ],
        }
        for day in days
    ]
    try:
        print(json.dumps(output, indent=2))
    except BrokenPipeError:  # the reader stopped early (| head): not an error of ours
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - keeps the interpreter's flush quiet
    return 0


def _backtest(args: argparse.Namespace) -> int:
    import json
    from datetime import date

    from hpsteer.domain.market import PriceArea
    from hpsteer.errors import HpsteerError
    from hpsteer.optimizer.backtest import BacktestScenario, format_table, run_backtest

    try:
        start = date.fromisoformat(args.start)
    except ValueError:
        print(f"error: --start {args.start!r} is not a date (YYYY-MM-DD)", file=sys.stderr)
        return 1
    try:
        days, seed = int(args.days), int(args.seed)
    except ValueError:
        print("error: --days and --seed must be whole numbers", file=sys.stderr)
        return 1
    try:
        scenario = BacktestScenario(
            area=PriceArea.parse(args.area),
            start=start,
            days=days,
            archetype=args.archetype,
            planner=args.planner,
            seed=seed,
            tariff=args.tariff,
        )
        result = run_backtest(scenario)
    except HpsteerError as err:
        print(f"error: {err}".splitlines()[0], file=sys.stderr)
        return 1
    print(json.dumps(result.to_dict(), indent=2) if args.json else format_table(result))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "version":
        print(f"hpsteer {__version__}")
        return 0
    if args.command == "prices" and args.prices_command == "parse":
        return _prices_parse(args)
    if args.command == "backtest":
        return _backtest(args)
    if args.command == "sim" and args.sim_command == "serve":
        return _sim_serve(args)
    if args.command == "inspect":
        from hpsteer.runtime.inspect import run_inspect

        return run_inspect(args)
    if args.command in ("demo", "simulate"):
        from hpsteer.runtime.simulation.command import run_simulate

        if args.command == "demo":
            args = _parser().parse_args(["simulate"])
        return run_simulate(args, out=sys.stdout, err=sys.stderr)
    if args.command in ("devices", "alerts"):
        from hpsteer.runtime.operator_cli import run_operator

        return run_operator(args, sys.stdout, sys.stderr)
    raise AssertionError(f"unhandled command {args.command!r}")  # argparse refuses others


if __name__ == "__main__":
    sys.exit(main())
