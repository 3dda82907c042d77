"""A reconcile page's polls, stored or not, go to ``telemetry_history`` in one append.

Ingestion would append each on its own, at the price of a publish, a delivery, a request and a
streaming insert. The page appends them itself at its end, with ingestion's rows and insert ids;
what is worth storing it stores itself (``tests/services/test_reconcile_telemetry.py``), and an
append that fails falls back to publishing the samples record-only.

The page here is :func:`~tests.services.test_reconcile_concurrency.steered_fleet`'s: twelve homes
steered to ``max``, two drifted, one overridden, one offline, one of an unknown manufacturer.
Its first page stores every poll; the page ten minutes later is the one under test.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pytest

from hpsteer.domain.actions import Mode
from hpsteer.domain.messages import Topic
from hpsteer.domain.telemetry import TelemetrySample, TelemetrySource
from hpsteer.errors import AnalyticsUnavailable, InvalidInput
from hpsteer.messaging.envelope import PubSubMessage
from hpsteer.ports.analytics import TableSchema
from hpsteer.runtime.local_fleet import LocalFleet
from hpsteer.services.ingest_telemetry import (
    TELEMETRY_HISTORY,
    handle_telemetry_message,
    history_row,
    publish_sample,
)
from hpsteer.services.reconcile import DeviceOutcome
from tests.services.test_reconcile_concurrency import WORKERS, reconcile, steered_fleet

INTERVAL = timedelta(minutes=10)


@dataclass
class Appends:
    """What reaches the fleet's analytics port: every append and table ensured; ``fail`` makes
    an append raise, ``"before"`` writing (analytics down) or ``"after"`` (the answer lost)."""

    calls: list[tuple[str, list[dict[str, Any]], list[str]]] = field(default_factory=list)
    ensured: list[str] = field(default_factory=list)
    fail: str | None = None
    refuse: bool = False

    def of(self, table: str) -> list[tuple[list[dict[str, Any]], list[str]]]:
        return [(rows, ids) for name, rows, ids in self.calls if name == table]


def watch(local: LocalFleet, monkeypatch: pytest.MonkeyPatch) -> Appends:
    analytics = local.deps.analytics
    append, ensure = analytics.append, analytics.ensure_table
    seen = Appends()

    def appending(table: str, rows: Sequence[Mapping[str, Any]], insert_ids: Sequence[str]) -> None:
        if seen.refuse:
            raise InvalidInput(f"BigQuery refused the append to {table}")
        if seen.fail == "before":
            raise AnalyticsUnavailable("BigQuery did not answer")
        append(table, rows, insert_ids)
        seen.calls.append((table, [dict(r) for r in rows], list(insert_ids)))
        if seen.fail == "after":
            raise AnalyticsUnavailable("BigQuery's answer timed out")

    def ensuring(schema: TableSchema) -> None:
        seen.ensured.append(schema.name)
        ensure(schema)

    monkeypatch.setattr(analytics, "append", appending)
    monkeypatch.setattr(analytics, "ensure_table", ensuring)
    return seen


def telemetry(local: LocalFleet) -> list[PubSubMessage]:
    bus: Any = local.deps.bus
    return list(bus.published(Topic.DEVICE_TELEMETRY.value))


def ingest(local: LocalFleet, messages: Sequence[PubSubMessage]) -> None:
    for message in messages:
        handle_telemetry_message(message, local.deps)


def settled(local: LocalFleet) -> None:
    """The first page (it stores every poll: nothing was stored before), then ten minutes on."""
    reconcile(local, 1)
    local.run_until(local.clock.now() + INTERVAL)


def history(local: LocalFleet) -> dict[tuple[str, str], dict[str, Any]]:
    local.deps.analytics.ensure_table(TELEMETRY_HISTORY)
    rows = local.deps.analytics.query("SELECT * FROM `telemetry_history`")
    return {(row["device_id"], row["sample_id"]): row for row in rows}


def polled(outcomes: Sequence[DeviceOutcome]) -> set[str]:
    """The devices the page polled (read, and judged by what it read)."""
    return {o.device_id for o in outcomes if o.read and o.error is None}


def sample_of(row: Mapping[str, Any]) -> TelemetrySample:
    return TelemetrySample.model_validate({k: v for k, v in row.items() if k != "ingested_at"})


def test_every_poll_of_a_page_goes_to_the_history_in_one_append_and_none_on_the_topic(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    local = steered_fleet()
    settled(local)
    appends = watch(local, monkeypatch)

    outcomes = reconcile(local, 1)

    [(rows, ids)] = appends.of(TELEMETRY_HISTORY.name)  # the page's one append
    assert {row["device_id"] for row in rows} == polled(outcomes)
    assert len(rows) >= 5  # the homes in sync (the drifted ones now too) and the offline one
    now = local.clock.now()
    samples = [sample_of(row) for row in rows]
    assert rows == [history_row(sample, now) for sample in samples]  # ingestion's rows
    assert ids == [f"{s.device_id}/{s.sample_id}" for s in samples]  # and insert ids
    assert all(s.sample_id.startswith(f"{s.device_id}@") for s in samples)
    assert telemetry(local) == []  # neither page published a poll, stored or not
    recorded = history(local)
    assert all((s.device_id, s.sample_id) in recorded for s in samples)


def test_a_poll_worth_storing_is_stored_by_the_page_and_appended_with_the_rest(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    local = steered_fleet()
    settled(local)
    homes = list(local.fleet)
    changed = homes[7].home_id  # polled every run
    local.deps.store.update(f"devices/{changed}", {"last_telemetry.observed_mode": "min"})
    appends = watch(local, monkeypatch)

    reconcile(local, 1)

    assert telemetry(local) == []
    stored = local.deps.store.get(f"devices/{changed}")
    assert stored is not None
    assert stored.data["last_telemetry"]["observed_mode"] == "max"
    assert stored.data["last_telemetry"]["observed_at"] == local.clock.now()
    [(_, ids)] = appends.of(TELEMETRY_HISTORY.name)
    assert f"{changed}/{stored.data['last_telemetry']['sample_id']}" in ids


def test_the_history_table_is_ensured_once_per_instance_not_per_page(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    local = steered_fleet()
    appends = watch(local, monkeypatch)
    settled(local)

    reconcile(local, 1)
    local.run_until(local.clock.now() + INTERVAL)
    reconcile(local, 1)
    assert len(appends.of(TELEMETRY_HISTORY.name)) == 3  # one per page
    home = list(local.fleet)[7]
    pushed = TelemetrySample(
        sample_id="evt-1",
        device_id=home.home_id,
        observed_at=local.clock.now(),
        source=TelemetrySource.WEBHOOK,
        manufacturer=home.manufacturer,
        observed_mode=Mode.MAX,
    )
    publish_sample(local.deps.bus, pushed)
    ingest(local, telemetry(local))  # the same instance's ingestion, of a webhook's sample

    assert len(appends.of(TELEMETRY_HISTORY.name)) == 4
    assert appends.ensured.count(TELEMETRY_HISTORY.name) == 1  # for pages and ingestion alike


def test_analytics_down_publishes_the_pages_polls_record_only_and_the_page_completes(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    local = steered_fleet()
    settled(local)
    appends = watch(local, monkeypatch)
    appends.fail = "before"
    published = len(telemetry(local))

    with caplog.at_level(logging.WARNING, logger="hpsteer.services.reconcile"):
        outcomes = reconcile(local, 1)

    assert len(outcomes) == len(local.fleet)
    assert len(local.deps.store.query("reconcile_runs").documents) == 2  # done, not redelivered
    fallback = [m for m in telemetry(local)[published:] if m.attributes.get("record_only")]
    assert {m.attributes["device_id"] for m in fallback} == polled(outcomes)
    assert len(fallback) >= 3
    assert all(m.attributes["record_only"] == "true" for m in fallback)
    [warning] = [r for r in caplog.records if "not appended to telemetry_history" in r.message]
    assert f"{len(fallback)} polled samples" in warning.message
    assert "0 of them lost" in warning.message

    appends.fail = None  # analytics is back for ingestion's retries
    ingest(local, fallback)
    recorded = history(local)
    for message in fallback:
        sample = TelemetrySample.parse_json(message.data)
        assert (sample.device_id, sample.sample_id) in recorded


def test_rows_refused_by_analytics_are_handed_to_ingestion_record_only(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """One bad row refuses the whole append; ingestion's appends of one row each lose only it."""
    local = steered_fleet()
    settled(local)
    appends = watch(local, monkeypatch)
    appends.refuse = True
    published = len(telemetry(local))

    outcomes = reconcile(local, 1)

    fallback = [m for m in telemetry(local)[published:] if m.attributes.get("record_only")]
    assert len(fallback) >= 3
    assert {m.attributes["device_id"] for m in fallback} == polled(outcomes)


def test_an_append_whose_answer_was_lost_and_its_fallback_make_one_row_per_sample(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    local = steered_fleet()
    settled(local)
    appends = watch(local, monkeypatch)
    appends.fail = "after"  # written, but the page does not know
    published = len(telemetry(local))

    reconcile(local, 1)
    [(rows, _)] = appends.of(TELEMETRY_HISTORY.name)
    appended = history(local)
    appends.fail = None
    fallback = [m for m in telemetry(local)[published:] if m.attributes.get("record_only")]
    ingest(local, fallback)  # ingestion appends the same samples again

    assert len(fallback) == len(rows)
    assert history(local) == appended  # the same rows, none twice
    assert all((row["device_id"], row["sample_id"]) in appended for row in rows)


def test_a_page_that_fails_still_appends_the_polls_it_took(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from hpsteer.backends.local.store import LocalDocumentStore
    from hpsteer.errors import StoreUnavailable
    from tests.services.test_reconcile_concurrency import FailingUpdates

    store = FailingUpdates(LocalDocumentStore())
    local = steered_fleet(store)
    settled(local)
    broken = list(local.fleet)[7].home_id
    local.fleet.reboot(broken)  # drifts: its remediation's save fails
    store.failing.add(f"devices/{broken}")
    appends = watch(local, monkeypatch)

    with pytest.raises(StoreUnavailable):
        reconcile(local, WORKERS)

    [(rows, _)] = appends.of(TELEMETRY_HISTORY.name)
    assert len(rows) >= 5
    assert broken in {row["device_id"] for row in rows}  # its poll too, though not stored


def test_a_page_on_several_workers_appends_the_same_rows_as_on_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    alone, together = steered_fleet(), steered_fleet()
    settled(alone)
    settled(together)
    one, several = watch(alone, monkeypatch), watch(together, monkeypatch)

    reconcile(alone, 1)
    reconcile(together, WORKERS)

    [(rows_one, ids_one)] = one.of(TELEMETRY_HISTORY.name)
    [(rows_several, ids_several)] = several.of(TELEMETRY_HISTORY.name)  # one append all the same
    assert len(rows_one) >= 3
    by_id = dict(zip(ids_several, rows_several, strict=True))
    assert by_id == dict(zip(ids_one, rows_one, strict=True))  # in the order the devices finished
    assert history(together) == history(alone)
