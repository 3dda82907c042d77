"""A Pub/Sub push request reaches the real entry point: the delivery terraform wires (pubsub.tf).

In the cloud each (topic -> entry point) pair is a push subscription that POSTs Pub/Sub's own
push body to the function's URL, not an Eventarc CloudEvent::

    {"message": {"data": "<base64>", "attributes": {...}, "messageId": "...",
                 "message_id": "...", "publishTime": "...", "publish_time": "..."},
     "subscription": "projects/<project>/subscriptions/<name>", "deliveryAttempt": 1}

functions-framework turns that body into a ``messagePublished`` CloudEvent for a
``@functions_framework.cloud_event`` function. These tests POST such bodies to the apps
functions-framework builds from ``functions/<folder>/main.py`` and check that the entry point does
its work on the local backends, that a redelivery changes nothing, that a transient failure
answers an error (so Pub/Sub retries and finally dead-letters), and that every pushed entry point
decodes the push body.
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from functions_framework import create_app

from hpsteer.domain.instants import format_instant
from hpsteer.ports.clock import SimulatedClock
from hpsteer.runtime import bootstrap
from hpsteer.runtime.entrypoint import use_dependencies
from hpsteer.runtime.simulation.topology import TRIGGERS
from hpsteer.services.ingest_weather import forecast_path, use_weather_source
from tests.functions.test_ingest_weather_function import (
    ISSUED,
    MALMO,
    NOW,
    STOCKHOLM,
    FixtureWeather,
    announced_locally,
    local_deps,
)

FUNCTIONS = Path(__file__).resolve().parents[2] / "functions"
PROJECT = "hpsteer-local"

# The body Cloud Scheduler publishes for weather (scheduler.tf: no scheduled_at, no locations).
SCHEDULED_WEATHER_BODY = b'{"schema_version":1}'


def push_body(
    data: bytes,
    subscription: str,
    message_id: str = "4711",
    published_at: datetime = NOW,
    attempt: int = 1,
) -> dict[str, Any]:
    published = format_instant(published_at)
    return {
        "message": {
            "data": base64.b64encode(data).decode("ascii"),
            "attributes": {},
            "messageId": message_id,
            "message_id": message_id,
            "publishTime": published,
            "publish_time": published,
        },
        "subscription": f"projects/{PROJECT}/subscriptions/{subscription}",
        "deliveryAttempt": attempt,
    }


def push(folder: str, entry_point: str, body: dict[str, Any]) -> int:
    """POST ``body`` as Pub/Sub's push does (plain JSON, no CloudEvent headers)."""
    app = create_app(entry_point, str(FUNCTIONS / folder / "main.py"), "cloudevent")
    answer = app.test_client().post(
        "/", data=json.dumps(body), headers={"Content-Type": "application/json"}
    )
    return int(answer.status_code)


@pytest.fixture
def weather() -> Iterator[FixtureWeather]:
    source = FixtureWeather()
    use_weather_source(source)
    yield source
    use_weather_source(None)
    use_dependencies(None)


def test_a_pushed_scheduler_tick_reaches_ingest_weather_and_stores_every_location(
    weather: FixtureWeather,
) -> None:
    deps = local_deps()
    body = push_body(SCHEDULED_WEATHER_BODY, "weather-ingest-requests-ingest-weather")

    assert push("ingest_weather", "ingest_weather", body) == 200

    assert sorted(weather.calls) == [MALMO, STOCKHOLM]
    assert sorted(e.location_id for e in announced_locally(deps)) == [MALMO, STOCKHOLM]
    stored = deps.store.get(forecast_path(STOCKHOLM, ISSUED))
    assert stored is not None
    assert stored.data["announced"] is True


def test_a_redelivered_push_changes_nothing(weather: FixtureWeather) -> None:
    deps = local_deps()
    first = push_body(SCHEDULED_WEATHER_BODY, "weather-ingest-requests-ingest-weather")
    again = push_body(SCHEDULED_WEATHER_BODY, "weather-ingest-requests-ingest-weather", attempt=2)

    assert push("ingest_weather", "ingest_weather", first) == 200
    stored_first = deps.store.get(forecast_path(MALMO, ISSUED))
    assert push("ingest_weather", "ingest_weather", again) == 200

    assert sorted(e.location_id for e in announced_locally(deps)) == [MALMO, STOCKHOLM]
    stored_again = deps.store.get(forecast_path(MALMO, ISSUED))
    assert stored_first is not None
    assert stored_again is not None
    assert stored_again.data == stored_first.data


def test_a_transient_failure_answers_an_error_so_pubsub_delivers_again(
    weather: FixtureWeather,
) -> None:
    deps = local_deps()
    weather.down = True
    body = push_body(SCHEDULED_WEATHER_BODY, "weather-ingest-requests-ingest-weather")

    assert push("ingest_weather", "ingest_weather", body) == 500

    assert announced_locally(deps) == []


def test_a_push_of_a_stale_request_is_acknowledged_without_work(weather: FixtureWeather) -> None:
    local_deps()
    old = NOW - timedelta(hours=6, minutes=1)
    body = push_body(SCHEDULED_WEATHER_BODY, "weather-ingest-requests-ingest-weather", "1", old)

    assert push("ingest_weather", "ingest_weather", body) == 200

    assert weather.calls == []


@pytest.fixture
def local_backends() -> Iterator[None]:
    use_dependencies(bootstrap.local(clock=SimulatedClock(NOW)))
    yield
    use_dependencies(None)


@pytest.mark.parametrize(
    "trigger",
    TRIGGERS,
    ids=[f"{t.topic.value}->{t.function}.{t.entry_point}" for t in TRIGGERS],
)
def test_every_pushed_entry_point_decodes_the_push_body(
    trigger: Any, local_backends: None, caplog: pytest.LogCaptureFixture
) -> None:
    # A payload no model accepts: the entry point reads the message out of the push body, the
    # service refuses it for good, and run_pubsub acknowledges it (a redelivery cannot help).
    subscription = f"{trigger.topic.value}-{trigger.entry_point.replace('_', '-')}"
    body = push_body(b'{"schema_version": 1, "no such field": true}', subscription)

    with caplog.at_level(logging.ERROR, logger="hpsteer.runtime.entrypoint"):
        assert push(trigger.function, trigger.entry_point, body) == 200

    refused = [r for r in caplog.records if r.getMessage().startswith("refused for good")]
    assert len(refused) == 1, [r.getMessage() for r in caplog.records]
