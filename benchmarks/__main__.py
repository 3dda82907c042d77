"""Run every benchmark and print its figures (``make benchmark`` or ``python -m benchmarks``)."""

from __future__ import annotations

import sys

from benchmarks import command_log


def main() -> int:
    command_log.main()
    return 0


if __name__ == "__main__":
    sys.exit(main())
