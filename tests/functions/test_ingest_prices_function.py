"""The ingest_prices Cloud Function through functions-framework, on local backends and emulators.

A CloudEvent built the way Eventarc builds it for a Pub/Sub message is POSTed to the function app
that functions-framework makes of ``functions/ingest_prices/main.py``. The price source is the
bundled replay, so no provider is called. Against the emulators the same function stores in
Firestore, appends to BigQuery (bqemulator) and announces on Pub/Sub.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from cloudevents.conversion import to_structured
from cloudevents.http import CloudEvent
from functions_framework import create_app

from hpsteer.backends.local.bus import LocalMessageBus
from hpsteer.config import Settings
from hpsteer.domain.market import PriceArea
from hpsteer.domain.messages import PriceIngestRequest, SpotPricesUpdated, Topic
from hpsteer.messaging.envelope import pubsub_cloudevent, read_pubsub_message
from hpsteer.ports.clock import SimulatedClock
from hpsteer.runtime import bootstrap
from hpsteer.runtime.bootstrap import Dependencies
from hpsteer.runtime.entrypoint import use_dependencies
from hpsteer.services.ingest_prices import use_price_sources
from hpsteer.services.price_days import load_day
from hpsteer.sources.replay_prices import ReplayPriceSource
from tests.support.bigquery import BigQueryEmulator
from tests.support.firestore import FirestoreEmulator
from tests.support.pubsub import PubSubEmulator

SOURCE = str(Path(__file__).resolve().parents[2] / "functions" / "ingest_prices" / "main.py")
NOW = datetime(2024, 10, 26, 12, 30, tzinfo=UTC)  # tomorrow in DK1 is the 25-hour day
TOMORROW = date(2024, 10, 27)


def post(event: CloudEvent) -> int:
    client = create_app("ingest_prices", SOURCE, "cloudevent").test_client()
    headers, body = to_structured(event)
    response = client.post("/", headers=headers, data=body)
    return int(response.status_code)


def request_event(project: str, message_id: str = "1") -> CloudEvent:
    request = PriceIngestRequest(areas=(PriceArea.DK1,), scheduled_at=NOW)
    return pubsub_cloudevent(
        topic=Topic.PRICE_INGEST_REQUESTS,
        project=project,
        message_id=message_id,
        data=request.model_dump_json().encode(),
        attributes={},
        publish_time=NOW,
    )


@pytest.fixture
def installed() -> Iterator[None]:
    yield
    use_dependencies(None)
    use_price_sources(None)


def install(deps: Dependencies) -> None:
    use_dependencies(deps)
    replay = ReplayPriceSource(clock=deps.clock)
    use_price_sources(lambda area, _deps: [replay])


def test_on_local_backends_a_request_stores_and_announces_the_day(installed: None) -> None:
    deps = bootstrap.local(clock=SimulatedClock(NOW), dispatcher=lambda request: 200)
    install(deps)
    bus = deps.bus
    assert isinstance(bus, LocalMessageBus)

    assert post(request_event("hpsteer-local")) == 200
    assert post(request_event("hpsteer-local", message_id="2")) == 200  # a duplicate delivery

    stored = load_day(deps.store, PriceArea.DK1, TOMORROW)
    assert stored is not None
    assert len(stored.prices.prices_eur_per_mwh) == 25
    announced = [SpotPricesUpdated.parse_json(m.data) for m in bus.published("spot-price-updates")]
    assert sorted(e.market_date for e in announced) == [date(2024, 10, 26), TOMORROW]


def test_on_local_backends_a_malformed_message_is_acknowledged(installed: None) -> None:
    install(bootstrap.local(clock=SimulatedClock(NOW), dispatcher=lambda request: 200))
    event = pubsub_cloudevent(
        topic=Topic.PRICE_INGEST_REQUESTS,
        project="hpsteer-local",
        message_id="9",
        data=b"{not json",
        attributes={},
        publish_time=NOW,
    )
    assert post(event) == 200  # acknowledged: a redelivery cannot fix it


@pytest.mark.emulator
def test_on_the_emulators_a_request_stores_records_and_announces_the_day(
    installed: None,
    firestore_emulator: FirestoreEmulator,
    pubsub_emulator: PubSubEmulator,
    bigquery_emulator: BigQueryEmulator,
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
    )
    deps = bootstrap.production(settings, clock=SimulatedClock(NOW))
    install(deps)
    subscriber = PubSubPullSubscriber(project)
    received: list[SpotPricesUpdated] = []

    def collect(event: CloudEvent) -> None:
        received.append(SpotPricesUpdated.parse_json(read_pubsub_message(event).data))

    subscriber.subscribe(Topic.SPOT_PRICE_UPDATES, collect, name="spot-price-updates-test")
    try:
        assert post(request_event(project)) == 200
        assert post(request_event(project, message_id="2")) == 200
        subscriber.drain()
    finally:
        subscriber.delete_subscriptions()
        subscriber.close()

    stored = load_day(deps.store, PriceArea.DK1, TOMORROW)
    assert stored is not None
    assert stored.announced
    assert len(stored.prices.prices_eur_per_mwh) == 25
    assert sorted(e.market_date for e in received) == [date(2024, 10, 26), TOMORROW]
    rows = deps.analytics.query(
        "SELECT COUNT(*) AS n FROM `spot_prices` WHERE market_date = @day", {"day": TOMORROW}
    )
    assert rows[0]["n"] == 25
