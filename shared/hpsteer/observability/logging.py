"""One JSON object per log line, in the shape Cloud Logging reads from a function's stdout.

Fields: ``severity`` and ``message`` (Cloud Logging's own), ``time``, ``logger``, the ids bound
with :func:`log_context` or passed as ``extra`` (``device_id``, ``command_id``, ``plan_id``,
``oem``, …), and, while an OpenTelemetry span is active, ``logging.googleapis.com/trace``,
``…/spanId`` and ``…/trace_sampled`` so that Cloud Logging shows the line inside its trace, and
``logging.googleapis.com/labels`` with the ids a console filter looks for and the function's
name.
An exception's traceback is appended to ``message`` (Error Reporting reads it there).

Extra fields whose names suggest credentials are written as ``***``: a secret must never reach a
log line, even by mistake.

Libraries that log every HTTP request at INFO (:data:`CHATTY_LIBRARIES`: httpx, httpcore) are
kept at WARNING unless the level is DEBUG: every call to a manufacturer is already measured
(``oem_api_latency_seconds``) and traced (a span), and Cloud Logging bills every line it stores
(one per manufacturer call, per device and reconciliation run, was the largest part of the
fleet's log volume).
"""

from __future__ import annotations

import contextvars
import json
import logging
import os
import sys
import traceback
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from functools import lru_cache
from types import MappingProxyType
from typing import Any, TextIO

from opentelemetry import trace

__all__ = ["CHATTY_LIBRARIES", "JsonFormatter", "bound_ids", "configure_logging", "log_context"]

_CONTEXT: contextvars.ContextVar[Mapping[str, Any]] = contextvars.ContextVar(
    "hpsteer_log_context", default=MappingProxyType({})
)
_SEVERITY = {
    logging.DEBUG: "DEBUG",
    logging.INFO: "INFO",
    logging.WARNING: "WARNING",
    logging.ERROR: "ERROR",
    logging.CRITICAL: "CRITICAL",
}
_LABELLED = ("device_id", "command_id", "plan_id", "oem", "manufacturer", "area")
"""Ids also written as Cloud Logging labels (indexed: a console filter finds them at once)."""
_SERVICE = os.environ.get("K_SERVICE", "")
"""The function's name, which Cloud Run (and so Cloud Functions gen2) sets in ``K_SERVICE``."""
_SECRET_HINTS = ("secret", "token", "password", "authorization", "credential", "api_key")
CHATTY_LIBRARIES = ("httpx", "httpcore")
"""Loggers that write a line per HTTP request at INFO: WARNING and above only, unless DEBUG."""
_STANDARD_ATTRS = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", (), None)).keys() | {"message", "asctime"}
)


@contextmanager
def log_context(**ids: Any) -> Iterator[None]:
    """Bind ids (device_id=…, command_id=…) to every log line written inside the block."""
    token = _CONTEXT.set(MappingProxyType({**_CONTEXT.get(), **ids}))
    try:
        yield
    finally:
        _CONTEXT.reset(token)


def bound_ids() -> Mapping[str, Any]:
    """The ids bound with :func:`log_context` right now (a harness attributes calls by them)."""
    return _CONTEXT.get()


@lru_cache(maxsize=4096)
def _secret(key: str) -> bool:
    """Whether a field's name suggests a credential (decided once per name: the same few dozen
    names come back on every line)."""
    return any(hint in key.lower() for hint in _SECRET_HINTS)


def _redact(key: str, value: Any) -> Any:
    return "***" if _secret(key) else value


def _trace_fields(project: str | None) -> dict[str, Any]:
    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return {}
    trace_id = f"{context.trace_id:032x}"
    return {
        "logging.googleapis.com/trace": (
            f"projects/{project}/traces/{trace_id}" if project else trace_id
        ),
        "logging.googleapis.com/spanId": f"{context.span_id:016x}",
        "logging.googleapis.com/trace_sampled": bool(context.trace_flags.sampled),
    }


class JsonFormatter(logging.Formatter):
    def __init__(self, project: str | None = None) -> None:
        super().__init__()
        self.project = project

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        if record.exc_info:
            message = f"{message}\n{''.join(traceback.format_exception(*record.exc_info))}"
        entry: dict[str, Any] = {
            "severity": _SEVERITY.get(record.levelno, "DEFAULT"),
            "message": message,
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "logger": record.name,
        }
        for key, value in _CONTEXT.get().items():
            entry[key] = _redact(key, value)
        for key, value in vars(record).items():
            if key not in _STANDARD_ATTRS and not key.startswith("_"):
                entry[key] = _redact(key, value)
        entry.update(_trace_fields(self.project))
        labels = {key: str(entry[key]) for key in _LABELLED if entry.get(key) is not None}
        if _SERVICE:
            labels["function"] = _SERVICE
        if labels:
            entry["logging.googleapis.com/labels"] = labels
        return json.dumps(entry, default=str, ensure_ascii=False)


def configure_logging(
    level: str = "INFO", *, project: str | None = None, stream: TextIO | None = None
) -> None:
    """Route the root logger to one JSON line per record on ``stream`` (stdout by default); the
    :data:`CHATTY_LIBRARIES` log warnings and above only, unless ``level`` is DEBUG."""
    handler = logging.StreamHandler(stream or sys.stdout)
    handler.setFormatter(JsonFormatter(project))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    quiet = logging.NOTSET if root.level <= logging.DEBUG else logging.WARNING
    for name in CHATTY_LIBRARIES:
        logging.getLogger(name).setLevel(quiet)
