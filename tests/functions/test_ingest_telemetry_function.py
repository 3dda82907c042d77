"""The ingest_telemetry Cloud Function's two entry points through functions-framework.

``telemetry_webhook`` is POSTed as a Standard Webhooks sender posts (raw JSON body, the three
``webhook-*`` headers); ``ingest_telemetry`` receives the CloudEvent Eventarc builds for a
``device-telemetry`` message. On the local backends both run in process; on the emulators the
webhook publishes to Pub/Sub, a pull subscription hands each message on as the CloudEvent
Eventarc would, and ``ingest_telemetry`` moves the device's state in Firestore. Secrets stay in
a :class:`MemorySecretStore` and analytics in SQLite there (neither is under test).
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cloudevents.conversion import to_structured
from cloudevents.http import CloudEvent
from functions_framework import create_app

from hpsteer.backends.local.analytics import SqliteAnalytics
from hpsteer.backends.local.bus import LocalMessageBus
from hpsteer.backends.local.secrets import MemorySecretStore
from hpsteer.config import Settings
from hpsteer.domain.messages import Topic
from hpsteer.domain.telemetry import TelemetrySample, TelemetrySource
from hpsteer.messaging.envelope import encode_json_message, pubsub_cloudevent
from hpsteer.ports.clock import SimulatedClock
from hpsteer.runtime import bootstrap
from hpsteer.runtime.bootstrap import Dependencies
from hpsteer.runtime.entrypoint import use_dependencies
from hpsteer.services.ingest_telemetry import TELEMETRY_HISTORY
from hpsteer.services.webhooks import signed_headers
from tests.support.firestore import FirestoreEmulator
from tests.support.pubsub import PubSubEmulator

ROOT = Path(__file__).resolve().parents[2]
SOURCE = str(ROOT / "functions" / "ingest_telemetry" / "main.py")
NOW = datetime(2025, 2, 24, 5, 37, tzinfo=UTC)
SECRET = "telemetry-webhook-secret"
KEY = bytes(range(40, 72))


def secrets() -> MemorySecretStore:
    store = MemorySecretStore()
    store.add_version(SECRET, b"whsec_" + base64.b64encode(KEY))
    return store


def register_devices(deps: Dependencies) -> None:
    for device_id in ("d1", "d2"):
        deps.store.set(
            f"devices/{device_id}",
            {"device_id": device_id, "manufacturer": "viessmann", "steering_enabled": True},
        )


def reading(device_id: str, minutes_ago: int, indoor_temp_c: float) -> dict[str, Any]:
    observed_at = NOW - timedelta(minutes=minutes_ago)
    return {
        "manufacturer": "viessmann",
        "device_id": device_id,
        "observed_at": observed_at.isoformat(),
        "indoor_temp_c": indoor_temp_c,
        "observed_mode": "mid",
    }


def post_webhook(body: bytes, webhook_id: str, *, key: bytes = KEY) -> tuple[int, Any]:
    client = create_app("telemetry_webhook", SOURCE, "http").test_client()
    headers = signed_headers([key], webhook_id, int(NOW.timestamp()), body)
    response = client.post("/", data=body, headers={**headers, "Content-Type": "application/json"})
    return response.status_code, response.get_json(silent=True)


def post_event(event: CloudEvent) -> int:
    client = create_app("ingest_telemetry", SOURCE, "cloudevent").test_client()
    headers, body = to_structured(event)
    return int(client.post("/", headers=headers, data=body).status_code)


def telemetry_event(sample: TelemetrySample, project: str, message_id: str) -> CloudEvent:
    return pubsub_cloudevent(
        topic=Topic.DEVICE_TELEMETRY,
        project=project,
        message_id=message_id,
        data=encode_json_message(sample),
        attributes={"device_id": sample.device_id},
        publish_time=NOW,
    )


def sample(device_id: str, minutes_ago: int, indoor_temp_c: float) -> TelemetrySample:
    observed_at = NOW - timedelta(minutes=minutes_ago)
    return TelemetrySample(
        sample_id=f"{device_id}-{minutes_ago}",
        device_id=device_id,
        observed_at=observed_at,
        source=TelemetrySource.WEBHOOK,
        manufacturer="viessmann",
        indoor_temp_c=indoor_temp_c,
    )


@pytest.fixture
def local() -> Iterator[Dependencies]:
    deps = bootstrap.local(clock=SimulatedClock(NOW), secrets=secrets())
    register_devices(deps)
    use_dependencies(deps)
    yield deps
    use_dependencies(None)


def local_messages(deps: Dependencies) -> list[TelemetrySample]:
    bus = deps.bus
    assert isinstance(bus, LocalMessageBus)
    return [TelemetrySample.parse_json(m.data) for m in bus.published(Topic.DEVICE_TELEMETRY)]


def indoor_temp(deps: Dependencies, device_id: str) -> float | None:
    document = deps.store.get(f"devices/{device_id}")
    assert document is not None
    value = document.data.get("last_telemetry", {}).get("indoor_temp_c")
    return float(value) if value is not None else None


# -- local backends ---------------------------------------------------------------------------


def test_locally_a_signed_webhook_is_published_once_and_a_replay_answers_200(
    local: Dependencies,
) -> None:
    body = json.dumps([reading("d1", 2, 21.5), reading("d2", 2, 19.0)]).encode()

    assert post_webhook(body, "msg_1") == (202, {"outcome": "accepted", "samples": 2})
    assert post_webhook(body, "msg_1") == (200, {"outcome": "duplicate"})

    assert [s.device_id for s in local_messages(local)] == ["d1", "d2"]


@pytest.mark.parametrize(
    ("body", "key", "status"),
    [
        (json.dumps(reading("d1", 1, 21.0)).encode(), bytes(32), 401),
        (b'{"device_id": "d1"}', KEY, 400),
    ],
)
def test_locally_a_refused_webhook_publishes_nothing(
    local: Dependencies, body: bytes, key: bytes, status: int
) -> None:
    code, answer = post_webhook(body, "msg_2", key=key)

    assert code == status
    assert "error" in answer
    assert local_messages(local) == []


def test_locally_the_webhook_answers_only_post(local: Dependencies) -> None:
    client = create_app("telemetry_webhook", SOURCE, "http").test_client()

    response = client.get("/")

    assert (response.status_code, response.headers["Allow"]) == (405, "POST")


def test_locally_a_sample_event_moves_state_forward_only(local: Dependencies) -> None:
    project = local.settings.project
    newer, older = sample("d1", 1, 22.0), sample("d1", 30, 18.0)

    assert post_event(telemetry_event(newer, project, "1")) == 200
    assert post_event(telemetry_event(older, project, "2")) == 200  # late: recorded only
    assert post_event(telemetry_event(newer, project, "3")) == 200  # duplicated

    assert indoor_temp(local, "d1") == 22.0
    rows = local.analytics.query("SELECT sample_id FROM `telemetry_history` ORDER BY sample_id")
    assert [row["sample_id"] for row in rows] == ["d1-1", "d1-30"]


def test_locally_unknown_devices_and_malformed_messages_are_acknowledged(
    local: Dependencies,
) -> None:
    project = local.settings.project
    malformed = pubsub_cloudevent(
        topic=Topic.DEVICE_TELEMETRY,
        project=project,
        message_id="9",
        data=b"{not json",
        attributes={},
        publish_time=NOW,
    )

    assert post_event(telemetry_event(sample("ghost", 1, 20.0), project, "8")) == 200
    assert post_event(malformed) == 200

    assert local.store.get("devices/ghost") is None


# -- the emulators ----------------------------------------------------------------------------


@pytest.mark.emulator
def test_on_the_emulators_a_webhook_reaches_firestore_through_pubsub(
    reset_firestore: FirestoreEmulator, pubsub_emulator: PubSubEmulator
) -> None:
    from hpsteer.backends.gcp.pubsub_bus import PubSubPullSubscriber

    project = reset_firestore.project  # the Pub/Sub emulator serves any project id
    settings = Settings(
        backend="gcp",
        project=project,
        firestore_emulator_host=reset_firestore.host,
        pubsub_emulator_host=pubsub_emulator.host,
    )
    cloud = bootstrap.production(settings)
    memory = secrets()
    deps = Dependencies(
        settings,
        SimulatedClock(NOW),
        store=lambda: cloud.store,
        bus=lambda: cloud.bus,
        tasks=lambda: cloud.tasks,
        analytics=SqliteAnalytics,  # BigQuery is not under test here
        secrets=lambda: memory,  # nor Secret Manager
    )
    register_devices(deps)
    use_dependencies(deps)
    subscriber = PubSubPullSubscriber(project)
    delivered: list[CloudEvent] = []
    subscriber.ensure_topic(Topic.DEVICE_TELEMETRY)
    subscriber.subscribe(
        Topic.DEVICE_TELEMETRY,
        delivered.append,
        name=f"device-telemetry-test-{uuid.uuid4().hex[:8]}",
    )
    newest = json.dumps([reading("d1", 1, 22.5), reading("d2", 3, 20.0)]).encode()
    late = json.dumps(reading("d1", 20, 17.0)).encode()
    try:
        assert post_webhook(newest, "msg_a")[0] == 202
        assert post_webhook(late, "msg_b")[0] == 202
        assert post_webhook(newest, "msg_a")[0] == 200  # a replay: not published again
        subscriber.drain()
        for event in reversed(delivered):  # out of order: the late sample first
            assert post_event(event) == 200
        for event in delivered:  # and every message delivered twice
            assert post_event(event) == 200
    finally:
        subscriber.delete_subscriptions()
        subscriber.close()
        close = getattr(deps.bus, "close", None)
        if close is not None:
            close()
        use_dependencies(None)

    assert len(delivered) == 3
    assert indoor_temp(deps, "d1") == 22.5
    assert indoor_temp(deps, "d2") == 20.0
    d1 = deps.store.get("devices/d1")
    assert d1 is not None
    assert d1.data["last_telemetry"]["observed_at"] == NOW - timedelta(minutes=1)
    deps.analytics.ensure_table(TELEMETRY_HISTORY)
    rows = deps.analytics.query("SELECT device_id FROM `telemetry_history`")
    assert sorted(row["device_id"] for row in rows) == ["d1", "d1", "d2"]
