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

from cloudevents.http import CloudEvent

from hpsteer.backends.gcp.pubsub_bus import PubSubMessageBus, PubSubPullSubscriber
from hpsteer.backends.local.bus import DeadLetter
from hpsteer.backends.local.store import LocalDocumentStore
from hpsteer.messaging.envelope import read_pubsub_message
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


class EmulatorBus:
    """Publish with the production publisher; deliver by synchronous pulls of the production
    :class:`~hpsteer.backends.gcp.pubsub_bus.PubSubPullSubscriber` (module docstring)."""

    def __init__(self, project: str) -> None:
        self._project = project
        self._publisher = PubSubMessageBus(project)
        self._pull = PubSubPullSubscriber(project, ack_deadline_s=60)
        self._topic_of: dict[str, str] = {}
        """Subscription path -> topic."""
        self._outstanding: Counter[str] = Counter()
        self._failures: Counter[tuple[str, str]] = Counter()
        self._dead: list[DeadLetter] = []
        self._topics: set[str] = set()

    def publish(
        self,
        topic: str,
        data: bytes,
        *,
        attributes: Mapping[str, str] | None = None,
        ordering_key: str | None = None,
    ) -> str:
        if topic not in self._topics:
            self._pull.ensure_topic(topic)
            self._topics.add(topic)
        message_id = self._publisher.publish(
            topic, data, attributes=attributes, ordering_key=ordering_key
        )
        for path, subscribed in self._topic_of.items():
            if subscribed == topic:
                self._outstanding[path] += 1
        return message_id

    def subscribe(self, topic: str, handler: CloudEventHandler, *, name: str | None = None) -> None:
        name = name or f"{topic}-sub"
        path = f"projects/{self._project}/subscriptions/{name}"
        self._pull.subscribe(topic, self._counted(path, topic, name, handler), name=name)
        self._topics.add(topic)
        self._topic_of[path] = topic

    def _counted(
        self, path: str, topic: str, name: str, handler: CloudEventHandler
    ) -> CloudEventHandler:
        """``handler``, with what the bus must know: an acknowledged message is no longer
        outstanding, and one that failed :data:`MAX_DELIVERY_ATTEMPTS` times is acknowledged
        and kept as a dead letter instead of raising (a nack) again."""

        def handle(event: CloudEvent) -> None:
            try:
                handler(event)
            except Exception as err:
                key = (path, str(event["id"]))
                self._failures[key] += 1
                if self._failures[key] < MAX_DELIVERY_ATTEMPTS:
                    raise
                self._dead.append(
                    DeadLetter(
                        topic, name, read_pubsub_message(event), self._failures[key], repr(err)
                    )
                )
            self._outstanding[path] -= 1

        return handle

    def next_due(self) -> None:
        """Nothing waits on a backoff here: outstanding messages are ready now."""
        return

    def dead_letters(self) -> list[DeadLetter]:
        return list(self._dead)

    def deliver(self) -> int:
        """One round: pull every subscription with outstanding messages and run its handler
        (a message published a moment ago may take the emulator a moment to show)."""
        waiting = {path for path, count in self._outstanding.items() if count > 0}
        if not waiting:
            return 0
        deadline = time.monotonic() + PULL_WAIT_S
        while True:
            calls = self._pull.deliver(subscriptions=waiting)
            if calls or time.monotonic() > deadline:
                break
            time.sleep(0.01)
        if not calls:
            for path in waiting:
                _log.warning(
                    "%d messages outstanding on %s never arrived", self._outstanding[path], path
                )
                self._outstanding[path] = 0
        return calls

    def close(self) -> None:
        self._publisher.close()
        self._pull.close()


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
