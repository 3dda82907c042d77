"""Alerts: a document a person can find in ``alerts/{alert_id}``, and a message on ``alerts``.

:func:`raise_alert` follows the outbox rule used everywhere: it creates the document with
``published: false``, publishes, then sets ``published: true``. The id is the caller's, derived
from what the alert is about (``command-failed-{device}-{command}``), so raising the same alert
again changes nothing, and a crash between storing and publishing publishes on the next call
instead of never. An alert is logged at ERROR (critical) or WARNING, once, when first stored.
"""

from __future__ import annotations

import logging
from datetime import datetime

from hpsteer.domain.commands import Command
from hpsteer.domain.messages import Alert, AlertSeverity, Topic
from hpsteer.errors import DocumentAlreadyExists
from hpsteer.messaging.envelope import encode_json_message
from hpsteer.observability.metrics import ALERTS_RAISED_TOTAL, metrics
from hpsteer.ports.bus import MessageBus
from hpsteer.ports.store import DocumentStore

__all__ = ["alert_path", "failure_alert", "raise_alert"]

_log = logging.getLogger(__name__)


def alert_path(alert_id: str) -> str:
    return f"alerts/{alert_id}"


def raise_alert(store: DocumentStore, bus: MessageBus, alert: Alert) -> bool:
    """Store and publish ``alert`` once; True when this call stored it."""
    path = alert_path(alert.alert_id)
    try:
        store.create(
            path, {**alert.to_document(), "raised_at": alert.raised_at, "published": False}
        )
        created = True
        metrics.inc(ALERTS_RAISED_TOTAL, kind=alert.kind, severity=alert.severity.value)
        level = logging.ERROR if alert.severity is AlertSeverity.CRITICAL else logging.WARNING
        _log.log(
            level,
            "alert %s: %s",
            alert.kind,
            alert.message,
            extra={
                "alert_id": alert.alert_id,
                "device_id": alert.device_id,
                "command_id": alert.command_id,
            },
        )
    except DocumentAlreadyExists:
        created = False
        existing = store.get(path)
        if existing is not None and existing.data.get("published") is True:
            return False
    bus.publish(
        Topic.ALERTS.value,
        encode_json_message(alert),
        attributes={"kind": alert.kind, "severity": alert.severity.value},
    )
    store.update(path, {"published": True})
    return created


def failure_alert(command: Command, now: datetime) -> Alert:
    """The alert of a failed command (``alerts/command-failed-{device}-{command}``)."""
    return Alert(
        alert_id=f"command-failed-{command.device_id}-{command.command_id}",
        severity=AlertSeverity.CRITICAL,
        kind="command_failed",
        message=(
            f"command {command.command_id} ({command.generic_action.value}) for device "
            f"{command.device_id} failed after attempt {command.attempt}: "
            f"{command.last_error or 'no reason recorded'}"
        )[:2000],
        raised_at=command.failed_at or now,
        device_id=command.device_id,
        manufacturer=command.manufacturer,
        command_id=command.command_id,
    )
