"""The clock port: what time it is, from the wall or from a simulation.

Services never call ``datetime.now()``; they ask a :class:`Clock`. Production wires
:class:`SystemClock`; tests and the local runtime wire :class:`SimulatedClock`, which only moves
when told to, so retries, backoff and scheduled tasks are exact and reproducible.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Protocol, runtime_checkable

from hpsteer.domain.instants import ensure_utc

__all__ = ["Clock", "SimulatedClock", "SystemClock"]


@runtime_checkable
class Clock(Protocol):
    def now(self) -> datetime:
        """The current instant, timezone-aware UTC."""
        ...


class SystemClock:
    """The wall clock."""

    def now(self) -> datetime:
        return datetime.now(UTC)


class SimulatedClock:
    """A clock that stands still until advanced; it never goes backwards."""

    def __init__(self, start: datetime) -> None:
        self._now = ensure_utc(start, field="start")
        self._lock = threading.Lock()

    def now(self) -> datetime:
        with self._lock:
            return self._now

    def advance(self, delta: timedelta) -> datetime:
        if delta < timedelta(0):
            raise ValueError(f"a simulated clock cannot go backwards (asked {delta})")
        with self._lock:
            self._now += delta
            return self._now

    def advance_to(self, instant: datetime) -> datetime:
        target = ensure_utc(instant, field="instant")
        with self._lock:
            if target > self._now:
                self._now = target
            return self._now
