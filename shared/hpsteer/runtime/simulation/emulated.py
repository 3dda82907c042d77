"""The simulation on the official emulators: Firestore for the store, Pub/Sub for the bus.

``hpsteer simulate --backend emulators`` runs the same simulation with the document store on the
Firestore emulator (:class:`~hpsteer.backends.gcp.firestore_store.FirestoreDocumentStore`, the
production backend) and every message through the Pub/Sub emulator (published by
:class:`~hpsteer.backends.gcp.pubsub_bus.PubSubMessageBus`, the production publisher, and pulled
by :class:`EmulatorBus`). Cloud Tasks, BigQuery and Secret Manager stay in process (their
stand-ins are not official emulators and are exercised by the contract tests).

:class:`EmulatorBus` delivers the way the engine needs: it knows how many messages each of its
subscriptions has not yet had acknowledged (it is the only publisher), so "deliver everything
ready" pulls only subscriptions with something outstanding and ends when nothing is. A handler
failure is a nack: the emulator delivers the message again at once (there is no simulated
backoff here); after :data:`MAX_DELIVERY_ATTEMPTS` the message is acknowledged and kept as a
dead letter, as a dead-letter topic would.

:func:`snapshot` copies every document of the Firestore emulator into a local store, so the run
leaves ``store.sqlite`` for ``hpsteer inspect`` whatever the backend.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from hpsteer.backends.gcp.pubsub_bus import PubSubMessageBus, pulled_cloudevent
from hpsteer.backends.local.bus import DeadLetter
from hpsteer.backends.local.store import LocalDocumentStore
from hpsteer.messaging.envelope import PubSubMessage
from hpsteer.ports.bus import CloudEventHandler
from hpsteer.ports.clock import Clock
from hpsteer.ports.store import DocumentStore

__all__ = [
    "MAX_DELIVERY_ATTEMPTS",
    "EmulatedBackends",
    "EmulatorBus",
    "emulated_backends",
    "snapshot",
]

_log = logging.getLogger(__name__)

MAX_DELIVERY_ATTEMPTS = 5
PULL_WAIT_S = 5.0
"""How long a round waits for outstanding messages to show up in a pull before giving up."""


@dataclass
class _Subscription:
    name: str
    path: str
    topic: str
    handler: CloudEventHandler


class EmulatorBus:
    """Publish with the production publisher; deliver by synchronous pulls (module docstring)."""

    def __init__(self, project: str) -> None:
        import google.cloud.pubsub_v1 as pubsub_v1

        self._project = project
        self._publisher = PubSubMessageBus(project)
        self._admin = pubsub_v1.PublisherClient()
        self._subscriber = pubsub_v1.SubscriberClient()
        self._subscriptions: dict[str, _Subscription] = {}
        self._outstanding: Counter[str] = Counter()
        self._failures: Counter[tuple[str, str]] = Counter()
        self._dead: list[DeadLetter] = []
        self._topics: set[str] = set()

    def _ensure_topic(self, topic: str) -> str:
        from google.api_core import exceptions as gexc

        path = f"projects/{self._project}/topics/{topic}"
        if topic not in self._topics:
            with contextlib.suppress(gexc.AlreadyExists):
                self._admin.create_topic(request={"name": path})
            self._topics.add(topic)
        return path

    def publish(
        self,
        topic: str,
        data: bytes,
        *,
        attributes: Mapping[str, str] | None = None,
        ordering_key: str | None = None,
    ) -> str:
        self._ensure_topic(topic)
        message_id = self._publisher.publish(
            topic, data, attributes=attributes, ordering_key=ordering_key
        )
        for sub in self._subscriptions.values():
            if sub.topic == topic:
                self._outstanding[sub.path] += 1
        return message_id

    def subscribe(self, topic: str, handler: CloudEventHandler, *, name: str | None = None) -> None:
        name = name or f"{topic}-sub"
        path = f"projects/{self._project}/subscriptions/{name}"
        self._subscriber.create_subscription(
            request={"name": path, "topic": self._ensure_topic(topic), "ack_deadline_seconds": 60}
        )
        self._subscriptions[path] = _Subscription(name, path, topic, handler)

    def next_due(self) -> None:
        """Nothing waits on a backoff here: outstanding messages are ready now."""
        return

    def dead_letters(self) -> list[DeadLetter]:
        return list(self._dead)

    def deliver(self) -> int:
        """One round: pull every subscription with outstanding messages and run its handler."""
        calls = 0
        for sub in list(self._subscriptions.values()):
            if self._outstanding[sub.path] > 0:
                calls += self._deliver_from(sub)
        return calls

    def _deliver_from(self, sub: _Subscription) -> int:
        deadline = time.monotonic() + PULL_WAIT_S
        while True:
            response = self._subscriber.pull(
                request={"subscription": sub.path, "max_messages": 100}, timeout=10.0
            )
            received = list(response.received_messages)
            if received or time.monotonic() > deadline:
                break
            time.sleep(0.01)  # published a moment ago: the emulator shows it shortly
        acks: list[str] = []
        nacks: list[str] = []
        for item in received:
            if self._handle(sub, item):
                acks.append(item.ack_id)
            else:
                nacks.append(item.ack_id)
        if acks:
            self._subscriber.acknowledge(request={"subscription": sub.path, "ack_ids": acks})
            self._outstanding[sub.path] -= len(acks)
        if nacks:
            self._subscriber.modify_ack_deadline(
                request={"subscription": sub.path, "ack_ids": nacks, "ack_deadline_seconds": 0}
            )
        if not received:
            _log.warning(
                "%d messages outstanding on %s never arrived", self._outstanding[sub.path], sub.path
            )
            self._outstanding[sub.path] = 0
        return len(received)

    def _handle(self, sub: _Subscription, item: Any) -> bool:
        message = item.message
        event = pulled_cloudevent(item, sub.topic, self._project, sub.path)
        try:
            sub.handler(event)
        except Exception as err:  # noqa: BLE001 - any handler failure is a nack, as on Pub/Sub
            key = (sub.path, message.message_id)
            self._failures[key] += 1
            if self._failures[key] < MAX_DELIVERY_ATTEMPTS:
                return False
            self._dead.append(
                DeadLetter(
                    topic=sub.topic,
                    subscription=sub.name,
                    message=PubSubMessage(
                        message_id=message.message_id,
                        data=bytes(message.data),
                        attributes=dict(message.attributes),
                        publish_time=message.publish_time,
                    ),
                    attempts=self._failures[key],
                    last_error=repr(err),
                )
            )
        return True

    def close(self) -> None:
        self._publisher.close()
        self._subscriber.close()
        self._admin.transport.close()


def _paths(client: Any) -> Iterator[str]:
    def walk(collections: Any) -> Iterator[str]:
        for collection in collections:
            for reference in collection.list_documents():
                yield reference.path
                yield from walk(reference.collections())

    yield from walk(client.collections())


def snapshot(store: DocumentStore, client: Any, clock: Clock) -> LocalDocumentStore:
    """Every document of the Firestore ``client``'s database, read through ``store``, in a new
    local store (for ``store.sqlite``)."""
    copy = LocalDocumentStore(clock=clock)
    for path in _paths(client):
        document = store.get(path)
        if document is not None:
            copy.set(path, document.data)
    return copy


@dataclass
class EmulatedBackends:
    store: DocumentStore
    bus: EmulatorBus
    client: Any
    """The Firestore client (listing every document for :func:`snapshot`)."""


@contextlib.contextmanager
def emulated_backends(project: str) -> Iterator[EmulatedBackends]:
    """Start the Firestore and Pub/Sub emulators, point the client libraries at them, and
    stop both (and restore the environment) afterwards, whatever happens."""
    import os

    from hpsteer.backends.gcp.firestore_store import FirestoreDocumentStore
    from hpsteer.runtime.emulators import firestore_emulator, pubsub_emulator

    names = ("FIRESTORE_EMULATOR_HOST", "PUBSUB_EMULATOR_HOST")
    saved = {name: os.environ.get(name) for name in names}
    with firestore_emulator(project) as firestore_host, pubsub_emulator(project) as pubsub_host:
        os.environ["FIRESTORE_EMULATOR_HOST"] = firestore_host
        os.environ["PUBSUB_EMULATOR_HOST"] = pubsub_host
        bus: EmulatorBus | None = None
        try:
            store = FirestoreDocumentStore.for_project(project)
            bus = EmulatorBus(project)
            yield EmulatedBackends(store, bus, store.client)
        finally:
            if bus is not None:
                bus.close()
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value
