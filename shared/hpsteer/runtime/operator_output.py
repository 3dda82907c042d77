"""The operator's answers as text for a person: tables and short summaries.

``--json`` prints the API's answer itself (``model_dump(mode="json")``); these are the default,
readable forms of the same read models (:mod:`hpsteer.domain.operator_views`). Instants are
ISO 8601 UTC with ``Z``, temperatures in °C, money in EUR, as everywhere in hpsteer.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from enum import Enum
from typing import Any

from hpsteer.domain.instants import format_instant
from hpsteer.domain.operator_views import (
    AlertsPage,
    AlertView,
    CommandView,
    DeletedDevice,
    DevicesPage,
    DeviceStatus,
    DeviceView,
    ImportReport,
    PlanView,
    TelemetryView,
)
from hpsteer.domain.plans import PlanSlot
from hpsteer.runtime.operator_client import Registration

__all__ = [
    "acknowledged_lines",
    "alert_lines",
    "alerts_page_lines",
    "deleted_lines",
    "devices_page_lines",
    "import_lines",
    "registration_lines",
    "status_lines",
    "steering_lines",
    "table",
    "text",
]


def text(value: object) -> str:
    """A cell: ``-`` for nothing, ``yes``/``no``, instants in ISO, floats without trailing 0s."""
    if value is None or value == "" or value == [] or value == {}:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, datetime):
        return format_instant(value)
    if isinstance(value, Enum):
        return str(value.value)
    if isinstance(value, float):
        return f"{value:.3f}".rstrip("0").rstrip(".")
    return str(value)


def table(columns: Sequence[tuple[str, str]], rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """``columns``: (heading, key) pairs; a heading line, a rule, one aligned line per row."""
    cells = [[h for h, _ in columns], *([text(row.get(k)) for _, k in columns] for row in rows)]
    widths = [max(len(line[i]) for line in cells) for i in range(len(columns))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)) for line in cells]
    return [lines[0].rstrip(), "  ".join("-" * w for w in widths), *(x.rstrip() for x in lines[1:])]


def _band(device: DeviceView) -> str:
    c = device.comfort
    return f"{text(c.min_indoor_temp_c)}/{text(c.setpoint_c)}/{text(c.max_indoor_temp_c)}"


def _more(token: str | None) -> list[str]:
    return [f"more: --page-token {token}"] if token else []


# -- devices ---------------------------------------------------------------------------------


_DEVICE_COLUMNS = [
    ("device", "device_id"), ("manufacturer", "manufacturer"), ("external id", "external_id"),
    ("area", "price_area"), ("steering", "steering"), ("comfort °C", "band"),
    ("current plan", "current_plan_id"), ("rev", "revision"),
]  # fmt: skip


def devices_page_lines(page: DevicesPage) -> list[str]:
    rows = [
        {
            **d.model_dump(),
            "price_area": d.price_area.value,
            "steering": "on" if d.steering_enabled else "off",
            "band": _band(d),
        }
        for d in page.devices
    ]
    count = f"{len(rows)} device{'' if len(rows) == 1 else 's'}"
    return [*(table(_DEVICE_COLUMNS, rows) if rows else []), count, *_more(page.next_page_token)]


def _device_summary(device: DeviceView) -> str:
    return (
        f"{device.device_id} ({device.manufacturer} {device.external_id}, account "
        f"{device.account_id}, {device.price_area.value})"
    )


def registration_lines(registered: Registration) -> list[str]:
    device = registered.device
    if registered.created:
        head = f"registered {_device_summary(device)}, revision {device.revision}"
    else:
        head = f"already registered, unchanged: {_device_summary(device)}"
    return [
        head,
        f"  steering {'on' if device.steering_enabled else 'off'}, comfort {_band(device)} °C "
        f"(min/setpoint/max), building {device.thermal.archetype or 'as given'}, "
        f"tariff {text(device.tariff_id)}",
    ]


def update_lines(device: DeviceView) -> list[str]:
    band = device.comfort
    tariff = device.tariff_id or "none (planned on spot)"
    return [
        f"{device.device_id} (revision {device.revision}): comfort {text(band.min_indoor_temp_c)}"
        f" / {text(band.setpoint_c)} / {text(band.max_indoor_temp_c)} °C, tariff {tariff}"
    ]


def steering_lines(device: DeviceView) -> list[str]:
    if device.steering_enabled:
        return [f"steering of {device.device_id} is on (revision {device.revision})"]
    hand_back = device.hand_back_command_id
    back = f"; handed back with command {hand_back}" if hand_back else ""
    return [f"steering of {device.device_id} is off (revision {device.revision}){back}"]


def deleted_lines(deleted: DeletedDevice) -> list[str]:
    back = (
        f"handed back with command {deleted.hand_back_command_id}"
        if deleted.hand_back_command_id
        else "no hand-back (steering was off)"
    )
    return [f"deleted {deleted.device_id} at {text(deleted.deleted_at)}; {back}"]


_IMPORT_COLUMNS = [
    ("line", "line"), ("status", "status"), ("device", "device_id"), ("code", "code"),
    ("field", "field"), ("why", "message"),
]  # fmt: skip


def import_lines(report: ImportReport) -> list[str]:
    rows = [row.model_dump() for row in report.rows]
    return [
        *table(_IMPORT_COLUMNS, rows),
        f"imported {report.imported}, existing {report.existing}, refused {report.refused}",
    ]


# -- a device's status -----------------------------------------------------------------------


def _telemetry(telemetry: TelemetryView | None) -> str:
    if telemetry is None:
        return "none"
    facts = [
        ("indoor", telemetry.indoor_temp_c, " °C"),
        ("outdoor", telemetry.outdoor_temp_c, " °C"),
        ("mode", telemetry.observed_mode, ""),
        ("power", telemetry.power_kw, " kW"),
        ("online", telemetry.online, ""),
        ("changed by the household", telemetry.changed_by_user, ""),
    ]
    shown = ", ".join(
        f"{name} {text(value)}{unit}" for name, value, unit in facts if value is not None
    )
    return f"observed {text(telemetry.observed_at)}: {shown or 'no values'}"


def _mode(status: DeviceStatus) -> str:
    mode = status.mode
    intended = (
        f"intended {text(mode.intended_mode)} from {text(mode.intended_since)} to "
        f"{text(mode.intended_until)} (plan {text(mode.plan_id)})"
        if mode.intended_mode is not None
        else "intended none (no current plan slot)"
    )
    actual = (
        f"actual {text(mode.actual_mode)} (observed {text(mode.actual_observed_at)})"
        if mode.actual_mode is not None
        else "actual unknown"
    )
    verdict = {True: "in sync", False: "OUT OF SYNC", None: "not judged"}[mode.in_sync]
    return f"{intended}; {actual}: {verdict}"


def _runs(slots: Sequence[PlanSlot]) -> list[dict[str, Any]]:
    """Consecutive slots of one mode as one row."""
    runs: list[list[PlanSlot]] = []
    for slot in slots:
        if runs and runs[-1][-1].mode == slot.mode:
            runs[-1].append(slot)
        else:
            runs.append([slot])
    rows = []
    for run in runs:
        temps = [s.predicted_indoor_temp_c for s in run]
        rows.append(
            {
                "from": run[0].start_at,
                "to": run[-1].end_at,
                "mode": run[0].mode,
                "slots": len(run),
                "price": sum(s.price_eur_per_mwh for s in run) / len(run),
                "indoor": f"{text(min(temps))}..{text(max(temps))}",
            }
        )
    return rows


_RUN_COLUMNS = [
    ("from", "from"), ("to", "to"), ("mode", "mode"), ("slots", "slots"),
    ("mean price €/MWh", "price"), ("predicted indoor °C", "indoor"),
]  # fmt: skip


def _plan_lines(plan: PlanView | None) -> list[str]:
    if plan is None:
        return ["current plan: none"]
    gap = f", gap {text(plan.solver_gap)}" if plan.solver_gap is not None else ""
    return [
        f"current plan {plan.plan_id}: {text(plan.start_at)} to {text(plan.end_at)}, "
        f"{plan.resolution_minutes}-minute slots, expected {text(plan.expected_cost_eur)} € "
        f"against {text(plan.baseline_cost_eur)} € under the heat pump's own control "
        f"(solver {plan.solver}{gap}) at spot",
        *_bill_lines(plan),
        *(f"  {line}" for line in table(_RUN_COLUMNS, _runs(plan.slots))),
    ]


def _bill_lines(plan: PlanView) -> list[str]:
    if plan.tariff_note:
        return [f"planned on spot: {plan.tariff_note}"]
    if plan.tariff_id is None or plan.expected_bill_eur is None:
        return []
    return [
        f"on the household's bill (tariff {plan.tariff_id}): expected "
        f"{text(plan.expected_bill_eur)} € against {text(plan.baseline_bill_eur)} €"
    ]


_COMMAND_COLUMNS = [
    ("command", "command_id"), ("action", "action"), ("state", "state"),
    ("slot start", "slot_start_at"), ("attempt", "attempt"), ("retries", "retry_count"),
    ("last event", "last_event"), ("error", "last_error"),
]  # fmt: skip


def _command_row(command: CommandView) -> dict[str, Any]:
    last = command.events[-1] if command.events else None
    return {
        **command.model_dump(),
        "action": f"{command.generic_action.value}{' (hand-back)' if command.hand_back else ''}",
        "state": command.state.value,
        "last_event": f"{last.type.value} {text(last.at)}" if last else None,
    }


def status_lines(status: DeviceStatus) -> list[str]:
    device = status.device
    override = status.override
    if override.until is None:
        overridden = "none"
    else:
        overridden = f"until {text(override.until)} ({'in force' if override.in_force else 'over'})"
    updated = f", updated {text(device.updated_at)}" if device.updated_at else ""
    fields = [
        ("steering", f"{'on' if device.steering_enabled else 'off'} (revision "
                     f"{device.revision}{updated})"),
        ("comfort band", f"{_band(device)} °C (min/setpoint/max)"),
        ("tariff", text(device.tariff_id)),
        ("override", overridden),
        ("last telemetry", _telemetry(status.last_telemetry)),
        ("mode", _mode(status)),
        ("hand-back", text(device.hand_back_command_id)),
    ]  # fmt: skip
    commands = [_command_row(c) for c in status.recent_commands]
    return [
        f"device {_device_summary(device)}, as of {text(status.as_of)}",
        *(f"  {name:<15} {value}" for name, value in fields),
        "",
        *_plan_lines(status.current_plan),
        "",
        f"recent commands (newest first, {len(commands)})",
        *([f"  {line}" for line in table(_COMMAND_COLUMNS, commands)] if commands else ["  none"]),
        "",
        "open alerts",
        *([f"  {line}" for line in alert_lines(status.open_alerts)] or ["  none"]),
    ]


# -- alerts ----------------------------------------------------------------------------------


_ALERT_COLUMNS = [
    ("alert", "alert_id"), ("severity", "severity"), ("kind", "kind"), ("device", "device_id"),
    ("state", "state"), ("raised", "raised_at"), ("message", "message"),
]  # fmt: skip


def alert_lines(alerts: Sequence[AlertView]) -> list[str]:
    if not alerts:
        return []
    return table(_ALERT_COLUMNS, [a.model_dump() for a in alerts])


def alerts_page_lines(page: AlertsPage) -> list[str]:
    count = f"{len(page.alerts)} alert{'' if len(page.alerts) == 1 else 's'}"
    return [*alert_lines(page.alerts), count, *_more(page.next_page_token)]


def acknowledged_lines(alert: AlertView) -> list[str]:
    return [
        f"alert {alert.alert_id} ({alert.severity.value} {alert.kind}) is {alert.state}: "
        f"acknowledged by {text(alert.acknowledged_by)} at {text(alert.acknowledged_at)}"
    ]
