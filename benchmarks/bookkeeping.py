"""Store operations per command for the rate budget and the circuit breaker (goal: ≤ 2 writes).

Steady state: 1,000 ViCare commands from one account, one every 12 s (50 per 10 minutes, within
the 84 commands the budget allows), each taking a budget unit and going through the breaker;
one call in 50 fails with ``OemUnavailable`` (never twice in a row, so the breaker stays closed).
Counted on the in-memory store through :class:`CountingStore`, a working wrapper that counts the
reads and writes that reach the store (transaction writes once, for the attempt that commits).
A second scenario adds an outage (the breaker opens, half-opens and closes) to show the extra
writes a state change costs.

``python -m benchmarks.bookkeeping --json`` prints the figures as JSON
(``bookkeeping_writes_per_command`` is the headline).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from hpsteer.adapters.breaker import CircuitBreaker
from hpsteer.adapters.budget import RateBudget
from hpsteer.adapters.protocol import RateLimitConfig, RateWindow
from hpsteer.backends.local.store import LocalDocumentStore
from hpsteer.errors import CircuitOpen, OemRateLimited, OemUnavailable
from hpsteer.ports.clock import SimulatedClock
from hpsteer.ports.store import Document, DocumentStore, Filter, Order, Page, Transaction

T = TypeVar("T")
T0 = datetime(2024, 1, 15, 6, tzinfo=UTC)
VICARE = RateLimitConfig(
    windows=(
        RateWindow(limit=120, window=timedelta(minutes=10), block_for=timedelta(hours=24)),
        RateWindow(limit=1450, window=timedelta(hours=24), block_for=timedelta(hours=24)),
    ),
    read_share=0.3,
)
"""ViCare's basic plan (the Viessmann adapter's RATE_LIMITS, repeated so this runs on its own)."""


class _CountingTransaction:
    def __init__(self, inner: Transaction) -> None:
        self._inner = inner
        self.reads = 0
        self.writes = 0

    def get(self, path: str) -> Document | None:
        self.reads += 1
        return self._inner.get(path)

    def create(self, path: str, data: Mapping[str, Any]) -> None:
        self.writes += 1
        self._inner.create(path, data)

    def set(self, path: str, data: Mapping[str, Any], *, merge: bool = False) -> None:
        self.writes += 1
        self._inner.set(path, data, merge=merge)

    def update(self, path: str, changes: Mapping[str, Any]) -> None:
        self.writes += 1
        self._inner.update(path, changes)

    def delete(self, path: str) -> None:
        self.writes += 1
        self._inner.delete(path)


class CountingStore:
    """A document store that counts the operations passing through to ``inner``.

    ``writes`` counts document writes that committed (a transaction's writes once, from its
    committing attempt); ``reads`` counts document reads (every attempt's); ``transactions``
    counts committed transactions.
    """

    def __init__(self, inner: DocumentStore) -> None:
        self.inner = inner
        self.reads = 0
        self.writes = 0
        self.transactions = 0

    def get(self, path: str) -> Document | None:
        self.reads += 1
        return self.inner.get(path)

    def create(self, path: str, data: Mapping[str, Any]) -> Document:
        self.writes += 1
        return self.inner.create(path, data)

    def set(self, path: str, data: Mapping[str, Any], *, merge: bool = False) -> datetime:
        self.writes += 1
        return self.inner.set(path, data, merge=merge)

    def update(
        self, path: str, changes: Mapping[str, Any], *, if_update_time: datetime | None = None
    ) -> datetime:
        self.writes += 1
        return self.inner.update(path, changes, if_update_time=if_update_time)

    def delete(self, path: str) -> None:
        self.writes += 1
        self.inner.delete(path)

    def run_transaction(self, fn: Callable[[Transaction], T], *, max_attempts: int = 5) -> T:
        attempts: list[_CountingTransaction] = []

        def counted(tx: Transaction) -> T:
            attempts.append(_CountingTransaction(tx))
            return fn(attempts[-1])

        try:
            result = self.inner.run_transaction(counted, max_attempts=max_attempts)
        finally:
            self.reads += sum(a.reads for a in attempts)
        if attempts:
            self.writes += attempts[-1].writes
            self.transactions += 1
        return result

    def query(
        self,
        collection: str,
        filters: Sequence[Filter] = (),
        order_by: Sequence[Order] = (),
        limit: int | None = None,
        cursor: str | None = None,
    ) -> Page:
        self.reads += 1
        return self.inner.query(collection, filters, order_by, limit, cursor)

    def collection_group(
        self,
        collection_id: str,
        filters: Sequence[Filter] = (),
        order_by: Sequence[Order] = (),
        limit: int | None = None,
        cursor: str | None = None,
    ) -> Page:
        self.reads += 1
        return self.inner.collection_group(collection_id, filters, order_by, limit, cursor)


def _run(commands: int, outage: range) -> dict[str, Any]:
    clock = SimulatedClock(T0)
    store = CountingStore(LocalDocumentStore(clock=clock))
    budget = RateBudget(store, "viessmann", "account-1", VICARE, clock)
    breaker = CircuitBreaker(store, "viessmann", clock)
    sent = refused = failed = 0
    for n in range(commands):
        clock.advance(timedelta(seconds=12))
        try:
            breaker.before_call()
        except CircuitOpen:
            refused += 1
            continue
        try:
            budget.acquire("command")
        except OemRateLimited:
            breaker.cancel()  # nothing was sent
            refused += 1
            continue
        sent += 1
        if n in outage or n % 50 == 49:
            failed += 1
            breaker.record_failure(OemUnavailable("viessmann: 503"))
        else:
            breaker.record_success()
    return {
        "commands": commands,
        "sent": sent,
        "refused": refused,
        "failed": failed,
        "store_writes": store.writes,
        "store_reads": store.reads,
        "bookkeeping_writes_per_command": round(store.writes / commands, 4),
        "bookkeeping_reads_per_command": round(store.reads / commands, 4),
        "writes_per_sent_command": round(store.writes / max(sent, 1), 4),
        "breaker_state_at_end": breaker.state(),
    }


def measure(commands: int = 1000) -> dict[str, Any]:
    steady = _run(commands, range(0))
    with_outage = _run(commands, range(300, 320))
    return {
        "benchmark": "bookkeeping",
        "store": "local (in memory)",
        "bookkeeping_writes_per_command": steady["bookkeeping_writes_per_command"],
        "steady_state": steady,
        "with_outage": with_outage,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument("--commands", type=int, default=1000)
    args = parser.parse_args(argv)
    figures = measure(args.commands)
    if args.json:
        print(json.dumps(figures, indent=2))
        return 0
    steady, outage = figures["steady_state"], figures["with_outage"]
    print(f"budget + breaker bookkeeping, {args.commands} ViCare commands, one every 12 s")
    for name, run in (("steady state", steady), ("with an outage", outage)):
        print(
            f"  {name:15} {run['bookkeeping_writes_per_command']:.3f} writes and "
            f"{run['bookkeeping_reads_per_command']:.3f} reads per command "
            f"({run['sent']} sent, {run['failed']} failed, {run['refused']} refused)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
