"""The Pub/Sub CloudEvent envelope: build it as Eventarc does, read it back, check what goes in.

A gen2 Cloud Function triggered by a Pub/Sub topic receives a CloudEvent of type
``google.cloud.pubsub.topic.v1.messagePublished`` from source
``//pubsub.googleapis.com/projects/{project}/topics/{topic}``, with the message id as the event
id, the publish time as the event time and this data::

    {"message": {"data": "<base64>", "attributes": {...},
                 "messageId": "...", "message_id": "...",
                 "publishTime": "...Z", "publish_time": "...Z"},
     "subscription": "projects/{project}/subscriptions/{subscription}"}

(plus ``"orderingKey"`` when the message has one). :func:`pubsub_cloudevent` builds exactly
that, so the local bus and the emulator subscriber hand handlers the envelope they get in the
cloud. :func:`read_pubsub_message` reads it, and also what functions-framework makes of a raw
Pub/Sub push request (camelCase keys only, no subscription, ``orderingKey`` dropped).
:func:`decode_json_message` / :func:`encode_json_message` carry pydantic models as JSON payloads.
:func:`validate_publish` holds the checks both bus backends apply before anything is published.

Every malformed envelope or payload raises :class:`~hpsteer.errors.MalformedMessage` with the
reason; bad publish input raises :class:`~hpsteer.errors.InvalidPayload`.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

import pydantic
from cloudevents.http import CloudEvent
from pydantic_core import PydanticUndefined

from hpsteer.domain.instants import ensure_utc, format_instant, parse_instant
from hpsteer.errors import InvalidInput, InvalidPayload, MalformedMessage

__all__ = [
    "PUBSUB_MESSAGE_PUBLISHED",
    "PubSubMessage",
    "decode_json_message",
    "encode_json_message",
    "pubsub_cloudevent",
    "pubsub_source",
    "read_pubsub_message",
    "subscription_path",
    "validate_publish",
    "validate_topic_id",
]

PUBSUB_MESSAGE_PUBLISHED = "google.cloud.pubsub.topic.v1.messagePublished"
_SOURCE_PREFIX = "//pubsub.googleapis.com/"

# Pub/Sub's documented limits on what a publish may carry.
_TOPIC_ID = re.compile(r"[A-Za-z][A-Za-z0-9\-_.~+%]{2,254}")
_MAX_ATTRIBUTES = 100
_MAX_ATTRIBUTE_KEY_BYTES = 256
_MAX_ATTRIBUTE_VALUE_BYTES = 1024
_MAX_MESSAGE_BYTES = 10_000_000

ModelT = TypeVar("ModelT", bound=pydantic.BaseModel)


@dataclass(frozen=True, kw_only=True)
class PubSubMessage:
    """One Pub/Sub message as a handler sees it; ``publish_time`` is timezone-aware UTC."""

    message_id: str
    data: bytes
    attributes: dict[str, str] = field(hash=False)
    publish_time: datetime
    ordering_key: str | None = None


def pubsub_source(project: str, topic: str) -> str:
    return f"{_SOURCE_PREFIX}projects/{project}/topics/{topic}"


def subscription_path(project: str, subscription: str) -> str:
    """``projects/{project}/subscriptions/{subscription}``; a full path is returned unchanged."""
    if subscription.startswith("projects/"):
        return subscription
    return f"projects/{project}/subscriptions/{subscription}"


def validate_topic_id(topic: str) -> str:
    """``topic`` if it is a valid Pub/Sub topic id, else :class:`InvalidPayload`."""
    if not isinstance(topic, str) or not _TOPIC_ID.fullmatch(topic) or topic.startswith("goog"):
        raise InvalidPayload(
            f"topic id {topic!r} is not a Pub/Sub topic id (3-255 characters, starting with a "
            "letter, letters/digits/-_.~+% only, not starting with 'goog')"
        )
    return topic


def validate_publish(
    topic: str, data: bytes, attributes: Mapping[str, str] | None, ordering_key: str | None
) -> dict[str, str]:
    """Check a publish against Pub/Sub's rules; return the attributes as a plain dict.

    Raises :class:`InvalidPayload` naming the first rule broken, before anything is sent.
    """
    validate_topic_id(topic)
    if not isinstance(data, bytes):
        raise InvalidPayload(f"message data must be bytes, got {type(data).__name__}")
    if len(data) > _MAX_MESSAGE_BYTES:
        raise InvalidPayload(f"message data is {len(data)} bytes, over Pub/Sub's 10 MB limit")
    checked: dict[str, str] = {}
    for key, value in (attributes or {}).items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise InvalidPayload(
                f"attribute {key!r} must map a string to a string, got "
                f"{type(key).__name__} -> {type(value).__name__}"
            )
        if not key or key.startswith("goog"):
            raise InvalidPayload(f"attribute key {key!r} is empty or starts with 'goog'")
        if len(key.encode()) > _MAX_ATTRIBUTE_KEY_BYTES:
            raise InvalidPayload(f"attribute key {key[:40]!r}... is over 256 bytes")
        if len(value.encode()) > _MAX_ATTRIBUTE_VALUE_BYTES:
            raise InvalidPayload(f"attribute {key!r} has a value over 1024 bytes")
        checked[key] = value
    if len(checked) > _MAX_ATTRIBUTES:
        raise InvalidPayload(f"{len(checked)} attributes, over Pub/Sub's limit of 100")
    if not data and not checked:
        raise InvalidPayload("a message needs non-empty data or at least one attribute")
    if ordering_key is not None and not isinstance(ordering_key, str):
        raise InvalidPayload(f"ordering key must be a string, got {type(ordering_key).__name__}")
    return checked


def pubsub_cloudevent(
    topic: str,
    project: str,
    message_id: str,
    data: bytes,
    attributes: Mapping[str, str] | None,
    publish_time: datetime,
    ordering_key: str | None = None,
    subscription: str | None = None,
) -> CloudEvent:
    """The CloudEvent Eventarc delivers to a gen2 function for one Pub/Sub message.

    ``subscription`` is a subscription id or full path; it defaults to ``{topic}-sub``.
    """
    published = format_instant(ensure_utc(publish_time, field="publish_time"))
    message: dict[str, Any] = {
        "data": base64.b64encode(data).decode("ascii"),
        "attributes": dict(attributes or {}),
        "messageId": message_id,
        "message_id": message_id,
        "publishTime": published,
        "publish_time": published,
    }
    if ordering_key:
        message["orderingKey"] = ordering_key
    event_data = {
        "message": message,
        "subscription": subscription_path(project, subscription or f"{topic}-sub"),
    }
    return CloudEvent(
        {
            "id": message_id,
            "source": pubsub_source(project, topic),
            "specversion": "1.0",
            "type": PUBSUB_MESSAGE_PUBLISHED,
            "time": published,
            "datacontenttype": "application/json",
        },
        event_data,
    )


def read_pubsub_message(event: CloudEvent) -> PubSubMessage:
    """The Pub/Sub message inside a ``messagePublished`` CloudEvent.

    Accepts Eventarc's envelope and functions-framework's conversion of a push request; missing
    message id or publish time fall back to the event's id and time, as functions-framework does.
    """
    event_type = _attribute(event, "type")
    if event_type != PUBSUB_MESSAGE_PUBLISHED:
        raise MalformedMessage(
            f"not a Pub/Sub CloudEvent: type is {event_type!r}, expected {PUBSUB_MESSAGE_PUBLISHED}"
        )
    data = getattr(event, "data", None)
    if isinstance(data, bytes | str):
        try:
            data = json.loads(data)
        except ValueError as err:
            raise MalformedMessage("Pub/Sub CloudEvent data is not JSON") from err
    if not isinstance(data, Mapping) or not isinstance(data.get("message"), Mapping):
        raise MalformedMessage("Pub/Sub CloudEvent has no 'message' object in its data")
    message: Mapping[str, Any] = data["message"]

    encoded = message.get("data", "")
    if not isinstance(encoded, str):
        raise MalformedMessage(f"message data must be a base64 string, got {type(encoded)}")
    try:
        payload = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError) as err:
        raise MalformedMessage(f"message data is not valid base64: {err}") from err

    attributes = message.get("attributes") or {}
    if not isinstance(attributes, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in attributes.items()
    ):
        raise MalformedMessage("message attributes must be an object of string to string")

    message_id = message.get("messageId") or message.get("message_id") or _attribute(event, "id")
    if not isinstance(message_id, str) or not message_id:
        raise MalformedMessage("message has no messageId")

    published = (
        message.get("publishTime") or message.get("publish_time") or _attribute(event, "time")
    )
    if not isinstance(published, str):
        raise MalformedMessage("message has no publishTime")
    try:
        publish_time = parse_instant(published, field="publishTime")
    except InvalidInput as err:
        raise MalformedMessage(str(err)) from err

    ordering_key = message.get("orderingKey") or message.get("ordering_key") or None
    if ordering_key is not None and not isinstance(ordering_key, str):
        raise MalformedMessage("message orderingKey must be a string")
    return PubSubMessage(
        message_id=message_id,
        data=payload,
        attributes=dict(attributes),
        publish_time=publish_time,
        ordering_key=ordering_key,
    )


def encode_json_message(model: pydantic.BaseModel) -> bytes:
    """A model as the UTF-8 JSON bytes of a message's data."""
    return model.model_dump_json(by_alias=True).encode("utf-8")


def decode_json_message(event: CloudEvent, model: type[ModelT]) -> ModelT:
    """Read a Pub/Sub CloudEvent whose message data is a JSON ``model``.

    Refuses, with :class:`MalformedMessage`: data that is not JSON, a ``schema_version`` other
    than the model's, and anything the model does not validate (naming the fields).
    """
    message = read_pubsub_message(event)
    try:
        payload = json.loads(message.data)
    except (UnicodeDecodeError, ValueError) as err:
        raise MalformedMessage(
            f"message {message.message_id} data is not JSON ({err.__class__.__name__}: {err})"
        ) from err
    expected = _expected_schema_version(model)
    if expected is not None and isinstance(payload, dict) and "schema_version" in payload:
        got = payload["schema_version"]
        if got != expected:
            raise MalformedMessage(
                f"message {message.message_id}: unsupported schema version {got!r}, "
                f"expected {expected!r}"
            )
    try:
        return model.model_validate(payload)
    except pydantic.ValidationError as err:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in e['loc']) or '(root)'}: {e['msg']}"
            for e in err.errors()
        )
        raise MalformedMessage(
            f"message {message.message_id} is not a valid {model.__name__}: {problems}"
        ) from err


def _expected_schema_version(model: type[pydantic.BaseModel]) -> object | None:
    info = model.model_fields.get("schema_version")
    if info is None:
        return None
    default: object = info.default
    if default is not PydanticUndefined and default is not None:
        return default
    if typing.get_origin(info.annotation) is typing.Literal:
        values: tuple[object, ...] = typing.get_args(info.annotation)
        if len(values) == 1:
            return values[0]
    return None


def _attribute(event: CloudEvent, name: str) -> object:
    try:
        return event[name]
    except (KeyError, TypeError):
        return None
