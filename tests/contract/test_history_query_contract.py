"""Optimize's one history query per shard, on every analytics backend (SQLite and BigQuery's
stand-in): :func:`~hpsteer.services.plan_inputs.load_histories` over ``telemetry_history`` as
ingestion writes it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from hpsteer.services.ingest_telemetry import TELEMETRY_HISTORY
from hpsteer.services.plan_inputs import HistorySample, load_histories

from .test_analytics_contract import Backend
from .test_analytics_contract import backend as backend

NOW = datetime(2024, 1, 15, 12, 0, tzinfo=UTC)


def row(device_id: str, hours_ago: float, **fields: Any) -> dict[str, Any]:
    at = NOW - timedelta(hours=hours_ago)
    return {
        "device_id": device_id,
        "sample_id": f"{device_id}@{at.isoformat()}",
        "observed_at": at,
        "source": "poll",
        "ingested_at": at,
        **fields,
    }


def test_the_history_query_reads_the_asked_devices_samples_since_the_start_oldest_first(
    backend: Backend,
) -> None:
    analytics = backend.analytics
    analytics.ensure_table(TELEMETRY_HISTORY)
    rows = [
        row("a", 1.0, indoor_temp_c=21.5, outdoor_temp_c=-2.0, observed_mode="max"),
        row("a", 3.0, indoor_temp_c=21.0, setpoint_offset_k=-1.0),
        row("a", 30.0, indoor_temp_c=20.0, observed_mode="min"),  # before the history
        row("b", 2.0, indoor_temp_c=19.0, observed_mode="min"),
        row("c", 1.0, indoor_temp_c=22.0, observed_mode="mid"),  # not asked for
    ]
    analytics.append(TELEMETRY_HISTORY.name, rows, [r["sample_id"] for r in rows])

    found = load_histories(analytics, ["a", "b"], now=NOW, history=timedelta(days=1))

    assert found == {
        "a": [
            HistorySample(NOW - timedelta(hours=3), 21.0, None, -1.0),
            HistorySample(NOW - timedelta(hours=1), 21.5, -2.0, 2.0),
        ],
        "b": [HistorySample(NOW - timedelta(hours=2), 19.0, None, -2.0)],
    }
