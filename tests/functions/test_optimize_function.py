"""The optimize Cloud Function's two entry points through functions-framework.

CloudEvents built as Eventarc builds them for Pub/Sub messages are POSTed to the apps that
functions-framework makes of ``functions/optimize/main.py`` (targets ``optimize_trigger`` and
``optimize_shard``). Prices and weather are the bundled replays, stored through the ingest
services first. Against the emulators the same functions read and write Firestore, append to
BigQuery (bqemulator) and publish the shards on Pub/Sub.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from cloudevents.conversion import to_structured
from cloudevents.http import CloudEvent
from functions_framework import create_app

from hpsteer.backends.local.bus import LocalMessageBus
from hpsteer.config import Settings
from hpsteer.domain.devices import ComfortBand, Device, Location
from hpsteer.domain.market import PriceArea
from hpsteer.domain.messages import (
    OptimizeRequest,
    PriceIngestRequest,
    SpotPricesUpdated,
    Topic,
    WeatherIngestRequest,
)
from hpsteer.messaging.envelope import encode_json_message, pubsub_cloudevent, read_pubsub_message
from hpsteer.ports.clock import SimulatedClock
from hpsteer.runtime import bootstrap
from hpsteer.runtime.bootstrap import Dependencies
from hpsteer.runtime.entrypoint import use_dependencies
from hpsteer.services.command_tasks import ensure_queues
from hpsteer.services.ingest_prices import ingest_prices
from hpsteer.services.ingest_weather import forecast_location_id, ingest_weather
from hpsteer.services.price_days import load_day
from hpsteer.sources.replay_prices import ReplayPriceSource
from hpsteer.sources.replay_weather import ReplayWeatherSource, bundled_weather_dir
from hpsteer.thermal import RENOVATED_RADIATORS
from tests.support.bigquery import BigQueryEmulator
from tests.support.cloud_tasks import CloudTasksEmulator, TargetServer
from tests.support.firestore import FirestoreEmulator
from tests.support.pubsub import PubSubEmulator

SOURCE = str(Path(__file__).resolve().parents[2] / "functions" / "optimize" / "main.py")
NOW = datetime(2023, 1, 15, 12, 30, tzinfo=UTC)
STOCKHOLM = (59.2970, 18.1633)


def post(target: str, event: CloudEvent) -> int:
    client = create_app(target, SOURCE, "cloudevent").test_client()
    headers, body = to_structured(event)
    return int(client.post("/", headers=headers, data=body).status_code)


def event(project: str, topic: str, data: bytes, attributes: dict[str, str], mid: str = "1"):
    return pubsub_cloudevent(
        topic=topic,
        project=project,
        message_id=mid,
        data=data,
        attributes=attributes,
        publish_time=NOW,
    )


@pytest.fixture
def installed() -> Iterator[None]:
    yield
    use_dependencies(None)


def prepare(deps: Dependencies, device_ids: tuple[str, ...]) -> SpotPricesUpdated:
    """Store prices, a forecast and devices; return the announcement of tomorrow's prices."""
    replay = ReplayPriceSource(clock=deps.clock)
    for day in (date(2023, 1, 15), date(2023, 1, 16)):
        request = PriceIngestRequest(areas=(PriceArea.SE3,), market_date=day, scheduled_at=NOW)
        ingest_prices(request, deps, lambda _area, _deps: [replay])
    weather = ReplayWeatherSource(bundled_weather_dir(), clock=deps.clock)
    location_id = forecast_location_id(*STOCKHOLM)
    ingest_weather(
        WeatherIngestRequest(location_ids=(location_id,), scheduled_at=NOW), deps, weather
    )
    for device_id in device_ids:
        device = Device(
            device_id=device_id,
            manufacturer="viessmann",
            external_id=f"ext-{device_id}",
            account_id="acct-1",
            price_area=PriceArea.SE3,
            location=Location(
                location_id=f"home-{device_id}", latitude=STOCKHOLM[0], longitude=STOCKHOLM[1]
            ),
            comfort=ComfortBand(min_indoor_temp_c=20, setpoint_c=21, max_indoor_temp_c=23),
            thermal=RENOVATED_RADIATORS.parameters,
            registered_at=NOW - timedelta(days=30),
        )
        deps.store.set(f"devices/{device_id}", device.to_document())
    stored = load_day(deps.store, PriceArea.SE3, date(2023, 1, 16))
    assert stored is not None
    return SpotPricesUpdated(
        area=PriceArea.SE3,
        market_date=date(2023, 1, 16),
        resolution=stored.prices.resolution,
        content_hash=stored.prices.content_hash,
        source=stored.prices.source,
        version=stored.version,
    )


def announcement(project: str, update: SpotPricesUpdated, mid: str = "1") -> CloudEvent:
    attributes = {
        "area": update.area.value,
        "market_date": update.market_date.isoformat(),
        "content_hash": update.content_hash,
    }
    return event(project, Topic.SPOT_PRICE_UPDATES, encode_json_message(update), attributes, mid)


def test_on_local_backends_a_price_update_fans_out_and_each_shard_plans_its_devices(
    installed: None,
) -> None:
    deps = bootstrap.local(clock=SimulatedClock(NOW), dispatcher=lambda request: 200)
    use_dependencies(deps)
    update = prepare(deps, ("d1", "d2"))
    bus = deps.bus
    assert isinstance(bus, LocalMessageBus)

    assert post("optimize_trigger", announcement("hpsteer-local", update)) == 200
    shards = bus.published(Topic.OPTIMIZE_REQUESTS)
    assert [OptimizeRequest.parse_json(m.data).device_ids for m in shards] == [("d1", "d2")]
    for index, message in enumerate([*shards, *shards]):  # each shard delivered twice
        shard_event = event(
            "hpsteer-local", Topic.OPTIMIZE_REQUESTS, message.data, message.attributes, str(index)
        )
        assert post("optimize_shard", shard_event) == 200

    for device_id in ("d1", "d2"):
        device = deps.store.get(f"devices/{device_id}")
        assert device is not None
        assert device.data["current_plan_id"]
    rows = deps.analytics.query("SELECT COUNT(*) AS n FROM `plans`")
    assert rows[0]["n"] == 2


def test_on_local_backends_a_malformed_trigger_is_acknowledged(installed: None) -> None:
    use_dependencies(bootstrap.local(clock=SimulatedClock(NOW), dispatcher=lambda request: 200))
    bad = event("hpsteer-local", Topic.REPLAN_REQUESTS, b"{not json", {})
    assert post("optimize_trigger", bad) == 200
    assert post("optimize_shard", bad) == 200


@pytest.mark.emulator
def test_on_the_emulators_a_price_update_is_planned_through_both_entry_points(
    installed: None,
    firestore_emulator: FirestoreEmulator,
    pubsub_emulator: PubSubEmulator,
    bigquery_emulator: BigQueryEmulator,
    cloud_tasks_emulator: CloudTasksEmulator,
    task_target_server: TargetServer,
) -> None:
    from hpsteer.backends.gcp.pubsub_bus import PubSubPullSubscriber

    project = bigquery_emulator.project
    settings = Settings(
        backend="gcp",
        project=project,
        firestore_emulator_host=firestore_emulator.host,
        pubsub_emulator_host=pubsub_emulator.host,
        bigquery_emulator_host=bigquery_emulator.endpoint,
        bigquery_dataset=bigquery_emulator.new_dataset(),
        tasks_emulator_host=cloud_tasks_emulator.host_port,
        dispatch_url=f"{task_target_server.base_url}/dispatch",
    )
    deps = bootstrap.production(settings, clock=SimulatedClock(NOW))
    ensure_queues(deps.tasks, ("viessmann",))  # terraform's part in the cloud
    use_dependencies(deps)
    device_ids = ("opt-e1", "opt-e2")
    subscriber = PubSubPullSubscriber(project)
    for topic in (Topic.SPOT_PRICE_UPDATES, Topic.WEATHER_UPDATES):
        subscriber.ensure_topic(topic)  # the ingest services announce on these
    shards: list[CloudEvent] = []
    subscriber.subscribe(Topic.OPTIMIZE_REQUESTS, shards.append, name="optimize-requests-test")
    try:
        update = prepare(deps, device_ids)
        assert post("optimize_trigger", announcement(project, update)) == 200
        subscriber.drain()
    finally:
        subscriber.delete_subscriptions()
        subscriber.close()

    assert len(shards) >= 1
    requests = [OptimizeRequest.parse_json(read_pubsub_message(e).data) for e in shards]
    assert {d for r in requests for d in r.device_ids} >= set(device_ids)
    for shard_event in shards:
        assert post("optimize_shard", shard_event) == 200
    for device_id in device_ids:
        device = deps.store.get(f"devices/{device_id}")
        assert device is not None
        plan_id = device.data["current_plan_id"]
        plan = deps.store.get(f"devices/{device_id}/plans/{plan_id}")
        assert plan is not None
        assert plan.data["outbox"]
        # Released into commands and named tasks on Cloud Tasks (the emulator).
        queued = [e for e in plan.data["outbox"] if e["status"] == "queued"]
        assert queued
        for entry in queued:
            assert deps.store.get(f"devices/{device_id}/commands/{entry['command_id']}")
