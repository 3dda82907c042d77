"""The ingest_weather Cloud Function through functions-framework, on local backends and emulators.

A CloudEvent built the way Eventarc builds it for a Pub/Sub message is POSTed (structured mode) to
the app functions-framework makes of ``functions/ingest_weather/main.py``. The weather source is a
fake serving the real Open-Meteo fixture, installed with ``use_weather_source``: no network.
Against the emulators the function stores in Firestore and announces on Pub/Sub; the analytics
port stays local SQLite there (a Dependencies built by hand), since BigQuery is not under test.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cloudevents.conversion import to_structured
from cloudevents.http import CloudEvent
from functions_framework import create_app

from hpsteer.backends.local.analytics import SqliteAnalytics
from hpsteer.backends.local.bus import LocalMessageBus
from hpsteer.config import Settings
from hpsteer.domain.devices import Location
from hpsteer.domain.messages import Topic, WeatherIngestRequest, WeatherUpdated
from hpsteer.domain.weather import WeatherSeries
from hpsteer.errors import ProviderUnavailable
from hpsteer.messaging.envelope import (
    encode_json_message,
    pubsub_cloudevent,
    read_pubsub_message,
)
from hpsteer.ports.clock import SimulatedClock
from hpsteer.runtime import bootstrap
from hpsteer.runtime.bootstrap import Dependencies
from hpsteer.runtime.entrypoint import use_dependencies
from hpsteer.services.ingest_weather import forecast_path, use_weather_source
from hpsteer.sources.openmeteo import parse_forecast
from tests.support.firestore import FirestoreEmulator
from tests.support.pubsub import PubSubEmulator

ROOT = Path(__file__).resolve().parents[2]
SOURCE = str(ROOT / "functions" / "ingest_weather" / "main.py")
RAW = (
    ROOT
    / "tests/fixtures/weather/openmeteo/openmeteo_forecast_minutely15_45.84N_6.86E_2025-02-24.json"
).read_bytes()
NOW = datetime(2025, 2, 24, 5, 37, tzinfo=UTC)
ISSUED = datetime(2025, 2, 24, 5, 0, tzinfo=UTC)
STOCKHOLM = "lat59.30_lon18.16"
MALMO = "lat55.57_lon12.94"


class FixtureWeather:
    """Serves the Open-Meteo fixture for any location; ``down`` makes every fetch fail."""

    name = "fixture"

    def __init__(self) -> None:
        self.down = False
        self.calls: list[str] = []

    def forecast(self, location: Location) -> WeatherSeries:
        self.calls.append(location.location_id)
        if self.down:
            raise ProviderUnavailable("Open-Meteo forecast: HTTP 503")
        return parse_forecast(RAW, location, issued_at=ISSUED)


def post(event: CloudEvent) -> int:
    client = create_app("ingest_weather", SOURCE, "cloudevent").test_client()
    headers, body = to_structured(event)
    return int(client.post("/", headers=headers, data=body).status_code)


def request_event(
    project: str, message_id: str = "1", published_at: datetime = NOW, *location_ids: str
) -> CloudEvent:
    request = WeatherIngestRequest(location_ids=location_ids, scheduled_at=published_at)
    return pubsub_cloudevent(
        topic=Topic.WEATHER_INGEST_REQUESTS,
        project=project,
        message_id=message_id,
        data=encode_json_message(request),
        attributes={},
        publish_time=published_at,
    )


@pytest.fixture
def weather() -> Iterator[FixtureWeather]:
    source = FixtureWeather()
    use_weather_source(source)
    yield source
    use_weather_source(None)
    use_dependencies(None)


def register_devices(deps: Dependencies) -> None:
    for device_id, latitude, longitude in [
        ("d1", 59.2970, 18.1633),
        ("d2", 59.3012, 18.1571),
        ("d3", 55.5712, 12.9352),
    ]:
        deps.store.set(
            f"devices/{device_id}",
            {
                "device_id": device_id,
                "steering_enabled": True,
                "location": {
                    "location_id": f"home-{device_id}",
                    "latitude": latitude,
                    "longitude": longitude,
                },
            },
        )


def local_deps() -> Dependencies:
    deps = bootstrap.local(clock=SimulatedClock(NOW))
    register_devices(deps)
    use_dependencies(deps)
    return deps


def announced_locally(deps: Dependencies) -> list[WeatherUpdated]:
    bus = deps.bus
    assert isinstance(bus, LocalMessageBus)
    return [WeatherUpdated.parse_json(m.data) for m in bus.published(Topic.WEATHER_UPDATES)]


def test_on_local_backends_a_request_stores_and_announces_each_location_once(
    weather: FixtureWeather,
) -> None:
    deps = local_deps()

    assert post(request_event("hpsteer-local")) == 200
    assert post(request_event("hpsteer-local", "2")) == 200  # a duplicate delivery

    assert sorted(e.location_id for e in announced_locally(deps)) == [MALMO, STOCKHOLM]
    stored = deps.store.get(forecast_path(STOCKHOLM, ISSUED))
    assert stored is not None
    assert stored.data["announced"] is True


def test_on_local_backends_a_provider_outage_answers_500_for_redelivery(
    weather: FixtureWeather,
) -> None:
    deps = local_deps()
    weather.down = True

    assert post(request_event("hpsteer-local")) == 500

    assert weather.calls == [STOCKHOLM, MALMO]
    assert announced_locally(deps) == []


def test_on_local_backends_a_request_older_than_six_hours_is_dropped(
    weather: FixtureWeather,
) -> None:
    local_deps()

    assert post(request_event("hpsteer-local", "1", NOW - timedelta(hours=6, minutes=1))) == 200

    assert weather.calls == []


def test_on_local_backends_a_malformed_message_is_acknowledged(weather: FixtureWeather) -> None:
    local_deps()
    event = pubsub_cloudevent(
        topic=Topic.WEATHER_INGEST_REQUESTS,
        project="hpsteer-local",
        message_id="9",
        data=b"{not json",
        attributes={},
        publish_time=NOW,
    )

    assert post(event) == 200  # acknowledged: a redelivery cannot fix it
    assert weather.calls == []


@pytest.mark.emulator
def test_on_the_emulators_a_request_stores_in_firestore_and_announces_on_pubsub(
    weather: FixtureWeather,
    reset_firestore: FirestoreEmulator,
    pubsub_emulator: PubSubEmulator,
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
    deps = Dependencies(
        settings,
        SimulatedClock(NOW),
        store=lambda: cloud.store,
        bus=lambda: cloud.bus,
        tasks=lambda: cloud.tasks,
        analytics=SqliteAnalytics,  # BigQuery is not under test here
        secrets=lambda: cloud.secrets,
    )
    register_devices(deps)
    use_dependencies(deps)
    subscriber = PubSubPullSubscriber(project)
    received: list[WeatherUpdated] = []

    def collect(event: CloudEvent) -> None:
        received.append(WeatherUpdated.parse_json(read_pubsub_message(event).data))

    subscriber.ensure_topic(Topic.WEATHER_UPDATES)
    subscriber.subscribe(
        Topic.WEATHER_UPDATES, collect, name=f"weather-updates-test-{uuid.uuid4().hex[:8]}"
    )
    try:
        assert post(request_event(project)) == 200
        assert post(request_event(project, "2")) == 200  # a duplicate delivery
        subscriber.drain()
    finally:
        subscriber.delete_subscriptions()
        subscriber.close()
        bus = deps.bus
        close = getattr(bus, "close", None)
        if close is not None:
            close()

    assert sorted(e.location_id for e in received) == [MALMO, STOCKHOLM]
    assert {e.issued_at for e in received} == {ISSUED}
    stored = deps.store.get(forecast_path(MALMO, ISSUED))
    assert stored is not None
    assert stored.data["announced"] is True
    assert len(stored.data["points"]) == 288
    location = deps.store.get(f"locations/{MALMO}")
    assert location is not None
    assert location.data["latest_forecast_issued_at"] == ISSUED
