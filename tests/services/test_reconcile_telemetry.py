"""Reconciliation stores its polls worth storing itself, as ingestion stores a sample.

The page's query has just read each device document, so a poll worth storing against it is
written with one update conditional on that read (:func:`~hpsteer.services.ingest_telemetry.
store_sample`), not published on ``device-telemetry`` for ``ingest_telemetry`` to read the device
again; a document written in between falls back to ingestion's transaction. Every poll, stored or
not, goes to the page's one history append.

Local backends over the simulated fleet: three homes (one per manufacturer), each with a current
plan holding it in ``mid`` (its own control) all day, polled every run.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from hpsteer.adapters.protocol import DeviceRef, DeviceState
from hpsteer.backends.local.store import LocalDocumentStore
from hpsteer.domain.actions import Mode
from hpsteer.domain.messages import ReconcileRequest, ReplanRequest, Topic
from hpsteer.domain.plan_track import IndoorTrack
from hpsteer.domain.telemetry import TelemetrySample, TelemetrySource
from hpsteer.errors import StoreUnavailable
from hpsteer.ports.clock import SimulatedClock
from hpsteer.ports.store import Document, DocumentStore, Transaction
from hpsteer.runtime import bootstrap
from hpsteer.runtime.bootstrap import Dependencies
from hpsteer.runtime.local_fleet import LocalFleet
from hpsteer.services.ingest_telemetry import (
    TELEMETRY_HISTORY,
    ingest_sample,
    store_sample,
    telemetry_options,
)
from hpsteer.services.plans_store import make_current
from hpsteer.services.reconcile import DeviceOutcome, reconcile_page
from hpsteer.sim.fleet import Home
from tests.services.test_reconcile_concurrency import FailingUpdates

T0 = datetime(2025, 1, 15, 6, tzinfo=UTC)
PLAN_END = T0 + timedelta(hours=18)
INTERVAL = timedelta(minutes=10)
FIRST_PAGE = T0 + timedelta(minutes=31)  # off the scheduler's grid: polls paid one by one
ON_PLAN = IndoorTrack.of_slots(T0, timedelta(hours=1), [21.0] * 18)
OFF_PLAN = IndoorTrack.of_slots(T0, timedelta(hours=1), [15.0] * 18)  # the homes keep ~22 °C


class Counting:
    """A store that counts transactions and conditional updates of device documents, and can
    raise on the writes of ``failing`` paths (:class:`FailingUpdates`)."""

    def __init__(self, inner: DocumentStore) -> None:
        self.inner = FailingUpdates(inner)
        self.transactions = 0
        """Transactions that read a device document (not the budgets' nor the run records')."""
        self.conditional_updates = 0
        """Updates of a device document on a condition (not the credentials')."""

    @property
    def failing(self) -> set[str]:
        return self.inner.failing

    def run_transaction(self, fn: Callable[[Transaction], Any], **kwargs: Any) -> Any:
        read: set[str] = set()

        def watched(tx: Transaction) -> Any:
            get = tx.get

            def getting(path: str) -> Document | None:
                read.add(path)
                return get(path)

            tx.get = getting  # type: ignore[method-assign]
            return fn(tx)

        try:
            return self.inner.run_transaction(watched, **kwargs)
        finally:
            if any(p.startswith("devices/") and p.count("/") == 1 for p in read):
                self.transactions += 1

    def update(self, path: str, changes: Any, **kwargs: Any) -> datetime:
        if kwargs.get("if_update_time") is not None and path.startswith("devices/"):
            self.conditional_updates += 1
        return self.inner.update(path, changes, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


class Rig:
    def __init__(self, track: IndoorTrack = ON_PLAN) -> None:
        self.store = Counting(LocalDocumentStore())
        store = self.store
        self.local = LocalFleet.build(start=T0, homes=3, seed=21, wrap_store=lambda _: store)
        self.local.register_devices()
        for home in self.local.fleet:
            make_current(
                self.local.deps.store,
                home.home_id,
                "p1",
                T0,
                T0,
                [(T0, Mode.MID)],
                PLAN_END,
                track,
            )
        self.local.run_until(FIRST_PAGE)
        self.appends: list[tuple[list[Mapping[str, Any]], list[str]]] = []
        analytics = self.local.deps.analytics
        append = analytics.append

        def appending(
            table: str, rows: Sequence[Mapping[str, Any]], insert_ids: Sequence[str]
        ) -> None:
            append(table, rows, insert_ids)
            if table == TELEMETRY_HISTORY.name:
                self.appends.append((list(rows), list(insert_ids)))

        analytics.append = appending  # type: ignore[method-assign]
        self.store.transactions = self.store.conditional_updates = 0  # the setup's not counted

    @property
    def now(self) -> datetime:
        return self.local.clock.now()

    def home(self, manufacturer: str = "viessmann") -> Home:
        return next(h for h in self.local.fleet if h.manufacturer == manufacturer)

    def reconcile(self, scheduled_at: datetime | None = None) -> dict[str, DeviceOutcome]:
        request = ReconcileRequest(scheduled_at=scheduled_at or self.now, shard_size=100)
        outcomes = reconcile_page(
            request, self.local.deps, gateway=self.local.gateway, counters=self.local.metrics
        )
        return {o.device_id: o for o in outcomes}

    def next_run(self) -> dict[str, DeviceOutcome]:
        self.local.run_until(self.now + INTERVAL)
        return self.reconcile()

    def device(self, home: Home) -> Document:
        found = self.local.deps.store.get(f"devices/{home.home_id}")
        assert found is not None
        return found

    def published(self, topic: Topic) -> list[Any]:
        bus: Any = self.local.deps.bus
        return list(bus.published(topic.value))

    def history(self, home: Home) -> list[str]:
        self.local.deps.analytics.ensure_table(TELEMETRY_HISTORY)
        rows = self.local.deps.analytics.query(
            "SELECT sample_id FROM `telemetry_history` WHERE device_id = @device",
            {"device": home.home_id},
        )
        return [row["sample_id"] for row in rows]

    def on_poll(self, home: Home, then: Callable[[DeviceState], DeviceState | None]) -> None:
        """Call ``then`` with each state read of ``home``, after the page's query read its
        document and before reconciliation stores the poll; ``then`` may change the state."""
        gateway = self.local.gateway
        read = gateway.read_state

        def reading(device: DeviceRef, **kwargs: Any) -> DeviceState:
            state = read(device, **kwargs)
            if device.device_id != home.home_id:
                return state
            return then(state) or state

        gateway.read_state = reading  # type: ignore[method-assign]


def sample_id(home: Home, at: datetime) -> str:
    return f"{home.home_id}@{at.strftime('%Y-%m-%dT%H:%M:%SZ')}"


def test_a_poll_worth_storing_is_stored_by_one_conditional_update_with_no_message() -> None:
    r = Rig()
    home = r.home()

    outcome = r.reconcile()[home.home_id]

    assert outcome.read is True
    stored = r.device(home).data["last_telemetry"]
    assert stored["sample_id"] == sample_id(home, FIRST_PAGE)
    assert stored["source"] == "poll"
    assert stored["stored_at"] == FIRST_PAGE
    assert r.store.conditional_updates == len(r.local.fleet)  # one per device, nothing else
    assert r.store.transactions == 0  # no booking on this page, no fallback
    assert r.published(Topic.DEVICE_TELEMETRY) == []
    [(_, ids)] = r.appends
    assert f"{home.home_id}/{stored['sample_id']}" in ids


def test_a_poll_not_worth_storing_is_recorded_only_and_writes_nothing() -> None:
    r = Rig()
    home = r.home()
    r.reconcile()
    before = r.device(home)
    updates = r.store.conditional_updates

    r.next_run()

    assert r.device(home).update_time == before.update_time
    assert r.store.conditional_updates == updates
    assert sample_id(home, r.now) in r.history(home)


def test_a_home_off_its_plan_stores_the_drift_and_asks_one_replan() -> None:
    r = Rig(OFF_PLAN)
    home = r.home()

    r.reconcile()
    r.next_run()
    r.next_run()  # still off the plan, within the hour's cooldown

    mine = [
        ReplanRequest.parse_json(m.data)
        for m in r.published(Topic.REPLAN_REQUESTS)
        if ReplanRequest.parse_json(m.data).device_id == home.home_id
    ]
    assert len(mine) == 1
    assert "off plan p1" in mine[0].reason
    document = r.device(home).data
    assert document["drift_replan"]["plan_id"] == "p1"
    assert document["drift_replan"]["observed_at"] == FIRST_PAGE
    assert document["drift_replan"]["predicted_c"] == 15.0
    assert document["last_telemetry"]["sample_id"] == sample_id(home, FIRST_PAGE)
    assert r.published(Topic.DEVICE_TELEMETRY) == []


def test_a_newer_pushed_sample_stored_between_the_pages_read_and_the_write_stays() -> None:
    r = Rig()
    home = r.home()
    pushed = TelemetrySample(
        sample_id="evt-7",
        device_id=home.home_id,
        observed_at=FIRST_PAGE + timedelta(seconds=30),
        source=TelemetrySource.WEBHOOK,
        manufacturer=home.manufacturer,
        observed_mode=Mode.MID,
        indoor_temp_c=21.5,
        online=True,
    )

    def webhook_first(state: DeviceState) -> None:
        assert ingest_sample(pushed, r.local.deps) is True  # ingestion stores it meanwhile

    r.on_poll(home, webhook_first)
    outcome = r.reconcile()[home.home_id]

    assert outcome.error is None
    stored = r.device(home).data["last_telemetry"]
    assert stored["sample_id"] == "evt-7"  # the older poll did not move the state back
    assert sample_id(home, FIRST_PAGE) in r.history(home)  # but is recorded
    assert r.store.transactions == 2  # ingestion's, and the poll's fallback


def test_a_poll_is_stored_by_the_transaction_when_another_writer_changed_the_document() -> None:
    r = Rig()
    home = r.home()
    path = f"devices/{home.home_id}"

    def operator_first(state: DeviceState) -> None:
        r.local.deps.store.update(path, {"updated_by": "ops@example.com"})

    r.on_poll(home, operator_first)
    r.reconcile()

    document = r.device(home).data
    assert document["last_telemetry"]["sample_id"] == sample_id(home, FIRST_PAGE)
    assert document["updated_by"] == "ops@example.com"
    assert r.store.transactions == 1  # only that device's poll fell back


def test_a_store_failure_keeps_the_poll_in_the_history_and_the_devices_outcome(
    caplog: pytest.LogCaptureFixture,
) -> None:
    r = Rig()
    home = r.home()
    first = {d: o.actions for d, o in r.reconcile().items()}
    r.local.deps.store.update(f"devices/{home.home_id}", {"last_telemetry.observed_mode": "max"})
    before = r.device(home)
    r.store.failing.add(f"devices/{home.home_id}")

    with caplog.at_level(logging.WARNING, logger="hpsteer.services.reconcile"):
        outcomes = r.next_run()

    assert outcomes[home.home_id].actions == first[home.home_id] == ("InSync",)
    assert outcomes[home.home_id].error is None
    assert r.device(home).update_time == before.update_time  # nothing stored
    [(_, ids)] = r.appends[1:]
    assert f"{home.home_id}/{sample_id(home, r.now)}" in ids
    [warning] = [rec for rec in caplog.records if "not stored" in rec.getMessage()]
    assert home.home_id in warning.getMessage()
    assert "StoreUnavailable" in warning.getMessage()
    assert len(r.local.deps.store.query("reconcile_runs").documents) == 2  # both pages done


def test_a_polled_state_from_the_future_is_neither_stored_nor_recorded(
    caplog: pytest.LogCaptureFixture,
) -> None:
    r = Rig()
    home = r.home()
    ahead = FIRST_PAGE + timedelta(minutes=6)  # beyond the 5 minutes of clock skew allowed

    r.on_poll(home, lambda state: dataclasses.replace(state, observed_at=ahead))
    with caplog.at_level(logging.WARNING, logger="hpsteer.services.reconcile"):
        r.reconcile()

    assert "last_telemetry" not in r.device(home).data
    assert r.history(home) == []
    assert any(
        "refused" in rec.getMessage() and home.home_id in rec.getMessage() for rec in caplog.records
    )


def test_a_redelivered_page_records_each_poll_once_and_stores_it_once() -> None:
    r = Rig()
    home = r.home()
    store = r.local.deps.store
    set_document = store.set
    lost: list[str] = []

    def run_record_lost(path: str, data: Any, **kwargs: Any) -> datetime:
        if path.startswith("reconcile_runs/") and not lost:
            lost.append(path)
            raise StoreUnavailable("the run record's write did not answer")
        return set_document(path, data, **kwargs)

    r.store.inner.set = run_record_lost  # type: ignore[attr-defined]
    with pytest.raises(StoreUnavailable):
        r.reconcile()
    stored = r.device(home)

    again = r.reconcile()  # Pub/Sub delivers the page again, at the same instant

    assert again[home.home_id].read is True  # polled again: a claimed page is reconciled again
    assert r.device(home).update_time == stored.update_time  # the same poll: not stored twice
    assert r.history(home) == [sample_id(home, FIRST_PAGE)]  # one row (insert ids)
    assert len(r.appends) == 2


def test_a_device_read_by_a_query_is_written_on_that_reads_update_time_without_a_transaction(
    document_store: DocumentStore,
) -> None:
    """What reconciliation relies on, on Firestore too: a query's ``update_time`` is the
    document's own, so the conditional update holds when nothing wrote in between; once
    something did, the transaction stores the sample instead."""
    store = Counting(document_store)
    local = bootstrap.local(clock=SimulatedClock(FIRST_PAGE))
    deps = Dependencies(
        local.settings,
        local.clock,
        store=lambda: store,
        bus=lambda: local.bus,
        tasks=lambda: local.tasks,
        analytics=lambda: local.analytics,
        secrets=lambda: local.secrets,
    )
    options = telemetry_options(deps.settings)
    store.set("devices/d1", {"manufacturer": "viessmann", "steering_enabled": True})
    [read] = store.query("devices").documents

    def polled(at: datetime) -> TelemetrySample:
        return TelemetrySample(
            sample_id=f"d1@{at.isoformat()}",
            device_id="d1",
            observed_at=at,
            source=TelemetrySource.POLL,
            manufacturer="viessmann",
            observed_mode=Mode.MID,
            online=True,
        )

    first = polled(FIRST_PAGE - timedelta(hours=2))
    assert store_sample(deps, first, options, read=(read.data, read.update_time)) is True
    assert (store.conditional_updates, store.transactions) == (1, 0)

    later = polled(FIRST_PAGE)  # judged on the same, now stale, read
    assert store_sample(deps, later, options, read=(read.data, read.update_time)) is True
    assert (store.conditional_updates, store.transactions) == (2, 1)
    stored = store.get("devices/d1")
    assert stored is not None
    assert stored.data["last_telemetry"]["sample_id"] == later.sample_id

    assert store_sample(deps, first, options, read=(read.data, read.update_time)) is False
    stored_again = store.get("devices/d1")
    assert stored_again is not None
    assert stored_again.data["last_telemetry"]["sample_id"] == later.sample_id  # never back
