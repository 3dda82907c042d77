"""The architecture's metrics, counted in this process: counters, histograms and their labels.

Services count here (``metrics.inc(COMMANDS_SENT_TOTAL, oem="viessmann")``); exporting to Cloud
Monitoring (and into a local run's output) reads :meth:`Metrics.snapshot` and comes with the
observability issue, without touching the services. Labels are low-cardinality by rule: a
manufacturer, an action, an outcome, never a device id (a per-device label would cost one time
series per device in Cloud Monitoring; per-device figures live in Firestore and BigQuery).

Why hand-written: the OpenTelemetry SDK's meters would do, but they need a configured provider
and exporter before anything is counted, and the tests and the local runtime read values back
directly; this registry is a dictionary behind a lock, and the exporter will be a reader of it.
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

__all__ = [
    "COMMANDS_FAILURE_TOTAL",
    "COMMANDS_SENT_TOTAL",
    "COMMANDS_SUCCESS_TOTAL",
    "COMMAND_DURATION_SECONDS",
    "COMMAND_RETRY_TOTAL",
    "DURATION_BUCKETS_S",
    "Histogram",
    "Metrics",
    "metrics",
]

COMMANDS_SENT_TOTAL: Final = "commands_sent_total"
"""Requests a manufacturer accepted (labels: oem, action)."""
COMMANDS_SUCCESS_TOTAL: Final = "commands_success_total"
"""Commands verified on the device (labels: oem, action)."""
COMMANDS_FAILURE_TOTAL: Final = "commands_failure_total"
"""Commands that ended failed (labels: oem, action, reason: the error type)."""
COMMAND_RETRY_TOTAL: Final = "command_retry_total"
"""Attempts that failed and will be retried (labels: oem, reason)."""
COMMAND_DURATION_SECONDS: Final = "command_duration_seconds"
"""From a command's first send to its completion (labels: oem)."""

DURATION_BUCKETS_S: Final = (1.0, 5.0, 30.0, 60.0, 300.0, 600.0, 900.0, 1800.0, 3600.0, 7200.0)

_Key = tuple[str, tuple[tuple[str, str], ...]]


@dataclass
class Histogram:
    """Counts per bucket (upper bounds, and one for everything above), their sum and count."""

    bounds: tuple[float, ...]
    counts: list[int] = field(default_factory=list)
    total: float = 0.0
    count: int = 0

    def __post_init__(self) -> None:
        if not self.counts:
            self.counts = [0] * (len(self.bounds) + 1)

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.total += value
        self.count += 1


class Metrics:
    """Counters and histograms per (name, labels); safe from several threads."""

    def __init__(self) -> None:
        self._counters: dict[_Key, float] = {}
        self._histograms: dict[_Key, Histogram] = {}
        self._lock = threading.Lock()

    @staticmethod
    def _key(name: str, labels: Mapping[str, str]) -> _Key:
        return name, tuple(sorted(labels.items()))

    def inc(self, name: str, amount: float = 1.0, /, **labels: str) -> None:
        if amount < 0:
            raise ValueError(f"a counter only grows; {name} got {amount}")
        key = self._key(name, labels)
        with self._lock:
            self._counters[key] = self._counters.get(key, 0.0) + amount

    def observe(
        self,
        name: str,
        value: float,
        *,
        buckets: tuple[float, ...] = DURATION_BUCKETS_S,
        **labels: str,
    ) -> None:
        key = self._key(name, labels)
        with self._lock:
            histogram = self._histograms.get(key)
            if histogram is None:
                histogram = self._histograms[key] = Histogram(buckets)
            histogram.observe(value)

    def counter(self, name: str, **labels: str) -> float:
        """The counter for exactly these labels; with no labels, summed over every label set."""
        with self._lock:
            if labels:
                return self._counters.get(self._key(name, labels), 0.0)
            return sum(v for (n, _), v in self._counters.items() if n == name)

    def histogram(self, name: str, **labels: str) -> Histogram | None:
        with self._lock:
            found = self._histograms.get(self._key(name, labels))
            if found is None:
                return None
            return Histogram(found.bounds, list(found.counts), found.total, found.count)

    def snapshot(self) -> dict[str, list[dict[str, object]]]:
        """Every series, for an exporter or a run's output: ``{name: [{labels, value}, …]}``."""
        out: dict[str, list[dict[str, object]]] = {}
        with self._lock:
            for (name, labels), value in sorted(self._counters.items()):
                out.setdefault(name, []).append({"labels": dict(labels), "value": value})
            for (name, labels), hist in sorted(self._histograms.items()):
                out.setdefault(name, []).append(
                    {
                        "labels": dict(labels),
                        "count": hist.count,
                        "sum": hist.total,
                        "buckets": dict(
                            zip([*map(str, hist.bounds), "+Inf"], hist.counts, strict=False)
                        ),
                    }
                )
        return out

    def reset(self) -> None:
        with self._lock:
            self._counters.clear()
            self._histograms.clear()


metrics = Metrics()
"""The process-wide registry (one per function instance)."""
