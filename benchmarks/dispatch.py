"""Commands per second through the whole command path, and the store operations each one costs.

The rig is :class:`~hpsteer.runtime.local_fleet.LocalFleet` (local backends on a simulated clock,
the real adapters, breakers and budgets, the simulated fleet of homes of all three manufacturers
behind their emulated APIs, a task queue whose deliveries call the dispatch and verify handlers),
with no faults. Every home gets one plan of hourly slots whose modes change a few times, stored
and released as the optimize service does it (:func:`~hpsteer.services.plans_store.write_plan`,
:func:`~hpsteer.services.plans_store.make_current`,
:func:`~hpsteer.services.outbox.release_plan`; the OR-Tools planner is not run: this measures the
command path). The release makes commands of the changes within ``release_ahead_minutes`` (2 h)
only; then :meth:`LocalFleet.run_until` delivers every task over the horizon, with the command
sweep every 30 minutes releasing the later changes as they come within reach (as in production):
dispatch at each slot's start, verification 10 minutes later, until every command is
``completed``.

Figures (``python -m benchmarks.dispatch --json``):

- ``commands_per_s``: completed commands per wall-clock second over plan + release + delivery
  (the median of ``--repeats`` runs; setup, i.e. building the fleet and registering the devices,
  is not timed). ``seconds_by_phase`` splits the time: ``plan``, ``release``, the ``dispatch``
  and ``verify`` handlers, the ``sweep``, and ``queue_and_fleet_physics`` (the rest of
  ``run_until``: the task queue and stepping every home's physics to each delivery's instant).
  Goal ≥ 1,000/s. For reading it: ``simulated_manufacturers_s`` is the part of the handlers'
  time the simulated manufacturers took to answer (their side of each call, in the cloud theirs;
  :attr:`~hpsteer.sim.transport.SimTransport.served_s`), and ``commands_per_s_of_hpsteer_code``
  the rate with neither that nor the queue and the fleet's physics counted (hpsteer's handlers,
  the adapters' HTTP client side included).
- ``writes_per_command``, ``reads_per_command``: document operations per completed command
  that reach the store, counted by :class:`PhasedCountingStore`, with ``by_kind`` (command,
  event, plan, budget, breaker, baseline, alert, device, other, from the path) and
  ``by_phase`` (plan, release, dispatch, verify, sweep). Goal ≤ 6 each. Counted as Firestore
  bills them: a transaction's reads in every attempt and its writes once; a query reads one
  document per result and at least one; ``writes`` includes deletes, also shown on their own
  (``deletes``). The analytics rows (BigQuery) are not counted.
- ``firestore_usd_per_1000_commands``: those operations at Firestore's list prices (Standard
  edition, beyond the free quota) for a multi-region database: $0.06 per 100,000 document
  reads, $0.18 per 100,000 writes, $0.02 per 100,000 deletes, the US multi-region (nam5) row of
  the location table on https://firebase.google.com/docs/firestore/pricing (eur3, the European
  multi-region, assumed the same). ``firestore_usd_per_1000_commands_regional`` uses the
  table's cheapest regional tier ($0.03 / $0.09 / $0.01, the us-west1 Oregon row), the tier
  ``europe-west1`` (this project's ``Settings.region``) is believed to be in: the copy of the
  table available when this was written did not show that row, so the regional figure is an
  assumption and the multi-region one an upper bound.

``--profile`` runs once more under cProfile and prints where the time goes.

Why :class:`PhasedCountingStore` extends :class:`benchmarks.bookkeeping.CountingStore` instead of
using it: the totals alone do not say where the writes go, and a query costs Firestore one read
per document it returns, not one per call.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import pstats
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar
from urllib.parse import urlsplit

from benchmarks.bookkeeping import CountingStore
from hpsteer.backends.local.tasks import DispatchedRequest, DispatchResult
from hpsteer.domain.actions import Mode
from hpsteer.domain.commands import CommandState
from hpsteer.domain.market import PriceArea, Resolution
from hpsteer.domain.plans import Plan, PlanSlot, plan_id_for
from hpsteer.ports.store import Document, DocumentStore, Filter, Order, Page, Transaction
from hpsteer.runtime.local_fleet import LocalFleet
from hpsteer.services.outbox import release_plan
from hpsteer.services.plans_store import make_current, plan_document, write_plan

T = TypeVar("T")
T0 = datetime(2025, 1, 15, 6, tzinfo=UTC)
GOAL_COMMANDS_PER_S = 1000.0
GOAL_OPERATIONS_PER_COMMAND = 6.0
SLOT = Resolution.PT60M
MODE_PATTERNS: tuple[tuple[Mode, ...], ...] = (
    (Mode.MAX, Mode.MAX, Mode.MIN, Mode.MID, Mode.MID, Mode.MAX),
    (Mode.MIN, Mode.MID, Mode.MID, Mode.MAX, Mode.MIN, Mode.MIN),
    (Mode.MID, Mode.MAX, Mode.MIN, Mode.MIN, Mode.MAX, Mode.MAX),
)
"""Six hourly slots per plan, four mode changes each; homes take the patterns in turn."""
KINDS = ("command", "event", "plan", "budget", "breaker", "baseline", "alert", "device")
PHASES = ("plan", "release", "dispatch", "verify", "sweep")
SWEEP_EVERY = timedelta(minutes=30)
"""The command sweep's schedule (terraform's ``command_sweep_interval_minutes``): it releases
the plans' changes as they come within ``release_ahead_minutes``."""


@dataclass(frozen=True, slots=True)
class FirestorePrices:
    """Firestore Standard edition list prices beyond the free quota, USD per 100,000 documents."""

    location: str
    read_usd_per_100k: float
    write_usd_per_100k: float
    delete_usd_per_100k: float

    def usd(self, reads: float, writes: float, deletes: float) -> float:
        """The price of ``reads`` reads and ``writes`` writes, ``deletes`` of them deletes."""
        return (
            reads * self.read_usd_per_100k
            + (writes - deletes) * self.write_usd_per_100k
            + deletes * self.delete_usd_per_100k
        ) / 100_000


MULTI_REGION = FirestorePrices("multi-region (nam5; eur3 assumed the same)", 0.06, 0.18, 0.02)
REGIONAL = FirestorePrices(
    "regional, cheapest tier (us-west1 in the table; europe-west1 assumed)", 0.03, 0.09, 0.01
)
PRICES_SOURCE = "https://firebase.google.com/docs/firestore/pricing (location table)"


def document_kind(path: str) -> str:
    """What a document (or collection) path holds, by the layout of docs/DESIGN.md."""
    parts = path.strip("/").split("/")
    if parts[0] == "devices":
        sub = parts[2] if len(parts) > 2 else ""
        if sub == "commands":
            return "event" if len(parts) > 4 and parts[4] == "events" else "command"
        return {"": "device", "plans": "plan"}.get(sub, "other")
    if parts[0] == "manufacturers":
        sub = parts[2] if len(parts) > 2 else ""
        return {"": "breaker", "accounts": "budget", "baselines": "baseline"}.get(sub, "other")
    # A collection group query over every device's commands or plans (a plan's release, which
    # the command sweep queries, is fields of the plan: there is no marker document).
    group = {"commands": "command", "plans": "plan"}.get(parts[0])
    if group is not None:
        return group
    return {"alerts": "alert"}.get(parts[0], "other")


@dataclass
class Tally:
    """Document operations by (phase, kind, operation), operation one of read/write/delete."""

    counts: Counter[tuple[str, str, str]] = field(default_factory=Counter)

    def add(self, phase: str, path: str, operation: str, n: int = 1) -> None:
        self.counts[(phase, document_kind(path), operation)] += n

    def total(self, operation: str) -> int:
        return sum(n for (_, _, op), n in self.counts.items() if op == operation)

    def by(self, axis: int, operation: str) -> dict[str, int]:
        out: Counter[str] = Counter()
        for key, n in self.counts.items():
            if key[2] == operation:
                out[key[axis]] += n
        return dict(out)


class _TallyTransaction:
    """A transaction that remembers what it read and wrote (the store settles the tally)."""

    def __init__(self, inner: Transaction) -> None:
        self._inner = inner
        self.reads: list[str] = []
        self.writes: list[tuple[str, str]] = []

    def get(self, path: str) -> Document | None:
        self.reads.append(path)
        return self._inner.get(path)

    def create(self, path: str, data: Mapping[str, Any]) -> None:
        self.writes.append((path, "write"))
        self._inner.create(path, data)

    def set(self, path: str, data: Mapping[str, Any], *, merge: bool = False) -> None:
        self.writes.append((path, "write"))
        self._inner.set(path, data, merge=merge)

    def update(self, path: str, changes: Mapping[str, Any]) -> None:
        self.writes.append((path, "write"))
        self._inner.update(path, changes)

    def delete(self, path: str) -> None:
        self.writes.append((path, "delete"))
        self._inner.delete(path)


class PhasedCountingStore(CountingStore):
    """:class:`CountingStore` that also tallies each operation by phase and document kind.

    ``phase`` is set by the benchmark around what it measures. A delete counts in ``writes``
    (as in :class:`CountingStore`) and in ``deletes``; a query counts one read per document it
    returned, at least one, as Firestore bills it.
    """

    def __init__(self, inner: DocumentStore) -> None:
        super().__init__(inner)
        self.phase = "setup"
        self.deletes = 0
        self.tally = Tally()

    def reset(self) -> None:
        self.reads = self.writes = self.deletes = self.transactions = 0
        self.tally = Tally()

    def get(self, path: str) -> Document | None:
        self.tally.add(self.phase, path, "read")
        return super().get(path)

    def create(self, path: str, data: Mapping[str, Any]) -> Document:
        self.tally.add(self.phase, path, "write")
        return super().create(path, data)

    def set(self, path: str, data: Mapping[str, Any], *, merge: bool = False) -> datetime:
        self.tally.add(self.phase, path, "write")
        return super().set(path, data, merge=merge)

    def update(
        self, path: str, changes: Mapping[str, Any], *, if_update_time: datetime | None = None
    ) -> datetime:
        self.tally.add(self.phase, path, "write")
        return super().update(path, changes, if_update_time=if_update_time)

    def delete(self, path: str) -> None:
        self.tally.add(self.phase, path, "write")
        self.tally.add(self.phase, path, "delete")
        self.deletes += 1
        super().delete(path)

    def run_transaction(self, fn: Callable[[Transaction], T], *, max_attempts: int = 5) -> T:
        attempts: list[_TallyTransaction] = []

        def tallied(tx: Transaction) -> T:
            attempts.append(_TallyTransaction(tx))
            return fn(attempts[-1])

        try:
            result = self.inner.run_transaction(tallied, max_attempts=max_attempts)
        finally:
            for attempt in attempts:
                for path in attempt.reads:
                    self.tally.add(self.phase, path, "read")
                self.reads += len(attempt.reads)
        if attempts:
            self.transactions += 1
            for path, operation in attempts[-1].writes:
                self.tally.add(self.phase, path, "write")
                self.writes += 1
                if operation == "delete":
                    self.tally.add(self.phase, path, "delete")
                    self.deletes += 1
        return result

    def query(
        self,
        collection: str,
        filters: Sequence[Filter] = (),
        order_by: Sequence[Order] = (),
        limit: int | None = None,
        cursor: str | None = None,
    ) -> Page:
        page = self.inner.query(collection, filters, order_by, limit, cursor)
        self._count_query(collection, page)
        return page

    def collection_group(
        self,
        collection_id: str,
        filters: Sequence[Filter] = (),
        order_by: Sequence[Order] = (),
        limit: int | None = None,
        cursor: str | None = None,
    ) -> Page:
        page = self.inner.collection_group(collection_id, filters, order_by, limit, cursor)
        self._count_query(collection_id, page)
        return page

    def _count_query(self, collection: str, page: Page) -> None:
        billed = max(1, len(page.documents))
        self.tally.add(self.phase, collection, "read", billed)
        self.reads += billed

    @contextmanager
    def in_phase(self, phase: str) -> Iterator[None]:
        previous, self.phase = self.phase, phase
        try:
            yield
        finally:
            self.phase = previous


@dataclass
class _PhasedFleet(LocalFleet):
    """A :class:`LocalFleet` whose deliveries are tallied and timed as ``dispatch`` or
    ``verify`` (the rest of :meth:`LocalFleet.run_until` is the queue and the fleet's physics)."""

    handler_seconds: dict[str, float] = field(default_factory=dict)

    def deliver(self, request: DispatchedRequest) -> DispatchResult:
        verify_path = urlsplit(self.deps.settings.verify_url).path
        phase = "verify" if urlsplit(request.url).path == verify_path else "dispatch"
        began = time.perf_counter()
        try:
            with counting_store(self).in_phase(phase):
                return super().deliver(request)
        finally:
            spent = time.perf_counter() - began
            self.handler_seconds[phase] = self.handler_seconds.get(phase, 0.0) + spent

    def sweep(self) -> None:
        began = time.perf_counter()
        try:
            with counting_store(self).in_phase("sweep"):
                super().sweep()
        finally:
            spent = time.perf_counter() - began
            self.handler_seconds["sweep"] = self.handler_seconds.get("sweep", 0.0) + spent


def counting_store(local: LocalFleet) -> PhasedCountingStore:
    store = local.deps.store
    assert isinstance(store, PhasedCountingStore)
    return store


def phased(local: LocalFleet) -> _PhasedFleet:
    assert isinstance(local, _PhasedFleet)
    return local


def hourly_plan(device_id: str, modes: Sequence[Mode], start_at: datetime, now: datetime) -> Plan:
    """A plan of one hourly slot per mode (prices and predictions are placeholders)."""
    step = SLOT.duration
    slots = tuple(
        PlanSlot(
            start_at=start_at + index * step,
            end_at=start_at + (index + 1) * step,
            mode=mode,
            price_eur_per_mwh=50.0 + 10.0 * index,
            expected_power_kw=1.5,
            predicted_indoor_temp_c=21.0,
        )
        for index, mode in enumerate(modes)
    )
    return Plan(
        plan_id=plan_id_for(device_id, start_at, "benchmark"),
        device_id=device_id,
        price_area=PriceArea.SE3,
        resolution=SLOT,
        created_at=now,
        slots=slots,
        expected_cost_eur=1.0,
        baseline_cost_eur=1.2,
        solver="benchmark",
    )


def store_plans(local: LocalFleet, start_at: datetime) -> list[tuple[Plan, dict[str, Any]]]:
    """Write every home's plan and make it current, as optimize does (phase ``plan``)."""
    store, now = local.deps.store, local.clock.now()
    stored = []
    for index, home in enumerate(local.fleet):
        plan = hourly_plan(home.home_id, MODE_PATTERNS[index % len(MODE_PATTERNS)], start_at, now)
        document, _ = write_plan(store, plan, plan_document(plan, None, {}))
        make_current(store, plan.device_id, plan.plan_id, plan.start_at, plan.created_at)
        stored.append((plan, document))
    return stored


def release_plans(local: LocalFleet, stored: Sequence[tuple[Plan, dict[str, Any]]]) -> int:
    """Release every plan's outbox (phase ``release``); return how many commands were queued."""
    manufacturer = {home.home_id: home.manufacturer for home in local.fleet}
    queued = 0
    for plan, document in stored:
        device = {"manufacturer": manufacturer[plan.device_id]}
        # As optimize releases a plan it has just written and made current.
        outcome = release_plan(
            local.deps, plan.device_id, device, document, current=True, fresh=True
        )
        queued += len(outcome.queued)
    return queued


def command_states(local: LocalFleet) -> Counter[str]:
    """Every command's state, read from the store underneath (not counted)."""
    inner = counting_store(local).inner
    states: Counter[str] = Counter()
    cursor: str | None = None
    while True:
        page = inner.collection_group("commands", limit=500, cursor=cursor)
        states.update(str(doc.data["state"]) for doc in page.documents)
        if page.next_cursor is None:
            return states
        cursor = page.next_cursor


@dataclass(frozen=True, slots=True)
class Run:
    homes: int
    queued: int
    states: dict[str, int]
    seconds: dict[str, float]
    tally: Tally
    deliveries: int
    simulated_manufacturers_s: float = 0.0
    """Of the handlers' time, what the simulated manufacturers took to answer."""

    @property
    def completed(self) -> int:
        return self.states.get(CommandState.COMPLETED.value, 0)

    @property
    def total_s(self) -> float:
        return sum(self.seconds.values())


def build(homes: int, seed: int) -> LocalFleet:
    local = _PhasedFleet.build(start=T0, homes=homes, seed=seed, wrap_store=PhasedCountingStore)
    local.register_devices()
    counting_store(local).reset()
    return local


def run_once(homes: int, seed: int) -> Run:
    """One timed pass: plans, release, then every delivery until the horizon's end."""
    local = build(homes, seed)
    store = counting_store(local)
    start_at = T0 + SLOT.duration
    horizon_end = start_at + len(MODE_PATTERNS[0]) * SLOT.duration
    seconds: dict[str, float] = {}
    began = time.perf_counter()
    with store.in_phase("plan"):
        stored = store_plans(local, start_at)
    seconds["plan"] = time.perf_counter() - began
    began = time.perf_counter()
    with store.in_phase("release"):
        queued = release_plans(local, stored)
    seconds["release"] = time.perf_counter() - began
    began = time.perf_counter()
    deliveries = local.run_until(horizon_end, sweep_every=SWEEP_EVERY)
    delivery_s = time.perf_counter() - began
    handlers = phased(local).handler_seconds
    seconds.update(handlers)
    seconds["queue_and_fleet_physics"] = delivery_s - sum(handlers.values())
    states = dict(command_states(local))
    return Run(homes, queued, states, seconds, store.tally, deliveries, local.manufacturer_apis_s)


def _per(value: float, commands: int) -> float:
    return round(value / max(commands, 1), 3)


def figures(runs: Sequence[Run]) -> dict[str, Any]:
    """The JSON figures: rates as medians over ``runs``, operations of the median run."""
    ordered = sorted(runs, key=lambda r: r.completed / r.total_s)
    median = ordered[len(ordered) // 2]
    tally, done = median.tally, median.completed
    reads, writes, deletes = tally.total("read"), tally.total("write"), tally.total("delete")
    per_read, per_write, per_delete = _per(reads, done), _per(writes, done), _per(deletes, done)
    return {
        "benchmark": "dispatch",
        "homes": median.homes,
        "commands_queued": median.queued,
        "commands_completed": done,
        "command_states": median.states,
        "deliveries": median.deliveries,
        "repeats": len(runs),
        "commands_per_s": round(statistics.median(r.completed / r.total_s for r in runs), 1),
        "commands_per_s_runs": [round(r.completed / r.total_s, 1) for r in runs],
        "goal_commands_per_s": GOAL_COMMANDS_PER_S,
        "seconds_by_phase": {k: round(v, 3) for k, v in median.seconds.items()},
        "plan_and_release_commands_per_s": round(
            done / (median.seconds["plan"] + median.seconds["release"]), 1
        ),
        "delivery_commands_per_s": round(
            done
            / sum(median.seconds[k] for k in ("dispatch", "verify", "queue_and_fleet_physics")),
            1,
        ),
        "commands_per_s_without_queue_and_fleet_physics": round(
            done / (median.total_s - median.seconds["queue_and_fleet_physics"]), 1
        ),
        "simulated_manufacturers_s": round(median.simulated_manufacturers_s, 3),
        "commands_per_s_of_hpsteer_code": round(
            done
            / (
                median.total_s
                - median.seconds["queue_and_fleet_physics"]
                - median.simulated_manufacturers_s
            ),
            1,
        ),
        "reads_per_command": per_read,
        "writes_per_command": per_write,
        "deletes_per_command": per_delete,
        "goal_operations_per_command": GOAL_OPERATIONS_PER_COMMAND,
        "by_kind": _breakdown(tally, 1, done, KINDS),
        "by_phase": _breakdown(tally, 0, done, PHASES),
        "firestore_usd_per_1000_commands": round(
            1000 * MULTI_REGION.usd(per_read, per_write, per_delete), 6
        ),
        "firestore_usd_per_1000_commands_regional": round(
            1000 * REGIONAL.usd(per_read, per_write, per_delete), 6
        ),
        "firestore_prices": {
            "source": PRICES_SOURCE,
            "used": _price_fields(MULTI_REGION),
            "regional": _price_fields(REGIONAL),
        },
    }


def _breakdown(tally: Tally, axis: int, commands: int, keys: Sequence[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for operation in ("write", "read", "delete"):
        counts = tally.by(axis, operation)
        names = [k for k in keys if k in counts] + sorted(set(counts) - set(keys))
        out[f"{operation}s_per_command"] = {k: _per(counts[k], commands) for k in names}
    return out


def _price_fields(prices: FirestorePrices) -> dict[str, Any]:
    return {
        "location": prices.location,
        "read_usd_per_100k": prices.read_usd_per_100k,
        "write_usd_per_100k": prices.write_usd_per_100k,
        "delete_usd_per_100k": prices.delete_usd_per_100k,
    }


def measure(homes: int = 300, seed: int = 7, repeats: int = 3) -> dict[str, Any]:
    return figures([run_once(homes, seed) for _ in range(repeats)])


class _Discard:
    """An exporter that drops what it gets: the cost measured is the SDK's, not a network's."""

    def export(self, spans: Any) -> Any:
        from opentelemetry.sdk.trace.export import SpanExportResult

        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        return None

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return True


def telemetry_overhead(
    homes: int, seed: int, repeats: int, without: Mapping[str, Any]
) -> dict[str, Any]:
    """The same runs with tracing on, sampled at 10 % as in production (spans are recorded
    either way; the sampled ones go to a discarding exporter through the batch processor)."""
    from hpsteer.observability.tracing import configure_tracing

    configure_tracing(_Discard(), sample_rate=0.1)
    try:
        traced = measure(homes, seed, repeats)
    finally:
        configure_tracing(None)
    base, slower = without["commands_per_s"], traced["commands_per_s"]
    return {
        "commands_per_s_with_telemetry": slower,
        "telemetry_overhead_pct": round(100.0 * (1.0 - slower / base), 1),
        "goal_telemetry_overhead_pct": 10.0,
    }


def profile(homes: int, seed: int, top: int = 30) -> str:
    """One run under cProfile: the functions with the most cumulative and own time."""
    profiler = cProfile.Profile()
    profiler.runcall(run_once, homes, seed)
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    stats.sort_stats("cumulative").print_stats(top)
    stats.sort_stats("tottime").print_stats(top)
    return out.getvalue()


def _print_text(result: Mapping[str, Any]) -> None:
    print(
        f"command path, {result['homes']} homes, {result['commands_completed']} of "
        f"{result['commands_queued']} commands completed, median of {result['repeats']} runs"
    )
    print(
        f"  {result['commands_per_s']:8.0f} commands/s (goal {GOAL_COMMANDS_PER_S:.0f}); "
        f"phases {result['seconds_by_phase']} s"
    )
    print(
        f"  {result['writes_per_command']:.2f} writes ({result['deletes_per_command']:.2f} of "
        f"them deletes) and {result['reads_per_command']:.2f} reads per command "
        f"(goal {GOAL_OPERATIONS_PER_COMMAND:.0f} each)"
    )
    for axis in ("by_kind", "by_phase"):
        for operation, counts in result[axis].items():
            print(f"    {axis} {operation}: {counts}")
    print(
        f"  Firestore: ${result['firestore_usd_per_1000_commands']:.5f} per 1,000 commands "
        f"({MULTI_REGION.location}), ${result['firestore_usd_per_1000_commands_regional']:.5f} "
        f"({REGIONAL.location})"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument("--homes", type=int, default=300)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--profile", action="store_true", help="also print a cProfile of one run")
    parser.add_argument(
        "--telemetry",
        action="store_true",
        help="also measure with tracing on (10 %% sampled) and report telemetry_overhead_pct",
    )
    args = parser.parse_args(argv)
    result = measure(args.homes, args.seed, args.repeats)
    if args.telemetry:
        result |= telemetry_overhead(args.homes, args.seed, args.repeats, result)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        _print_text(result)
    if args.profile:
        print(profile(args.homes, args.seed), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
