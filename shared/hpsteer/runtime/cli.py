"""The ``hpsteer`` command line.

Subcommands arrive with the issues that build them (``prices``, ``backtest``, ``simulate``,
``inspect``, ``sim serve``). Today: ``demo``, a tour of the foundation on the local backends, and
``version``.
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

    demo = sub.add_parser(
        "demo",
        help="run the main job locally (today: a tour of the foundation on the local backends)",
    )
    demo.add_argument(
        "--out",
        type=Path,
        default=Path("out/demo"),
        help="folder for the run's SQLite files, to inspect afterwards (default: out/demo)",
    )

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

    sub.add_parser("version", help="print the version")
    return parser


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


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "version":
        print(f"hpsteer {__version__}")
        return 0
    if args.command == "prices" and args.prices_command == "parse":
        return _prices_parse(args)
    if args.command == "demo":
        from hpsteer.runtime.tour import run_tour

        return run_tour(args.out, out=sys.stdout)
    raise AssertionError(f"unhandled command {args.command!r}")  # argparse refuses others


if __name__ == "__main__":
    sys.exit(main())
