"""Stored documents as the API's read models (:mod:`hpsteer.domain.operator_views`).

Documents are written by several writers over time (the simulator's registrations carry no
revision; instants may be timestamps or ISO strings), so the views read them leniently and take
only the fields they show. A document that cannot be shown at all raises
:class:`UnreadableDocument` naming it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from hpsteer.domain.base import describe_validation_error
from hpsteer.domain.commands import Command, CommandEvent
from hpsteer.domain.hand_back import is_hand_back
from hpsteer.domain.operator_views import (
    AlertState,
    AlertView,
    CommandEventView,
    CommandView,
    DeviceView,
    TelemetryView,
)
from hpsteer.errors import PermanentError

__all__ = [
    "UnreadableDocument",
    "alert_state",
    "alert_view",
    "command_view",
    "device_view",
    "is_deleted",
    "telemetry_view",
]


class UnreadableDocument(PermanentError):
    """A stored document the API cannot show (written by something that broke its shape)."""


def is_deleted(data: Mapping[str, Any]) -> bool:
    return data.get("deleted_at") is not None


def _hand_back_id(data: Mapping[str, Any]) -> str | None:
    hand_back = data.get("hand_back")
    if isinstance(hand_back, Mapping) and isinstance(hand_back.get("command_id"), str):
        return str(hand_back["command_id"])
    return None


def device_view(device_id: str, data: Mapping[str, Any]) -> DeviceView:
    try:
        return DeviceView.model_validate(
            {
                "device_id": device_id,
                "manufacturer": data.get("manufacturer"),
                "external_id": data.get("external_id"),
                "account_id": data.get("account_id"),
                "price_area": data.get("price_area"),
                "location": data.get("location"),
                "comfort": data.get("comfort"),
                "thermal": data.get("thermal"),
                "steering_enabled": data.get("steering_enabled") is True,
                "tariff_id": data.get("tariff_id"),
                "registered_at": data.get("registered_at"),
                "updated_at": data.get("updated_at"),
                "revision": data.get("revision") or 0,
                "override_until": data.get("override_until"),
                "current_plan_id": data.get("current_plan_id"),
                "hand_back_command_id": _hand_back_id(data),
            }
        )
    except ValidationError as err:
        raise UnreadableDocument(f"devices/{device_id}: {describe_validation_error(err)}") from None


def alert_state(data: Mapping[str, Any]) -> AlertState:
    if data.get("resolved_at") is not None:
        return "resolved"
    if data.get("acknowledged_at") is not None:
        return "acknowledged"
    return "open"


def alert_view(alert_id: str, data: Mapping[str, Any]) -> AlertView:
    try:
        return AlertView.model_validate(
            {
                "alert_id": alert_id,
                "severity": data.get("severity"),
                "kind": data.get("kind"),
                "message": data.get("message"),
                "raised_at": data.get("raised_at"),
                "state": alert_state(data),
                "device_id": data.get("device_id"),
                "manufacturer": data.get("manufacturer"),
                "command_id": data.get("command_id"),
                "acknowledged_at": data.get("acknowledged_at"),
                "acknowledged_by": data.get("acknowledged_by"),
                "resolved_at": data.get("resolved_at"),
            }
        )
    except ValidationError as err:
        raise UnreadableDocument(f"alerts/{alert_id}: {describe_validation_error(err)}") from None


def command_view(command: Command, events: list[CommandEvent]) -> CommandView:
    return CommandView(
        command_id=command.command_id,
        generic_action=command.generic_action,
        state=command.state,
        hand_back=is_hand_back(command.command_id),
        plan_id=command.plan_id,
        slot_start_at=command.slot_start_at,
        valid_until=command.valid_until,
        created_at=command.created_at,
        updated_at=command.updated_at,
        attempt=command.attempt,
        retry_count=command.retry_count,
        last_error=command.last_error,
        events=[
            CommandEventView(
                seq=e.seq, type=e.type, state=e.state, at=e.at, attempt=e.attempt, error=e.error
            )
            for e in events
        ],
    )


def telemetry_view(data: Mapping[str, Any]) -> TelemetryView | None:
    telemetry = data.get("last_telemetry")
    if not isinstance(telemetry, Mapping) or telemetry.get("observed_at") is None:
        return None
    fields = {name: telemetry.get(name) for name in TelemetryView.model_fields}
    try:
        return TelemetryView.model_validate(fields)
    except ValidationError as err:
        raise UnreadableDocument(f"last_telemetry: {describe_validation_error(err)}") from None
