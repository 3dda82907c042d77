"""A shard's devices on ``optimize_io_workers`` threads (production's optimize_shard): each
device is prepared, solved on the planning executor and completed on one of the shard's
workers, so their round trips overlap. What is written, and every guarantee of a shard, stay
those of the same shard planned in turn (the local runtime's one worker): the same plans,
commands, tasks and rows; the shard's inputs read once; one analytics insert per table at its
end; a device's failure its own; transient failures raised after the shard, naming the first
in the request's order; each device's log lines and spans in its own context.

Same fixtures as :mod:`tests.services.test_optimize` (real SE3 prices, the bundled forecast).
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Callable, Mapping
from datetime import date
from typing import Any

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from hpsteer.errors import StoreUnavailable
from hpsteer.observability.logging import log_context
from hpsteer.observability.tracing import span
from hpsteer.runtime.bootstrap import Dependencies
from hpsteer.services import optimize, plan_inputs
from hpsteer.services.command_tasks import dispatch_queue
from hpsteer.services.optimize import DeviceOutcome, plan_shard
from tests.services.test_optimize import register, shard, store_forecast, store_prices
from tests.services.test_optimize_batching import CountingAnalytics, counted
from tests.services.test_optimize_identify import (
    register_measured,
    simulated_rows,
    store_earlier_forecasts,
    store_history,
)
from tests.support.outboxes import outbox_concluded
from tests.support.tracing import BoundIds

DEVICES = ("d1", "d2", "d3", "d4")
WORKERS = len(DEVICES)
BARRIER_TIMEOUT_S = 30.0
"""Only how long a test waits before it fails, never something it measures."""


def fleet() -> tuple[Dependencies, CountingAnalytics]:
    """Prices, the latest and earlier forecasts, the devices of :data:`DEVICES` with two days
    of measured history each, and one device whose comfort band is inverted; analytics
    counted."""
    from hpsteer.backends.local.analytics import SqliteAnalytics

    counting = CountingAnalytics(SqliteAnalytics())
    deps = counted(counting)
    store_prices(deps, date(2023, 1, 15), date(2023, 1, 16))
    store_forecast(deps)
    store_earlier_forecasts(deps, 48, 24)
    for device_id in DEVICES:
        store_history(deps, simulated_rows(device_id, loss_scale=1.2, days=2))
        register_measured(deps, device_id)
    register(deps, "inverted-band", comfort={"min_indoor_temp_c": 23, "max_indoor_temp_c": 20})
    counting.appends.clear()
    counting.queries = 0
    return deps, counting


REQUEST = shard(*DEVICES, "inverted-band", "unknown")


def written(deps: Dependencies) -> dict[str, Any]:
    """What a shard leaves behind: every device's plans, current plan and commands, the
    dispatch tasks and the analytics rows (but the solver's wall time, ``solve_ms``)."""
    ids = (*DEVICES, "inverted-band")
    store = deps.store
    tasks: Any = deps.tasks

    def timeless(data: Mapping[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in data.items() if k != "solve_ms"}

    def documents(collection: str) -> list[tuple[str, dict[str, Any]]]:
        return [(doc.path, timeless(doc.data)) for doc in store.query(collection).documents]

    def data(path: str) -> dict[str, Any] | None:
        found = store.get(path)
        return None if found is None else found.data

    return {
        "plans": {d: documents(f"devices/{d}/plans") for d in ids},
        "devices": {d: data(f"devices/{d}") for d in ids},
        "commands": {d: documents(f"devices/{d}/commands") for d in ids},
        "tasks": sorted(
            (t.name, t.schedule_at) for t in tasks.pending_tasks(dispatch_queue("viessmann").name)
        ),
        "rows": {
            table: sorted(
                repr(timeless(row)) for row in deps.analytics.query(f"SELECT * FROM `{table}`")
            )
            for table in ("plans", "cost_savings", "command_events")
        },
    }


def test_a_shard_on_io_workers_writes_what_the_same_shard_planned_in_turn_writes() -> None:
    in_turn, _ = fleet()
    at_once, counting = fleet()

    expected = plan_shard(REQUEST, in_turn, workers=1)
    outcomes = plan_shard(REQUEST, at_once, workers=WORKERS)

    assert outcomes == expected  # the same outcomes, in the request's order
    assert [o.device_id for o in outcomes] == [*DEVICES, "inverted-band", "unknown"]
    assert [o.status for o in outcomes] == ["planned"] * 4 + ["failed"] * 2
    assert written(at_once) == written(in_turn)
    assert counting.appends == {"plans": 1, "cost_savings": 1, "command_events": 1}
    assert all(
        outbox_concluded(at_once.store, at_once.settings, o.device_id, str(o.plan_id))
        for o in outcomes
        if o.status == "planned"
    )


def test_the_local_runtime_plans_a_shards_devices_in_turn_unless_told_otherwise() -> None:
    deps, _ = fleet()
    assert deps.settings.optimize_io_workers == 1


@pytest.fixture
def all_at_once(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """Every device's first read waits until all the shard's devices are being read (a shard
    planned in turn would never get past it); counts the reads the shard shares."""
    barrier = threading.Barrier(WORKERS, timeout=BARRIER_TIMEOUT_S)
    reads: Counter[str] = Counter()
    real_load = plan_inputs.load_device

    def load_device(store: Any, device_id: str, **kwargs: Any) -> Any:
        barrier.wait()
        return real_load(store, device_id, **kwargs)

    def counted(name: str) -> None:
        real: Callable[..., Any] = getattr(optimize, name)

        def read(*args: Any, **kwargs: Any) -> Any:
            reads[name] += 1
            return real(*args, **kwargs)

        monkeypatch.setattr(optimize, name, read)

    monkeypatch.setattr(optimize, "load_device", load_device)
    for name in ("horizon_prices", "latest_forecast", "load_histories", "past_forecasts"):
        counted(name)
    return reads


def test_a_shards_devices_are_read_at_once_and_its_shared_inputs_once_between_them(
    all_at_once: Counter[str],
) -> None:
    deps, counting = fleet()

    outcomes = plan_shard(shard(*DEVICES), deps, workers=WORKERS)

    assert [o.status for o in outcomes] == ["planned"] * WORKERS
    assert all_at_once == {
        "horizon_prices": 1,  # one price area
        "latest_forecast": 1,  # one location
        "load_histories": 1,  # one query for the shard
        "past_forecasts": 1,  # one location
    }
    assert counting.queries == 1
    for outcome in outcomes:
        plan = deps.store.get(f"devices/{outcome.device_id}/plans/{outcome.plan_id}")
        assert plan is not None
        assert plan.data["inputs"]["identified"] is not None  # each planned on its history


def failing_reads(deps: Dependencies, device_ids: set[str]) -> None:
    """The device documents of ``device_ids`` cannot be read (the store does not answer)."""
    store = deps.store
    real_get = store.get

    def get(path: str) -> Any:
        if path.removeprefix("devices/") in device_ids:
            raise StoreUnavailable(f"{path}: induced outage")
        return real_get(path)

    store.get = get  # type: ignore[method-assign]  # induce an outage on this instance


def test_a_transient_failure_on_a_worker_is_raised_after_the_shard_naming_the_first_in_order(
    all_at_once: Counter[str],
) -> None:
    deps, counting = fleet()
    failing_reads(deps, {"d4", "d2"})

    with pytest.raises(StoreUnavailable, match=r"2 of 4 devices failed transiently \(first d2:"):
        plan_shard(shard(*DEVICES), deps, workers=WORKERS)

    for device_id in ("d1", "d3"):  # planned, made current, released, their rows sent
        device = deps.store.get(f"devices/{device_id}")
        assert device is not None
        assert device.data.get("current_plan_id")
    assert counting.appends == {"plans": 1, "cost_savings": 1, "command_events": 1}


def test_a_shard_redelivered_after_a_transient_failure_plans_only_what_was_left() -> None:
    deps, _ = fleet()
    real_get = deps.store.get
    failing_reads(deps, {"d3"})
    with pytest.raises(StoreUnavailable):
        plan_shard(shard(*DEVICES), deps, workers=WORKERS)
    deps.store.get = real_get  # type: ignore[method-assign]  # the store answers again

    again = plan_shard(shard(*DEVICES), deps, workers=WORKERS)

    assert [(o.device_id, o.status) for o in again] == [
        ("d1", "unchanged"),
        ("d2", "unchanged"),
        ("d3", "planned"),
        ("d4", "unchanged"),
    ]


def test_each_worker_writes_its_devices_lines_and_spans_in_the_shards_context(
    spans: InMemorySpanExporter,
) -> None:
    deps, _ = fleet()
    handler = BoundIds(logging.INFO)
    logger = logging.getLogger("hpsteer.services.optimize")
    logger.addHandler(handler)
    previous = logger.level
    logger.setLevel(logging.INFO)
    try:
        with span("optimize_requests"), log_context(message_id="m-1"):
            plan_shard(shard(*DEVICES), deps, workers=WORKERS)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(previous)

    planned = {
        message.split(":")[0].removeprefix("planned "): ids
        for message, ids in handler.lines
        if message.startswith("planned ")
    }
    assert planned == {
        d: {"message_id": "m-1", "device_id": d, "trigger": REQUEST.trigger} for d in DEVICES
    }
    assert all(name.startswith("optimize-io") for name in handler.threads)
    finished = spans.get_finished_spans()
    [request] = [s for s in finished if s.name == "optimize_requests"]
    for name in ("plan_device", "release_plan"):
        devices = [s for s in finished if s.name == name]
        assert sorted(str((s.attributes or {})["device_id"]) for s in devices) == list(DEVICES)
        assert {s.parent.span_id for s in devices if s.parent} == {request.context.span_id}


def test_a_one_device_shard_is_planned_on_the_callers_thread() -> None:
    deps, _ = fleet()
    threads: set[str] = set()
    real = optimize._Shard.prepare

    def prepare(self: Any, device_id: str) -> DeviceOutcome | Any:
        threads.add(threading.current_thread().name)
        return real(self, device_id)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(optimize._Shard, "prepare", prepare)
        [outcome] = plan_shard(shard("d1"), deps, workers=WORKERS)

    assert outcome.status == "planned"
    assert threads == {threading.current_thread().name}
