"""The Pub/Sub CloudEvent envelope: built as Eventarc delivers it, read whatever way it arrives."""

from __future__ import annotations

import base64
import json
import sys
import textwrap
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Literal

import pydantic
import pytest
from cloudevents.conversion import to_binary, to_structured
from cloudevents.http import CloudEvent

from hpsteer.errors import MalformedMessage, NaiveDatetime
from hpsteer.messaging.envelope import (
    PUBSUB_MESSAGE_PUBLISHED,
    PubSubMessage,
    decode_json_message,
    encode_json_message,
    pubsub_cloudevent,
    read_pubsub_message,
)

PUBLISHED = datetime(2024, 1, 15, 23, 0, 5, 749000, tzinfo=UTC)


def sample_event(**overrides: Any) -> CloudEvent:
    arguments: dict[str, Any] = {
        "topic": "prices-published",
        "project": "hpsteer-prod",
        "message_id": "2070443601311540",
        "data": b'{"area": "DE-LU"}',
        "attributes": {"source": "entsoe"},
        "publish_time": PUBLISHED,
    }
    arguments.update(overrides)
    return pubsub_cloudevent(**arguments)


def test_the_event_has_the_attributes_eventarc_sets_for_a_pubsub_message() -> None:
    event = sample_event()
    assert event.get_attributes() == {
        "id": "2070443601311540",
        "source": "//pubsub.googleapis.com/projects/hpsteer-prod/topics/prices-published",
        "specversion": "1.0",
        "type": "google.cloud.pubsub.topic.v1.messagePublished",
        "time": "2024-01-15T23:00:05.749000Z",
        "datacontenttype": "application/json",
    }


def test_the_event_data_has_the_message_in_both_spellings_and_the_subscription() -> None:
    event = sample_event(subscription="eventarc-prices-sub")
    assert event.data == {
        "message": {
            "data": base64.b64encode(b'{"area": "DE-LU"}').decode(),
            "attributes": {"source": "entsoe"},
            "messageId": "2070443601311540",
            "message_id": "2070443601311540",
            "publishTime": "2024-01-15T23:00:05.749000Z",
            "publish_time": "2024-01-15T23:00:05.749000Z",
        },
        "subscription": "projects/hpsteer-prod/subscriptions/eventarc-prices-sub",
    }


def test_the_subscription_defaults_to_one_named_after_the_topic_and_full_paths_are_kept() -> None:
    assert sample_event().data["subscription"] == (
        "projects/hpsteer-prod/subscriptions/prices-published-sub"
    )
    full = "projects/other/subscriptions/s"
    assert sample_event(subscription=full).data["subscription"] == full


def test_an_ordering_key_is_carried_only_when_there_is_one() -> None:
    assert "orderingKey" not in sample_event().data["message"]
    assert sample_event(ordering_key="dev-1").data["message"]["orderingKey"] == "dev-1"


def test_the_builder_refuses_a_naive_publish_time_and_converts_offsets_to_utc() -> None:
    with pytest.raises(NaiveDatetime):
        sample_event(publish_time=datetime(2024, 1, 15, 23, 0))  # noqa: DTZ001 - the point
    cet = timezone(timedelta(hours=1))
    event = sample_event(publish_time=datetime(2024, 1, 16, 0, 0, tzinfo=cet))
    assert event["time"] == "2024-01-15T23:00:00Z"


def test_reading_the_built_event_gives_back_the_message() -> None:
    event = sample_event(ordering_key="dev-1")
    assert read_pubsub_message(event) == PubSubMessage(
        message_id="2070443601311540",
        data=b'{"area": "DE-LU"}',
        attributes={"source": "entsoe"},
        publish_time=PUBLISHED,
        ordering_key="dev-1",
    )
    assert read_pubsub_message(event).publish_time.tzinfo is UTC


def _event(data: Any, event_type: str = PUBSUB_MESSAGE_PUBLISHED) -> CloudEvent:
    return CloudEvent(
        {"type": event_type, "source": "//pubsub.googleapis.com/", "id": "ev-1"},
        data,
    )


def test_an_attribute_only_message_reads_as_empty_data() -> None:
    message = read_pubsub_message(
        _event({"message": {"attributes": {"a": "b"}, "publishTime": "2024-01-15T23:00:00Z"}})
    )
    assert (message.data, message.attributes, message.message_id) == (b"", {"a": "b"}, "ev-1")


def test_a_nanosecond_publish_time_from_pubsub_is_read_as_utc() -> None:
    message = read_pubsub_message(
        _event({"message": {"data": "", "publishTime": "2024-01-15T23:00:00.123456789Z"}})
    )
    assert message.publish_time == datetime(2024, 1, 15, 23, 0, 0, 123456, tzinfo=UTC)


@pytest.mark.parametrize(
    ("event", "reason"),
    [
        (_event({"message": {}}, "google.cloud.storage.object.v1.finalized"), "not a Pub/Sub"),
        (_event({"subscription": "projects/p/subscriptions/s"}), "no 'message' object"),
        (_event(None), "no 'message' object"),
        (_event(b"{not json"), "data is not JSON"),
        (_event({"message": {"data": "!!not base64!!"}}), "not valid base64"),
        (_event({"message": {"data": 12}}), "must be a base64 string"),
        (_event({"message": {"data": "", "attributes": {"n": 1}}}), "string to string"),
        (_event({"message": {"data": "", "publishTime": "yesterday"}}), "publishTime"),
    ],
    ids=[
        "wrong-type",
        "no-message",
        "no-data",
        "data-not-json",
        "bad-base64",
        "data-not-string",
        "non-string-attribute",
        "bad-publish-time",
    ],
)
def test_an_event_that_is_not_a_readable_pubsub_message_is_malformed(
    event: CloudEvent, reason: str
) -> None:
    with pytest.raises(MalformedMessage, match=reason):
        read_pubsub_message(event)


# JSON payloads


class PricesMessage(pydantic.BaseModel):
    schema_version: Literal[1] = 1
    area: str
    prices: list[float]


class UnversionedMessage(pydantic.BaseModel):
    area: str


def _json_event(payload: object) -> CloudEvent:
    return sample_event(data=json.dumps(payload).encode())


def test_a_model_encoded_as_json_decodes_back_to_the_same_model() -> None:
    model = PricesMessage(area="DE-LU", prices=[81.2, -3.5])
    event = sample_event(data=encode_json_message(model))
    assert decode_json_message(event, PricesMessage) == model
    assert json.loads(encode_json_message(model)) == {
        "schema_version": 1,
        "area": "DE-LU",
        "prices": [81.2, -3.5],
    }


def test_data_that_is_not_json_is_malformed() -> None:
    with pytest.raises(MalformedMessage, match="data is not JSON"):
        decode_json_message(sample_event(data=b"\xff\xfe not json"), PricesMessage)


def test_a_payload_the_model_refuses_is_malformed_naming_the_fields() -> None:
    with pytest.raises(MalformedMessage, match="not a valid PricesMessage") as caught:
        decode_json_message(_json_event({"prices": ["cheap"]}), PricesMessage)
    assert "area: Field required" in str(caught.value)
    assert "prices.0:" in str(caught.value)


def test_another_schema_version_is_refused_as_unsupported() -> None:
    with pytest.raises(MalformedMessage, match="unsupported schema version 2, expected 1"):
        decode_json_message(
            _json_event({"schema_version": 2, "area": "DE-LU", "prices": []}), PricesMessage
        )


def test_a_payload_without_schema_version_takes_the_model_default() -> None:
    decoded = decode_json_message(_json_event({"area": "DE-LU", "prices": []}), PricesMessage)
    assert decoded.schema_version == 1


def test_a_model_without_schema_version_ignores_one_in_the_payload() -> None:
    decoded = decode_json_message(
        _json_event({"schema_version": 9, "area": "NL"}), UnversionedMessage
    )
    assert decoded == UnversionedMessage(area="NL")


# What a deployed function really receives


@pytest.fixture
def functions_framework_app(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[Any, list[CloudEvent]]]:
    """A functions-framework app whose cloud_event target records the events it receives."""
    import functions_framework

    module_name = f"ff_probe_{uuid.uuid4().hex}"
    source = tmp_path / f"{module_name}.py"
    source.write_text(
        textwrap.dedent(
            """
            import functions_framework

            received = []

            @functions_framework.cloud_event
            def handle(event):
                received.append(event)
            """
        )
    )
    monkeypatch.setattr(sys, "path", list(sys.path))  # create_app appends the source folder
    try:
        app = functions_framework.create_app(  # type: ignore[no-untyped-call] # untyped library
            "handle", str(source), "cloudevent"
        )
        yield app, sys.modules[module_name].received
    finally:
        sys.modules.pop(module_name, None)


def _post(app: Any, path: str, **request: Any) -> None:
    response = app.test_client().post(path, **request)
    assert response.status_code == 200, response.get_data(as_text=True)


def test_functions_framework_turns_a_pubsub_push_request_into_the_same_message(
    functions_framework_app: tuple[Any, list[CloudEvent]],
) -> None:
    app, received = functions_framework_app
    ours = sample_event()
    push_body = {
        "message": {
            "data": base64.b64encode(b'{"area": "DE-LU"}').decode(),
            "attributes": {"source": "entsoe"},
            "messageId": "2070443601311540",
            "message_id": "2070443601311540",
            "publishTime": "2024-01-15T23:00:05.749Z",
            "publish_time": "2024-01-15T23:00:05.749Z",
        },
        "subscription": "projects/hpsteer-prod/subscriptions/prices-published-sub",
    }
    _post(app, "/projects/hpsteer-prod/topics/prices-published", json=push_body)

    (theirs,) = received
    assert theirs["type"] == ours["type"]
    assert theirs["source"] == ours["source"]
    assert theirs["id"] == ours["id"]
    assert read_pubsub_message(theirs) == read_pubsub_message(ours)


def test_functions_framework_drops_the_ordering_key_of_a_push_request(
    functions_framework_app: tuple[Any, list[CloudEvent]],
) -> None:
    app, received = functions_framework_app
    push_body = {
        "message": {"data": "eA==", "messageId": "7", "orderingKey": "dev-1"},
        "subscription": "projects/p/subscriptions/s",
    }
    _post(app, "/", json=push_body)
    assert read_pubsub_message(received[0]).ordering_key is None


@pytest.mark.parametrize(
    "to_http", [to_binary, to_structured], ids=["binary-mode", "structured-mode"]
)
def test_our_event_sent_over_http_as_eventarc_does_reads_the_same_in_the_function(
    functions_framework_app: tuple[Any, list[CloudEvent]],
    to_http: Callable[[CloudEvent], tuple[dict[str, str], bytes]],
) -> None:
    app, received = functions_framework_app
    ours = sample_event(ordering_key="dev-1")
    headers, body = to_http(ours)
    _post(app, "/", headers=headers, data=body)
    (theirs,) = received
    assert theirs.get_attributes() == ours.get_attributes()
    assert read_pubsub_message(theirs) == read_pubsub_message(ours)
