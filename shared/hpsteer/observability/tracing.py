"""Traces across every hop: spans, the W3C ``traceparent`` carried by messages and tasks, export.

Promises:

- **Spans** come from :func:`tracer`. Without :func:`configure_tracing` the OpenTelemetry API's
  no-op tracer answers: spans cost next to nothing and nothing is propagated.
- **Propagation.** Neither Pub/Sub nor Cloud Tasks carries trace context for us. Every backend
  that publishes a message or creates a task adds the current span's ``traceparent``
  (:func:`with_traceparent`: to the message's attributes, to the task's headers) unless the
  caller set one; every handler restores it (:func:`continued`) so its span is a child of the
  span that published or enqueued. A price event, the plans it causes, their commands, every
  dispatch attempt and the verification so form one trace.
- **Sampling** (:func:`configure_tracing`): a trace is sampled at ``sample_rate`` at its root and
  the decision follows it (parent-based). Spans of unsampled traces are still recorded, and one
  that ends in error is exported anyway (:func:`error_keeping_processor`): errors are always
  kept, the rest at the rate.
- **Export.** In production, Cloud Trace (``opentelemetry-exporter-gcp-trace``); locally, one
  JSON object per span and line (:class:`JsonLinesSpanExporter`: ``trace_id``, ``span_id``,
  ``parent_span_id``, ``name``, ``start_at``, ``end_at``, ``status``, ``attributes``).
"""

from __future__ import annotations

import functools
import json
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import SpanProcessor

    from hpsteer.ports.clock import Clock

__all__ = [
    "TRACEPARENT",
    "JsonLinesSpanExporter",
    "LazyExporter",
    "configure_production_tracing",
    "configure_tracing",
    "continued",
    "current_traceparent",
    "error_keeping_processor",
    "instrument_clients",
    "span",
    "tracer",
    "uninstrument_clients",
    "use_clock",
    "with_traceparent",
]

TRACEPARENT = "traceparent"
TRACER_NAME = "hpsteer"
_PROPAGATOR = TraceContextTextMapPropagator()


_provider: Any = None
"""The tracer provider :func:`configure_tracing` installed (None: the API's no-op tracer). Kept
here rather than as OpenTelemetry's global, which can be set only once per process: tests and
the local runtime install and remove their own."""


_tracer: trace.Tracer | None = None


def tracer() -> trace.Tracer:
    """The tracer of the installed provider (built once per provider), else the no-op one."""
    global _tracer
    if _tracer is None:
        source = _provider.get_tracer if _provider is not None else trace.get_tracer
        _tracer = source(TRACER_NAME)
    return _tracer


def current_traceparent() -> str | None:
    """The W3C ``traceparent`` of the current span (None outside a valid span)."""
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier)
    return carrier.get(TRACEPARENT)


def with_traceparent(carrier: Mapping[str, str]) -> dict[str, str]:
    """``carrier`` with the current span's ``traceparent`` added, unless it has one already
    (matched case-insensitively) or there is no current span."""
    result = dict(carrier)
    if any(key.lower() == TRACEPARENT for key in result):
        return result
    traceparent = current_traceparent()
    if traceparent is not None:
        result[TRACEPARENT] = traceparent
    return result


_clock: Clock | None = None
"""Where span times come from (None: the SDK's wall clock). The simulation installs its
simulated clock, so that a span's start and end are the moments of the simulated day."""


def use_clock(clock: Clock | None) -> None:
    global _clock
    _clock = clock


def _now_ns() -> int | None:
    clock = _clock
    return None if clock is None else int(clock.now().timestamp() * 1e9)


@contextmanager
def span(
    name: str, attributes: Mapping[str, Any] | None = None, *, context: Any = None
) -> Iterator[trace.Span]:
    """A span named ``name``, current for the block (a child of the current span unless
    ``context`` says otherwise), timed by the installed clock; an exception escaping the block
    is recorded and marks it as an error."""
    started = tracer().start_span(
        name, context=context, attributes=dict(attributes or {}), start_time=_now_ns()
    )
    try:
        with trace.use_span(started, end_on_exit=False):
            yield started
    finally:
        started.end(end_time=_now_ns())


@contextmanager
def continued(
    traceparent: str | None, name: str, attributes: Mapping[str, Any] | None = None
) -> Iterator[trace.Span]:
    """A :func:`span`, the child of the remote span ``traceparent`` names (a new trace's root
    when it is missing or malformed)."""
    parent = (
        _PROPAGATOR.extract({TRACEPARENT: traceparent}) if traceparent else otel_context.Context()
    )
    with span(name, attributes, context=parent) as started:
        yield started


# -- export -------------------------------------------------------------------------------------


def _instant(nanoseconds: int | None) -> str | None:
    if nanoseconds is None:
        return None
    return datetime.fromtimestamp(nanoseconds / 1e9, UTC).isoformat()


def span_record(span: Any) -> dict[str, Any]:
    """One finished span as the local ``traces.jsonl`` holds it."""
    context = span.get_span_context()
    parent = span.parent
    return {
        "trace_id": f"{context.trace_id:032x}",
        "span_id": f"{context.span_id:016x}",
        "parent_span_id": f"{parent.span_id:016x}" if parent is not None else None,
        "name": span.name,
        "start_at": _instant(span.start_time),
        "end_at": _instant(span.end_time),
        "status": span.status.status_code.name,
        "sampled": bool(context.trace_flags.sampled),
        "attributes": {key: _plain(value) for key, value in (span.attributes or {}).items()},
    }


def _plain(value: Any) -> Any:
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return [_plain(v) for v in value] if isinstance(value, tuple | list) else str(value)


class JsonLinesSpanExporter:
    """A span exporter writing one JSON line per span to a file (the local run's traces)."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._lock = threading.Lock()
        self._stream: TextIO | None = path.open("w", encoding="utf-8")  # a new run, a new file

    def export(self, spans: Sequence[Any]) -> Any:
        from opentelemetry.sdk.trace.export import SpanExportResult

        with self._lock:
            if self._stream is None:
                return SpanExportResult.FAILURE
            for span in spans:
                self._stream.write(json.dumps(span_record(span), separators=(",", ":")) + "\n")
            self._stream.flush()
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        with self._lock:
            if self._stream is not None:
                self._stream.close()
                self._stream = None

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return True


# -- configuration --------------------------------------------------------------------------------


def error_keeping_processor(exporter: Any) -> SpanProcessor:
    """A span processor exporting each span of an unsampled trace that ended in error (sampled
    ones go through the exporting processor beside it): errors are always kept, whatever the
    sampling rate. (Defined here so that importing this module does not import the SDK.)"""
    from opentelemetry.sdk.trace import SpanProcessor
    from opentelemetry.trace import StatusCode

    class ErrorKeepingProcessor(SpanProcessor):
        def on_end(self, span: Any) -> None:
            if not span.context.trace_flags.sampled and span.status.status_code is StatusCode.ERROR:
                exporter.export([span])

    return ErrorKeepingProcessor()


def _recording_sampler(rate: float) -> Any:
    """Parent-based sampling at ``rate``; what it drops is still recorded (not exported), so that
    :func:`error_keeping_processor` can keep its errors."""
    from opentelemetry.sdk.trace.sampling import (
        Decision,
        ParentBased,
        Sampler,
        SamplingResult,
        TraceIdRatioBased,
    )

    inner = ParentBased(TraceIdRatioBased(rate))

    class RecordingSampler(Sampler):
        def should_sample(self, *args: Any, **kwargs: Any) -> SamplingResult:
            result = inner.should_sample(*args, **kwargs)
            if result.decision is Decision.DROP:
                return SamplingResult(Decision.RECORD_ONLY, result.attributes, result.trace_state)
            return result

        def get_description(self) -> str:
            return f"RecordingSampler({rate})"

    return RecordingSampler()


def configure_tracing(exporter: Any | None, *, sample_rate: float = 1.0, batch: bool = True) -> Any:
    """Install a tracer provider exporting to ``exporter`` (None: remove it, back to no-op);
    return the provider. ``batch`` exports in the background (production); without it each
    span is exported when it ends (tests, the local runtime)."""
    global _provider, _tracer
    _tracer = None
    if _provider is not None:
        _provider.shutdown()
        _provider = None
    if exporter is None:
        return None
    if not 0.0 <= sample_rate <= 1.0:
        raise ValueError(f"sample_rate must be in [0, 1], got {sample_rate}")
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor

    provider = TracerProvider(sampler=_recording_sampler(sample_rate))
    provider.add_span_processor(
        BatchSpanProcessor(exporter) if batch else SimpleSpanProcessor(exporter)
    )
    if sample_rate < 1.0:
        provider.add_span_processor(error_keeping_processor(exporter))
    _provider = provider
    return provider


class LazyExporter:
    """An exporter built on its first export, which the batch processor runs on its own thread:
    the Cloud Trace exporter's import (about 0.6 s, gRPC and the trace client) stays off the
    cold start of a function."""

    def __init__(self, factory: Callable[[], Any]) -> None:
        self._factory = factory
        self._exporter: Any = None
        self._lock = threading.Lock()

    def _built(self) -> Any:
        with self._lock:
            if self._exporter is None:
                self._exporter = self._factory()
            return self._exporter

    def export(self, spans: Sequence[Any]) -> Any:
        return self._built().export(spans)

    def shutdown(self) -> None:
        with self._lock:
            if self._exporter is not None:
                self._exporter.shutdown()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return True


class _InstalledTracer(trace.Tracer):
    """Starts spans on whichever provider :func:`configure_tracing` installed at the time.

    The client instrumentations take a tracer once, when they patch; this one follows the
    provider as it is installed and removed (tests, the local runtime)."""

    def start_span(self, *args: Any, **kwargs: Any) -> trace.Span:
        return tracer().start_span(*args, **kwargs)

    def start_as_current_span(self, *args: Any, **kwargs: Any) -> Any:
        return tracer().start_as_current_span(*args, **kwargs)


class _InstalledProvider(trace.TracerProvider):
    def get_tracer(self, *args: Any, **kwargs: Any) -> trace.Tracer:
        return _InstalledTracer()


_clients_instrumented = False


def instrument_clients() -> None:
    """Every httpx request (manufacturers, price and weather providers, token endpoints) and every
    gRPC call (Firestore, Pub/Sub, Cloud Tasks, Secret Manager) becomes a client span, a child of
    the current span, and carries ``traceparent``: OpenTelemetry's own instrumentations, loaded
    on first use (not at import: cold starts). Channels and clients made before this call are not
    instrumented; the backends build theirs on first use, after it."""
    global _clients_instrumented
    if _clients_instrumented:
        return
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor

    HTTPXClientInstrumentor().instrument(tracer_provider=_InstalledProvider())
    _grpc_instrumentor().instrument()
    _clients_instrumented = True


@functools.cache
def _grpc_instrumentor() -> Any:
    """OpenTelemetry's gRPC client instrumentor, made to use :class:`_InstalledProvider`.

    Its ``wrapper_fn`` (0.66b2) looks for ``tracer_provider`` in the arguments of the patched
    ``grpc.secure_channel`` call, not in those of ``instrument()``, so it would always fall back
    to the global provider, which hpsteer does not set."""
    from opentelemetry.instrumentation.grpc import GrpcInstrumentorClient, client_interceptor
    from opentelemetry.instrumentation.grpc.grpcext import intercept_channel

    class _Instrumentor(GrpcInstrumentorClient):
        def wrapper_fn(self, original: Any, instance: Any, args: Any, kwargs: Any) -> Any:
            channel = original(*args, **kwargs)
            interceptor = client_interceptor(  # type: ignore[no-untyped-call]
                tracer_provider=_InstalledProvider(), filter_=self._filter
            )
            return intercept_channel(channel, interceptor)  # type: ignore[no-untyped-call]

    return _Instrumentor()  # type: ignore[no-untyped-call]


def uninstrument_clients() -> None:
    """Undo :func:`instrument_clients` (tests)."""
    global _clients_instrumented
    if not _clients_instrumented:
        return
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor

    HTTPXClientInstrumentor().uninstrument()
    _grpc_instrumentor().uninstrument()
    _clients_instrumented = False


def configure_production_tracing(project: str, sample_rate: float) -> Any:
    """Cloud Trace export at ``sample_rate`` (errors always), httpx and gRPC calls instrumented;
    nothing when the rate is 0."""
    if sample_rate <= 0.0:
        return None
    instrument_clients()

    def cloud_trace() -> Any:
        from opentelemetry.exporter.cloud_trace import CloudTraceSpanExporter

        return CloudTraceSpanExporter(project_id=project)  # type: ignore[no-untyped-call]

    return configure_tracing(LazyExporter(cloud_trace), sample_rate=sample_rate)
