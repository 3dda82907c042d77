"""Reconciliation's polls paid from bookings: one budget transaction per device and horizon on
the first delivery of a page of a scheduled tick, poll by poll otherwise, and never while the
manufacturer blocks the account.

A steered fleet of the three manufacturers on the local backends, with the real adapters,
breakers and budgets; the store counts the transactions that read an account's budget while
reconciliation runs (the command path's own, between the runs, are not counted).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import pytest

from hpsteer.adapters.budget import BOOKING_FIELD, Booking
from hpsteer.adapters.gateway import device_ref
from hpsteer.backends.local.store import LocalDocumentStore
from hpsteer.domain.actions import Mode
from hpsteer.domain.messages import ReconcileRequest, Topic
from hpsteer.errors import StoreUnavailable
from hpsteer.ports.store import Document, Transaction
from hpsteer.runtime.local_fleet import LocalFleet
from hpsteer.services.outbox import release_plan
from hpsteer.services.plans_store import make_current
from hpsteer.services.reconcile import DeviceOutcome, reconcile_context, reconcile_page
from hpsteer.sim.faults import FaultSpec

T = TypeVar("T")
T0 = datetime(2025, 1, 15, 6, tzinfo=UTC)
SLOT = T0 + timedelta(hours=1)
PLAN_END = T0 + timedelta(hours=12)
INTERVAL = timedelta(minutes=10)


class _Watched:
    """A transaction that notes the paths it reads."""

    def __init__(self, inner: Transaction, read: list[str]) -> None:
        self.inner = inner
        self.read = read

    def get(self, path: str) -> Document | None:
        self.read.append(path)
        return self.inner.get(path)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


class TallyStore:
    """The local store, counting (while ``counting``) the committed transactions that read an
    account's budget document; ``fail_done`` makes a page's done record fail (a page that
    fails after its polls, to be delivered again)."""

    def __init__(self) -> None:
        self.inner = LocalDocumentStore()
        self.counting = False
        self.budget_transactions = 0
        self.fail_done = False

    def run_transaction(self, fn: Callable[[Transaction], T], *, max_attempts: int = 5) -> T:
        read: list[str] = []

        def watched(tx: Transaction) -> T:
            read.clear()
            return fn(_Watched(tx, read))

        result = self.inner.run_transaction(watched, max_attempts=max_attempts)
        if self.counting and any("/accounts/" in path for path in read):
            self.budget_transactions += 1
        return result

    def set(self, path: str, data: Any, *, merge: bool = False) -> datetime:
        if self.fail_done and path.startswith("reconcile_runs/"):
            raise StoreUnavailable(f"{path}: the store did not answer")
        return self.inner.set(path, data, merge=merge)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


class Rig:
    def __init__(self, homes: int) -> None:
        self.store = TallyStore()
        self.local = LocalFleet.build(
            start=T0, homes=homes, seed=21, wrap_store=lambda _local: self.store
        )
        self.local.register_devices()
        for home in self.local.fleet:
            self.steer(home.home_id)
        self.ticked: list[datetime] = []

    @property
    def now(self) -> datetime:
        return self.local.clock.now()

    def steer(self, device_id: str) -> None:
        """A current plan: mid until 07:00, then max to its end (its command through dispatch)."""
        document: dict[str, Any] = {
            "plan_id": "p1",
            "device_id": device_id,
            "end_at": PLAN_END,
            "outbox": [
                {"at": SLOT.isoformat(), "action": "set_mode_max", "slot_index": 4}
                | {"status": "pending"}
            ],
        }
        store = self.local.deps.store
        store.set(f"devices/{device_id}/plans/p1", document)
        make_current(store, device_id, "p1", T0, T0, [(T0, Mode.MID), (SLOT, Mode.MAX)], PLAN_END)
        device = store.get(f"devices/{device_id}")
        assert device is not None
        release_plan(self.local.deps, device_id, device.data, document)

    def reconcile(self, at: datetime | None = None, shard_size: int = 100) -> list[DeviceOutcome]:
        """One page at ``at`` (the scheduler's tick; default now), counting its budget
        transactions."""
        request = ReconcileRequest(scheduled_at=at or self.now, shard_size=shard_size)
        self.store.counting = True
        try:
            return reconcile_page(
                request, self.local.deps, gateway=self.local.gateway, counters=self.local.metrics
            )
        finally:
            self.store.counting = False

    def ticks(self, until: datetime) -> Iterator[list[DeviceOutcome]]:
        """Reconcile on every tick of the schedule (the :x0 marks) up to ``until``, the tasks
        and messages between them delivered."""
        tick = self.now - timedelta(minutes=self.now.minute % 10, seconds=self.now.second)
        while (tick := tick + INTERVAL) <= until:
            self.local.run_until(tick)
            self.ticked.append(tick)
            yield self.reconcile()

    def on_stride(self, device_id: str, tick: datetime) -> bool:
        """Whether the device's poll stride has it polled at ``tick``."""
        document = self.local.deps.store.get(f"devices/{device_id}")
        assert document is not None
        ctx = reconcile_context(self.local.deps, tick, gateway=self.local.gateway)
        return ctx.poll_due(device_ref(device_id, document.data))

    def booking(self, device_id: str) -> Booking | None:
        document = self.local.deps.store.get(f"devices/{device_id}")
        assert document is not None
        return Booking.parse(document.data.get(BOOKING_FIELD))


def polled(outcomes: list[DeviceOutcome]) -> int:
    return sum(o.read for o in outcomes)


def test_a_steered_fleet_books_each_devices_polls_once_then_pays_them_with_no_transaction() -> None:
    r = Rig(homes=6)
    runs = list(r.ticks(SLOT + timedelta(hours=2)))
    polls = sum(polled(outcomes) for outcomes in runs)
    devices = {o.device_id for outcomes in runs for o in outcomes if o.read}
    assert len(devices) == 6
    assert polls > 6 * 6  # ViCare and myUplink every tick, Onecta every third, for 3 hours
    checks = sum(
        1
        for tick, outcomes in zip(r.ticked, runs, strict=True)
        for o in outcomes
        if o.read and not r.on_stride(o.device_id, tick)
    )
    assert checks > 0  # Onecta read off its stride after its commands' windows
    # Each device's first poll booked ahead; each post-command check paid on its own, from the
    # command share.
    assert r.store.budget_transactions == len(devices) + checks
    for device_id in devices:
        booking = r.booking(device_id)
        assert booking is not None
        assert booking.ends_at > r.now


def test_a_page_delivered_again_after_it_failed_pays_its_polls_one_by_one() -> None:
    r = Rig(homes=6)
    list(r.ticks(SLOT + timedelta(minutes=40)))
    tick = SLOT + timedelta(minutes=50)
    r.local.run_until(tick)
    booked = {home.home_id: r.booking(home.home_id) for home in r.local.fleet}
    r.store.budget_transactions = 0
    r.store.fail_done = True
    with pytest.raises(StoreUnavailable):
        r.reconcile(tick)  # polled, on the bookings, then failed before its done record
    assert r.store.budget_transactions == 0
    r.store.fail_done = False

    again = r.reconcile(tick)

    assert polled(again) > 0
    assert r.store.budget_transactions == polled(again)  # no booking pays a second poll
    assert {home.home_id: r.booking(home.home_id) for home in r.local.fleet} == booked


def test_a_tick_off_the_schedules_grid_pays_its_polls_one_by_one() -> None:
    """A scheduler's duplicate published in the next minute is a tick of its own: it polls, but
    nothing booked for the schedule's ticks pays for it."""
    r = Rig(homes=6)
    list(r.ticks(SLOT + timedelta(minutes=40)))
    r.local.run_until(SLOT + timedelta(minutes=41))
    r.store.budget_transactions = 0
    outcomes = r.reconcile()
    assert polled(outcomes) > 0
    assert r.store.budget_transactions == polled(outcomes)


def test_a_page_delivered_again_continues_the_chain_its_first_delivery_started() -> None:
    """The next page's cursor is recorded with the page's claim: a redelivery whose query finds
    other devices publishes the same next page, so no page of the tick starts twice with devices
    another first delivery already polled on their bookings."""
    r = Rig(homes=5)
    list(r.ticks(SLOT + timedelta(minutes=40)))
    tick = SLOT + timedelta(minutes=50)
    r.local.run_until(tick)
    bus: Any = r.local.deps.bus
    topic = Topic.RECONCILE_REQUESTS.value

    def cursors() -> list[str | None]:
        return [ReconcileRequest.parse_json(m.data).shard_cursor for m in bus.published(topic)]

    before = len(cursors())
    r.store.fail_done = True
    with pytest.raises(StoreUnavailable):
        r.reconcile(tick, shard_size=2)
    first = cursors()[before:]
    first_two = sorted(home.home_id for home in r.local.fleet)[:2]
    r.local.deps.store.set(f"devices/{first_two[0]}a", {"manufacturer": "viessmann"})
    r.store.fail_done = False

    again = r.reconcile(tick, shard_size=2)

    assert [o.device_id for o in again] == [first_two[0], f"{first_two[0]}a"]
    assert len(first) == 1
    assert cursors()[before + 1 :] == first


def test_booked_polls_stop_while_the_manufacturer_blocks_the_account() -> None:
    r = Rig(homes=3)
    list(r.ticks(SLOT + timedelta(minutes=40)))
    home = next(h for h in r.local.fleet if h.manufacturer == "viessmann")
    assert r.booking(home.home_id) is not None
    faults = r.local.fleet.faults
    faults.set_device(home.home_id, FaultSpec(rate_limit_rate=1.0, retry_after_s=3600))
    blocked = SLOT + timedelta(minutes=50)
    r.local.run_until(blocked)
    r.store.budget_transactions = 0
    assert by_device(r.reconcile())[home.home_id].actions == ("OemRateLimited",)  # the 429
    faults.set_device(home.home_id, FaultSpec())  # the manufacturer would answer again
    booking = r.booking(home.home_id)
    assert booking is not None
    assert booking.blocked_until == blocked + timedelta(hours=1)

    during = [
        by_device(outcomes)[home.home_id].actions
        for outcomes in r.ticks(blocked + timedelta(hours=1, minutes=20))
    ]
    assert during[:5] == [("OemRateLimited",)] * 5  # refused before any call, and no transaction
    assert ("InSync",) in during[5:]  # polled again on the same booking once the block ended
    assert r.store.budget_transactions == 1  # the 429's own block


def by_device(outcomes: list[DeviceOutcome]) -> dict[str, DeviceOutcome]:
    return {o.device_id: o for o in outcomes}
