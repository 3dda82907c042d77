"""Bookings: calls on a schedule paid ahead, without a store operation per call, and the budget's
promises kept all the same (never over any window, shares apart, state shared, blocks honoured).

Each test runs against the in-process store and against Firestore on its emulator.
"""

from __future__ import annotations

import random
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from benchmarks.bookkeeping import CountingStore
from hpsteer.adapters.budget import (
    BOOKING_FIELD,
    MIN_BOOKED_SLOTS,
    Booking,
    RateBudget,
    Schedule,
)
from hpsteer.adapters.protocol import RateLimitConfig, RateWindow
from hpsteer.backends.local.store import LocalDocumentStore
from hpsteer.errors import ConcurrencyConflict, InvalidInput, OemRateLimited
from hpsteer.ports.clock import SimulatedClock
from hpsteer.ports.store import DocumentStore
from tests.support.budgets import VICARE

T0 = datetime(2024, 1, 15, 6, 0, tzinfo=UTC)
INTERVAL = timedelta(minutes=10)
ONECTA = RateLimitConfig(
    windows=(
        RateWindow(limit=20, window=timedelta(minutes=1)),
        RateWindow(limit=200, window=timedelta(hours=24)),
    ),
    read_share=0.3,
)
"""Onecta: 6 reads a minute and 60 a day are the read share."""
HOLDER = "devices/d1"


@pytest.fixture
def clock() -> SimulatedClock:
    return SimulatedClock(T0)


def _budget(
    store: DocumentStore, clock: SimulatedClock, limits: RateLimitConfig = VICARE
) -> RateBudget:
    return RateBudget(store, "viessmann", "a1", limits, clock)


def _device(store: DocumentStore, path: str = HOLDER) -> None:
    store.set(path, {"manufacturer": "viessmann", "account_id": "a1"})


def _held(store: DocumentStore, path: str = HOLDER) -> Any:
    document = store.get(path)
    return None if document is None else document.data.get(BOOKING_FIELD)


def _schedule(
    store: DocumentStore,
    at: datetime,
    *,
    stride: int = 1,
    horizon: timedelta = timedelta(hours=12),
    holder: str = HOLDER,
) -> Schedule:
    """The device's polls from ``at``, as reconciliation schedules them, with what its document
    holds now (what a page reads before it polls)."""
    return Schedule(
        at=at,
        period=INTERVAL * stride,
        span=INTERVAL / 2,
        horizon=horizon,
        holder=holder,
        held=_held(store, holder),
    )


def _most_in_any_window(times: list[datetime], window: timedelta) -> int:
    """The most calls in any window of this length (every window's count peaks at a call)."""
    return max((sum(1 for s in times if t - window < s <= t) for t in times), default=0)


def test_the_first_poll_books_the_schedule_and_the_next_ones_cost_no_store_operation(
    document_store: DocumentStore, clock: SimulatedClock
) -> None:
    _device(document_store)
    counting = CountingStore(document_store)
    budget = _budget(counting, clock)
    booking = budget.take_scheduled("read", 1, _schedule(document_store, T0))
    assert booking is not None
    assert (booking.first_at, booking.period, booking.slots) == (T0, INTERVAL, 72)
    assert (counting.transactions, counting.writes) == (1, 2)  # the account's and the device's
    assert _held(document_store) == booking.to_document()
    assert [b.booking_id for b in budget.bookings()] == [booking.booking_id]

    before = (counting.reads, counting.writes, counting.transactions)
    for tick in range(1, 72):
        at = T0 + tick * INTERVAL
        clock.advance_to(at + timedelta(seconds=40))  # the page polls a little after its tick
        assert budget.take_scheduled("read", 1, _schedule(document_store, at)) == booking
    assert (counting.reads, counting.writes, counting.transactions) == before

    clock.advance_to(T0 + 72 * INTERVAL)  # the booking is used up: the next poll books again
    renewed = budget.take_scheduled("read", 1, _schedule(document_store, clock.now()))
    assert renewed is not None
    assert renewed.first_at == T0 + 72 * INTERVAL
    assert counting.transactions == before[2] + 1


def test_booked_instants_count_in_every_window_as_the_calls_they_pay_for(
    document_store: DocumentStore, clock: SimulatedClock
) -> None:
    _device(document_store)
    budget = _budget(document_store, clock)
    budget.take_scheduled("read", 1, _schedule(document_store, T0))
    # The booked poll of 06:10 may be made until 06:15: windows ending 06:10-06:25 count it,
    # as they count the one of 06:00 until 06:15; the day counts all 72 from 06:00 on.
    assert budget.usage("read") == {"600s": 1, "86400s": 1}
    clock.advance_to(T0 + timedelta(minutes=12))
    assert budget.usage("read") == {"600s": 2, "86400s": 2}
    clock.advance_to(T0 + timedelta(hours=13))
    assert budget.usage("read") == {"600s": 0, "86400s": 72}


@pytest.mark.parametrize("seed", [7, 8, 9])
def test_polls_paid_by_bookings_and_one_by_one_never_exceed_any_window_of_the_read_share(
    clock: SimulatedClock, seed: int
) -> None:
    """Six devices of one account (more than its read share can poll every interval), polled on
    their schedules at random moments of their spans, sometimes late or not at all, among reads
    counted one by one: the calls made never exceed the read share of any window, whatever the
    window's alignment, and commands keep their own share. (Thousands of calls: the local store
    only.)"""
    store = LocalDocumentStore()
    rng = random.Random(seed)
    devices = [f"devices/d{i}" for i in range(6)]
    for path in devices:
        _device(store, path)
    budget = _budget(store, clock)
    strides = {path: 1 + i % 3 for i, path in enumerate(devices)}
    reads: list[datetime] = []
    commands: list[datetime] = []
    booked = 0
    for tick in range(int(timedelta(hours=30) / INTERVAL)):
        at = T0 + tick * INTERVAL
        for path in rng.sample(devices, len(devices)):
            if tick % strides[path] or rng.random() < 0.1:
                continue  # not its turn, or fresh telemetry: its instant goes unused
            late = rng.random() < 0.05  # past its span, before the next tick
            moment = at + rng.uniform(0, 0.7 if late else 0.49) * INTERVAL
            clock.advance_to(max(clock.now(), moment))
            schedule = _schedule(store, at, stride=strides[path], holder=path)
            try:
                booking = budget.take_scheduled("read", 1, schedule)
            except OemRateLimited:
                continue
            reads.append(clock.now())
            booked += booking is not None
        for _ in range(rng.randrange(4)):  # reads and commands off any schedule
            try:
                budget.acquire_all({"read": 1} if rng.random() < 0.5 else {"command": 2})
            except OemRateLimited:
                continue
            if rng.random() < 0.5:
                reads.append(clock.now())
            else:
                commands += [clock.now(), clock.now()]
    assert booked > len(reads) / 2  # most polls were paid ahead
    for plan in budget.plans:
        assert _most_in_any_window(reads, plan.window) <= plan.read_cap
        assert _most_in_any_window(commands, plan.window) <= plan.command_cap
    assert len(reads) > 435  # the day's read share was reached, and held


def test_a_poll_too_late_for_its_span_is_counted_on_its_own(
    document_store: DocumentStore, clock: SimulatedClock
) -> None:
    _device(document_store)
    counting = CountingStore(document_store)
    budget = _budget(counting, clock)
    budget.take_scheduled("read", 1, _schedule(document_store, T0))
    clock.advance_to(T0 + INTERVAL + INTERVAL / 2)  # the 06:10 poll, five minutes late
    transactions = counting.transactions
    assert budget.take_scheduled("read", 1, _schedule(document_store, T0 + INTERVAL)) is None
    assert counting.transactions == transactions + 1
    assert len(budget.bookings()) == 1  # no new booking for a late poll
    clock.advance_to(T0 + INTERVAL * 2)
    assert budget.usage("read")["600s"] == 3  # 06:10 and 06:20 booked, the late one counted


def test_a_changed_schedule_books_anew_and_the_old_booking_stays_counted_until_it_ends(
    document_store: DocumentStore, clock: SimulatedClock
) -> None:
    _device(document_store)
    budget = _budget(document_store, clock, ONECTA)
    budget.take_scheduled("read", 1, _schedule(document_store, T0, stride=3))
    clock.advance_to(T0 + INTERVAL)  # a tick the booking (every 30 minutes) has no instant for
    moved = budget.take_scheduled("read", 1, _schedule(document_store, T0 + INTERVAL, stride=3))
    assert moved is not None
    assert moved.first_at == T0 + INTERVAL
    assert len(budget.bookings()) == 2
    assert budget.usage("read")["86400s"] == 2  # both first instants: 06:00 and 06:10


def _spend_reads(budget: RateBudget, clock: SimulatedClock, n: int) -> None:
    """``n`` reads counted one by one, five at a time (Onecta's minute takes six), each five
    past the minute that counts them (a minute and one of its six-second buckets)."""
    while n > 0:
        budget.acquire("read", min(5, n))
        n -= min(5, n)
        clock.advance(timedelta(seconds=70))


def test_a_booking_takes_the_instants_that_fit_of_those_asked(
    document_store: DocumentStore, clock: SimulatedClock
) -> None:
    _device(document_store)
    budget = _budget(document_store, clock, ONECTA)
    _spend_reads(budget, clock, 50)  # of the day's 60
    clock.advance_to(T0 + timedelta(hours=1))
    booking = budget.take_scheduled("read", 1, _schedule(document_store, clock.now(), stride=3))
    assert booking is not None
    assert booking.slots == 10  # 24 were asked (12 hours at every third tick)
    with pytest.raises(OemRateLimited):
        budget.acquire("read")


def test_a_booking_of_fewer_than_two_instants_is_not_made_the_poll_is_counted_on_its_own(
    document_store: DocumentStore, clock: SimulatedClock
) -> None:
    _device(document_store)
    budget = _budget(document_store, clock, ONECTA)
    _spend_reads(budget, clock, 60 - MIN_BOOKED_SLOTS + 1)
    clock.advance_to(T0 + timedelta(hours=1))
    alone = budget.take_scheduled("read", 1, _schedule(document_store, clock.now(), stride=3))
    assert alone is None
    assert _held(document_store) is None
    assert budget.bookings() == []
    assert budget.usage("read")["86400s"] == 60
    with pytest.raises(OemRateLimited) as refused:
        budget.take_scheduled("read", 1, _schedule(document_store, clock.now(), stride=3))
    assert refused.value.retry_at == T0 + timedelta(hours=25)  # the 06:00 bucket's reads leave


def test_reads_refused_for_instants_booked_ahead_may_retry_when_they_say(
    document_store: DocumentStore, clock: SimulatedClock
) -> None:
    _device(document_store)
    budget = _budget(document_store, clock, ONECTA)
    budget.take_scheduled("read", 1, _schedule(document_store, T0, stride=3))
    spent = 0
    while True:
        try:
            budget.acquire("read")
        except OemRateLimited as refusal:
            retry_at = refusal.retry_at
            break
        spent += 1
        clock.advance(timedelta(seconds=20))  # three a minute: only the day binds
    assert spent == 60 - 24  # what the 24 booked polls leave of the day
    assert retry_at is not None
    clock.advance_to(retry_at)
    budget.acquire("read")


def test_commands_keep_their_whole_share_while_reads_are_booked(
    document_store: DocumentStore, clock: SimulatedClock
) -> None:
    _device(document_store)
    budget = _budget(document_store, clock)
    budget.take_scheduled("read", 1, _schedule(document_store, T0))
    budget.acquire("command", 84)
    with pytest.raises(OemRateLimited, match="84 of 84 commands"):
        budget.acquire("command")


def test_a_booking_pays_only_for_its_own_account_holder_and_size(
    document_store: DocumentStore, clock: SimulatedClock
) -> None:
    _device(document_store)
    counting = CountingStore(document_store)
    budget = _budget(counting, clock)
    budget.take_scheduled("read", 1, _schedule(document_store, T0))
    clock.advance_to(T0 + INTERVAL)
    held = _schedule(document_store, clock.now())  # covers 06:10 for a1, d1, one call
    elsewhere = Schedule(**{**_fields(held), "holder": "devices/d9"})
    other_account = RateBudget(counting, "viessmann", "a2", VICARE, clock)
    transactions = counting.transactions
    other_account.take_scheduled("read", 1, held)
    budget.take_scheduled("read", 2, held)
    budget.take_scheduled("read", 1, elsewhere)
    assert counting.transactions == transactions + 3


def _fields(schedule: Schedule) -> dict[str, Any]:
    return {name: getattr(schedule, name) for name in Schedule.__dataclass_fields__}


def test_another_instance_takes_up_the_booking_just_made_instead_of_booking_again(
    document_store: DocumentStore, clock: SimulatedClock
) -> None:
    _device(document_store)
    first, second = _budget(document_store, clock), _budget(document_store, clock)
    read_before = _schedule(document_store, T0)  # both read the device before either booked
    booked = first.take_scheduled("read", 1, read_before)
    assert second.take_scheduled("read", 1, read_before) == booked
    assert len(first.bookings()) == 1


def test_devices_of_one_account_booking_at_once_never_book_past_the_share(
    document_store: DocumentStore, clock: SimulatedClock
) -> None:
    """Threads booking devices of one account at once (a page's workers): the transactions
    serialise on the account's document, and the day's share (60 reads, 24 asked per device)
    holds: two devices get all they asked, the third what is left, the others are refused."""
    threads = 6 if isinstance(document_store, LocalDocumentStore) else 3
    devices = [f"devices/d{i}" for i in range(threads)]
    for path in devices:
        _device(document_store, path)
    budget = RateBudget(document_store, "viessmann", "a1", ONECTA, clock, max_attempts=20)
    start = threading.Barrier(threads, timeout=30)
    outcomes: list[str] = []
    errors: list[BaseException] = []

    def poll(path: str) -> None:
        schedule = _schedule(document_store, T0, stride=3, holder=path)
        try:
            start.wait()
            while True:
                try:
                    booking = budget.take_scheduled("read", 1, schedule)
                except ConcurrencyConflict:
                    continue
                except OemRateLimited:
                    outcomes.append("refused")
                    return
                outcomes.append("counted" if booking is None else "booked")
                return
        except BaseException as err:  # noqa: BLE001 - reported to the main thread below
            errors.append(err)

    pool = [threading.Thread(target=poll, args=(path,)) for path in devices]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join(timeout=120)
    assert errors == []
    assert sorted(b.slots for b in budget.bookings()) == [12, 24, 24]
    assert sorted(outcomes) == ["booked"] * 3 + ["refused"] * (threads - 3)
    assert budget.usage("read")["86400s"] == 3  # each booked device's first poll, once


def test_a_block_reported_by_the_manufacturer_stops_booked_polls_until_it_ends(
    document_store: DocumentStore, clock: SimulatedClock
) -> None:
    _device(document_store)
    counting = CountingStore(document_store)
    budget = _budget(counting, clock)
    budget.take_scheduled("read", 1, _schedule(document_store, T0))
    until = T0 + timedelta(hours=2)
    budget.block_until(until, "ViCare 429")
    held = Booking.parse(_held(document_store))
    assert held is not None
    assert held.blocked_until == until
    clock.advance_to(T0 + INTERVAL)
    transactions = counting.transactions
    with pytest.raises(OemRateLimited) as refused:
        budget.take_scheduled("read", 1, _schedule(document_store, clock.now()))
    assert refused.value.retry_at == until
    clock.advance_to(until)
    budget.take_scheduled("read", 1, _schedule(document_store, clock.now()))
    assert counting.transactions == transactions  # refused, then paid, from the device's copy


def test_a_booking_is_forgotten_once_no_window_can_count_it(
    document_store: DocumentStore, clock: SimulatedClock
) -> None:
    _device(document_store)
    budget = _budget(document_store, clock)
    booking = budget.take_scheduled("read", 1, _schedule(document_store, T0))
    assert booking is not None
    clock.advance_to(booking.ends_at + timedelta(hours=24) - timedelta(seconds=1))
    budget.acquire("command")
    assert len(budget.bookings()) == 1  # the day still counts its last instant
    clock.advance(timedelta(seconds=1))
    budget.acquire("command")
    assert budget.bookings() == []
    assert budget.usage("read") == {"600s": 0, "86400s": 0}


def test_a_schedule_that_cannot_be_booked_is_refused(clock: SimulatedClock) -> None:
    for period, span, horizon in [
        (INTERVAL, INTERVAL * 2, timedelta(hours=1)),  # a span longer than the period
        (INTERVAL, INTERVAL / 2, INTERVAL / 2),  # a horizon shorter than a period
        (timedelta(seconds=0.5), timedelta(seconds=0.5), timedelta(hours=1)),
    ]:
        with pytest.raises(InvalidInput):
            Schedule(at=T0, period=period, span=span, horizon=horizon, holder=HOLDER)
