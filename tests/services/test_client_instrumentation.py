"""httpx and gRPC calls made while handling a message are client spans of the handler's trace,
and the HTTP request carries the trace onward in ``traceparent``."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import httpx
import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from hpsteer.backends.gcp.secret_manager import SecretManagerStore
from hpsteer.errors import SecretNotFound
from hpsteer.observability.tracing import (
    configure_tracing,
    instrument_clients,
    span,
    uninstrument_clients,
)
from tests.support.secret_manager import (  # noqa: F401 - pytest finds the fixture by its name
    FakeSecretManager,
    secret_manager_fake,
)


class _Recorder(BaseHTTPRequestHandler):
    seen: ClassVar[list[str | None]] = []

    def do_GET(self) -> None:
        _Recorder.seen.append(self.headers.get("traceparent"))
        body = b"{}"
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        return


@pytest.fixture
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    _Recorder.seen.clear()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/state"
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    configure_tracing(exporter, batch=False)
    instrument_clients()
    try:
        yield exporter
    finally:
        uninstrument_clients()
        configure_tracing(None)


def test_an_http_call_is_a_client_span_under_the_handler_and_carries_traceparent(
    spans: InMemorySpanExporter, server: str
) -> None:
    with span("reconcile_device") as parent, httpx.Client() as client:
        assert client.get(server).status_code == 200

    handler = next(s for s in spans.get_finished_spans() if s.name == "reconcile_device")
    (call,) = [s for s in spans.get_finished_spans() if s.kind is SpanKind.CLIENT]
    assert call.parent is not None
    assert call.parent.span_id == handler.context.span_id
    assert call.context.trace_id == parent.get_span_context().trace_id
    (sent,) = _Recorder.seen
    assert sent is not None
    assert f"{call.context.trace_id:032x}" in sent


def test_spans_follow_the_provider_installed_after_instrumenting(
    spans: InMemorySpanExporter, server: str
) -> None:
    later = InMemorySpanExporter()
    configure_tracing(later, batch=False)

    with span("send_to_oem"):
        httpx.get(server)

    assert [s.kind for s in later.get_finished_spans()].count(SpanKind.CLIENT) == 1
    assert not spans.get_finished_spans()


def test_a_grpc_call_is_a_client_span_under_the_handler(
    spans: InMemorySpanExporter,
    secret_manager_fake: FakeSecretManager,  # noqa: F811
) -> None:
    store = SecretManagerStore("hpsteer-test-1", secret_manager_fake.client(), deadline_s=2)

    with span("read_device_state"), pytest.raises(SecretNotFound):
        store.get("never-created")

    handler = next(s for s in spans.get_finished_spans() if s.name == "read_device_state")
    calls = [s for s in spans.get_finished_spans() if s.kind is SpanKind.CLIENT]
    assert calls, "no gRPC client span"
    assert all(c.parent is not None and c.parent.span_id == handler.context.span_id for c in calls)
    assert any("AccessSecretVersion" in c.name for c in calls)


def test_without_instrumentation_no_client_span_is_made(server: str) -> None:
    exporter = InMemorySpanExporter()
    configure_tracing(exporter, batch=False)
    try:
        with span("dispatch"):
            httpx.get(server)
    finally:
        configure_tracing(None)

    assert [s.name for s in exporter.get_finished_spans()] == ["dispatch"]
