"""What the operator API answers: devices, a device's status, alerts, import reports, errors.

These are read models, built from the stored documents by the services
(:mod:`hpsteer.services.operator`); the OpenAPI document describes each answer with them. Every
4xx and 5xx answer is an :class:`ErrorBody`: a stable ``code``, a sentence for a person, and the
``field`` at fault (dotted, as in ``comfort.min_indoor_temp_c``) when one is.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from hpsteer.domain.actions import GenericAction, Mode
from hpsteer.domain.base import FrozenModel, UtcDatetime
from hpsteer.domain.commands import CommandEventType, CommandState
from hpsteer.domain.devices import ComfortBand, Location, ThermalParameters
from hpsteer.domain.market import PriceArea
from hpsteer.domain.messages import AlertSeverity
from hpsteer.domain.plans import PlanSlot

__all__ = [
    "AlertState",
    "AlertView",
    "AlertsPage",
    "CommandEventView",
    "CommandView",
    "DeletedDevice",
    "DeviceStatus",
    "DeviceView",
    "DevicesPage",
    "ErrorBody",
    "ErrorDetail",
    "ErrorInfo",
    "ImportReport",
    "ImportRow",
    "ModeComparison",
    "OverrideView",
    "PlanView",
    "ReplanAccepted",
    "TelemetryView",
]


class DeviceView(FrozenModel):
    device_id: str
    manufacturer: str
    external_id: str
    account_id: str
    price_area: PriceArea
    location: Location
    comfort: ComfortBand
    thermal: ThermalParameters
    steering_enabled: bool
    tariff_id: str | None = None
    registered_at: UtcDatetime
    updated_at: UtcDatetime | None = None
    revision: int = Field(ge=0, description="moves by one with every change made through the API")
    override_until: UtcDatetime | None = None
    current_plan_id: str | None = None
    hand_back_command_id: str | None = Field(
        default=None, description="the command that handed the device back when steering stopped"
    )


class DevicesPage(FrozenModel):
    devices: list[DeviceView]
    next_page_token: str | None = Field(
        default=None, description="pass as page_token for the next page; a page may be short"
    )


class DeletedDevice(FrozenModel):
    device_id: str
    deleted_at: UtcDatetime
    hand_back_command_id: str | None


class TelemetryView(FrozenModel):
    observed_at: UtcDatetime
    source: str | None = None
    online: bool | None = None
    indoor_temp_c: float | None = None
    outdoor_temp_c: float | None = None
    supply_temp_c: float | None = None
    dhw_temp_c: float | None = None
    power_kw: float | None = None
    observed_mode: Mode | None = None
    setpoint_offset_k: float | None = None
    room_setpoint_c: float | None = None
    changed_by_user: bool | None = None


class ModeComparison(FrozenModel):
    """What the current plan wants now against what the device last reported."""

    intended_mode: Mode | None
    intended_since: UtcDatetime | None = None
    intended_until: UtcDatetime | None = None
    plan_id: str | None = None
    actual_mode: Mode | None = None
    actual_observed_at: UtcDatetime | None = None
    in_sync: bool | None = Field(
        default=None, description="null when either side is unknown or steering is off"
    )


class PlanView(FrozenModel):
    plan_id: str
    created_at: UtcDatetime
    start_at: UtcDatetime
    end_at: UtcDatetime
    resolution_minutes: int
    expected_cost_eur: float
    baseline_cost_eur: float = Field(description="what the heat pump's own control would cost")
    tariff_id: str | None = Field(
        default=None, description="the household tariff it was planned on; null: spot"
    )
    tariff_note: str | None = Field(
        default=None, description="why a device with a tariff was planned on spot"
    )
    expected_bill_eur: float | None = Field(
        default=None, description="expected cost at the household's effective price"
    )
    baseline_bill_eur: float | None = Field(
        default=None, description="the heat pump's own control at the effective price"
    )
    solver: str
    solver_gap: float | None = None
    slots: list[PlanSlot] = Field(description="mode, price and predicted indoor temperature")


class CommandEventView(FrozenModel):
    seq: int
    type: CommandEventType
    state: CommandState | None = None
    at: UtcDatetime
    attempt: int = 0
    error: str | None = None


class CommandView(FrozenModel):
    command_id: str
    generic_action: GenericAction
    state: CommandState
    hand_back: bool = Field(description="the final command that handed the device back")
    plan_id: str | None = None
    slot_start_at: UtcDatetime | None = None
    valid_until: UtcDatetime | None = None
    created_at: UtcDatetime
    updated_at: UtcDatetime | None = None
    attempt: int = 0
    retry_count: int = 0
    last_error: str | None = None
    events: list[CommandEventView] = Field(description="its lifecycle, oldest first")


AlertState = Literal["open", "acknowledged", "resolved"]


class AlertView(FrozenModel):
    alert_id: str
    severity: AlertSeverity
    kind: str
    message: str
    raised_at: UtcDatetime
    state: AlertState
    device_id: str | None = None
    manufacturer: str | None = None
    command_id: str | None = None
    acknowledged_at: UtcDatetime | None = None
    acknowledged_by: str | None = None
    resolved_at: UtcDatetime | None = None


class AlertsPage(FrozenModel):
    alerts: list[AlertView]
    next_page_token: str | None = Field(
        default=None, description="pass as page_token for the next page; a page may be short"
    )


class OverrideView(FrozenModel):
    until: UtcDatetime | None = None
    in_force: bool = Field(description="a household override pauses steering until `until`")


class DeviceStatus(FrozenModel):
    device: DeviceView
    as_of: UtcDatetime
    last_telemetry: TelemetryView | None
    mode: ModeComparison
    current_plan: PlanView | None
    recent_commands: list[CommandView] = Field(description="newest first")
    open_alerts: list[AlertView] = Field(description="the device's unresolved alerts")
    override: OverrideView


class ImportRow(FrozenModel):
    line: int = Field(ge=2, description="the row's first line in the file (the header is line 1)")
    status: Literal["imported", "existing", "refused"]
    device_id: str | None = None
    code: str | None = None
    field: str | None = None
    message: str | None = None


class ImportReport(FrozenModel):
    imported: int
    existing: int
    refused: int
    rows: list[ImportRow]


class ReplanAccepted(FrozenModel):
    message_id: str
    requested_at: UtcDatetime
    device_id: str | None = None
    price_area: PriceArea | None = None


class ErrorDetail(FrozenModel):
    field: str | None = None
    message: str


class ErrorInfo(FrozenModel):
    code: str
    message: str
    field: str | None = None
    details: list[ErrorDetail] = Field(default_factory=list)


class ErrorBody(FrozenModel):
    error: ErrorInfo
