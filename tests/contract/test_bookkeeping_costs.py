"""What the shared bookkeeping of a command costs in store operations, on both stores.

A command send takes its translation's read and its command from the account's budget in one
write; a baseline, once found, is not read from the store again by the same instance.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from benchmarks.bookkeeping import CountingStore
from hpsteer.adapters.baseline import StoreBaselineBook
from hpsteer.adapters.budget import RateBudget
from hpsteer.adapters.protocol import RateLimitConfig, RateWindow
from hpsteer.errors import OemRateLimited
from hpsteer.ports.clock import SimulatedClock
from hpsteer.ports.store import DocumentStore

T0 = datetime(2025, 1, 15, 6, tzinfo=UTC)
VICARE = RateLimitConfig(
    windows=(
        RateWindow(120, timedelta(minutes=10), timedelta(hours=24)),
        RateWindow(1450, timedelta(hours=24), timedelta(hours=24)),
    )
)


def test_a_read_and_a_command_are_taken_in_one_write(document_store: DocumentStore) -> None:
    store = CountingStore(document_store)
    budget = RateBudget(store, "viessmann", "acct-1", VICARE, SimulatedClock(T0))
    budget.acquire_all({"read": 1, "command": 1})
    assert (store.reads, store.writes) == (1, 1)
    assert budget.usage("command") == {p.key: 1 for p in budget.plans}
    assert budget.usage("read") == {p.key: 1 for p in budget.plans}


def test_taking_both_is_all_or_nothing(document_store: DocumentStore) -> None:
    budget = RateBudget(document_store, "viessmann", "acct-1", VICARE, SimulatedClock(T0))
    read_cap = min(p.read_cap for p in budget.plans)
    for _ in range(read_cap):
        budget.acquire("read")
    with pytest.raises(OemRateLimited, match="read budget spent"):
        budget.acquire_all({"command": 1, "read": 1})
    assert budget.usage("command") == {p.key: 0 for p in budget.plans}  # nothing counted


def test_a_baseline_is_read_from_the_store_at_most_once_per_instance_and_not_by_its_learner(
    document_store: DocumentStore,
) -> None:
    store = CountingStore(document_store)
    clock = SimulatedClock(T0)
    learner = StoreBaselineBook(store, "viessmann", clock)
    learner.put("dev-1/program", {"targetTemperature": 21.0})
    other = StoreBaselineBook(store, "viessmann", clock)  # another function instance
    reads = store.reads
    for _ in range(5):
        assert learner.get("dev-1/program") == {"targetTemperature": 21.0}
    assert store.reads == reads  # the learner keeps what it wrote
    for _ in range(5):
        assert other.get("dev-1/program") == {"targetTemperature": 21.0}
    assert store.reads == reads + 1  # found once, then kept
    clock.advance(timedelta(minutes=11))  # past the cache's life: read again
    learner.get("dev-1/program")
    assert store.reads == reads + 2


def test_forgetting_a_baseline_is_seen_by_this_instance_at_once(
    document_store: DocumentStore,
) -> None:
    book = StoreBaselineBook(document_store, "viessmann", SimulatedClock(T0))
    book.put("dev-1/program", {"targetTemperature": 21.0})
    assert book.get("dev-1/program") is not None
    book.forget("dev-1/")
    assert book.get("dev-1/program") is None
