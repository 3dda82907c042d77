"""Faults of the simulated fleet: what can go wrong, per manufacturer and per device, from a seed.

Promises:

- A :class:`FaultSpec` lists every fault the simulated clouds know; its defaults are a healthy
  cloud. A :class:`FaultPlan` holds one spec per manufacturer and, overriding it as a whole, one
  per device (a home's id). ``spec_for(manufacturer, home_id)`` is the one that applies.
- Every random draw comes from the plan's own ``random.Random(seed)``: the same seed, the same
  calls in the same order give the same faults. Rates of 0 and 1 draw nothing random at all
  (never / always), so tests can force a fault exactly.
- Faults on the wire (latency, 5xx, 429 with Retry-After, timeouts) hit the manufacturer's API,
  not its OAuth token endpoint. Faults of the device (accepted-but-not-applied, applied late,
  reverted after a reboot, a user changing the setpoint in the manufacturer's app, gateway
  offline, stale telemetry) are played by :mod:`hpsteer.sim.fleet`.
"""

from __future__ import annotations

import math
import random
import threading
from dataclasses import dataclass, field
from datetime import timedelta
from enum import StrEnum

__all__ = ["FaultKind", "FaultPlan", "FaultSpec", "WireFault"]


class FaultKind(StrEnum):
    LATENCY = "latency"
    SERVER_ERROR = "server_error"
    RATE_LIMITED = "rate_limited"
    TIMEOUT = "timeout"
    NOT_APPLIED = "not_applied"
    APPLIED_LATE = "applied_late"
    REVERTED_AFTER_REBOOT = "reverted_after_reboot"
    USER_CHANGE = "user_change"
    GATEWAY_OFFLINE = "gateway_offline"
    STALE_TELEMETRY = "stale_telemetry"


@dataclass(frozen=True, slots=True)
class FaultSpec:
    """Every fault one manufacturer's cloud (or one device) shows; the defaults are healthy."""

    latency_s: float = 0.0
    """Wall-clock delay added to every API answer (in-process: slept when the transport honours
    latency; the real server always sleeps)."""
    server_error_rate: float = 0.0
    """Share of API requests answered with a 5xx in the manufacturer's error shape."""
    server_error_status: int = 500
    rate_limit_rate: float = 0.0
    """Share of API requests answered 429 with Retry-After (and the manufacturer's own headers)."""
    retry_after_s: int = 60
    wire_faults_on_writes_only: bool = False
    """Latency, 5xx, 429 and timeouts hit only writes (commands), never reads: a cloud whose
    command path fails while its device state still answers."""
    timeout_rate: float = 0.0
    """Share of API requests never answered (in-process: httpx.ReadTimeout; real server: the
    connection is closed without an answer)."""
    not_applied_rate: float = 0.0
    """Share of accepted commands the device never applies (a later read shows the old value)."""
    applied_late_rate: float = 0.0
    """Share of accepted commands the device applies only after ``apply_delay``."""
    apply_delay: timedelta = timedelta(minutes=20)
    reboot_rate_per_day: float = 0.0
    """Reboots per simulated day; a reboot reverts the levers to the household's own setting and
    cancels a hot-water boost."""
    user_change_rate_per_day: float = 0.0
    """Times per simulated day the household changes the setpoint in the manufacturer's app."""
    user_change_k: float = 1.0
    """How far a random user change moves the lever (± this, in the lever's units)."""
    gateway_offline: bool = False
    """The device's gateway is offline: reads show it the manufacturer's way, commands fail."""
    stale_telemetry: bool = False
    """The cloud stops refreshing the device's readings: values and timestamps freeze."""

    def __post_init__(self) -> None:
        for name in (
            "server_error_rate",
            "rate_limit_rate",
            "timeout_rate",
            "not_applied_rate",
            "applied_late_rate",
        ):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must lie in [0, 1], got {value!r}")
        for name in ("latency_s", "reboot_rate_per_day", "user_change_rate_per_day"):
            if not getattr(self, name) >= 0.0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)!r}")
        if not 500 <= self.server_error_status <= 599:
            raise ValueError(f"server_error_status must be a 5xx, got {self.server_error_status}")


HEALTHY = FaultSpec()


@dataclass(frozen=True, slots=True)
class WireFault:
    """What one API request meets on the wire (decided before the request is served)."""

    latency_s: float = 0.0
    kind: FaultKind | None = None
    """SERVER_ERROR, RATE_LIMITED or TIMEOUT; None: served normally."""
    status: int = 200
    retry_after_s: int = 0


@dataclass
class FaultPlan:
    """Fault specs per manufacturer and per device, and the seeded dice that play them."""

    seed: int = 0
    by_manufacturer: dict[str, FaultSpec] = field(default_factory=dict)
    by_device: dict[str, FaultSpec] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)
        self._lock = threading.Lock()

    def set_manufacturer(self, manufacturer: str, spec: FaultSpec) -> None:
        self.by_manufacturer[manufacturer] = spec

    def set_device(self, home_id: str, spec: FaultSpec) -> None:
        self.by_device[home_id] = spec

    def clear(self, home_id: str | None = None) -> None:
        """Heal one device (its own spec goes), or everything."""
        if home_id is not None:
            self.by_device.pop(home_id, None)
        else:
            self.by_device.clear()
            self.by_manufacturer.clear()

    def spec_for(self, manufacturer: str, home_id: str | None = None) -> FaultSpec:
        if home_id is not None and home_id in self.by_device:
            return self.by_device[home_id]
        return self.by_manufacturer.get(manufacturer, HEALTHY)

    def chance(self, rate: float) -> bool:
        """True with probability ``rate`` (0 and 1 draw nothing)."""
        if rate <= 0.0:
            return False
        if rate >= 1.0:
            return True
        with self._lock:
            return self._rng.random() < rate

    def happens_within(self, rate_per_day: float, duration: timedelta) -> bool:
        """Whether an event of a Poisson process with this rate happens within ``duration``."""
        if rate_per_day <= 0.0 or duration <= timedelta(0):
            return False
        days = duration / timedelta(days=1)
        return self.chance(1.0 - math.exp(-rate_per_day * days))

    def uniform(self, low: float, high: float) -> float:
        with self._lock:
            return self._rng.uniform(low, high)

    def wire(self, manufacturer: str, home_id: str | None, *, write: bool = True) -> WireFault:
        """The wire fault one API request meets (timeouts, then 429s, then 5xx are checked)."""
        spec = self.spec_for(manufacturer, home_id)
        if spec.wire_faults_on_writes_only and not write:
            return WireFault()
        if self.chance(spec.timeout_rate):
            return WireFault(spec.latency_s, FaultKind.TIMEOUT)
        if self.chance(spec.rate_limit_rate):
            return WireFault(
                spec.latency_s, FaultKind.RATE_LIMITED, 429, retry_after_s=spec.retry_after_s
            )
        if self.chance(spec.server_error_rate):
            return WireFault(spec.latency_s, FaultKind.SERVER_ERROR, spec.server_error_status)
        return WireFault(spec.latency_s)
