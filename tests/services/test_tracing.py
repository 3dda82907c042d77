"""One trace per command across every hop: plan release → tasks → dispatch attempts → verify.

The SDK's in-memory exporter collects what the real code emits on the local command path (the
local task queue, the dispatch and verify handlers, the real adapters against the simulated
fleet); the trace context travels only in the task headers, as on Cloud Tasks.
"""

from __future__ import annotations

import io
import json
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from hpsteer.domain.actions import Mode
from hpsteer.domain.messages import Topic
from hpsteer.messaging.envelope import encode_json_message
from hpsteer.observability.logging import JsonFormatter
from hpsteer.observability.tracing import (
    configure_tracing,
    continued,
    current_traceparent,
    tracer,
    with_traceparent,
)
from hpsteer.runtime.local_fleet import LocalFleet
from hpsteer.services.outbox import release_plan
from hpsteer.services.plans_store import make_current
from hpsteer.sim.faults import FaultSpec

T0 = datetime(2025, 1, 15, 6, tzinfo=UTC)
SLOT = T0 + timedelta(hours=1)


def by_name(finished: tuple[ReadableSpan, ...], name: str) -> list[ReadableSpan]:
    return [s for s in finished if s.name == name]


def parent_id(span: ReadableSpan) -> int | None:
    return span.parent.span_id if span.parent is not None else None


def release_one_plan(local: LocalFleet, home_id: str) -> None:
    document: dict[str, Any] = {
        "plan_id": "p1",
        "device_id": home_id,
        "end_at": T0 + timedelta(hours=12),
        "outbox": [
            {"at": SLOT.isoformat(), "action": "set_mode_max", "slot_index": 4, "status": "pending"}
        ],
    }
    store = local.deps.store
    store.set(f"devices/{home_id}/plans/p1", document)
    make_current(
        store, home_id, "p1", T0, T0, [(T0, Mode.MID), (SLOT, Mode.MAX)], document["end_at"]
    )
    device = store.get(f"devices/{home_id}")
    assert device is not None
    release_plan(local.deps, home_id, device.data, document)


def test_a_plan_its_command_every_dispatch_attempt_and_the_verification_form_one_trace(
    spans: InMemorySpanExporter,
) -> None:
    local = LocalFleet.build(start=T0, homes=3, seed=4)
    local.register_devices()
    home = next(h for h in local.fleet if h.manufacturer == "viessmann")
    local.fleet.faults.set_device(
        home.home_id, FaultSpec(server_error_rate=1.0, wire_faults_on_writes_only=True)
    )
    with tracer().start_as_current_span("optimize_shard") as root:
        release_one_plan(local, home.home_id)
    local.run_until(SLOT + timedelta(seconds=15))  # the first attempts meet 500s
    local.fleet.faults.clear(home.home_id)
    local.run_until(SLOT + timedelta(minutes=30))  # a retry succeeds; verification follows

    finished = spans.get_finished_spans()
    trace_id = root.get_span_context().trace_id
    assert {s.context.trace_id for s in finished} == {trace_id}
    executions = by_name(finished, "execute_command")
    assert len(executions) >= 2  # a failed attempt and the one that went through
    root_id = root.get_span_context().span_id
    assert {parent_id(s) for s in executions} == {root_id}  # each attempt: a child of the plan
    sends = by_name(finished, "send_to_oem")
    assert len(sends) >= 2
    execution_ids = {s.context.span_id for s in executions}
    assert {parent_id(s) for s in sends} <= execution_ids
    assert {parent_id(s) for s in by_name(finished, "validate_command")} <= execution_ids
    [verification] = by_name(finished, "verify_execution")
    assert parent_id(verification) in execution_ids  # enqueued by the attempt that sent


def test_a_message_published_in_a_span_carries_it_and_its_handler_continues_the_trace(
    spans: InMemorySpanExporter,
) -> None:
    from cloudevents.http import CloudEvent

    from hpsteer.runtime.entrypoint import run_pubsub, use_dependencies

    local = LocalFleet.build(start=T0, homes=1, seed=4)
    seen: list[int] = []

    def service(message: Any, deps: Any) -> None:
        seen.append(tracer().start_span("probe").get_span_context().trace_id)

    def handler(event: CloudEvent) -> None:
        run_pubsub(event, service)

    bus = local.deps.bus
    bus.subscribe(Topic.REPLAN_REQUESTS.value, handler)  # type: ignore[attr-defined]
    use_dependencies(local.deps)
    try:
        with tracer().start_as_current_span("reconcile_device") as origin:
            bus.publish(Topic.REPLAN_REQUESTS.value, encode_json_message_probe())
        bus.drain()  # type: ignore[attr-defined]
    finally:
        use_dependencies(None)
    assert seen == [origin.get_span_context().trace_id]
    [handled] = by_name(spans.get_finished_spans(), "service")
    assert parent_id(handled) == origin.get_span_context().span_id


def encode_json_message_probe() -> bytes:
    from hpsteer.domain.messages import ReplanRequest

    return encode_json_message(ReplanRequest(reason="probe", requested_at=T0))


def test_a_log_line_written_in_a_span_carries_the_span_for_cloud_logging(
    spans: InMemorySpanExporter,
) -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter("hpsteer-prod"))
    log = logging.getLogger("tests.tracing")
    log.addHandler(handler)
    try:
        with continued(None, "execute_command") as span:
            log.warning("a line inside")
    finally:
        log.removeHandler(handler)
    line = json.loads(stream.getvalue())
    context = span.get_span_context()
    assert line["logging.googleapis.com/trace"] == (
        f"projects/hpsteer-prod/traces/{context.trace_id:032x}"
    )
    assert line["logging.googleapis.com/spanId"] == f"{context.span_id:016x}"


def test_without_tracing_configured_nothing_is_added_to_messages_or_tasks() -> None:
    with tracer().start_as_current_span("anything"):
        assert current_traceparent() is None
        assert with_traceparent({"a": "b"}) == {"a": "b"}


def test_a_traceparent_the_caller_set_is_kept(spans: InMemorySpanExporter) -> None:
    mine = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    with tracer().start_as_current_span("anything"):
        assert with_traceparent({"Traceparent": mine}) == {"Traceparent": mine}
        assert with_traceparent({})["traceparent"] != mine


def test_errors_are_kept_when_their_trace_is_not_sampled() -> None:
    exporter = InMemorySpanExporter()
    configure_tracing(exporter, sample_rate=0.0, batch=False)
    try:
        with continued(None, "fine"):
            pass
        with pytest.raises(RuntimeError), continued(None, "broken"):
            raise RuntimeError("boom")
    finally:
        configure_tracing(None)
    assert [s.name for s in exporter.get_finished_spans()] == ["broken"]


def test_production_tracing_leaves_the_cloud_trace_exporter_off_the_cold_start() -> None:
    import subprocess
    import sys

    probe = (
        "import sys\n"
        "from hpsteer.observability.tracing import configure_production_tracing, tracer\n"
        "assert configure_production_tracing('hpsteer-prod', 0.1) is not None\n"
        "with tracer().start_as_current_span('first request'):\n"
        "    pass\n"
        "print('opentelemetry.exporter.cloud_trace' in sys.modules)\n"
    )
    shown = subprocess.run(
        [sys.executable, "-c", probe], check=True, capture_output=True, text=True, timeout=60
    )
    assert shown.stdout.strip() == "False"


def test_a_sample_rate_of_zero_turns_production_tracing_off() -> None:
    from hpsteer.observability.tracing import configure_production_tracing

    assert configure_production_tracing("hpsteer-prod", 0.0) is None
    with tracer().start_as_current_span("anything"):
        assert current_traceparent() is None


def test_the_lazy_exporter_builds_its_exporter_on_the_first_export_only() -> None:
    from hpsteer.observability.tracing import LazyExporter

    built: list[InMemorySpanExporter] = []

    def factory() -> InMemorySpanExporter:
        built.append(InMemorySpanExporter())
        return built[-1]

    lazy = LazyExporter(factory)
    assert built == []
    configure_tracing(lazy, batch=False)
    try:
        with tracer().start_as_current_span("one"):
            pass
        with tracer().start_as_current_span("two"):
            pass
    finally:
        configure_tracing(None)
    assert len(built) == 1
    assert [s.name for s in built[0].get_finished_spans()] == ["one", "two"]
