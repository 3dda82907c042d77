"""The message bus contract: the same specification for the local bus and Pub/Sub (emulator).

Each test gets a ``BusHarness``: a bus, a subscriber, ``deliver_all`` (run handlers until nothing
is left to deliver; the local bus lets simulated time pass for retries) and ``topic()`` (a fresh,
existing topic, so tests on the shared emulator never see each other's messages).
Local-only behaviour (chaos options, retry backoff, dead letters) is specified at the end.
"""

from __future__ import annotations

import itertools
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest
from cloudevents.http import CloudEvent

from hpsteer.backends.local.bus import LocalMessageBus, retry_backoff
from hpsteer.errors import BusUnavailable, InvalidPayload, NotFound
from hpsteer.messaging.envelope import PUBSUB_MESSAGE_PUBLISHED, PubSubMessage, read_pubsub_message
from hpsteer.ports.bus import MessageBus, Subscriber
from hpsteer.ports.clock import SimulatedClock
from tests.support.emulator import free_port
from tests.support.pubsub import (  # noqa: F401 - pytest finds the fixture by its name here
    PubSubEmulator,
    pubsub_emulator,
)

START = datetime(2024, 1, 15, 23, 0, tzinfo=UTC)


@dataclass
class BusHarness:
    kind: str
    project: str
    bus: MessageBus
    subscriber: Subscriber
    deliver_all: Callable[[], int]
    topic: Callable[[], str]


@dataclass
class Recorder:
    """A handler that records what it receives and can be told to fail."""

    fail_times: int = 0
    events: list[CloudEvent] = field(default_factory=list)
    then: Callable[[CloudEvent], None] | None = None

    def __call__(self, event: CloudEvent) -> None:
        self.events.append(event)
        if len(self.events) <= self.fail_times:
            raise RuntimeError(f"induced failure {len(self.events)}")
        if self.then is not None:
            self.then(event)

    @property
    def messages(self) -> list[PubSubMessage]:
        return [read_pubsub_message(event) for event in self.events]

    @property
    def ids(self) -> list[str]:
        return [message.message_id for message in self.messages]


def fresh_topic_name() -> str:
    return f"topic-{uuid.uuid4().hex[:12]}"


@pytest.fixture(params=["local", pytest.param("pubsub", marks=pytest.mark.emulator)])
def harness(request: pytest.FixtureRequest) -> Iterator[BusHarness]:
    if request.param == "local":
        clock = SimulatedClock(START)
        local = LocalMessageBus(clock, project="hpsteer-local")
        yield BusHarness(
            kind="local",
            project="hpsteer-local",
            bus=local,
            subscriber=local,
            deliver_all=lambda: local.drain(wait=clock.advance_to),
            topic=fresh_topic_name,
        )
        return

    from hpsteer.backends.gcp.pubsub_bus import PubSubMessageBus, PubSubPullSubscriber

    emulator: PubSubEmulator = request.getfixturevalue("pubsub_emulator")
    bus = PubSubMessageBus(emulator.project)
    subscriber = PubSubPullSubscriber(emulator.project)
    topics: list[str] = []

    def topic() -> str:
        name = fresh_topic_name()
        subscriber.ensure_topic(name)
        topics.append(name)
        return name

    try:
        yield BusHarness(
            kind="pubsub",
            project=emulator.project,
            bus=bus,
            subscriber=subscriber,
            deliver_all=subscriber.drain,
            topic=topic,
        )
    finally:
        subscriber.delete_subscriptions()
        for name in topics:
            subscriber.delete_topic(name)
        subscriber.close()
        bus.close()


# The contract


def test_publish_returns_a_distinct_message_id_for_each_message(harness: BusHarness) -> None:
    topic = harness.topic()
    first = harness.bus.publish(topic, b"one")
    second = harness.bus.publish(topic, b"two")
    assert isinstance(first, str)
    assert first
    assert first != second


def test_a_handler_receives_the_pubsub_cloudevent_of_what_was_published(
    harness: BusHarness,
) -> None:
    topic = harness.topic()
    handler = Recorder()
    harness.subscriber.subscribe(topic, handler)
    message_id = harness.bus.publish(topic, b'{"price": 1.5}', attributes={"kind": "prices"})
    harness.deliver_all()

    assert len(handler.events) == 1
    event = handler.events[0]
    assert event["type"] == PUBSUB_MESSAGE_PUBLISHED
    assert event["source"] == f"//pubsub.googleapis.com/projects/{harness.project}/topics/{topic}"
    assert event["id"] == message_id
    assert event.data["subscription"].startswith(f"projects/{harness.project}/subscriptions/")
    message = read_pubsub_message(event)
    assert message.message_id == message_id
    assert message.data == b'{"price": 1.5}'
    assert message.attributes == {"kind": "prices"}
    assert message.publish_time.tzinfo is UTC
    assert event.data["message"]["publishTime"].endswith("Z")


def test_a_message_with_an_ordering_key_is_accepted_and_delivered(harness: BusHarness) -> None:
    topic = harness.topic()
    handler = Recorder()
    harness.subscriber.subscribe(topic, handler)
    message_id = harness.bus.publish(topic, b"setpoint", ordering_key="device-42")
    harness.deliver_all()
    assert handler.ids == [message_id]
    assert handler.messages[0].ordering_key == "device-42"


def test_each_subscription_of_a_topic_gets_its_own_copy(harness: BusHarness) -> None:
    topic = harness.topic()
    planner, archiver = Recorder(), Recorder()
    harness.subscriber.subscribe(topic, planner, name=f"{topic}-planner")
    harness.subscriber.subscribe(topic, archiver, name=f"{topic}-archiver")
    message_id = harness.bus.publish(topic, b"prices")
    harness.deliver_all()
    assert planner.ids == [message_id]
    assert archiver.ids == [message_id]
    assert planner.events[0].data["subscription"].endswith(f"/subscriptions/{topic}-planner")
    assert archiver.events[0].data["subscription"].endswith(f"/subscriptions/{topic}-archiver")


def test_a_handler_that_raises_gets_the_same_message_again(harness: BusHarness) -> None:
    topic = harness.topic()
    handler = Recorder(fail_times=1)
    harness.subscriber.subscribe(topic, handler)
    message_id = harness.bus.publish(topic, b"retry me", attributes={"n": "1"})
    harness.deliver_all()
    assert handler.ids == [message_id, message_id]
    first, second = handler.messages
    assert (second.data, second.attributes) == (first.data, first.attributes)


def test_a_message_is_not_delivered_again_after_its_handler_returned(
    harness: BusHarness,
) -> None:
    topic = harness.topic()
    handler = Recorder()
    harness.subscriber.subscribe(topic, handler)
    message_id = harness.bus.publish(topic, b"once")
    harness.deliver_all()
    harness.deliver_all()
    assert handler.ids == [message_id]


def test_publishing_to_a_topic_without_subscriptions_succeeds(harness: BusHarness) -> None:
    assert harness.bus.publish(harness.topic(), b"nobody listens")


def test_a_message_published_by_a_handler_is_delivered_in_the_same_drain(
    harness: BusHarness,
) -> None:
    prices, plans = harness.topic(), harness.topic()
    planner = Recorder()
    harness.subscriber.subscribe(plans, planner)

    def plan(_: CloudEvent) -> None:
        harness.bus.publish(plans, b"plan")

    harness.subscriber.subscribe(prices, Recorder(then=plan))
    harness.bus.publish(prices, b"prices")
    harness.deliver_all()
    assert [m.data for m in planner.messages] == [b"plan"]


@pytest.mark.parametrize(
    ("data", "attributes", "reason"),
    [
        (b"x", {"count": 3}, "attribute 'count' must map a string to a string"),
        (b"x", {"flag": b"yes"}, "attribute 'flag' must map a string to a string"),
        ("text", None, "message data must be bytes"),
        (b"", {}, "non-empty data or at least one attribute"),
        (b"x", {"goog-key": "v"}, "starts with 'goog'"),
    ],
    ids=["int-attribute", "bytes-attribute", "str-data", "empty-message", "reserved-key"],
)
def test_a_malformed_publish_is_refused_clearly_and_nothing_is_published(
    harness: BusHarness, data: object, attributes: object, reason: str
) -> None:
    topic = harness.topic()
    handler = Recorder()
    harness.subscriber.subscribe(topic, handler)
    with pytest.raises(InvalidPayload, match=reason):
        harness.bus.publish(topic, data, attributes=attributes)  # type: ignore[arg-type]
    harness.deliver_all()
    assert handler.events == []


def test_an_invalid_topic_id_is_refused_clearly(harness: BusHarness) -> None:
    with pytest.raises(InvalidPayload, match="is not a Pub/Sub topic id"):
        harness.bus.publish("no/slashes", b"x")


# Pub/Sub only: topics are infrastructure (terraform), the local bus creates them implicitly.


@pytest.mark.emulator
def test_publishing_to_a_missing_topic_is_not_found(pubsub_emulator: PubSubEmulator) -> None:  # noqa: F811 - the imported fixture
    from hpsteer.backends.gcp.pubsub_bus import PubSubMessageBus

    bus = PubSubMessageBus(pubsub_emulator.project)
    try:
        with pytest.raises(NotFound, match=r"publish to projects/hpsteer-test/topics/topic-"):
            bus.publish(fresh_topic_name(), b"x", ordering_key="device-1")
        with pytest.raises(NotFound, match="not found"):
            bus.publish(fresh_topic_name(), b"x")
    finally:
        bus.close()


def test_a_pubsub_that_does_not_answer_is_bus_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    from hpsteer.backends.gcp.pubsub_bus import PubSubMessageBus

    monkeypatch.setenv("PUBSUB_EMULATOR_HOST", f"127.0.0.1:{free_port()}")  # nobody listens
    bus = PubSubMessageBus("hpsteer-test", timeout_s=1.0)
    try:
        with pytest.raises(BusUnavailable, match="publish to projects/hpsteer-test/topics/topic-"):
            bus.publish(fresh_topic_name(), b"x")
        for _ in range(2):  # a failed ordered publish must not leave its ordering key paused
            with pytest.raises(BusUnavailable, match="ServiceUnavailable"):
                bus.publish("ordered-topic", b"x", ordering_key="device-1")
    finally:
        bus.close()


# Local bus only: chaos, retry timing, dead letters, inspection.


def _local(**options: object) -> tuple[SimulatedClock, LocalMessageBus]:
    clock = SimulatedClock(START)
    return clock, LocalMessageBus(clock, **options)  # type: ignore[arg-type]


def _delivery_log(**options: object) -> list[str]:
    clock, bus = _local(**options)
    handler = Recorder()
    bus.subscribe("chaos-topic", handler)
    for n in range(20):
        bus.publish("chaos-topic", str(n).encode())
    bus.drain(wait=clock.advance_to)
    return [m.data.decode() for m in handler.messages]


def test_duplicates_are_delivered_reproducibly_for_a_seed() -> None:
    log = _delivery_log(seed=7, duplicate_probability=0.5)
    assert sorted(set(log), key=int) == [str(n) for n in range(20)]
    assert 20 < len(log) < 40
    assert log == _delivery_log(seed=7, duplicate_probability=0.5)
    assert log != _delivery_log(seed=8, duplicate_probability=0.5)


def test_reordering_shuffles_reproducibly_for_a_seed() -> None:
    in_order = [str(n) for n in range(20)]
    assert _delivery_log() == in_order
    log = _delivery_log(seed=3, reorder=True)
    assert sorted(log, key=int) == in_order
    assert log != in_order
    assert log == _delivery_log(seed=3, reorder=True)


def test_retries_back_off_from_10_s_doubling_to_600_s_on_the_clock() -> None:
    clock, bus = _local(max_delivery_attempts=10)
    times: list[datetime] = []

    def always_fails(_: CloudEvent) -> None:
        times.append(clock.now())
        raise RuntimeError("always fails")

    bus.subscribe("flaky", always_fails)
    bus.publish("flaky", b"x")
    bus.drain(wait=clock.advance_to)
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(times)]
    assert gaps == [10, 20, 40, 80, 160, 320, 600, 600, 600]
    assert [retry_backoff(n).total_seconds() for n in (1, 2, 7, 50)] == [10, 20, 600, 600]


def test_a_failed_message_is_not_redelivered_before_its_backoff_elapsed() -> None:
    clock, bus = _local()
    handler = Recorder(fail_times=1)
    bus.subscribe("flaky", handler)
    bus.publish("flaky", b"x")
    assert bus.deliver() == 1
    clock.advance(timedelta(seconds=9))
    assert bus.deliver() == 0
    clock.advance(timedelta(seconds=1))
    assert bus.deliver() == 1
    assert bus.pending_count() == 0


def test_a_message_goes_to_the_dead_letters_after_max_delivery_attempts() -> None:
    clock, bus = _local(max_delivery_attempts=5)
    handler = Recorder(fail_times=100)
    bus.subscribe("poison", handler, name="poison-sub")
    message_id = bus.publish("poison", b"bad")
    bus.drain(wait=clock.advance_to)
    assert handler.ids == [message_id] * 5
    (dead,) = bus.dead_letters()
    assert (dead.topic, dead.subscription, dead.attempts) == ("poison", "poison-sub", 5)
    assert dead.message.message_id == message_id
    assert "induced failure 5" in dead.last_error
    assert bus.pending_count() == 0


def test_published_lists_every_accepted_message_with_the_clock_time() -> None:
    clock, bus = _local()
    bus.publish("audit", b"a", attributes={"k": "v"})
    clock.advance(timedelta(minutes=1))
    bus.publish("audit", b"b", ordering_key="dev")
    published = bus.published("audit")
    assert [(m.data, m.attributes, m.ordering_key) for m in published] == [
        (b"a", {"k": "v"}, None),
        (b"b", {}, "dev"),
    ]
    assert [m.publish_time for m in published] == [START, START + timedelta(minutes=1)]
    assert bus.published("other") == []


def test_a_round_delivers_at_most_max_messages() -> None:
    _, bus = _local()
    handler = Recorder()
    bus.subscribe("batch", handler)
    for n in range(5):
        bus.publish("batch", bytes([n]))
    assert bus.deliver(max_messages=2) == 2
    assert bus.drain() == 3
    assert len(handler.events) == 5


def test_publishing_from_many_threads_loses_nothing_and_ids_stay_unique() -> None:
    _, bus = _local()
    handler = Recorder()
    bus.subscribe("busy", handler)
    ids: list[str] = []

    def publish_many() -> None:
        for _ in range(100):
            ids.append(bus.publish("busy", b"x"))

    threads = [threading.Thread(target=publish_many) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(ids)) == 400
    assert bus.drain() == 400
