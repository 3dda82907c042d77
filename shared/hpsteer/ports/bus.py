"""The message bus port: Pub/Sub topics whose messages reach handlers as CloudEvents.

Publishing is the only thing production code does with the bus; subscriptions are wiring
(Eventarc triggers in terraform, or the local runtime's ``subscribe``). A handler receives exactly
what a gen2 Cloud Function receives: a :class:`cloudevents.http.CloudEvent` of type
``google.cloud.pubsub.topic.v1.messagePublished`` whose ``data`` is
``{"message": {"data": <base64>, "attributes": {...}, "messageId": ..., "publishTime": ...},
"subscription": ...}``. Use :mod:`hpsteer.messaging.envelope` to build and read it.

Delivery is at-least-once: a handler that raises is called again later with the same message
id; duplicates and reordering happen. Handlers are therefore idempotent. Ordering keys are
carried on publish, but handlers never depend on them (the emulator's push body drops them).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Protocol, runtime_checkable

from cloudevents.http import CloudEvent

__all__ = ["CloudEventHandler", "MessageBus", "Subscriber"]

CloudEventHandler = Callable[[CloudEvent], None]


@runtime_checkable
class MessageBus(Protocol):
    def publish(
        self,
        topic: str,
        data: bytes,
        *,
        attributes: Mapping[str, str] | None = None,
        ordering_key: str | None = None,
    ) -> str:
        """Publish and return the message id the bus assigned."""
        ...


@runtime_checkable
class Subscriber(Protocol):
    """Wiring of topics to handlers, for the local runtime and tests (Eventarc in the cloud)."""

    def subscribe(
        self, topic: str, handler: CloudEventHandler, *, name: str | None = None
    ) -> None: ...
