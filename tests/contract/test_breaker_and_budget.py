"""The circuit breaker and the rate budget keep their promises on every document store.

Each test runs against the in-process store and against Firestore on its emulator: the shared
state (breaker per manufacturer, budget per account) is what lets stateless instances agree.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from benchmarks.bookkeeping import CountingStore
from hpsteer.adapters.breaker import BreakerConfig, CircuitBreaker
from hpsteer.adapters.budget import BudgetKind, RateBudget
from hpsteer.adapters.protocol import RateLimitConfig, RateWindow
from hpsteer.backends.local.store import LocalDocumentStore
from hpsteer.errors import (
    CircuitOpen,
    CommandRejected,
    ConcurrencyConflict,
    CredentialsInvalid,
    DeviceOffline,
    HpsteerError,
    InvalidInput,
    OemRateLimited,
    OemUnavailable,
)
from hpsteer.observability.metrics import CIRCUIT_BREAKER_STATE, Metrics
from hpsteer.ports.clock import SimulatedClock
from hpsteer.ports.store import DocumentStore
from tests.support.firestore import PROJECT

T0 = datetime(2024, 1, 15, 6, 0, 30, tzinfo=UTC)
VICARE = RateLimitConfig(
    windows=(
        RateWindow(limit=120, window=timedelta(minutes=10), block_for=timedelta(hours=24)),
        RateWindow(limit=1450, window=timedelta(hours=24), block_for=timedelta(hours=24)),
    ),
    read_share=0.3,
)
"""ViCare's basic plan, as the Viessmann adapter declares it."""
CONFIG = BreakerConfig(
    failure_threshold=3,
    success_threshold=2,
    open_timeout=timedelta(minutes=5),
    failure_rate_threshold=0.5,
    rate_window_calls=10,
    rate_window=timedelta(minutes=2),
    rate_min_calls=6,
    probe_lease=timedelta(minutes=1),
)
TTL = timedelta(seconds=5)
FAILURE = OemUnavailable("viessmann: 503 Service Unavailable")


@pytest.fixture(scope="session")
def firestore_client(request: pytest.FixtureRequest) -> Any:
    """One client for the session, pointed at the emulator (imported lazily: it is heavy)."""
    request.getfixturevalue("firestore_emulator")
    from google.cloud import firestore

    return firestore.Client(project=PROJECT)


@pytest.fixture(params=["local", pytest.param("firestore", marks=pytest.mark.emulator)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[DocumentStore]:
    if request.param == "local":
        yield LocalDocumentStore()
    else:
        from hpsteer.backends.gcp.firestore_store import FirestoreDocumentStore

        request.getfixturevalue("reset_firestore")
        yield FirestoreDocumentStore(request.getfixturevalue("firestore_client"))


@pytest.fixture
def clock() -> SimulatedClock:
    return SimulatedClock(T0)


def _breaker(
    store: DocumentStore, clock: SimulatedClock, metrics: Metrics | None = None
) -> CircuitBreaker:
    return CircuitBreaker(store, "viessmann", clock, CONFIG, TTL, metrics=metrics or Metrics(None))


def _fail(breaker: CircuitBreaker, times: int, err: HpsteerError = FAILURE) -> None:
    for _ in range(times):
        breaker.before_call()
        breaker.record_failure(err)


def _succeed(breaker: CircuitBreaker, times: int) -> None:
    for _ in range(times):
        breaker.before_call()
        breaker.record_success()


def _stored_breaker(store: DocumentStore) -> dict[str, Any]:
    document = store.get("manufacturers/viessmann")
    assert document is not None
    breaker: dict[str, Any] = document.data["breaker"]
    return breaker


# -- the breaker ----------------------------------------------------------------------------------


def test_the_breaker_opens_after_consecutive_manufacturer_failures(
    store: DocumentStore, clock: SimulatedClock
) -> None:
    breaker = _breaker(store, clock)
    _fail(breaker, 2)
    assert breaker.state() == "closed"
    _fail(breaker, 1)
    assert breaker.state() == "open"
    assert breaker.metric_value() == 2
    with pytest.raises(CircuitOpen, match="3 consecutive failures") as refused:
        breaker.before_call()
    assert refused.value.retry_at == T0 + CONFIG.open_timeout
    stored = _stored_breaker(store)
    assert stored["state"] == "open"
    assert stored["opened_at"] == T0
    assert stored["half_open_at"] == T0 + CONFIG.open_timeout
    assert stored["consecutive_failures"] == 3
    assert "OemUnavailable: viessmann: 503" in stored["reason"]


def test_by_default_a_cloud_failing_30_percent_of_operations_at_random_stays_reachable(
    clock: SimulatedClock,
) -> None:
    """A flaky cloud is not a down one: 5,000 operations, 30 % failing at random (seeded), in
    bursts of 20 within a second, then a pause; the defaults never open the breaker."""
    import random

    rng = random.Random(7)
    breaker = CircuitBreaker(LocalDocumentStore(), "viessmann", clock, metrics=Metrics(None))
    for _ in range(250):
        for _ in range(20):
            breaker.before_call()
            if rng.random() < 0.3:
                breaker.record_failure(FAILURE)
            else:
                breaker.record_success()
            clock.advance(timedelta(milliseconds=50))
        clock.advance(timedelta(minutes=1))
    assert breaker.state() == "closed"


def test_by_default_a_cloud_that_answers_nothing_is_cut_off_after_8_operations(
    clock: SimulatedClock,
) -> None:
    breaker = CircuitBreaker(LocalDocumentStore(), "viessmann", clock, metrics=Metrics(None))
    _fail(breaker, 7)
    assert breaker.state() == "closed"
    _fail(breaker, 1)
    assert breaker.state() == "open"
    with pytest.raises(CircuitOpen):
        breaker.before_call()


def test_a_success_restarts_the_count_of_consecutive_failures(
    store: DocumentStore, clock: SimulatedClock
) -> None:
    breaker = _breaker(store, clock)
    for _ in range(4):
        _fail(breaker, 2)
        _succeed(breaker, 5)  # never over 4 failures in any 10 calls: below the rate rule too
    assert breaker.state() == "closed"


def test_the_breaker_opens_when_the_failure_rate_over_its_window_is_too_high(
    store: DocumentStore, clock: SimulatedClock
) -> None:
    breaker = _breaker(store, clock)
    for _ in range(2):
        _succeed(breaker, 1)
        _fail(breaker, 1)
        _succeed(breaker, 1)
    assert breaker.state() == "closed"  # 2 failures in 6 calls: a third
    _fail(breaker, 1)
    _succeed(breaker, 1)
    _fail(breaker, 1)  # 4 failures in the last 9 calls, never 3 in a row
    assert breaker.state() == "closed"
    _fail(breaker, 1)  # 5 of 10: half
    assert breaker.state() == "open"
    stored = _stored_breaker(store)
    assert stored["failure_rate"] == 0.5
    assert stored["reason"].startswith("failure rate 50% over the last 10 calls")


def test_failures_older_than_the_rate_window_are_forgotten(
    store: DocumentStore, clock: SimulatedClock
) -> None:
    breaker = _breaker(store, clock)
    for _ in range(20):
        _fail(breaker, 1)
        _succeed(breaker, 1)
        clock.advance(CONFIG.rate_window / 2)  # at most 4 calls (2 failures) in any window
    assert breaker.state() == "closed"


@pytest.mark.parametrize(
    "err",
    [
        DeviceOffline("viessmann: device d1 offline (DEVICE_OFFLINE)"),
        DeviceOffline("viessmann: gateway g1 offline (GATEWAY_OFFLINE)"),
        DeviceOffline("daikin_onecta: device d1 is not connected to the cloud"),
        CommandRejected("viessmann: 422 value out of range"),
        CredentialsInvalid("viessmann: account a1 refresh token refused"),
        OemRateLimited("viessmann: 429 RATE_LIMIT_EXCEEDED", retry_at=T0 + timedelta(hours=24)),
    ],
    ids=[
        "device-offline",
        "gateway-offline",
        "cloud-disconnected",
        "rejected",
        "credentials",
        "429",
    ],
)
def test_device_account_and_limit_faults_never_open_the_breaker(
    store: DocumentStore, clock: SimulatedClock, err: HpsteerError
) -> None:
    counting = CountingStore(store)
    breaker = _breaker(counting, clock)
    _fail(breaker, 50, err)
    assert breaker.state() == "closed"
    assert counting.writes == 0


def test_one_offline_device_among_healthy_calls_never_opens_the_breaker(
    store: DocumentStore, clock: SimulatedClock
) -> None:
    breaker = _breaker(store, clock)
    offline = DeviceOffline("viessmann: device d7 offline (DEVICE_OFFLINE)")
    for _ in range(30):
        _fail(breaker, 3, offline)
        _succeed(breaker, 1)
        clock.advance(timedelta(seconds=10))
    assert breaker.state() == "closed"


def test_the_breaker_half_opens_after_the_timeout_and_closes_after_successes(
    store: DocumentStore, clock: SimulatedClock
) -> None:
    metrics = Metrics(None)
    breaker = _breaker(store, clock, metrics)
    _fail(breaker, 3)
    assert metrics.get(CIRCUIT_BREAKER_STATE, oem="viessmann") == 2
    clock.advance(CONFIG.open_timeout - timedelta(seconds=1))
    with pytest.raises(CircuitOpen):
        breaker.before_call()
    clock.advance(timedelta(seconds=1))
    breaker.before_call()  # the probe
    assert breaker.state() == "half_open"
    assert metrics.get(CIRCUIT_BREAKER_STATE, oem="viessmann") == 1
    assert _stored_breaker(store)["probe_holder"] == breaker.instance_id
    breaker.record_success()
    assert breaker.state() == "half_open"
    _succeed(breaker, 1)
    assert breaker.state() == "closed"
    assert breaker.metric_value() == 0
    assert metrics.get(CIRCUIT_BREAKER_STATE, oem="viessmann") == 0
    _succeed(breaker, 5)
    _fail(breaker, 2)
    assert breaker.state() == "closed"  # counting starts afresh after closing


def test_a_failed_probe_opens_the_breaker_again(
    store: DocumentStore, clock: SimulatedClock
) -> None:
    breaker = _breaker(store, clock)
    _fail(breaker, 3)
    clock.advance(CONFIG.open_timeout)
    _succeed(breaker, 1)
    probe_failed_at = clock.advance(timedelta(seconds=30))
    _fail(breaker, 1)
    assert breaker.state() == "open"
    with pytest.raises(CircuitOpen, match="probe failed") as refused:
        breaker.before_call()
    assert refused.value.retry_at == probe_failed_at + CONFIG.open_timeout


def test_a_half_open_breaker_lets_one_probe_through_at_a_time(
    store: DocumentStore, clock: SimulatedClock
) -> None:
    breaker = _breaker(store, clock)
    _fail(breaker, 3)
    clock.advance(CONFIG.open_timeout)
    breaker.before_call()
    with pytest.raises(CircuitOpen, match="a probe is in flight"):
        breaker.before_call()
    breaker.cancel()  # e.g. the budget refused the call: no verdict on the manufacturer
    breaker.before_call()
    breaker.record_success()
    assert breaker.state() == "half_open"


def test_a_probe_whose_caller_never_reported_frees_its_slot_when_its_lease_ends(
    store: DocumentStore, clock: SimulatedClock
) -> None:
    """The caller that a probe was admitted for may never report (its handler raised between
    admission and the call): its own instance must not refuse probes for ever after."""
    breaker = _breaker(store, clock)
    _fail(breaker, 3)
    clock.advance(CONFIG.open_timeout)
    breaker.before_call()  # admitted, and then nothing: no verdict, no cancel
    with pytest.raises(CircuitOpen, match="a probe is in flight"):
        breaker.before_call()
    clock.advance(CONFIG.probe_lease)
    breaker.before_call()  # the lease ended: this instance probes again
    breaker.record_success()
    _succeed(breaker, 1)
    assert breaker.state() == "closed"


def test_two_instances_sharing_a_store_see_the_same_state(
    store: DocumentStore, clock: SimulatedClock
) -> None:
    first, second = _breaker(store, clock), _breaker(store, clock)
    second.before_call()  # caches "closed"
    second.record_success()
    _fail(first, 3)
    assert second.state() == "closed"  # its cache is still fresh...
    clock.advance(TTL)
    assert second.state() == "open"  # ...and learns within the cache's lifetime
    with pytest.raises(CircuitOpen) as refused:
        second.before_call()
    assert refused.value.retry_at == T0 + CONFIG.open_timeout

    clock.advance(CONFIG.open_timeout)
    first.before_call()  # first holds the probe
    with pytest.raises(CircuitOpen, match="another instance probes") as refused:
        second.before_call()
    assert refused.value.retry_at == clock.now() + CONFIG.probe_lease
    assert second.state() == "half_open"
    first.record_success()
    _succeed(first, 1)
    assert first.state() == "closed"
    clock.advance(TTL)
    assert second.state() == "closed"
    second.before_call()


def test_another_instance_takes_over_a_probe_whose_holder_vanished(
    store: DocumentStore, clock: SimulatedClock
) -> None:
    first, second = _breaker(store, clock), _breaker(store, clock)
    _fail(first, 3)
    clock.advance(CONFIG.open_timeout)
    first.before_call()  # claims the probe, then its instance is gone
    clock.advance(CONFIG.probe_lease)
    second.before_call()
    assert _stored_breaker(store)["probe_holder"] == second.instance_id
    second.record_success()
    _succeed(second, 1)
    assert second.state() == "closed"
    first.record_success()  # the vanished call's late answer changes nothing
    clock.advance(TTL)
    assert first.state() == "closed"


def test_the_breaker_writes_the_store_only_when_its_state_changes(
    store: DocumentStore, clock: SimulatedClock
) -> None:
    counting = CountingStore(store)
    breaker = _breaker(counting, clock)
    for n in range(300):
        clock.advance(timedelta(seconds=1))
        if n % 7 == 0:
            _fail(breaker, 1)
        else:
            _succeed(breaker, 1)
    assert counting.writes == 0
    _fail(breaker, 3)
    assert counting.writes == 1  # closed → open
    for _ in range(10):
        with pytest.raises(CircuitOpen):
            breaker.before_call()
    clock.advance(CONFIG.open_timeout)
    _succeed(breaker, 1)
    assert counting.writes == 2  # open → half-open
    _succeed(breaker, 1)
    assert counting.writes == 3  # half-open → closed
    assert _stored_breaker(store)["version"] == 3


def test_two_instances_opening_at_once_record_one_change(
    store: DocumentStore, clock: SimulatedClock
) -> None:
    counting = CountingStore(store)
    breakers = [_breaker(counting, clock) for _ in range(3)]
    for breaker in breakers:
        _fail(breaker, 2)
    ready = threading.Barrier(len(breakers), timeout=30)
    errors: list[BaseException] = []

    def trip(breaker: CircuitBreaker) -> None:
        try:
            ready.wait()
            breaker.record_failure(FAILURE)
        except BaseException as err:  # noqa: BLE001 - reported to the main thread below
            errors.append(err)

    threads = [threading.Thread(target=trip, args=(b,)) for b in breakers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    assert counting.writes == 1
    assert _stored_breaker(store)["version"] == 1
    assert all(b.state() == "open" for b in breakers)


def test_an_instance_that_missed_a_whole_outage_restarts_its_count(
    store: DocumentStore, clock: SimulatedClock
) -> None:
    first, second = _breaker(store, clock), _breaker(store, clock)
    _fail(second, 2)  # one short of opening
    _fail(first, 3)
    clock.advance(CONFIG.open_timeout)
    _succeed(first, 2)
    assert first.state() == "closed"
    second.record_failure(FAILURE)  # counted against the state it finds: the first of three
    _fail(second, 1)
    assert second.state() == "closed"
    _fail(second, 1)
    assert second.state() == "open"


def test_call_wraps_the_checks_and_the_verdict(store: DocumentStore, clock: SimulatedClock) -> None:
    breaker = _breaker(store, clock)
    assert breaker.call(lambda: 42) == 42

    def offline() -> int:
        raise DeviceOffline("viessmann: gateway offline")

    def failing() -> int:
        raise FAILURE

    for _ in range(5):
        with pytest.raises(DeviceOffline):
            breaker.call(offline)
    assert breaker.state() == "closed"
    for _ in range(3):
        with pytest.raises(OemUnavailable):
            breaker.call(failing)
    called: list[int] = []

    def record_the_call() -> int:
        called.append(1)
        return 1

    with pytest.raises(CircuitOpen):
        breaker.call(record_the_call)
    assert called == []


def test_the_breaker_refuses_a_manufacturer_name_that_is_not_a_slug(
    clock: SimulatedClock,
) -> None:
    with pytest.raises(InvalidInput, match="not a manufacturer name"):
        CircuitBreaker(LocalDocumentStore(), "Vies/smann", clock)


# -- the budget -----------------------------------------------------------------------------------


def _budget(store: DocumentStore, clock: SimulatedClock, account: str = "a1") -> RateBudget:
    return RateBudget(store, "viessmann", account, VICARE, clock)


def _acquire(budget: RateBudget) -> datetime | None:
    """Acquire a command unit: ``None`` if admitted, else the refusal's ``retry_at``."""
    try:
        budget.acquire("command")
    except OemRateLimited as refusal:
        assert refusal.retry_at is not None  # noqa: PT017 - every refusal must say when
        return refusal.retry_at
    return None


def _most_in_any_window(times: list[datetime], window: timedelta) -> int:
    """The most acquisitions in any window of this length (checked at each acquisition)."""
    return max(sum(1 for s in times if t - window < s <= t) for t in times)


def test_a_burst_of_200_commands_never_exceeds_either_vicare_window(
    store: DocumentStore, clock: SimulatedClock
) -> None:
    budget = _budget(store, clock)
    admitted: list[datetime] = []
    refused_in_a_row = 0
    while len(admitted) < 200:
        retry_at = _acquire(budget)
        if retry_at is not None:
            refused_in_a_row += 1
            assert refused_in_a_row == 1, "acquiring at retry_at must succeed"
            assert retry_at > clock.now()
            clock.advance_to(retry_at)
            continue
        refused_in_a_row = 0
        admitted.append(clock.now())
        clock.advance(timedelta(seconds=1))
    assert _most_in_any_window(admitted, timedelta(minutes=10)) <= 84
    assert _most_in_any_window(admitted, timedelta(hours=24)) <= 1015
    assert admitted[83] - admitted[0] < timedelta(minutes=2)  # the first 84 go at once
    assert admitted[84] - admitted[0] <= timedelta(minutes=11)  # held one bucket at most


def test_the_daily_window_holds_when_commands_trickle_in(clock: SimulatedClock) -> None:
    budget = _budget(LocalDocumentStore(), clock)
    admitted: list[datetime] = []
    for _ in range(1300):
        clock.advance(timedelta(seconds=50))  # 12 per 10 minutes: only the daily share binds
        retry_at = _acquire(budget)
        if retry_at is not None:
            assert retry_at > clock.now() + timedelta(hours=1)
            continue
        admitted.append(clock.now())
    assert len(admitted) == 1015
    assert _most_in_any_window(admitted, timedelta(hours=24)) == 1015


def test_a_refusal_says_when_to_retry_and_acquiring_then_succeeds(
    store: DocumentStore, clock: SimulatedClock
) -> None:
    budget = _budget(store, clock)
    for _ in range(84):
        budget.acquire("command")
    with pytest.raises(OemRateLimited, match=r"84 of 84 commands per 0:10:00 used") as refused:
        budget.acquire("command")
    retry_at = refused.value.retry_at
    assert retry_at is not None
    # The calls sit in the bucket 06:00-06:01; it leaves the 10-minute window at 06:11.
    assert retry_at == datetime(2024, 1, 15, 6, 11, tzinfo=UTC)
    clock.advance_to(retry_at - timedelta(microseconds=1))
    with pytest.raises(OemRateLimited):
        budget.acquire("command")
    clock.advance_to(retry_at)
    budget.acquire("command")


def test_reads_keep_their_share_while_commands_are_spent(
    store: DocumentStore, clock: SimulatedClock
) -> None:
    budget = _budget(store, clock)
    for _ in range(84):
        budget.acquire("command")
    with pytest.raises(OemRateLimited):
        budget.acquire("command")
    for _ in range(36):
        budget.acquire("read")
    with pytest.raises(OemRateLimited, match="36 of 36 reads"):
        budget.acquire("read")
    assert budget.usage("command") == {"600s": 84, "86400s": 84}
    assert budget.usage("read") == {"600s": 36, "86400s": 36}


def test_polling_cannot_starve_commands(store: DocumentStore, clock: SimulatedClock) -> None:
    budget = _budget(store, clock)
    budget.acquire("read", 36)
    with pytest.raises(OemRateLimited):
        budget.acquire("read")
    budget.acquire("command", 84)


def test_a_block_reported_by_the_manufacturer_is_honoured(
    store: DocumentStore, clock: SimulatedClock
) -> None:
    budget = _budget(store, clock)
    until = T0 + timedelta(hours=24)
    budget.block_until(until, "ViCare 429 RATE_LIMIT_EXCEEDED, limitReset")
    budget.block_until(T0 + timedelta(hours=1))  # an earlier end does not shorten the block
    kinds: tuple[BudgetKind, ...] = ("command", "read")
    for kind in kinds:
        with pytest.raises(OemRateLimited, match="limitReset") as refused:
            budget.acquire(kind)
        assert refused.value.retry_at == until
    clock.advance_to(until)
    budget.acquire("command")


def test_two_budget_instances_on_one_store_share_the_count(
    store: DocumentStore, clock: SimulatedClock
) -> None:
    first, second = _budget(store, clock), _budget(store, clock)
    first.acquire("command", 50)
    second.acquire("command", 34)
    for budget in (first, second):
        with pytest.raises(OemRateLimited):
            budget.acquire("command")
    other_account = _budget(store, clock, "a2")
    other_account.acquire("command", 84)


def test_an_admitted_call_costs_one_write_and_a_refusal_none(
    store: DocumentStore, clock: SimulatedClock
) -> None:
    counting = CountingStore(store)
    budget = _budget(counting, clock)
    for _ in range(90):
        _acquire(budget)
    assert counting.writes == 84
    assert counting.transactions == 90


def test_concurrent_acquisitions_never_over_admit(
    store: DocumentStore, clock: SimulatedClock
) -> None:
    # A few threads on the emulator: it serialises contending transactions with lock timeouts.
    threads = 8 if isinstance(store, LocalDocumentStore) else 3
    limits = RateLimitConfig(windows=(RateWindow(limit=8, window=timedelta(minutes=1)),))
    budget = RateBudget(store, "viessmann", "a1", limits, clock, max_attempts=3)
    cap = budget.plans[0].command_cap
    admitted: list[int] = []
    errors: list[BaseException] = []
    start = threading.Barrier(threads, timeout=30)

    def worker() -> None:
        try:
            start.wait()
            while True:
                try:
                    budget.acquire("command")
                except ConcurrencyConflict:
                    continue  # contention: a caller retries later
                except OemRateLimited:
                    return
                admitted.append(1)
        except BaseException as err:  # noqa: BLE001 - reported to the main thread below
            errors.append(err)

    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join(timeout=120)
    assert errors == []
    assert len(admitted) == cap == 5
    assert budget.usage("command") == {"60s": cap}


@pytest.mark.parametrize(
    ("account_id", "message"),
    [
        ("tenant/a1", "contains '/'"),
        ("", "must match"),
        ("__a1__", "must match"),
        (".hidden", "must match"),
        ("a" * 129, "must match"),
    ],
    ids=["slash", "empty", "reserved", "dot-first", "too-long"],
)
def test_account_ids_that_cannot_name_a_document_are_refused(
    clock: SimulatedClock, account_id: str, message: str
) -> None:
    with pytest.raises(InvalidInput, match=message):
        _budget(LocalDocumentStore(), clock, account_id)


def test_account_ids_with_dots_and_colons_are_kept_as_they_are(
    store: DocumentStore, clock: SimulatedClock
) -> None:
    budget = _budget(store, clock, "user:42.home")
    budget.acquire("command")
    assert budget.path == "manufacturers/viessmann/accounts/user:42.home"
    assert store.get(budget.path) is not None


def test_a_request_larger_than_a_share_can_never_fit(clock: SimulatedClock) -> None:
    with pytest.raises(InvalidInput, match="can never fit"):
        _budget(LocalDocumentStore(), clock).acquire("read", 37)


def test_the_budget_document_is_readable_in_the_console(
    store: DocumentStore, clock: SimulatedClock
) -> None:
    budget = _budget(store, clock)
    budget.acquire("command")
    budget.acquire("read")
    document = store.get(budget.path)
    assert document is not None
    ten_minutes = document.data["budget"]["windows"]["600s"]
    assert ten_minutes["limit"] == 120
    assert (ten_minutes["command_cap"], ten_minutes["read_cap"]) == (84, 36)
    assert ten_minutes["bucket_seconds"] == 60
    assert ten_minutes["buckets"] == [
        {
            "start_at": datetime(2024, 1, 15, 6, 0, tzinfo=UTC),
            "end_at": datetime(2024, 1, 15, 6, 1, tzinfo=UTC),
            "commands": 1,
            "reads": 1,
        }
    ]
    assert document.data["budget"]["windows"]["86400s"]["bucket_seconds"] == 3600
