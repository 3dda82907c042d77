"""Telemetry ingestion with the local backends: webhooks onto the bus, samples into state.

Scenarios of issue 7: duplicated and out-of-order telemetry never move a device's state
backwards yet every sample is recorded once; a webhook with a bad signature, an old timestamp or
a replayed id publishes nothing. Webhooks are signed here as a Standard Webhooks sender signs
them, with secrets in a :class:`MemorySecretStore`.
"""

from __future__ import annotations

import base64
import itertools
import json
import logging
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from hpsteer.adapters.protocol import DeviceRef, DeviceState
from hpsteer.backends.local.bus import LocalMessageBus
from hpsteer.backends.local.secrets import MemorySecretStore
from hpsteer.config import Settings
from hpsteer.domain.actions import Mode
from hpsteer.domain.devices import ComfortBand, Device, Location, ThermalParameters
from hpsteer.domain.market import PriceArea
from hpsteer.domain.messages import Topic
from hpsteer.domain.telemetry import TelemetrySample, TelemetrySource
from hpsteer.errors import BusUnavailable, InvalidInput, MalformedMessage
from hpsteer.messaging.envelope import PubSubMessage, encode_json_message
from hpsteer.ports.bus import MessageBus
from hpsteer.ports.clock import SimulatedClock
from hpsteer.runtime import bootstrap
from hpsteer.runtime.bootstrap import Dependencies
from hpsteer.services.ingest_telemetry import (
    TELEMETRY_HISTORY,
    handle_telemetry_message,
    handle_telemetry_webhook,
    ingest_sample,
    publish_sample,
    sample_from_device_state,
)
from hpsteer.services.plan_inputs import PlanningOptions, load_device
from hpsteer.services.webhooks import WebhookOptions, signed_headers, webhook_id_path
from tests.support.stores import ReadRecordingStore

NOW = datetime(2025, 2, 24, 5, 37, tzinfo=UTC)
SECRET = "telemetry-webhook-secret"
KEY = bytes(range(7, 39))
TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def register(deps: Dependencies, device_id: str, manufacturer: str = "viessmann") -> None:
    device = Device(
        device_id=device_id,
        manufacturer=manufacturer,
        external_id=f"ext-{device_id}",
        account_id="acct-1",
        price_area=PriceArea.SE3,
        location=Location(location_id=f"home-{device_id}", latitude=59.3, longitude=18.16),
        comfort=ComfortBand(min_indoor_temp_c=20, setpoint_c=21, max_indoor_temp_c=23),
        thermal=ThermalParameters(
            heat_loss_w_per_k=150, air_capacity_kwh_per_k=5, hp_max_heat_kw=8
        ),
        registered_at=NOW - timedelta(days=30),
    )
    deps.store.set(f"devices/{device_id}", device.to_document())


def local_deps(bus: MessageBus | None = None, *, with_secret: bool = True) -> Dependencies:
    clock = SimulatedClock(NOW)
    secrets = MemorySecretStore()
    if with_secret:
        secrets.add_version(SECRET, b"whsec_" + base64.b64encode(KEY))
    local = bootstrap.local(clock=clock, secrets=secrets)
    if bus is None:
        deps = local
    else:
        deps = Dependencies(
            local.settings,
            clock,
            store=lambda: local.store,
            bus=lambda: bus,
            tasks=lambda: local.tasks,
            analytics=lambda: local.analytics,
            secrets=lambda: local.secrets,
        )
    register(deps, "d1")
    register(deps, "d2", "nibe_myuplink")
    return deps


@pytest.fixture
def deps() -> Dependencies:
    return local_deps()


def sample(minutes_ago: float, device_id: str = "d1", **fields: Any) -> TelemetrySample:
    observed_at = NOW - timedelta(minutes=minutes_ago)
    return TelemetrySample(
        sample_id=f"{device_id}-{observed_at:%H%M%S}",
        device_id=device_id,
        observed_at=observed_at,
        source=TelemetrySource.WEBHOOK,
        manufacturer="viessmann" if device_id == "d1" else "nibe_myuplink",
        **{"indoor_temp_c": 20.0 + minutes_ago / 10, **fields},
    )


def message(item: TelemetrySample, message_id: str = "m1") -> PubSubMessage:
    return PubSubMessage(
        message_id=message_id,
        data=encode_json_message(item),
        attributes={"device_id": item.device_id},
        publish_time=NOW,
    )


def last_telemetry(deps: Dependencies, device_id: str = "d1") -> dict[str, Any]:
    document = deps.store.get(f"devices/{device_id}")
    assert document is not None
    stored = document.data.get("last_telemetry")
    return dict(stored) if isinstance(stored, Mapping) else {}


def history(deps: Dependencies) -> list[dict[str, Any]]:
    deps.analytics.ensure_table(TELEMETRY_HISTORY)
    return deps.analytics.query(
        "SELECT device_id, sample_id, observed_at, source FROM `telemetry_history` "
        "ORDER BY observed_at"
    )


# -- ingestion --------------------------------------------------------------------------------


def test_a_newer_sample_becomes_the_devices_last_telemetry_that_planning_reads(
    deps: Dependencies,
) -> None:
    item = sample(3, indoor_temp_c=21.4, observed_mode=Mode.MIN, online=True, power_kw=1.2)

    handle_telemetry_message(message(item), deps)

    stored = last_telemetry(deps)
    assert stored["observed_at"] == NOW - timedelta(minutes=3)  # a timestamp, not a string
    assert (stored["indoor_temp_c"], stored["observed_mode"]) == (21.4, "min")
    assert (stored["online"], stored["power_kw"], stored["source"]) == (True, 1.2, "webhook")
    assert stored["sample_id"] == item.sample_id
    record = load_device(deps.store, "d1", now=NOW, options=PlanningOptions())
    assert (record.indoor_temp_c, record.observed_mode) == (21.4, Mode.MIN)
    assert record.telemetry_observed_at == NOW - timedelta(minutes=3)


def test_a_late_sample_never_moves_state_back_but_is_recorded(deps: Dependencies) -> None:
    newer, older = sample(1, observed_mode=Mode.MAX), sample(20, observed_mode=Mode.MIN)

    assert ingest_sample(newer, deps) is True
    assert ingest_sample(older, deps) is False

    assert last_telemetry(deps)["sample_id"] == newer.sample_id
    assert last_telemetry(deps)["observed_mode"] == "max"
    assert [row["sample_id"] for row in history(deps)] == [older.sample_id, newer.sample_id]


def test_a_duplicated_sample_changes_nothing_and_is_recorded_once(deps: Dependencies) -> None:
    item = sample(2)
    handle_telemetry_message(message(item, "m1"), deps)
    written = deps.store.get("devices/d1")

    handle_telemetry_message(message(item, "m2"), deps)  # redelivered

    again = deps.store.get("devices/d1")
    assert written is not None
    assert again is not None
    assert again.update_time == written.update_time
    assert [row["sample_id"] for row in history(deps)] == [item.sample_id]


def test_a_sample_at_the_same_instant_as_the_stored_one_is_not_newer(deps: Dependencies) -> None:
    first = sample(2)
    same_instant = first.model_copy(update={"sample_id": "another-id", "indoor_temp_c": 25.0})
    ingest_sample(first, deps)

    assert ingest_sample(same_instant, deps) is False
    assert last_telemetry(deps)["indoor_temp_c"] == first.indoor_temp_c


@pytest.mark.parametrize("order", list(itertools.permutations([0, 1, 2])))
def test_samples_in_any_order_end_at_the_newest_and_all_are_recorded(
    deps: Dependencies, order: tuple[int, ...]
) -> None:
    samples = [sample(15), sample(10), sample(5)]

    for index in order:
        handle_telemetry_message(message(samples[index], f"m{index}"), deps)

    assert last_telemetry(deps)["sample_id"] == samples[2].sample_id
    assert len(history(deps)) == 3


def test_a_sample_for_an_unknown_device_is_acknowledged_and_not_recorded(
    deps: Dependencies, caplog: pytest.LogCaptureFixture
) -> None:
    ghost = sample(1).model_copy(update={"device_id": "ghost"})

    handle_telemetry_message(message(ghost), deps)  # returns: acknowledged

    assert "unknown device ghost" in caplog.text
    assert deps.store.get("devices/ghost") is None
    assert history(deps) == []


def test_a_sample_from_another_manufacturer_than_the_devices_is_refused(
    deps: Dependencies,
) -> None:
    foreign = sample(1).model_copy(update={"manufacturer": "daikin_onecta"})

    with pytest.raises(InvalidInput, match="d1 is a viessmann device"):
        ingest_sample(foreign, deps)

    assert last_telemetry(deps) == {}
    assert history(deps) == []


def test_a_sample_from_the_future_is_refused_so_it_cannot_block_real_ones(
    deps: Dependencies,
) -> None:
    with pytest.raises(InvalidInput, match="in the future"):
        ingest_sample(sample(-6), deps)
    assert ingest_sample(sample(-4), deps) is True  # clock skew within 5 minutes is accepted


def test_a_stored_iso_observed_at_is_compared_as_an_instant(deps: Dependencies) -> None:
    deps.store.update(
        "devices/d1",
        {"last_telemetry": {"observed_at": "2025-02-24T05:30:00Z", "indoor_temp_c": 20.0}},
    )

    assert ingest_sample(sample(10), deps) is False  # 05:27, older than 05:30
    assert ingest_sample(sample(5), deps) is True  # 05:32


def test_a_message_whose_device_attribute_names_another_device_is_malformed(
    deps: Dependencies,
) -> None:
    item = sample(1)
    wrong = PubSubMessage(
        message_id="m1",
        data=encode_json_message(item),
        attributes={"device_id": "d2"},
        publish_time=NOW,
    )
    with pytest.raises(MalformedMessage, match="device_id"):
        handle_telemetry_message(wrong, deps)


# -- polled states ----------------------------------------------------------------------------


def polled_state(device_id: str = "d2") -> DeviceState:
    return DeviceState(
        device=DeviceRef("nibe_myuplink", "ext-d2", "acct-1", device_id),
        observed_at=NOW - timedelta(minutes=4),
        online=True,
        mode=Mode.MID,
        setpoint_offset_k=0.0,
        room_setpoint_c=21.0,
        indoor_temp_c=20.8,
        outdoor_temp_c=-3.5,
        power_kw=0.9,
        changed_by_user=False,
    )


def test_a_polled_state_becomes_a_poll_sample_named_by_device_and_time() -> None:
    polled = sample_from_device_state(polled_state())

    assert polled.sample_id == "d2@2025-02-24T05:33:00Z"
    assert polled.source is TelemetrySource.POLL
    assert (polled.manufacturer, polled.observed_mode, polled.online) == (
        "nibe_myuplink",
        Mode.MID,
        True,
    )
    assert (polled.room_setpoint_c, polled.changed_by_user) == (21.0, False)
    assert sample_from_device_state(polled_state()) == polled  # the same reading, the same id


def test_a_polled_state_without_an_hpsteer_device_id_is_refused() -> None:
    with pytest.raises(InvalidInput, match="names no hpsteer device id"):
        sample_from_device_state(polled_state(device_id=""))
    assert sample_from_device_state(polled_state(""), device_id="d2").device_id == "d2"


def test_a_polled_state_published_reaches_the_devices_state(deps: Dependencies) -> None:
    bus = deps.bus
    assert isinstance(bus, LocalMessageBus)

    publish_sample(bus, sample_from_device_state(polled_state()))

    [published] = bus.published(Topic.DEVICE_TELEMETRY)
    assert published.attributes == {"device_id": "d2"}
    handle_telemetry_message(published, deps)
    assert last_telemetry(deps, "d2")["source"] == "poll"
    assert last_telemetry(deps, "d2")["outdoor_temp_c"] == -3.5


# -- what is worth a write --------------------------------------------------------------------


def written_at(deps: Dependencies, device_id: str = "d1") -> datetime | None:
    document = deps.store.get(f"devices/{device_id}")
    assert document is not None
    return document.update_time


def test_a_newer_sample_that_changes_nothing_decided_is_recorded_without_a_write(
    deps: Dependencies,
) -> None:
    """Within a quarter of the reconciliation interval (2.5 minutes), new temperatures alone
    are not worth a document write; the history has the sample all the same."""
    first = sample(4, observed_mode=Mode.MAX, online=True, indoor_temp_c=21.0)
    moments_later = sample(2, observed_mode=Mode.MAX, online=True, indoor_temp_c=21.3)
    assert ingest_sample(first, deps) is True
    stored = written_at(deps)

    assert ingest_sample(moments_later, deps) is False

    assert written_at(deps) == stored
    assert last_telemetry(deps)["sample_id"] == first.sample_id
    assert [row["sample_id"] for row in history(deps)] == [first.sample_id, moments_later.sample_id]


@pytest.mark.parametrize(
    "change",
    [
        {"observed_mode": Mode.MIN},
        {"online": False},
        {"setpoint_offset_k": 1.0},
        {"room_setpoint_c": 22.0},
    ],
)
def test_a_change_of_what_decisions_are_made_by_is_stored_at_once(
    deps: Dependencies, change: dict[str, Any]
) -> None:
    base = {"observed_mode": Mode.MAX, "online": True, "setpoint_offset_k": 2.0}
    base["room_setpoint_c"] = 21.0
    ingest_sample(sample(4, **base), deps)
    changed = sample(3, **{**base, **change})

    assert ingest_sample(changed, deps) is True

    assert last_telemetry(deps)["sample_id"] == changed.sample_id


def test_the_households_own_setting_is_stored_at_once_even_when_it_was_already_showing(
    deps: Dependencies,
) -> None:
    """The command path compares the instant it was seen with its commands': it must be new."""
    ingest_sample(sample(4, observed_mode=Mode.MAX, changed_by_user=True), deps)
    again = sample(3, observed_mode=Mode.MAX, changed_by_user=True)

    assert ingest_sample(again, deps) is True
    assert last_telemetry(deps)["observed_at"] == again.observed_at


def test_pushed_telemetry_is_refreshed_every_quarter_interval_so_reconciliation_can_trust_it(
    deps: Dependencies,
) -> None:
    ingest_sample(sample(9, observed_mode=Mode.MAX), deps)
    assert ingest_sample(sample(7, observed_mode=Mode.MAX), deps) is False  # 2 minutes on
    assert ingest_sample(sample(6.5, observed_mode=Mode.MAX), deps) is True  # 2.5 minutes on


def polled(minutes_ago: float, **fields: Any) -> TelemetrySample:
    return sample(minutes_ago, "d2", observed_mode=Mode.MID, online=True, **fields).model_copy(
        update={"source": TelemetrySource.POLL}
    )


def test_a_polled_sample_keeps_the_stored_one_for_up_to_an_hour(deps: Dependencies) -> None:
    """Reconciliation never judges by its own last poll: only the planner's start temperature
    (which takes the history's newest sample when newer) and the energy figure read what polls
    store, and an hour suits both."""
    ingest_sample(polled(75), deps)
    assert ingest_sample(polled(65), deps) is False
    assert ingest_sample(polled(25), deps) is False
    assert ingest_sample(polled(15), deps) is True  # an hour after the stored one
    assert last_telemetry(deps, "d2")["observed_at"] == NOW - timedelta(minutes=15)


def test_a_poll_published_to_be_recorded_only_is_recorded_without_reading_the_device() -> None:
    local = local_deps()
    recording = ReadRecordingStore(local.store)
    deps = Dependencies(
        local.settings,
        local.clock,
        store=lambda: recording,
        bus=lambda: local.bus,
        tasks=lambda: local.tasks,
        analytics=lambda: local.analytics,
        secrets=lambda: local.secrets,
    )
    bus = deps.bus
    assert isinstance(bus, LocalMessageBus)
    item = sample_from_device_state(polled_state())

    publish_sample(bus, item, record_only=True)
    [published] = bus.published(Topic.DEVICE_TELEMETRY)
    handle_telemetry_message(published, deps)

    assert published.attributes == {"device_id": "d2", "record_only": "true"}
    assert recording.read == []
    assert last_telemetry(deps, "d2") == {}
    assert [row["sample_id"] for row in history(deps)] == [item.sample_id]


def test_only_a_polled_sample_can_be_recorded_only(deps: Dependencies) -> None:
    pushed = sample(1)
    with pytest.raises(InvalidInput, match="polled"):
        publish_sample(deps.bus, pushed, record_only=True)
    forged = PubSubMessage(
        message_id="m1",
        data=encode_json_message(pushed),
        attributes={"device_id": "d1", "record_only": "true"},
        publish_time=NOW,
    )
    with pytest.raises(MalformedMessage, match="cannot be recorded only"):
        handle_telemetry_message(forged, deps)
    assert history(deps) == []


# -- the webhook ------------------------------------------------------------------------------


def webhook_body(*items: Mapping[str, Any]) -> bytes:
    payload: object = list(items) if len(items) != 1 else items[0]
    return json.dumps(payload).encode()


def reading(device_id: str = "d1", minutes_ago: int = 1, **fields: Any) -> dict[str, Any]:
    return {
        "manufacturer": "viessmann" if device_id == "d1" else "nibe_myuplink",
        "device_id": device_id,
        "observed_at": f"2025-02-24T05:{37 - minutes_ago:02d}:00Z",
        "indoor_temp_c": 21.0,
        **fields,
    }


BODY = webhook_body(reading())


def signed(
    body: bytes, webhook_id: str = "msg_1", at: datetime = NOW, key: bytes = KEY
) -> dict[str, str]:
    headers = signed_headers([key], webhook_id, int(at.timestamp()), body)
    return {**headers, "Content-Type": "application/json", "traceparent": TRACEPARENT}


def published(deps: Dependencies) -> list[TelemetrySample]:
    bus = deps.bus
    assert isinstance(bus, LocalMessageBus)
    return [TelemetrySample.parse_json(m.data) for m in bus.published(Topic.DEVICE_TELEMETRY)]


def webhook_records(deps: Dependencies) -> int:
    return len(deps.store.query("webhook_ids").documents)


def test_a_signed_webhook_publishes_each_sample_and_answers_202(deps: Dependencies) -> None:
    body = webhook_body(reading("d1", sample_id="evt-1"), reading("d2", observed_mode="max"))

    reply = handle_telemetry_webhook(signed(body), body, deps)

    assert (reply.status, reply.body) == (202, {"outcome": "accepted", "samples": 2})
    first, second = published(deps)
    assert (first.sample_id, first.source) == ("evt-1", TelemetrySource.WEBHOOK)
    assert second.sample_id == "d2@2025-02-24T05:36:00Z"  # derived: device and instant
    assert second.observed_mode is Mode.MAX
    bus = deps.bus
    assert isinstance(bus, LocalMessageBus)
    attributes = [m.attributes for m in bus.published(Topic.DEVICE_TELEMETRY)]
    assert attributes == [
        {"device_id": "d1", "traceparent": TRACEPARENT},
        {"device_id": "d2", "traceparent": TRACEPARENT},
    ]
    record = deps.store.get(webhook_id_path(SECRET, "msg_1"))
    assert record is not None
    assert (record.data["status"], record.data["samples"]) == ("processed", 2)


def test_a_replayed_webhook_answers_200_and_publishes_nothing_again(deps: Dependencies) -> None:
    body = webhook_body(reading())
    assert handle_telemetry_webhook(signed(body), body, deps).status == 202
    deps_clock = deps.clock
    assert isinstance(deps_clock, SimulatedClock)
    deps_clock.advance(timedelta(minutes=2))

    replay = handle_telemetry_webhook(signed(body), body, deps)  # the very same request
    retry = handle_telemetry_webhook(signed(body, at=deps_clock.now()), body, deps)  # re-signed

    assert (replay.status, replay.body) == (200, {"outcome": "duplicate"})
    assert (retry.status, retry.body) == (200, {"outcome": "duplicate"})
    assert len(published(deps)) == 1


@pytest.mark.parametrize(
    ("case", "change", "status"),
    [
        ("bad signature", lambda h: {**h, "webhook-signature": "v1,AAAA"}, 401),
        ("signed with another key", lambda h: signed(BODY, key=bytes(32)), 401),
        ("no signature", lambda h: {k: v for k, v in h.items() if k != "webhook-signature"}, 401),
        ("old timestamp", lambda h: signed(BODY, at=NOW - timedelta(minutes=6)), 400),
        ("future timestamp", lambda h: signed(BODY, at=NOW + timedelta(minutes=6)), 400),
        ("malformed id", lambda h: signed(BODY, webhook_id="a.b"), 400),
    ],
)
def test_a_refused_webhook_publishes_nothing_and_records_no_id(
    deps: Dependencies, case: str, change: Any, status: int
) -> None:
    reply = handle_telemetry_webhook(change(signed(BODY)), BODY, deps)

    assert reply.status == status
    assert published(deps) == []
    assert webhook_records(deps) == 0


@pytest.mark.parametrize(
    ("body", "named"),
    [
        (b"{not json", "not UTF-8 JSON"),
        (b"\xff\xfe", "not UTF-8 JSON"),
        (b"[]", "empty list"),
        (b'"a string"', "sample: (root): Input should be a valid dictionary"),
        (webhook_body({k: v for k, v in reading().items() if k != "manufacturer"}), "manufacturer"),
        (webhook_body(reading(indoor_temp_c=99)), "sample: indoor_temp_c"),
        (webhook_body(reading(), reading(observed_mode="boost")), "sample [1]: observed_mode"),
        (webhook_body(reading(indoor_temp=21)), "indoor_temp: Extra inputs are not permitted"),
        (webhook_body(reading(observed_at="2025-02-24T05:36:00")), "observed_at"),
        (webhook_body(reading(device_id="a/b", manufacturer="viessmann")), "device_id"),
        (webhook_body(reading(minutes_ago=-7)), "observed_at is in the future"),
        (webhook_body(reading(schema_version=2)), "schema_version"),
    ],
)
def test_a_verified_body_that_is_no_sample_is_400_naming_the_field(
    deps: Dependencies, body: bytes, named: str
) -> None:
    reply = handle_telemetry_webhook(signed(body), body, deps)

    assert reply.status == 400
    assert named in str(reply.body["error"])
    assert published(deps) == []
    assert webhook_records(deps) == 0


def test_a_webhook_with_too_many_samples_is_400() -> None:
    deps = local_deps()
    body = webhook_body(*(reading(minutes_ago=m) for m in range(1, 4)))
    options = WebhookOptions(secret_name=SECRET, max_samples=2)

    reply = handle_telemetry_webhook(signed(body), body, deps, options)

    assert (reply.status, reply.body["error"]) == (400, "3 samples in one webhook, at most 2")


def test_a_body_over_the_limit_is_413_before_anything_is_verified() -> None:
    deps = local_deps(with_secret=False)  # would be 500 if verification ran
    options = WebhookOptions(secret_name=SECRET, max_body_bytes=10)

    reply = handle_telemetry_webhook(signed(BODY), BODY, deps, options)

    assert reply.status == 413


def test_without_a_configured_secret_every_webhook_is_refused_with_500() -> None:
    deps = local_deps(with_secret=False)

    reply = handle_telemetry_webhook(signed(BODY), BODY, deps)

    assert reply.status == 500
    assert published(deps) == []


class FlakyBus:
    """The local bus, unavailable for the first ``failures`` publishes."""

    def __init__(self, inner: LocalMessageBus, failures: int) -> None:
        self.inner = inner
        self.failures = failures

    def publish(
        self,
        topic: str,
        data: bytes,
        *,
        attributes: Mapping[str, str] | None = None,
        ordering_key: str | None = None,
    ) -> str:
        if self.failures:
            self.failures -= 1
            raise BusUnavailable("Pub/Sub did not answer")
        return self.inner.publish(topic, data, attributes=attributes, ordering_key=ordering_key)


def test_a_webhook_whose_publish_failed_is_published_when_the_sender_retries() -> None:
    clock = SimulatedClock(NOW)
    flaky = FlakyBus(LocalMessageBus(clock), failures=1)
    deps = local_deps(flaky)
    body = webhook_body(reading())

    failed = handle_telemetry_webhook(signed(body), body, deps)
    retried = handle_telemetry_webhook(signed(body, at=NOW + timedelta(seconds=5)), body, deps)

    assert (failed.status, failed.headers) == (503, {"Retry-After": "30"})
    assert retried.status == 202
    assert len(flaky.inner.published(Topic.DEVICE_TELEMETRY)) == 1


def test_a_webhook_reaches_the_devices_state_through_the_bus(deps: Dependencies) -> None:
    body = webhook_body(reading("d1", minutes_ago=2, observed_mode="min", changed_by_user=True))
    handle_telemetry_webhook(signed(body), body, deps)
    bus = deps.bus
    assert isinstance(bus, LocalMessageBus)

    for delivered in bus.published(Topic.DEVICE_TELEMETRY):
        handle_telemetry_message(delivered, deps)

    stored = last_telemetry(deps)
    assert (stored["observed_mode"], stored["changed_by_user"]) == ("min", True)
    assert [row["source"] for row in history(deps)] == ["webhook"]


def test_neither_the_secret_nor_a_signature_reaches_the_logs(
    deps: Dependencies, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    good = signed(BODY, webhook_id="msg_ok")
    forged = signed(BODY, webhook_id="msg_forged", key=bytes(32))

    handle_telemetry_webhook(good, BODY, deps)
    handle_telemetry_webhook(good, BODY, deps)
    handle_telemetry_webhook(forged, BODY, deps)

    for leaked in (
        base64.b64encode(KEY).decode(),
        good["webhook-signature"][3:],
        forged["webhook-signature"][3:],
    ):
        assert leaked not in caplog.text
    assert "refused a telemetry webhook (401)" in caplog.text


def test_the_endpoint_reads_its_options_from_settings_when_they_exist() -> None:
    from hpsteer.services.ingest_telemetry import webhook_options

    assert webhook_options(Settings()) == WebhookOptions()

    class Extended:  # what Settings carries once the telemetry_webhook_* fields are added
        telemetry_webhook_secret = "oem-hook"
        telemetry_webhook_previous_versions = 2
        telemetry_webhook_tolerance_seconds = 120

    configured = webhook_options(Extended())
    assert (configured.secret_name, configured.previous_versions) == ("oem-hook", 2)
    assert configured.tolerance == timedelta(minutes=2)
