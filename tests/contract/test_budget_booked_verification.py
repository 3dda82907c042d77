"""A command's verification read booked with its send: :meth:`RateBudget.acquire_and_book` counts
the calls of now and books one later instant in one write of the account's document, never over
any window; :meth:`RateBudget.take_booked` pays the booked call with no store operation, and a
block reaches it through the document the booking names (``marked_on``), never its holder's.

Each test runs against the in-process store and against Firestore on its emulator.
"""

from __future__ import annotations

import heapq
import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from benchmarks.bookkeeping import CountingStore
from hpsteer.adapters.budget import BLOCKED_FIELD, BookedCall, Booking, BudgetKind, RateBudget
from hpsteer.adapters.protocol import RateLimitConfig, RateWindow
from hpsteer.errors import InvalidInput, OemRateLimited
from hpsteer.ports.clock import SimulatedClock
from hpsteer.ports.store import DocumentStore
from tests.support.budgets import VICARE

T0 = datetime(2024, 1, 15, 6, 0, tzinfo=UTC)
DELAY = timedelta(minutes=10)
SPAN = timedelta(minutes=5)
HOLDER = "devices/d1/commands/c1"
DEVICE = "devices/d1"
SEND: dict[BudgetKind, int] = {"command": 2}
"""A send and its translation's read."""


@pytest.fixture
def clock() -> SimulatedClock:
    return SimulatedClock(T0)


def _budget(
    store: DocumentStore, clock: SimulatedClock, limits: RateLimitConfig = VICARE
) -> RateBudget:
    return RateBudget(store, "viessmann", "a1", limits, clock)


def _book(budget: RateBudget, at: datetime, units: int = 1) -> Booking | None:
    return budget.acquire_and_book(SEND, "command", units, at, SPAN, HOLDER, DEVICE)


def _booked(
    booking: Booking, marked: dict[str, Any] | None = None, holder: str = HOLDER
) -> BookedCall:
    return BookedCall(booking, holder=holder, marked_path=DEVICE, marked=marked or {})


def _most_in_any_window(times: list[datetime], window: timedelta) -> int:
    """The most calls in any window of this length, its ends included (whatever the
    manufacturer's alignment and rounding)."""
    return max((sum(1 for s in times if t - window <= s <= t) for t in times), default=0)


def test_the_calls_of_now_and_the_booked_instant_are_one_write_of_the_account_only(
    document_store: DocumentStore, clock: SimulatedClock
) -> None:
    document_store.set(HOLDER, {"state": "pending"})
    document_store.set(DEVICE, {"manufacturer": "viessmann"})
    counting = CountingStore(document_store)
    budget = _budget(counting, clock)
    booking = _book(budget, T0 + DELAY)
    assert booking is not None
    assert (counting.transactions, counting.reads, counting.writes) == (1, 1, 1)
    assert (booking.holder, booking.marked_on, booking.kind, booking.units) == (
        HOLDER,
        DEVICE,
        "command",
        1,
    )
    assert (booking.first_at, booking.slots, booking.span) == (T0 + DELAY, 1, SPAN)
    assert budget.bookings() == [booking]
    assert budget.usage("command")["600s"] == 2  # the booked instant counts from T0 + 10 min
    holder = document_store.get(HOLDER)
    assert holder is not None
    assert holder.data == {"state": "pending"}

    clock.advance_to(T0 + DELAY)
    assert budget.usage("command")["600s"] == 3
    before = (counting.reads, counting.writes, counting.transactions)
    assert budget.take_booked("command", 1, _booked(booking)) is True
    assert (counting.reads, counting.writes, counting.transactions) == before


def test_a_booking_travels_as_json_and_reads_back_the_same() -> None:
    booking = Booking(
        booking_id="b1",
        budget_path="manufacturers/viessmann/accounts/a1",
        holder=HOLDER,
        kind="command",
        units=2,
        first_at=T0 + DELAY,
        period=SPAN,
        slots=1,
        span=SPAN,
        marked_on=DEVICE,
    )
    assert booking.to_json()["first_at"] == "2024-01-15T06:10:00Z"
    assert Booking.parse(booking.to_json()) == booking
    assert Booking.parse(booking.to_document()) == booking
    assert Booking.parse({**booking.to_json(), "first_at": "2024-01-15T06:10:00"}) is None


def test_an_instant_ten_minutes_ahead_shares_vicares_window_with_the_calls_of_now(
    document_store: DocumentStore, clock: SimulatedClock
) -> None:
    """The calls of now may be made until the end of their bucket (a minute) and the booked
    call from its instant on: 10 minutes apart or less, one 10-minute window can hold both."""
    budget = _budget(document_store, clock)
    budget.acquire_all({"command": 82})
    assert _book(budget, T0 + DELAY) is None  # 82 + 2 is the whole share: no room to book
    assert budget.usage("command")["600s"] == 84  # the calls of now were counted all the same
    assert budget.bookings() == []

    clock.advance_to(T0 + timedelta(minutes=11))  # the bucket of T0 has left every window
    assert _book(budget, clock.now() + DELAY) is not None
    assert budget.usage("command")["600s"] == 2


def test_the_booked_instant_fits_when_the_calls_of_now_leave_it_room(
    document_store: DocumentStore, clock: SimulatedClock
) -> None:
    budget = _budget(document_store, clock)
    budget.acquire_all({"command": 81})
    booking = _book(budget, T0 + DELAY)
    assert booking is not None
    clock.advance_to(T0 + DELAY)
    assert budget.usage("command")["600s"] == 84
    with pytest.raises(OemRateLimited):  # the booked unit is taken: nothing else fits
        budget.acquire("command")
    assert budget.take_booked("command", 1, _booked(booking)) is True


def test_a_booking_counts_against_what_is_admitted_later(
    document_store: DocumentStore, clock: SimulatedClock
) -> None:
    budget = _budget(document_store, clock)
    assert _book(budget, T0 + DELAY, units=10) is not None
    clock.advance_to(T0 + timedelta(minutes=9))
    budget.acquire_all({"command": 72})  # 2 + 72 + the 10 booked: the whole share ahead
    with pytest.raises(OemRateLimited) as refused:
        budget.acquire("command")
    assert refused.value.retry_at is not None


def test_refused_as_acquire_is_refused_and_then_nothing_is_booked(
    document_store: DocumentStore, clock: SimulatedClock
) -> None:
    counting = CountingStore(document_store)
    budget = _budget(counting, clock)
    budget.acquire_all({"command": 83})
    writes = counting.writes
    with pytest.raises(OemRateLimited) as spent:
        _book(budget, T0 + DELAY)
    assert spent.value.retry_at is not None
    assert counting.writes == writes
    assert budget.bookings() == []

    budget.block_until(T0 + timedelta(hours=1), "ViCare 429")
    clock.advance_to(T0 + timedelta(minutes=30))
    with pytest.raises(OemRateLimited) as blocked:
        _book(budget, clock.now() + DELAY)
    assert blocked.value.retry_at == T0 + timedelta(hours=1)
    assert budget.bookings() == []


def test_what_it_is_asked_to_book_is_checked_as_acquire_checks_it(
    document_store: DocumentStore, clock: SimulatedClock
) -> None:
    budget = _budget(document_store, clock)
    with pytest.raises(InvalidInput):
        budget.acquire_and_book(SEND, "command", 0, T0 + DELAY, SPAN, HOLDER, DEVICE)
    with pytest.raises(InvalidInput):
        budget.acquire_and_book(SEND, "command", 85, T0 + DELAY, SPAN, HOLDER, DEVICE)
    naive = datetime(2024, 1, 15, 6, 10)  # noqa: DTZ001 - what is refused
    with pytest.raises(InvalidInput):
        budget.acquire_and_book(SEND, "command", 1, naive, SPAN, HOLDER, DEVICE)
    with pytest.raises(InvalidInput):
        budget.acquire_and_book(SEND, "command", 1, T0 + DELAY, SPAN, HOLDER, "")
    assert budget.bookings() == []


def test_a_booking_pays_only_its_own_call_in_its_span(
    document_store: DocumentStore, clock: SimulatedClock
) -> None:
    budget = _budget(document_store, clock)
    booking = _book(budget, T0 + DELAY)
    assert booking is not None
    clock.advance_to(T0 + DELAY - timedelta(seconds=1))
    assert budget.take_booked("command", 1, _booked(booking)) is False  # before its instant
    clock.advance_to(T0 + DELAY + SPAN - timedelta(seconds=1))
    assert budget.take_booked("command", 1, _booked(booking)) is True
    assert budget.take_booked("read", 1, _booked(booking)) is False  # another share
    assert budget.take_booked("command", 2, _booked(booking)) is False  # another read
    assert budget.take_booked("command", 1, _booked(booking, holder="devices/d1/commands/c2")) is (
        False
    )
    other_account = RateBudget(document_store, "viessmann", "a2", VICARE, clock)
    assert other_account.take_booked("command", 1, _booked(booking)) is False
    elsewhere = BookedCall(booking, holder=HOLDER, marked_path="devices/d2", marked={})
    assert budget.take_booked("command", 1, elsewhere) is False  # not the marked document
    clock.advance_to(T0 + DELAY + SPAN)
    assert budget.take_booked("command", 1, _booked(booking)) is False  # its span has ended


def test_a_block_is_marked_on_the_marked_document_and_never_on_the_holder(
    document_store: DocumentStore, clock: SimulatedClock
) -> None:
    document_store.set(HOLDER, {"state": "sent"})
    document_store.set(DEVICE, {"manufacturer": "viessmann"})
    budget = _budget(document_store, clock)
    booking = _book(budget, T0 + DELAY)
    assert booking is not None
    until = T0 + timedelta(hours=24)
    budget.block_until(until, "ViCare 429")
    holder, device = document_store.get(HOLDER), document_store.get(DEVICE)
    assert holder is not None
    assert holder.data == {"state": "sent"}
    assert device is not None
    assert device.data[BLOCKED_FIELD] == until

    clock.advance_to(T0 + DELAY)
    with pytest.raises(OemRateLimited) as blocked:
        budget.take_booked("command", 1, _booked(booking, dict(device.data)))
    assert blocked.value.retry_at == until
    budget.block_until(T0 + timedelta(hours=2))  # an earlier end changes nothing
    device = document_store.get(DEVICE)
    assert device is not None
    assert device.data[BLOCKED_FIELD] == until


def test_a_block_passes_over_a_marked_document_that_is_gone(
    document_store: DocumentStore, clock: SimulatedClock
) -> None:
    budget = _budget(document_store, clock)
    assert _book(budget, T0 + DELAY) is not None
    budget.block_until(T0 + timedelta(hours=1))  # no device document: nothing to mark
    assert document_store.get(DEVICE) is None
    with pytest.raises(OemRateLimited):
        budget.acquire("command")


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_commands_with_booked_verifications_never_exceed_any_window(
    document_store: DocumentStore, clock: SimulatedClock, seed: int
) -> None:
    """Sends at random instants, each booking its verification 10 minutes later; a booked call
    is made at a random instant of its span, one without a booking is counted on its own (or
    not made when refused), and other commands come and go: the calls made never exceed the
    command share of any window, whatever its alignment."""
    limits = RateLimitConfig(
        windows=(
            RateWindow(limit=10, window=timedelta(minutes=10)),
            RateWindow(limit=300, window=timedelta(hours=24)),
        ),
        read_share=0.3,
    )  # 7 commands per 10 minutes and 210 a day
    budget = _budget(document_store, clock, limits)
    rng = random.Random(seed)
    made: list[datetime] = []
    booked: list[tuple[datetime, int, Booking | None]] = []  # (when the call is made, id, ...)
    now, serial = T0, 0
    while now < T0 + timedelta(hours=28):
        now += timedelta(seconds=rng.choice([0, 0, 1, 20, 60, 300, 900]))  # bursts and lulls
        while booked and booked[0][0] <= now:  # the verifications due first
            at, _, booking = heapq.heappop(booked)
            clock.advance_to(at)
            try:
                if booking is None or not budget.take_booked("command", 1, _booked(booking)):
                    budget.acquire("command")
            except OemRateLimited:
                continue
            made.append(at)
        clock.advance_to(now)
        try:
            if rng.random() < 0.5:
                booking = _book(budget, now + DELAY)
                late = timedelta(seconds=rng.choice([0, 0, 30, 299, 360]))  # 360: too late
                serial += 1
                heapq.heappush(booked, (now + DELAY + late, serial, booking))
                made += [now, now]
            else:
                budget.acquire("command")
                made.append(now)
        except OemRateLimited:
            continue
    assert len(made) > 210  # the day's share was reached, and more than once
    assert _most_in_any_window(made, timedelta(minutes=10)) <= 7
    assert _most_in_any_window(made, timedelta(hours=24)) <= 210
