"""Messaging helpers shared by the bus backends and the function entry points.

:mod:`hpsteer.messaging.envelope` builds and reads the Pub/Sub CloudEvent envelope.
"""

from hpsteer.messaging.envelope import (
    PUBSUB_MESSAGE_PUBLISHED,
    PubSubMessage,
    decode_json_message,
    encode_json_message,
    pubsub_cloudevent,
    read_pubsub_message,
)

__all__ = [
    "PUBSUB_MESSAGE_PUBLISHED",
    "PubSubMessage",
    "decode_json_message",
    "encode_json_message",
    "pubsub_cloudevent",
    "read_pubsub_message",
]
