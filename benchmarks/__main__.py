"""Run every benchmark and print its figures (``make benchmark`` or ``python -m benchmarks``)."""

from __future__ import annotations

import sys

from benchmarks import (
    adapters,
    backtest,
    bookkeeping,
    campaign,
    cloud_cost,
    coldstart,
    command_log,
    dispatch,
    planner,
    reconcile,
    simulate,
    tariffs,
)


def main() -> int:
    command_log.main()
    bookkeeping.main([])
    adapters.main([])
    dispatch.main([])
    planner.main([])
    backtest.main([])
    tariffs.main([])
    reconcile.main([])
    simulate.main([])
    campaign.main(["--runs", "20"])
    coldstart.main([])
    cloud_cost.main([])
    return 0


if __name__ == "__main__":
    sys.exit(main())
