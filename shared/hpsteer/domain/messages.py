"""Messages on the Pub/Sub topics of the data flow (see DESIGN.md).

Each topic carries one message type, JSON-encoded, with ``schema_version``. Producers choose the
ids that make handling idempotent: a price update names area, day and content hash; a request
from Cloud Scheduler carries the scheduled time when its publisher can set it. A Cloud Scheduler
job with a Pub/Sub target publishes a fixed body, so such a request may come without
``scheduled_at``: :func:`schedule_tick` takes the minute its message was published in instead
(the scheduler's duplicates of one tick are published within it).
"""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import ConfigDict, Field

from hpsteer.domain.base import Record, UtcDatetime
from hpsteer.domain.market import PriceArea, Resolution

__all__ = [
    "Alert",
    "AlertSeverity",
    "CommandSweepRequest",
    "CommandTask",
    "KnownCommand",
    "OptimizeRequest",
    "PriceIngestRequest",
    "RecheckTask",
    "ReconcileRequest",
    "ReplanRequest",
    "SpotPricesUpdated",
    "Topic",
    "WeatherIngestRequest",
    "WeatherUpdated",
    "schedule_tick",
]


class Topic(StrEnum):
    PRICE_INGEST_REQUESTS = "price-ingest-requests"
    SPOT_PRICE_UPDATES = "spot-price-updates"
    WEATHER_INGEST_REQUESTS = "weather-ingest-requests"
    WEATHER_UPDATES = "weather-updates"
    OPTIMIZE_REQUESTS = "optimize-requests"
    REPLAN_REQUESTS = "replan-requests"
    RECONCILE_REQUESTS = "reconcile-requests"
    DEVICE_TELEMETRY = "device-telemetry"
    COMMAND_EVENTS = "command-events"
    COMMAND_SWEEP_REQUESTS = "command-sweep-requests"
    ALERTS = "alerts"


class PriceIngestRequest(Record):
    """Fetch the day-ahead prices of ``market_date`` (default: the next delivery day)."""

    areas: tuple[PriceArea, ...] = Field(min_length=1)
    market_date: date | None = None
    scheduled_at: UtcDatetime | None = None
    """The schedule's tick; absent in Cloud Scheduler's fixed body (see :func:`schedule_tick`)."""


class SpotPricesUpdated(Record):
    """A delivery day's prices were stored for the first time (version 1) or corrected."""

    area: PriceArea
    market_date: date
    resolution: Resolution
    content_hash: str = Field(min_length=64, max_length=64)
    source: str
    version: int = Field(default=1, ge=1)


class WeatherIngestRequest(Record):
    location_ids: tuple[str, ...] = ()
    """Empty means every location with a steered device."""
    scheduled_at: UtcDatetime | None = None
    """The schedule's tick; absent in Cloud Scheduler's fixed body (see :func:`schedule_tick`)."""


class WeatherUpdated(Record):
    location_id: str
    issued_at: UtcDatetime


class OptimizeRequest(Record):
    """One shard of an area's re-planning: at most a few hundred devices."""

    area: PriceArea
    device_ids: tuple[str, ...] = Field(min_length=1, max_length=500)
    trigger: str = Field(min_length=1, max_length=300)
    """Why and from what (e.g. ``prices:SE3:2024-01-15:<hash>``): part of the idempotency key."""
    requested_at: UtcDatetime


class ReplanRequest(Record):
    area: PriceArea | None = None
    device_id: str | None = None
    reason: str = Field(min_length=1, max_length=300)
    requested_at: UtcDatetime


class ReconcileRequest(Record):
    scheduled_at: UtcDatetime | None = None
    """The schedule's tick; absent in Cloud Scheduler's fixed body (see :func:`schedule_tick`)."""
    shard_cursor: str | None = None
    shard_size: int = Field(default=200, ge=1, le=1000)


class KnownCommand(Record):
    """A command as the maker of a task has just written (or read) it, and that document's
    ``update_time``: the version the task was made from.

    ``command`` is the command's document form (:meth:`Command.to_document`), kept as plain data
    and parsed by the delivery: a command this version cannot read (a newer maker's, with a field
    it does not know) only means that the delivery reads the command, never that the task is
    dropped as malformed."""

    model_config = ConfigDict(frozen=True, extra="ignore", validate_default=True)

    command: dict[str, Any]
    update_time: UtcDatetime


class CommandTask(Record):
    """The body of a Cloud Task for one command: dispatch it (``send``) or check it (``verify``).

    The task's name (derived from device, plan and slot, or command and attempt) makes creating
    it idempotent. The command document holds the truth; ``known`` is the command as the task's
    maker left it (a release that created it, a dispatch that recorded its acknowledgement), so
    that the task's first delivery need not read it: it records on that version, by an update
    conditional on its ``update_time``, and if anyone wrote the command since, that update fails
    and the delivery reads the command as it is (:mod:`hpsteer.services.dispatch`). Absent
    (tasks the sweep makes again, tasks of older releases): the delivery reads the command.

    Fields this version does not know are ignored, not refused: the functions that make tasks
    (optimize, reconcile, dispatch) are deployed side by side with the one that takes them, and a
    task a newer maker made must not be dropped as malformed by an older dispatch.
    """

    model_config = ConfigDict(frozen=True, extra="ignore", validate_default=True)

    device_id: str = Field(min_length=1, max_length=128)
    command_id: str = Field(min_length=1, max_length=200)
    purpose: Literal["send", "verify"]
    known: KnownCommand | None = None


class RecheckTask(Record):
    """The body of a Cloud Task that reconciles one device again, soon after the tick whose poll
    of it failed (:mod:`hpsteer.services.recheck`). Unknown fields are ignored, as in
    :class:`CommandTask`: reconcile, which makes these tasks, may be deployed before the function
    that takes them."""

    model_config = ConfigDict(frozen=True, extra="ignore", validate_default=True)

    device_id: str = Field(min_length=1, max_length=128)
    tick: UtcDatetime
    """The reconcile run whose poll failed: the recheck judges the device for that run."""


class CommandSweepRequest(Record):
    """Cloud Scheduler's request to re-create lost outbox tasks and unstick commands."""

    scheduled_at: UtcDatetime | None = None
    """The schedule's tick; absent in Cloud Scheduler's fixed body (see :func:`schedule_tick`)."""


class AlertSeverity(StrEnum):
    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"


class Alert(Record):
    alert_id: str = Field(min_length=1, max_length=200)
    severity: AlertSeverity
    kind: str = Field(min_length=1, max_length=100)
    message: str = Field(min_length=1, max_length=2000)
    raised_at: UtcDatetime
    device_id: str | None = None
    manufacturer: str | None = None
    command_id: str | None = None


def schedule_tick(scheduled_at: datetime | None, published_at: datetime) -> datetime:
    """The tick a scheduled request stands for: its ``scheduled_at``, or else the minute its
    message was published in."""
    if scheduled_at is not None:
        return scheduled_at
    return published_at.replace(second=0, microsecond=0)
