"""An in-process message bus with Pub/Sub's delivery semantics, for tests and the local runtime.

:class:`LocalMessageBus` is both the :class:`~hpsteer.ports.bus.MessageBus` and the
:class:`~hpsteer.ports.bus.Subscriber`. It promises what Pub/Sub with an Eventarc trigger
promises, and no more:

* fan-out: every subscription of a topic gets its own copy; a topic without subscriptions
  accepts the message and drops it;
* at-least-once: a handler that raises gets the same message (same id) again later, after an
  exponential backoff of 10 s doubling up to 600 s measured on the injected clock (Eventarc's
  retry policy for Pub/Sub triggers); after ``max_delivery_attempts`` failed deliveries the
  message moves to :meth:`LocalMessageBus.dead_letters`;
* handlers receive the CloudEvent built by :func:`hpsteer.messaging.envelope.pubsub_cloudevent`;
* chaos, seeded for reproducibility: ``duplicate_probability`` delivers a successfully handled
  message once more, ``reorder`` shuffles each round's ready messages.

Delivery is explicit: :meth:`LocalMessageBus.deliver` runs one round, :meth:`LocalMessageBus.drain`
runs rounds until nothing is ready. Handlers run on the calling thread, outside the bus's lock,
so a handler may publish (the new message is delivered in a later round). Publishing from other
threads is safe.
"""

from __future__ import annotations

import itertools
import logging
import random
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from hpsteer.errors import AlreadyExists
from hpsteer.messaging.envelope import (
    PubSubMessage,
    pubsub_cloudevent,
    subscription_path,
    validate_publish,
    validate_topic_id,
)
from hpsteer.observability.tracing import with_traceparent
from hpsteer.ports.bus import CloudEventHandler
from hpsteer.ports.clock import Clock

__all__ = ["DeadLetter", "LocalMessageBus"]

_log = logging.getLogger(__name__)

MIN_BACKOFF = timedelta(seconds=10)
MAX_BACKOFF = timedelta(seconds=600)


@dataclass(frozen=True)
class DeadLetter:
    """A message a subscription gave up on after ``attempts`` failed deliveries."""

    topic: str
    subscription: str
    message: PubSubMessage
    attempts: int
    last_error: str


@dataclass(frozen=True)
class _Subscription:
    name: str
    topic: str
    handler: CloudEventHandler


@dataclass
class _Pending:
    seq: int
    subscription: str
    topic: str
    message: PubSubMessage
    not_before: datetime
    failures: int = 0
    duplicate: bool = False


def retry_backoff(failures: int) -> timedelta:
    """Delay before the next delivery after ``failures`` failed ones: 10 s doubling to 600 s."""
    if failures < 1:
        return timedelta(0)
    delay: timedelta = MIN_BACKOFF * (2 ** min(failures - 1, 16))
    return min(delay, MAX_BACKOFF)


class LocalMessageBus:
    """In-process Pub/Sub: topics, subscriptions, at-least-once delivery on explicit rounds."""

    def __init__(
        self,
        clock: Clock,
        *,
        project: str = "hpsteer-local",
        seed: int | None = 0,
        duplicate_probability: float = 0.0,
        reorder: bool = False,
        max_delivery_attempts: int = 5,
    ) -> None:
        if not 0.0 <= duplicate_probability <= 1.0:
            raise ValueError(
                f"duplicate_probability must be in [0, 1], got {duplicate_probability}"
            )
        if max_delivery_attempts < 1:
            raise ValueError(f"max_delivery_attempts must be >= 1, got {max_delivery_attempts}")
        self._clock = clock
        self._project = project
        self._random = random.Random(seed)
        self._duplicate_probability = duplicate_probability
        self._reorder = reorder
        self._max_attempts = max_delivery_attempts
        self._lock = threading.RLock()
        self._ids = itertools.count(1)
        self._seq = itertools.count()
        self._subscriptions: dict[str, _Subscription] = {}
        self._pending: list[_Pending] = []
        self._published: dict[str, list[PubSubMessage]] = {}
        self._dead: list[DeadLetter] = []

    # MessageBus

    def publish(
        self,
        topic: str,
        data: bytes,
        *,
        attributes: Mapping[str, str] | None = None,
        ordering_key: str | None = None,
    ) -> str:
        checked = validate_publish(topic, data, with_traceparent(attributes or {}), ordering_key)
        with self._lock:
            message = PubSubMessage(
                message_id=str(next(self._ids)),
                data=bytes(data),
                attributes=checked,
                publish_time=self._clock.now(),
                ordering_key=ordering_key or None,
            )
            self._published.setdefault(topic, []).append(message)
            for sub in self._subscriptions.values():
                if sub.topic == topic:
                    self._pending.append(
                        _Pending(
                            seq=next(self._seq),
                            subscription=sub.name,
                            topic=topic,
                            message=message,
                            not_before=message.publish_time,
                        )
                    )
            return message.message_id

    # Subscriber

    def subscribe(self, topic: str, handler: CloudEventHandler, *, name: str | None = None) -> None:
        """Attach ``handler`` to a new subscription of ``topic``.

        Messages published before the subscription existed are not delivered to it (as in
        Pub/Sub). Subscribing again under the same name and topic replaces the handler.
        """
        validate_topic_id(topic)
        with self._lock:
            if name is None:
                name = self._fresh_name(topic)
            existing = self._subscriptions.get(name)
            if existing is not None and existing.topic != topic:
                raise AlreadyExists(
                    f"subscription {name!r} already exists on topic {existing.topic!r}"
                )
            self._subscriptions[name] = _Subscription(name=name, topic=topic, handler=handler)

    def ensure_topic(self, topic: str) -> None:
        """Topics exist implicitly here; checks the id so wiring code behaves as on Pub/Sub."""
        validate_topic_id(topic)

    # Delivery

    def deliver(self, max_messages: int | None = None) -> int:
        """One round: hand every ready message (up to ``max_messages``) to its handler.

        Returns the number of handler calls made (duplicates included).
        """
        batch = self._take_ready(max_messages)
        calls = 0
        for item in batch:
            calls += 1
            if self._handle(item) and self._should_duplicate(item):
                calls += 1
                self._handle(item, duplicate=True)
        return calls

    def drain(
        self, max_rounds: int = 1000, *, wait: Callable[[datetime], object] | None = None
    ) -> int:
        """Run rounds until no message is ready; return the number of handler calls.

        With ``wait`` (e.g. a ``SimulatedClock``'s ``advance_to``), messages waiting on a retry
        backoff are waited for too: ``wait`` is called with the next due instant, so the drain
        ends only when nothing is pending. Stops after ``max_rounds`` rounds in any case.
        """
        total = 0
        for _ in range(max_rounds):
            calls = self.deliver()
            total += calls
            if calls:
                continue
            due = self.next_due()
            if due is None or wait is None:
                break
            wait(due)
        return total

    def next_due(self) -> datetime | None:
        """When the earliest pending message becomes deliverable, or None if none is pending."""
        with self._lock:
            return min((p.not_before for p in self._pending), default=None)

    # Inspection for tests and the local runtime

    def published(self, topic: str) -> list[PubSubMessage]:
        """Every message accepted for ``topic``, in publish order (delivered or not)."""
        with self._lock:
            return list(self._published.get(topic, []))

    def dead_letters(self) -> list[DeadLetter]:
        with self._lock:
            return list(self._dead)

    def pending_count(self) -> int:
        with self._lock:
            return len(self._pending)

    # Internals

    def _fresh_name(self, topic: str) -> str:
        name, n = f"{topic}-sub", 1
        while name in self._subscriptions:
            n += 1
            name = f"{topic}-sub-{n}"
        return name

    def _take_ready(self, max_messages: int | None) -> list[_Pending]:
        with self._lock:
            now = self._clock.now()
            ready = sorted((p for p in self._pending if p.not_before <= now), key=lambda p: p.seq)
            if self._reorder:
                self._random.shuffle(ready)
            if max_messages is not None:
                ready = ready[:max_messages]
            taken = {id(p) for p in ready}
            self._pending = [p for p in self._pending if id(p) not in taken]
            return ready

    def _should_duplicate(self, item: _Pending) -> bool:
        if item.duplicate or self._duplicate_probability <= 0.0:
            return False
        with self._lock:
            return self._random.random() < self._duplicate_probability

    def _handle(self, item: _Pending, *, duplicate: bool = False) -> bool:
        """Call the subscription's handler; on failure schedule a retry or dead-letter it."""
        with self._lock:
            sub = self._subscriptions.get(item.subscription)
        if sub is None:  # unsubscribed meanwhile: nobody to deliver to
            return False
        message = item.message
        event = pubsub_cloudevent(
            item.topic,
            self._project,
            message.message_id,
            message.data,
            message.attributes,
            message.publish_time,
            ordering_key=message.ordering_key,
            subscription=subscription_path(self._project, sub.name),
        )
        try:
            sub.handler(event)
        except Exception as err:  # noqa: BLE001 - any handler failure is a nack, as on Pub/Sub
            self._failed(item, err, duplicate=duplicate)
            return False
        return True

    def _failed(self, item: _Pending, err: Exception, *, duplicate: bool) -> None:
        failures = item.failures + 1
        _log.warning(
            "handler of %s failed on message %s (attempt %d): %r",
            item.subscription,
            item.message.message_id,
            failures,
            err,
        )
        with self._lock:
            if failures >= self._max_attempts:
                self._dead.append(
                    DeadLetter(
                        topic=item.topic,
                        subscription=item.subscription,
                        message=item.message,
                        attempts=failures,
                        last_error=repr(err),
                    )
                )
                return
            self._pending.append(
                _Pending(
                    seq=next(self._seq),
                    subscription=item.subscription,
                    topic=item.topic,
                    message=item.message,
                    not_before=self._clock.now() + retry_backoff(failures),
                    failures=failures,
                    duplicate=duplicate,
                )
            )
