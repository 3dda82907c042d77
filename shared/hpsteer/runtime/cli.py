"""The ``hpsteer`` command line.

Subcommands arrive with the issues that build them (``prices``, ``backtest``, ``simulate``,
``inspect``, ``sim serve``). Today: ``demo``, a tour of the foundation on the local backends, and
``version``.
"""

from __future__ import annotations

import argparse
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

    sub.add_parser("version", help="print the version")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "version":
        print(f"hpsteer {__version__}")
        return 0
    if args.command == "demo":
        from hpsteer.runtime.tour import run_tour

        return run_tour(args.out, out=sys.stdout)
    raise AssertionError(f"unhandled command {args.command!r}")  # argparse refuses others


if __name__ == "__main__":
    sys.exit(main())
