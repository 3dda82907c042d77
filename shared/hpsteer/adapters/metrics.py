"""In-process gauges for the adapter safeguards, until real metrics arrive.

The circuit breaker publishes ``circuit_breaker_state`` per manufacturer here (0 closed,
1 half-open, 2 open, as in the architecture's observability section). This is a plain registry
of the latest value per (gauge name, labels) in this process: nothing is exported. Exporting
through OpenTelemetry metrics comes with a later issue; it will read these values (or replace
this module) without changing the breaker.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping

__all__ = ["CIRCUIT_BREAKER_STATE", "Gauges", "gauges"]

CIRCUIT_BREAKER_STATE = "circuit_breaker_state"

_Key = tuple[str, tuple[tuple[str, str], ...]]


class Gauges:
    """The latest value of each gauge, per label set; safe to use from several threads."""

    def __init__(self) -> None:
        self._values: dict[_Key, float] = {}
        self._lock = threading.Lock()

    @staticmethod
    def _key(name: str, labels: Mapping[str, str]) -> _Key:
        return name, tuple(sorted(labels.items()))

    def set(self, name: str, value: float, **labels: str) -> None:
        with self._lock:
            self._values[self._key(name, labels)] = value

    def get(self, name: str, **labels: str) -> float | None:
        """The last value set for exactly these labels, ``None`` if never set."""
        with self._lock:
            return self._values.get(self._key(name, labels))

    def snapshot(self) -> dict[_Key, float]:
        with self._lock:
            return dict(self._values)


gauges = Gauges()
"""The process-wide gauges (one per function instance)."""
