"""What a heat pump reported about itself at one instant.

A :class:`TelemetrySample` is one observation, from a manufacturer's webhook, from polling the
manufacturer's API, or from the simulated fleet. ``None`` in a measured field means the sample
does not report it. Samples are compared by ``observed_at`` only: a sample moves a device's state
forward when it is strictly newer than the stored one (:meth:`TelemetrySample.is_newer_than`).
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import Field

from hpsteer.domain.actions import Mode
from hpsteer.domain.base import Record, UtcDatetime
from hpsteer.domain.devices import SLUG

__all__ = ["TelemetrySample", "TelemetrySource"]


class TelemetrySource(StrEnum):
    WEBHOOK = "webhook"
    POLL = "poll"
    SIMULATION = "simulation"


class TelemetrySample(Record):
    """One observation. ``sample_id`` is the producer's id: a repeated sample carries the same."""

    sample_id: str = Field(min_length=1, max_length=200)
    device_id: str = Field(min_length=1, max_length=128)
    observed_at: UtcDatetime
    source: TelemetrySource
    indoor_temp_c: float | None = Field(default=None, ge=-30, le=60)
    outdoor_temp_c: float | None = Field(default=None, ge=-80, le=60)
    supply_temp_c: float | None = Field(default=None, ge=-30, le=95)
    dhw_temp_c: float | None = Field(default=None, ge=-30, le=95)
    power_kw: float | None = Field(default=None, ge=0, le=100)
    observed_mode: Mode | None = None
    setpoint_offset_k: float | None = Field(default=None, ge=-10, le=10)
    online: bool | None = None
    """Whether the manufacturer reached the device (or its gateway) for this observation."""
    changed_by_user: bool | None = None
    """True when the manufacturer shows the last change came from the household (if it can)."""
    room_setpoint_c: float | None = Field(default=None, ge=0, le=50)
    """The room setpoint the heat pump's own controller regulates to, as the device shows it."""
    manufacturer: str | None = Field(default=None, pattern=SLUG)
    """The manufacturer (adapter name) that reported the sample, when known."""

    def is_newer_than(self, other: TelemetrySample | None) -> bool:
        """Late and duplicated samples never move state backwards."""
        return other is None or self.observed_at > other.observed_at
