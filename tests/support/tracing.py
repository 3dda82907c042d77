"""What specs of threads and context use: the spans recorded in memory (fixture ``spans``) and a
log handler remembering the ids bound when each line was written (:class:`BoundIds`)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from hpsteer.observability.logging import bound_ids
from hpsteer.observability.tracing import configure_tracing


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    """Every span ended during the test, exported synchronously; tracing off again after."""
    exporter = InMemorySpanExporter()
    configure_tracing(exporter, batch=False)
    yield exporter
    configure_tracing(None)


class BoundIds(logging.Handler):
    """Remembers the ids bound when each line was written (in the thread that wrote it)."""

    def __init__(self, level: int) -> None:
        super().__init__(level)
        self.lines: list[tuple[str, dict[str, Any]]] = []
        self.threads: set[str] = set()

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append((record.getMessage(), dict(bound_ids())))
        self.threads.add(record.threadName or "")
