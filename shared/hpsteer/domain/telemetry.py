"""What a heat pump reported about itself at one instant.

A :class:`TelemetrySample` is one observation, from a manufacturer's webhook, from polling the
manufacturer's API, or from the simulated fleet. ``None`` in a measured field means the sample
does not report it. Samples are compared by ``observed_at`` only: a sample moves a device's state
forward when it is strictly newer than the stored one (:meth:`TelemetrySample.is_newer_than`).

**Worth storing** (:func:`worth_storing`). A newer sample replaces the stored one
(``devices/{id}.last_telemetry``, one document write) only when it changes something the system
decides by, or when the stored one is older than the sample's refresh bound
(:func:`refresh_bound`); every sample is recorded in the analytics history all the same. What the
system decides by, and so what is written at once when it changes (:data:`DECIDING_FIELDS`): the
mode and setpoint offset, whether the device is online, whether the household made the last
change, the room setpoint, the reporting manufacturer (reconciliation, the command path's
household check, the planner's current mode). A sample showing the household's own setting is
always stored: the command path compares its instant with its commands'. What changes with every
sample, the temperatures and the power, is refreshed at least once per bound:

- a **polled** sample: an hour (:data:`POLL_REFRESH`). Reconciliation polls only a device
  whose telemetry is not fresh and never judges by its own last poll (a run old at the next run),
  so only the planner's measured start (indoor temperature, good for hours; and the planner takes
  the newest sample of ``telemetry_history``, which it reads anyway, when that is newer) and the
  energy figure (power between stored samples, counted up to 90 minutes apart) read these. Each
  write saved is a device read, a device write and a function invocation: an hour instead of half
  an hour saved about 22 of each per device-day (issue 10's cost);
- a **pushed** sample (webhook, simulation): a quarter of the reconciliation interval. A device
  that reports at least that often then always has stored telemetry younger than half an
  interval, the age reconciliation judges by instead of reading the manufacturer: the refresh
  never costs a manufacturer read.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Final

from pydantic import Field

from hpsteer.domain.actions import Mode
from hpsteer.domain.base import Record, UtcDatetime
from hpsteer.domain.devices import SLUG

__all__ = [
    "DECIDING_FIELDS",
    "POLL_REFRESH",
    "TelemetrySample",
    "TelemetrySource",
    "refresh_bound",
    "shows_household_setting",
    "worth_storing",
]


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


DECIDING_FIELDS: Final = (
    "observed_mode",
    "setpoint_offset_k",
    "online",
    "changed_by_user",
    "room_setpoint_c",
    "manufacturer",
)
"""The stored fields decisions are made by: a change of any is stored at once."""
POLL_REFRESH: Final = timedelta(hours=1)
"""How stale a polled sample's temperatures and power may be kept (module docstring)."""


def refresh_bound(source: TelemetrySource, reconcile_interval: timedelta) -> timedelta:
    """How long a stored sample whose deciding fields are unchanged is kept over a newer one of
    ``source`` (the module docstring says why)."""
    if source is TelemetrySource.POLL:
        return POLL_REFRESH
    return reconcile_interval / 4


def shows_household_setting(
    changed_by_user: bool | None, observed_mode: Mode | str | None, offset_k: float | None
) -> bool:
    """Whether telemetry shows the household's own choice: the manufacturer says so, or (where it
    cannot say) a setting none of our modes (no mode, yet an offset)."""
    return changed_by_user is True or (
        changed_by_user is None and observed_mode is None and offset_k is not None
    )


def _stored_value(sample: TelemetrySample, name: str) -> Any:
    value = getattr(sample, name)
    return value.value if isinstance(value, Mode) else value


def worth_storing(
    sample: TelemetrySample,
    stored: Mapping[str, Any] | None,
    stored_observed_at: datetime | None,
    bound: timedelta,
) -> bool:
    """Whether ``sample``, newer than the stored one (``stored``: the stored document, observed
    at ``stored_observed_at``), must replace it: something decided by changed, the household's
    own setting shows, or the stored one is ``bound`` older than the sample (module docstring).
    Never a reason to move state backwards: newer is checked apart."""
    if stored is None or stored_observed_at is None:
        return True
    if sample.observed_at - stored_observed_at >= bound:
        return True
    if shows_household_setting(
        sample.changed_by_user, sample.observed_mode, sample.setpoint_offset_k
    ):
        return True
    return any(_stored_value(sample, name) != stored.get(name) for name in DECIDING_FIELDS)
