"""What a heat pump reported about itself at one instant."""

from __future__ import annotations

from enum import StrEnum

from pydantic import Field

from hpsteer.domain.actions import Mode
from hpsteer.domain.base import Record, UtcDatetime

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

    def is_newer_than(self, other: TelemetrySample | None) -> bool:
        """Late and duplicated samples never move state backwards."""
        return other is None or self.observed_at > other.observed_at
