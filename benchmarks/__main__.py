"""Run every benchmark and print its figures (``make benchmark`` or ``python -m benchmarks``)."""

from __future__ import annotations

import sys

from benchmarks import adapters, backtest, bookkeeping, command_log, dispatch, planner, reconcile


def main() -> int:
    command_log.main()
    bookkeeping.main([])
    adapters.main([])
    dispatch.main([])
    planner.main([])
    backtest.main([])
    reconcile.main([])
    return 0


if __name__ == "__main__":
    sys.exit(main())
