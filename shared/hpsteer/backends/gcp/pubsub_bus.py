"""The message bus on Google Cloud Pub/Sub: publishing for production, pulling for emulators.

:class:`PubSubMessageBus` publishes with the real ``PublisherClient`` and waits, within a time
budget, for the message id; ordering keys go through a client with message ordering enabled.
Client-library errors become hpsteer errors at this boundary: a missing topic is
:class:`~hpsteer.errors.NotFound`, a refused message :class:`~hpsteer.errors.InvalidPayload`,
anything that may pass on retry :class:`~hpsteer.errors.BusUnavailable`. Bad input is refused
before the client sees it, with the same checks as the local bus
(:func:`hpsteer.messaging.envelope.validate_publish`).

:class:`PubSubPullSubscriber` is the :class:`~hpsteer.ports.bus.Subscriber` for the local runtime
against the Pub/Sub emulator (in the cloud, Eventarc pushes to functions instead). It creates
pull subscriptions, pulls synchronously, hands each handler the CloudEvent Eventarc would send
(:func:`hpsteer.messaging.envelope.pubsub_cloudevent`), acknowledges on success and nacks
(ack deadline 0) on an exception so that Pub/Sub delivers again.

Google client libraries are imported lazily, inside constructors and functions.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cloudevents.http import CloudEvent

from hpsteer.errors import (
    AlreadyExists,
    BusUnavailable,
    HpsteerError,
    InvalidPayload,
    NotFound,
)
from hpsteer.messaging.envelope import pubsub_cloudevent, validate_publish, validate_topic_id
from hpsteer.observability.tracing import with_traceparent
from hpsteer.ports.bus import CloudEventHandler

if TYPE_CHECKING:
    from hpsteer.ports.clock import Clock

__all__ = ["PubSubMessageBus", "PubSubPullSubscriber", "translate_error"]

_log = logging.getLogger(__name__)


def translate_error(err: BaseException, what: str) -> HpsteerError:
    """The hpsteer error for a Pub/Sub client failure while doing ``what``."""
    from google.api_core import exceptions as gexc

    if isinstance(err, gexc.NotFound):
        return NotFound(f"{what}: not found ({err.message})")
    if isinstance(err, gexc.AlreadyExists):
        return AlreadyExists(f"{what}: already exists ({err.message})")
    if isinstance(err, gexc.InvalidArgument):
        return InvalidPayload(f"{what}: refused by Pub/Sub ({err.message})")
    if isinstance(err, gexc.GoogleAPICallError):
        # Unavailable, deadline exceeded, internal, aborted, quota and also permission errors:
        # all may pass later (IAM changes propagate slowly), so the caller retries.
        return BusUnavailable(f"{what}: Pub/Sub failed ({type(err).__name__}: {err.message})")
    if isinstance(err, gexc.RetryError | TimeoutError):  # futures' TimeoutError is the builtin
        return BusUnavailable(f"{what}: Pub/Sub did not answer in time ({err})")
    return BusUnavailable(f"{what}: Pub/Sub client failed ({type(err).__name__}: {err})")


class PubSubMessageBus:
    """:class:`~hpsteer.ports.bus.MessageBus` on Cloud Pub/Sub (or its emulator).

    A publish takes at most about ``timeout_s``: transient failures are retried within that
    budget, then reported as :class:`BusUnavailable` (the caller's own retry takes over).
    Messages with an ordering key go through a second client, created on first use, with
    message ordering enabled; the library retries those forever unless told not to, so they get
    one attempt, and a failure resumes the key so that later publishes are not refused.
    """

    def __init__(self, project: str, publisher: Any | None = None, *, timeout_s: float = 30.0):
        """``publisher``: a ``PublisherClient`` used for every publish (to use ordering keys it
        must have message ordering enabled); by default the bus creates and owns its clients.
        """
        self._project = project
        self._timeout_s = timeout_s
        self._given = publisher
        self._plain: Any | None = None
        self._ordered: Any | None = None
        self._lock = threading.Lock()

    def topic_path(self, topic: str) -> str:
        return f"projects/{self._project}/topics/{topic}"

    def publish(
        self,
        topic: str,
        data: bytes,
        *,
        attributes: Mapping[str, str] | None = None,
        ordering_key: str | None = None,
    ) -> str:
        checked = validate_publish(topic, data, with_traceparent(attributes or {}), ordering_key)
        path = self.topic_path(topic)
        what = f"publish to {path}"
        from google.api_core import exceptions as gexc
        from google.cloud.pubsub_v1.publisher.exceptions import (
            PublishToPausedOrderingKeyException,
        )

        publisher = self._publisher(ordered=bool(ordering_key))
        retry = None if ordering_key else _bounded_retry(self._timeout_s)
        try:
            future = publisher.publish(
                path,
                data,
                ordering_key=ordering_key or "",
                retry=retry,
                timeout=self._timeout_s,
                **checked,
            )
            # The client gives up by itself within the budget; the margin covers batching.
            message_id: str = future.result(timeout=self._timeout_s + 5.0)
        except (
            gexc.GoogleAPICallError,
            gexc.RetryError,
            TimeoutError,
            PublishToPausedOrderingKeyException,
        ) as err:
            self._resume(publisher, path, ordering_key)
            raise translate_error(err, what) from err
        except RuntimeError as err:
            # The client refuses ordering keys unless message ordering is enabled, and any
            # publish after stop(); both are wiring mistakes, not a Pub/Sub outage.
            self._resume(publisher, path, ordering_key)
            raise InvalidPayload(f"{what}: the publisher client refused it ({err})") from err
        return message_id

    def close(self) -> None:
        """Flush and release the publisher clients this bus created (not a given one)."""
        with self._lock:
            clients = [c for c in (self._plain, self._ordered) if c is not None]
            self._plain = self._ordered = None
        for client in clients:
            client.stop()
            client.transport.close()

    def _publisher(self, *, ordered: bool) -> Any:
        if self._given is not None:
            return self._given
        with self._lock:
            client = self._ordered if ordered else self._plain
            if client is None:
                import google.cloud.pubsub_v1 as pubsub_v1

                options = pubsub_v1.types.PublisherOptions(enable_message_ordering=ordered)
                client = pubsub_v1.PublisherClient(publisher_options=options)
                if ordered:
                    self._ordered = client
                else:
                    self._plain = client
            return client

    @staticmethod
    def _resume(publisher: Any, path: str, ordering_key: str | None) -> None:
        """A failed publish pauses its ordering key; resume it so later publishes can go."""
        if ordering_key:
            try:
                publisher.resume_publish(path, ordering_key)
            except (ValueError, RuntimeError) as err:  # not paused, or ordering not enabled
                _log.debug("resume_publish(%s, %s): %s", path, ordering_key, err)


def _bounded_retry(timeout_s: float) -> Any:
    """The client's default publish retry (same errors, same backoff), capped at ``timeout_s``."""
    from google.api_core import exceptions as gexc
    from google.api_core import retry as retries

    return retries.Retry(
        initial=0.1,
        maximum=min(60.0, timeout_s),
        multiplier=4,
        predicate=retries.if_exception_type(
            gexc.Aborted,
            gexc.Cancelled,
            gexc.DeadlineExceeded,
            gexc.InternalServerError,
            gexc.ResourceExhausted,
            gexc.ServiceUnavailable,
            gexc.Unknown,
        ),
        timeout=timeout_s,
    )


@dataclass(frozen=True)
class _Wired:
    topic: str
    path: str
    handler: CloudEventHandler


def pulled_cloudevent(item: Any, topic: str, project: str, subscription: str) -> CloudEvent:
    """The CloudEvent Eventarc would deliver for a pulled ``ReceivedMessage``."""
    message = item.message
    return pubsub_cloudevent(
        topic,
        project,
        message.message_id,
        bytes(message.data),
        dict(message.attributes),
        message.publish_time,
        ordering_key=message.ordering_key or None,
        subscription=subscription,
    )


class PubSubPullSubscriber:
    """:class:`~hpsteer.ports.bus.Subscriber` that pulls synchronously (emulator, local runtime).

    ``clock`` is accepted for symmetry with the local bus and is not needed: Pub/Sub itself times
    redeliveries. Call :meth:`deliver` or :meth:`drain` to run handlers; :meth:`close` when done.
    """

    def __init__(
        self,
        project: str,
        clock: Clock | None = None,
        *,
        subscriber: Any | None = None,
        publisher: Any | None = None,
        ack_deadline_s: int = 10,
    ) -> None:
        import google.cloud.pubsub_v1 as pubsub_v1

        self._project = project
        self._clock = clock
        self._owns = (subscriber is None, publisher is None)
        self._subscriber = subscriber or pubsub_v1.SubscriberClient()
        self._admin = publisher or pubsub_v1.PublisherClient()
        self._ack_deadline_s = ack_deadline_s
        self._wired: dict[str, _Wired] = {}

    # Admin helpers

    def ensure_topic(self, topic: str) -> str:
        """Create ``topic`` unless it exists; return its path."""
        validate_topic_id(topic)
        from google.api_core import exceptions as gexc

        path = f"projects/{self._project}/topics/{topic}"
        try:
            self._admin.create_topic(request={"name": path})
        except gexc.AlreadyExists:
            pass
        except gexc.GoogleAPICallError as err:
            raise translate_error(err, f"create topic {path}") from err
        return path

    def delete_topic(self, topic: str) -> None:
        """Delete ``topic`` if it exists (test cleanup)."""
        from google.api_core import exceptions as gexc

        path = f"projects/{self._project}/topics/{topic}"
        try:
            self._admin.delete_topic(request={"topic": path})
        except gexc.NotFound:
            pass
        except gexc.GoogleAPICallError as err:
            raise translate_error(err, f"delete topic {path}") from err

    def delete_subscriptions(self) -> None:
        """Delete every subscription this subscriber created or attached to (test cleanup)."""
        from google.api_core import exceptions as gexc

        for path in list(self._wired):
            try:
                self._subscriber.delete_subscription(request={"subscription": path})
            except gexc.NotFound:
                pass
            except gexc.GoogleAPICallError as err:
                raise translate_error(err, f"delete subscription {path}") from err
            del self._wired[path]

    def close(self) -> None:
        """Release the gRPC channels this subscriber opened."""
        owns_subscriber, owns_publisher = self._owns
        if owns_subscriber:
            self._subscriber.close()
        if owns_publisher:
            self._admin.transport.close()

    # Subscriber

    def subscribe(self, topic: str, handler: CloudEventHandler, *, name: str | None = None) -> None:
        """Create (idempotently) a pull subscription of ``topic`` and wire ``handler`` to it.

        The topic is created too if missing. An existing subscription of the same name is reused
        if it is attached to ``topic``, refused with :class:`AlreadyExists` otherwise.
        """
        from google.api_core import exceptions as gexc

        topic_path = self.ensure_topic(topic)
        if name is None:
            name, n = f"{topic}-sub", 1
            while f"projects/{self._project}/subscriptions/{name}" in self._wired:
                n += 1
                name = f"{topic}-sub-{n}"
        path = f"projects/{self._project}/subscriptions/{name}"
        try:
            self._subscriber.create_subscription(
                request={
                    "name": path,
                    "topic": topic_path,
                    "ack_deadline_seconds": self._ack_deadline_s,
                }
            )
        except gexc.AlreadyExists:
            try:
                existing = self._subscriber.get_subscription(request={"subscription": path})
            except gexc.GoogleAPICallError as err:
                raise translate_error(err, f"read subscription {path}") from err
            if existing.topic != topic_path:
                raise AlreadyExists(
                    f"subscription {path} already exists on {existing.topic}, not {topic_path}"
                ) from None
        except gexc.GoogleAPICallError as err:
            raise translate_error(err, f"create subscription {path}") from err
        self._wired[path] = _Wired(topic=topic, path=path, handler=handler)

    # Delivery

    def deliver(
        self,
        timeout_s: float = 0.5,
        max_messages: int = 100,
        *,
        subscriptions: Collection[str] | None = None,
    ) -> int:
        """Pull once from every subscription (or only those named, by path) and run the
        handlers; return the handler calls.

        A pull of an empty subscription is held open until about ``timeout_s`` - 1 s on the
        emulator (returning early when a message arrives) and up to ``timeout_s`` on Pub/Sub,
        then counts as empty: the sub-second default makes empty pulls answer at once.
        """
        calls = 0
        for wired in list(self._wired.values()):
            if subscriptions is not None and wired.path not in subscriptions:
                continue
            received = self._pull(wired.path, timeout_s, max_messages)
            acks: list[str] = []
            nacks: list[str] = []
            for item in received:
                calls += 1
                if self._handle(wired, item):
                    acks.append(item.ack_id)
                else:
                    nacks.append(item.ack_id)
            self._settle(wired.path, acks, nacks)
        return calls

    def drain(self, max_rounds: int = 100, *, timeout_s: float = 0.5, quiet_rounds: int = 2) -> int:
        """Deliver until ``quiet_rounds`` rounds in a row find nothing; return the handler calls.

        Nacked messages come back at once on the emulator, so retries happen within the drain.
        """
        total = 0
        quiet = 0
        for _ in range(max_rounds):
            calls = self.deliver(timeout_s=timeout_s)
            total += calls
            quiet = 0 if calls else quiet + 1
            if quiet >= quiet_rounds:
                break
        return total

    # Internals

    def _pull(self, path: str, timeout_s: float, max_messages: int) -> list[Any]:
        from google.api_core import exceptions as gexc

        started = time.monotonic()
        try:
            response = self._subscriber.pull(
                request={"subscription": path, "max_messages": max_messages},
                timeout=timeout_s,
                retry=None,
            )
        except gexc.DeadlineExceeded:
            return []
        except gexc.GoogleAPICallError as err:
            raise translate_error(err, f"pull from {path}") from err
        _log.debug("pulled from %s in %.3f s", path, time.monotonic() - started)
        return list(response.received_messages)

    def _handle(self, wired: _Wired, item: Any) -> bool:
        message = item.message
        event = pulled_cloudevent(item, wired.topic, self._project, wired.path)
        try:
            wired.handler(event)
        except Exception as err:  # noqa: BLE001 - any handler failure is a nack, as on Pub/Sub
            _log.warning(
                "handler of %s failed on message %s: %r", wired.path, message.message_id, err
            )
            return False
        return True

    def _settle(self, path: str, acks: list[str], nacks: list[str]) -> None:
        from google.api_core import exceptions as gexc

        try:
            if acks:
                self._subscriber.acknowledge(request={"subscription": path, "ack_ids": acks})
            if nacks:
                self._subscriber.modify_ack_deadline(
                    request={"subscription": path, "ack_ids": nacks, "ack_deadline_seconds": 0}
                )
        except gexc.GoogleAPICallError as err:
            raise translate_error(err, f"acknowledge on {path}") from err
