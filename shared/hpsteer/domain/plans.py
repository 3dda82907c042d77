"""A device's plan: one mode per slot over the horizon, and what the planner expects of it.

The plan is written whole (``devices/{id}/plans/{plan_id}``) and made current on the device. Its
mode changes are the *outbox*: each becomes a command and a scheduled task, and a crash between
writing the plan and creating the tasks loses nothing because the outbox says what is still owed.
The plan also stores its baseline cost (what the heat pump's own controller would have spent over
the same slots) so that savings are audited, not claimed.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta
from typing import Self

from pydantic import Field, model_validator

from hpsteer.domain.actions import GenericAction, Mode
from hpsteer.domain.base import FrozenModel, Record, UtcDatetime
from hpsteer.domain.market import PriceArea, Resolution
from hpsteer.domain.plan_track import IndoorTrack

__all__ = ["ModeChange", "Plan", "PlanSlot", "plan_id_for"]


class PlanSlot(FrozenModel):
    start_at: UtcDatetime
    end_at: UtcDatetime
    mode: Mode
    price_eur_per_mwh: float
    expected_power_kw: float = Field(ge=0)
    predicted_indoor_temp_c: float


class ModeChange(FrozenModel):
    """An outbox entry: at ``at`` the device should switch to ``action``."""

    at: UtcDatetime
    action: GenericAction
    slot_index: int = Field(ge=0)


class Plan(Record):
    plan_id: str = Field(min_length=1, max_length=128)
    device_id: str = Field(min_length=1, max_length=128)
    price_area: PriceArea
    resolution: Resolution
    created_at: UtcDatetime
    slots: tuple[PlanSlot, ...] = Field(min_length=1)
    expected_cost_eur: float
    baseline_cost_eur: float
    price_content_hashes: tuple[str, ...] = ()
    weather_issued_at: UtcDatetime | None = None
    solver: str = ""
    solver_gap: float | None = None

    @model_validator(mode="after")
    def _contiguous_slots_of_one_resolution(self) -> Self:
        step = timedelta(minutes=int(self.resolution))
        for index, slot in enumerate(self.slots):
            if slot.end_at - slot.start_at != step:
                raise ValueError(f"slot {index} lasts {slot.end_at - slot.start_at}, not {step}")
            if index and slot.start_at != self.slots[index - 1].end_at:
                raise ValueError(f"slot {index} does not start where slot {index - 1} ends")
        return self

    @property
    def start_at(self) -> datetime:
        return self.slots[0].start_at

    @property
    def end_at(self) -> datetime:
        return self.slots[-1].end_at

    def mode_changes(self, current_mode: Mode | None = None) -> list[ModeChange]:
        """One change at the first slot (unless the device is already in that mode) and at
        every slot whose mode differs from the one before."""
        changes: list[ModeChange] = []
        previous = current_mode
        for index, slot in enumerate(self.slots):
            if slot.mode != previous:
                changes.append(
                    ModeChange(at=slot.start_at, action=slot.mode.action, slot_index=index)
                )
            previous = slot.mode
        return changes

    def mode_runs(self) -> list[tuple[datetime, Mode]]:
        """Where each run of one mode starts (the first slot's included): the plan as a
        schedule of modes, small enough to keep on the device for reconciliation."""
        runs: list[tuple[datetime, Mode]] = []
        for slot in self.slots:
            if not runs or runs[-1][1] is not slot.mode:
                runs.append((slot.start_at, slot.mode))
        return runs

    def indoor_track(self) -> IndoorTrack:
        """The predicted indoor temperatures, kept on the device beside the mode runs."""
        return IndoorTrack.of_slots(
            self.start_at,
            timedelta(minutes=int(self.resolution)),
            [slot.predicted_indoor_temp_c for slot in self.slots],
        )

    def mode_at(self, instant: datetime) -> Mode | None:
        for slot in self.slots:
            if slot.start_at <= instant < slot.end_at:
                return slot.mode
        return None


def plan_id_for(device_id: str, start_at: datetime, inputs_key: str) -> str:
    """A deterministic plan id: the same device, horizon start and inputs give the same id, so a
    redelivered optimize message rewrites the same plan instead of adding one."""
    digest = hashlib.sha256(f"{device_id}|{start_at.isoformat()}|{inputs_key}".encode()).hexdigest()
    return f"{start_at.strftime('%Y%m%dT%H%MZ')}-{digest[:12]}"
