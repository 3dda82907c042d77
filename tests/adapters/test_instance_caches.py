"""What each function instance keeps in memory to spare the store, and why it stays right when
many instances (and several threads of one) share the store.

Every rig here is two instances of the same deployment: two :class:`ManufacturerGateway` (or two
breakers, two baseline books) over one document store and one secret vault, with ViCare's API
faked as in ``test_viessmann``. A :class:`RecordingStore` lists the document reads that reach the
store, by path.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from hpsteer.adapters.baseline import MAX_AGE, StoreBaselineBook
from hpsteer.adapters.breaker import BreakerConfig, CircuitBreaker
from hpsteer.adapters.credentials import CredentialStore, credentials_path
from hpsteer.adapters.gateway import ManufacturerGateway, device_ref
from hpsteer.adapters.oauth import AccessToken, AccessTokenKeeper
from hpsteer.adapters.protocol import AdapterContext, ManufacturerAdapter
from hpsteer.adapters.registry import AdapterRegistry
from hpsteer.adapters.viessmann import ViessmannAdapter
from hpsteer.backends.local.store import LocalDocumentStore
from hpsteer.domain.actions import GenericAction
from hpsteer.errors import CircuitOpen, OemUnavailable
from hpsteer.observability.metrics import Metrics
from hpsteer.ports.clock import SimulatedClock
from hpsteer.ports.store import Document, DocumentStore, Filter, Order, Page, Transaction
from tests.adapters.test_viessmann import (
    ACCOUNT,
    TOKEN_URL,
    FakeViCare,
    feature,
    load,
    vicare_vault,
)
from tests.adapters.vault import Vault

T = TypeVar("T")
T0 = datetime(2025, 1, 15, 12, 0, tzinfo=UTC)
MODEL, LEVER = "Vitocal250A", "heating.circuits.0.operating.programs.normalHeating"
DEVICE_ID = "hp-1"
DEVICE_PATH = f"devices/{DEVICE_ID}"
BASELINES = "manufacturers/viessmann/baselines/"
CREDENTIALS = credentials_path("viessmann", ACCOUNT)


class RecordingStore:
    """A document store that lists the paths of the document reads reaching ``inner``."""

    def __init__(self, inner: DocumentStore) -> None:
        self.inner = inner
        self.reads: list[str] = []

    def reads_of(self, prefix: str) -> int:
        return sum(1 for path in self.reads if path.startswith(prefix))

    def get(self, path: str) -> Document | None:
        self.reads.append(path)
        return self.inner.get(path)

    def create(self, path: str, data: Mapping[str, Any]) -> Document:
        return self.inner.create(path, data)

    def set(self, path: str, data: Mapping[str, Any], *, merge: bool = False) -> datetime:
        return self.inner.set(path, data, merge=merge)

    def update(
        self, path: str, changes: Mapping[str, Any], *, if_update_time: datetime | None = None
    ) -> datetime:
        return self.inner.update(path, changes, if_update_time=if_update_time)

    def delete(self, path: str) -> None:
        self.inner.delete(path)

    def run_transaction(self, fn: Callable[[Transaction], T], *, max_attempts: int = 5) -> T:
        def recorded(tx: Transaction) -> T:
            return fn(_RecordingTransaction(tx, self.reads))

        return self.inner.run_transaction(recorded, max_attempts=max_attempts)

    def query(
        self,
        collection: str,
        filters: Sequence[Filter] = (),
        order_by: Sequence[Order] = (),
        limit: int | None = None,
        cursor: str | None = None,
    ) -> Page:
        return self.inner.query(collection, filters, order_by, limit, cursor)

    def collection_group(
        self,
        collection_id: str,
        filters: Sequence[Filter] = (),
        order_by: Sequence[Order] = (),
        limit: int | None = None,
        cursor: str | None = None,
    ) -> Page:
        return self.inner.collection_group(collection_id, filters, order_by, limit, cursor)


@dataclass
class _RecordingTransaction:
    inner: Transaction
    reads: list[str]

    def get(self, path: str) -> Document | None:
        self.reads.append(path)
        return self.inner.get(path)

    def create(self, path: str, data: Mapping[str, Any]) -> None:
        self.inner.create(path, data)

    def set(self, path: str, data: Mapping[str, Any], *, merge: bool = False) -> None:
        self.inner.set(path, data, merge=merge)

    def update(self, path: str, changes: Mapping[str, Any]) -> None:
        self.inner.update(path, changes)

    def delete(self, path: str) -> None:
        self.inner.delete(path)


# -- two instances of a deployment ---------------------------------------------------------------


@dataclass
class Deployment:
    """One store, one vault, ViCare's fake cloud; ``instance()`` starts a function instance."""

    clock: SimulatedClock
    store: RecordingStore
    vault: Vault
    fake: FakeViCare
    http: httpx.Client
    instances: list[ManufacturerGateway] = field(default_factory=list)

    def instance(self) -> ManufacturerGateway:
        credentials = CredentialStore(self.store, self.vault.secrets, self.clock)

        def build(context: AdapterContext) -> ManufacturerAdapter:
            return ViessmannAdapter(
                credentials,
                context.clock,
                http=self.http,
                baselines=context.baselines("viessmann"),
            )

        registry = AdapterRegistry()
        registry.register("viessmann", build)
        context = AdapterContext(secrets=self.vault.secrets, clock=self.clock, store=self.store)
        gateway = ManufacturerGateway(context, registry=registry)
        self.instances.append(gateway)
        return gateway

    def device(self) -> Any:
        """The device as a caller reads it before each call (dispatch per delivery, reconcile
        per page): its document, re-read now."""
        document = self.store.inner.get(DEVICE_PATH)
        assert document is not None
        return device_ref(DEVICE_ID, document.data)

    def setpoint(self) -> float:
        value: float = feature(self.fake.features, LEVER)["properties"]["temperature"]["value"]
        return value

    def show(self, value: float) -> None:
        """The device's comfort program now shows ``value`` (steered, or the household's)."""
        feature(self.fake.features, LEVER)["properties"]["temperature"]["value"] = value

    def command(self, gateway: ManufacturerGateway, action: GenericAction) -> dict[str, Any]:
        """Translate and send ``action`` through ``gateway``; the device applies it."""
        device = self.device()
        gateway.admit_command(device, with_read=True)
        payload, validation = gateway.prepare(device, action, admitted=True)
        assert validation.valid, validation.reason
        gateway.send(device, action, payload)
        self.show(payload["params"]["targetTemperature"])
        return payload


@contextmanager
def deploy(folder: Path, start: datetime) -> Iterator[Deployment]:
    """One ViCare device of one account, deployed in ``folder`` with the clock at ``start``."""
    clock = SimulatedClock(start)
    vault = vicare_vault(folder / "vault", clock)
    store = RecordingStore(vault.store)
    store.inner.set(
        DEVICE_PATH,
        {
            "manufacturer": "viessmann",
            "external_id": "1234567/7571381573112225/0",
            "account_id": ACCOUNT,
        },
    )
    fake = FakeViCare(copy.deepcopy(load(MODEL)))
    with httpx.Client(transport=httpx.MockTransport(fake)) as http:
        yield Deployment(clock, store, vault, fake, http)


@pytest.fixture
def deployment(tmp_path: Path) -> Iterator[Deployment]:
    with deploy(tmp_path, T0) as deployed:
        yield deployed


# -- baselines -----------------------------------------------------------------------------------


def test_a_baseline_is_read_from_the_store_once_per_instance_while_nobody_forgets_it(
    deployment: Deployment,
) -> None:
    dispatcher, poller = deployment.instance(), deployment.instance()
    household = deployment.setpoint()
    deployment.command(dispatcher, GenericAction.SET_MODE_MAX)  # learns the household's value
    reads = deployment.store.reads_of(BASELINES)

    for _ in range(12):  # two days of polls, hours apart: far beyond the old 10-minute cache
        deployment.clock.advance(timedelta(hours=4))
        state = poller.read_state(deployment.device())
        assert state.setpoint_offset_k == 2.0
    assert deployment.store.reads_of(BASELINES) == reads + 2  # once per MAX_AGE (24 h)
    payload = deployment.command(poller, GenericAction.SET_MODE_MIN)
    assert payload["params"]["targetTemperature"] == household - 2


def test_a_baseline_kept_longer_than_its_maximum_age_is_read_again(
    deployment: Deployment,
) -> None:
    gateway = deployment.instance()
    deployment.command(gateway, GenericAction.SET_MODE_MAX)
    gateway.read_state(deployment.device())
    reads = deployment.store.reads_of(BASELINES)
    deployment.clock.advance(MAX_AGE - timedelta(minutes=1))
    gateway.read_state(deployment.device())
    assert deployment.store.reads_of(BASELINES) == reads
    deployment.clock.advance(timedelta(minutes=1))
    gateway.read_state(deployment.device())
    assert deployment.store.reads_of(BASELINES) == reads + 1


def test_forgetting_a_baseline_in_one_instance_reaches_another_at_its_next_call(
    deployment: Deployment,
) -> None:
    reconciler, dispatcher = deployment.instance(), deployment.instance()
    household = deployment.setpoint()
    deployment.command(dispatcher, GenericAction.SET_MODE_MAX)
    assert dispatcher.read_state(deployment.device()).setpoint_offset_k == 2.0  # kept now

    deployment.clock.advance(timedelta(minutes=1))
    deployment.show(household + 1.0)  # the household sets its own comfort value
    reconciler.forget_baseline(deployment.device())  # reconcile saw the override

    # The dispatcher's next call reads the device document first and sees the new epoch: it
    # does not steer around the forgotten value.
    assert dispatcher.read_state(deployment.device()).setpoint_offset_k is None
    payload = deployment.command(dispatcher, GenericAction.SET_MODE_MIN)
    assert payload["baseline"] == {"targetTemperature": household + 1.0}
    assert payload["params"]["targetTemperature"] == household - 1.0
    # ...and the reconciler, which learnt nothing, finds the value learnt anew.
    assert reconciler.read_state(deployment.device()).setpoint_offset_k == -2.0


def test_forgetting_moves_the_device_documents_epoch_after_deleting_the_values(
    deployment: Deployment,
) -> None:
    gateway = deployment.instance()
    deployment.command(gateway, GenericAction.SET_MODE_MAX)
    before = deployment.device().baseline_epoch
    assert before == ""  # a device never forgotten
    seen: list[tuple[str, int]] = []
    inner_update = deployment.store.update

    def update(path: str, changes: Mapping[str, Any], **kw: Any) -> datetime:
        left = len(deployment.store.inner.query("manufacturers/viessmann/baselines").documents)
        seen.append((path, left))
        return inner_update(path, changes, **kw)

    deployment.store.update = update  # type: ignore[method-assign]
    gateway.forget_baseline(deployment.device())
    assert seen == [(DEVICE_PATH, 0)]  # deleted first, then the epoch moved
    after = deployment.device().baseline_epoch
    assert after
    assert after != before
    deployment.clock.advance(timedelta(minutes=10))
    gateway.forget_baseline(deployment.device())
    assert deployment.device().baseline_epoch not in (before, after)
    document = deployment.store.inner.get(DEVICE_PATH)
    assert document is not None
    assert document.data["baseline_forgotten_at"] == deployment.clock.now()


def test_a_device_without_a_document_forgets_its_baseline_all_the_same(
    deployment: Deployment,
) -> None:
    gateway = deployment.instance()
    device = deployment.device()
    deployment.command(gateway, GenericAction.SET_MODE_MAX)
    deployment.store.inner.delete(DEVICE_PATH)
    gateway.forget_baseline(device)  # no document to move: no error
    assert deployment.store.inner.query("manufacturers/viessmann/baselines").documents == []


def test_the_instance_that_loses_the_race_to_learn_steers_around_the_winners_value(
    deployment: Deployment,
) -> None:
    first = StoreBaselineBook(deployment.store, "viessmann", deployment.clock)
    second = StoreBaselineBook(deployment.store, "viessmann", deployment.clock)
    assert first.put("k", {"targetTemperature": 21.0}, epoch="") == {"targetTemperature": 21.0}
    # The second read the device after the first had steered it: its value is a shifted one.
    assert second.put("k", {"targetTemperature": 23.0}, epoch="") == {"targetTemperature": 21.0}
    reads = deployment.store.reads_of(BASELINES)
    assert second.get("k", epoch="") == {"targetTemperature": 21.0}
    assert deployment.store.reads_of(BASELINES) == reads  # kept from the race's read


def test_an_instance_keeps_a_bounded_number_of_baselines_least_recently_used_first(
    deployment: Deployment,
) -> None:
    book = StoreBaselineBook(deployment.store, "viessmann", deployment.clock, max_entries=2)
    for key in ("a", "b", "c"):
        book.put(key, {"v": 1.0})
    for key in ("a", "b", "a", "c"):  # a, b kept; a used; c pushes b out
        book.get(key, epoch="")
    reads = deployment.store.reads_of(BASELINES)
    book.get("a", epoch="")
    book.get("c", epoch="")
    assert deployment.store.reads_of(BASELINES) == reads
    book.get("b", epoch="")
    assert deployment.store.reads_of(BASELINES) == reads + 1


def test_a_baseline_read_under_one_epoch_is_read_again_under_another(
    deployment: Deployment,
) -> None:
    book = StoreBaselineBook(deployment.store, "viessmann", deployment.clock)
    book.put("k", {"v": 20.0})
    book.get("k", epoch="e1")
    reads = deployment.store.reads_of(BASELINES)
    book.get("k", epoch="e1")
    assert deployment.store.reads_of(BASELINES) == reads
    book.get("k", epoch="e2")
    book.get("k")  # without an epoch a value kept under one is not trusted either
    assert deployment.store.reads_of(BASELINES) == reads + 2


def test_a_device_ref_carries_its_documents_epoch_without_changing_its_identity() -> None:
    data = {"manufacturer": "viessmann", "external_id": "x", "account_id": "a"}
    plain = device_ref("d", data)
    moved = device_ref("d", {**data, "baseline_forgotten_at": T0})
    assert (plain.baseline_epoch, moved.baseline_epoch) == ("", T0.isoformat())
    assert plain == moved
    assert hash(plain) == hash(moved)


# -- access tokens and credentials ---------------------------------------------------------------


def test_an_access_token_is_kept_until_shortly_before_it_expires(
    deployment: Deployment,
) -> None:
    gateway = deployment.instance()
    for _ in range(6):  # polls every 10 minutes within the token's hour
        gateway.read_state(deployment.device())
        deployment.clock.advance(timedelta(minutes=9, seconds=50))
    assert len(deployment.fake.token_requests()) == 1
    assert deployment.store.reads_of(CREDENTIALS) == 1  # the refresh: the token (rotation: no read)
    deployment.clock.advance(timedelta(seconds=10))  # 59 minutes on: within the margin
    gateway.read_state(deployment.device())
    assert len(deployment.fake.token_requests()) == 2
    assert deployment.store.reads_of(CREDENTIALS) == 2  # one read a refresh


def test_another_instance_refreshes_with_the_refresh_token_stored_last(
    deployment: Deployment,
) -> None:
    first, second = deployment.instance(), deployment.instance()
    first.read_state(deployment.device())  # rotates r0 → r1, keeps (and stores) access token 1
    deployment.clock.advance(timedelta(minutes=59, seconds=30))  # token 1 within its margin
    second.read_state(deployment.device())  # reads r1, rotates r1 → r2 (stores token 2)
    deployment.clock.advance(timedelta(minutes=60))  # token 2 within its margin too
    first.read_state(deployment.device())  # its token expired: reads r2, never presents r1
    assert deployment.fake.refresh_tokens_seen == [
        "fake-refresh-token-0b9c44",
        "fake-refresh-token-0b9c44-r1",
        "fake-refresh-token-0b9c44-r2",
    ]
    assert deployment.vault.instance().require("viessmann", ACCOUNT).refresh_token == (
        "fake-refresh-token-0b9c44-r3"
    )


def test_two_instances_refreshing_at_once_keep_the_newer_token_stored(
    deployment: Deployment,
) -> None:
    first, second = deployment.instance(), deployment.instance()

    # While the first instance's refresh is at the token endpoint, the second refreshes too
    # (with the same stored token) and stores its rotated one first.
    deployment.fake.before_token.append(lambda: second.read_state(deployment.device()))
    first.read_state(deployment.device())

    stored = deployment.vault.instance().require("viessmann", ACCOUNT)
    assert stored.generation == 2  # onboarding, then exactly one rotation
    assert stored.refresh_token == "fake-refresh-token-0b9c44-r1"  # the one that was stored first
    # Both instances still hold a usable access token of their own: neither refreshes again.
    first.read_state(deployment.device())
    second.read_state(deployment.device())
    assert len(deployment.fake.token_requests()) == 2


def test_threads_needing_a_token_at_once_refresh_it_once() -> None:
    clock = SimulatedClock(T0)
    threads = 8
    arrived = threading.Semaphore(0)
    refreshes: list[int] = []

    def refresh(refused: frozenset[str]) -> AccessToken:
        for _ in range(threads):  # every thread has asked (and waits for this refresh)
            arrived.acquire(timeout=10)  # a keeper without its lock: refreshes at once, fails
        refreshes.append(1)
        return AccessToken(f"token-{len(refreshes)}", clock.now() + timedelta(hours=1))

    keeper = AccessTokenKeeper(clock, refresh)
    got: list[str] = []

    def ask() -> None:
        arrived.release()
        got.append(keeper.token())

    workers = [threading.Thread(target=ask) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert refreshes == [1]
    assert got == ["token-1"] * threads


def test_a_refused_token_is_refreshed_once_however_many_threads_saw_it_refused() -> None:
    clock = SimulatedClock(T0)
    issued: list[str] = []
    told: list[frozenset[str]] = []

    def refresh(refused: frozenset[str]) -> AccessToken:
        told.append(refused)
        issued.append(f"token-{len(issued) + 1}")
        return AccessToken(issued[-1], clock.now() + timedelta(hours=1))

    keeper = AccessTokenKeeper(clock, refresh)
    old = keeper.token()
    assert keeper.token(refused=old) == "token-2"  # the first thread to see the 401
    assert keeper.token(refused=old) == "token-2"  # a second one: already refreshed
    assert keeper.token(refused="token-2") == "token-3"
    assert issued == ["token-1", "token-2", "token-3"]
    # Each refresh is told every token refused here, so it never takes one up from the store.
    assert told == [frozenset(), {"token-1"}, {"token-1", "token-2"}]
    assert "token" not in repr(keeper).replace("AccessTokenKeeper", "")


def test_a_failed_refresh_keeps_nothing_and_the_next_call_tries_again() -> None:
    clock = SimulatedClock(T0)
    answers: list[AccessToken | Exception] = [
        OemUnavailable("token endpoint: HTTP 503"),
        AccessToken("token-1", T0 + timedelta(hours=1)),
    ]

    def refresh(refused: frozenset[str]) -> AccessToken:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    keeper = AccessTokenKeeper(clock, refresh)
    with pytest.raises(OemUnavailable):
        keeper.token()
    assert keeper.token() == "token-1"


def test_the_token_endpoint_is_asked_once_when_threads_of_one_instance_poll_together(
    deployment: Deployment,
) -> None:
    gateway = deployment.instance()
    errors: list[BaseException] = []

    def poll() -> None:
        try:
            gateway.read_state(deployment.device())
        except Exception as err:  # noqa: BLE001  # pragma: no cover - reported below
            errors.append(err)

    workers = [threading.Thread(target=poll) for _ in range(6)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert errors == []
    assert len(deployment.fake.token_requests()) == 1
    assert [r.url for r in deployment.fake.token_requests()] == [httpx.URL(TOKEN_URL)]


# -- the circuit breaker -------------------------------------------------------------------------

CONFIG = BreakerConfig(failure_threshold=3, open_timeout=timedelta(minutes=5))
FAILURE = OemUnavailable("viessmann: 503 Service Unavailable")


def _breaker(store: RecordingStore, clock: SimulatedClock) -> CircuitBreaker:
    return CircuitBreaker(store, "viessmann", clock, CONFIG, metrics=Metrics(None))


@pytest.fixture
def shared() -> tuple[RecordingStore, SimulatedClock]:
    clock = SimulatedClock(T0)
    return RecordingStore(LocalDocumentStore(clock=clock)), clock


def test_a_closed_breaker_admits_calls_on_one_store_read_for_fifteen_minutes(
    shared: tuple[RecordingStore, SimulatedClock],
) -> None:
    store, clock = shared
    breaker = _breaker(store, clock)
    for _ in range(14):
        breaker.before_call()
        breaker.record_success()
        clock.advance(timedelta(minutes=1))
    assert store.reads_of("manufacturers/viessmann") == 1
    clock.advance(timedelta(minutes=1))
    breaker.before_call()
    assert store.reads_of("manufacturers/viessmann") == 2


def test_an_instance_that_kept_closed_stops_at_its_first_failure_after_another_opened(
    shared: tuple[RecordingStore, SimulatedClock],
) -> None:
    store, clock = shared
    first, second = _breaker(store, clock), _breaker(store, clock)
    second.before_call()  # keeps "closed"
    second.record_success()
    for _ in range(3):
        first.before_call()
        first.record_failure(FAILURE)
    assert first.state() == "open"

    clock.advance(timedelta(seconds=1))
    second.before_call()  # its cache still says closed: one more call goes out...
    second.record_failure(FAILURE)  # ...fails, and the failure reads the shared state
    with pytest.raises(CircuitOpen) as refused:
        second.before_call()
    assert refused.value.retry_at == T0 + CONFIG.open_timeout


def test_the_state_an_instance_reports_is_at_most_five_seconds_old(
    shared: tuple[RecordingStore, SimulatedClock],
) -> None:
    store, clock = shared
    first, second = _breaker(store, clock), _breaker(store, clock)
    second.before_call()
    for _ in range(3):
        first.before_call()
        first.record_failure(FAILURE)
    clock.advance(timedelta(seconds=5))
    assert second.state() == "open"  # the metric and status pages do not wait 15 minutes


def test_a_kept_open_breaker_is_read_again_within_five_seconds(
    shared: tuple[RecordingStore, SimulatedClock],
) -> None:
    store, clock = shared
    breaker = _breaker(store, clock)
    for _ in range(3):
        breaker.before_call()
        breaker.record_failure(FAILURE)
    reads = store.reads_of("manufacturers/viessmann")
    with pytest.raises(CircuitOpen):
        breaker.before_call()
    assert store.reads_of("manufacturers/viessmann") == reads
    clock.advance(timedelta(seconds=5))
    with pytest.raises(CircuitOpen):
        breaker.before_call()
    assert store.reads_of("manufacturers/viessmann") == reads + 1


def test_a_failure_that_is_not_the_manufacturers_reads_nothing(
    shared: tuple[RecordingStore, SimulatedClock],
) -> None:
    from hpsteer.errors import DeviceOffline

    store, clock = shared
    breaker = _breaker(store, clock)
    breaker.before_call()
    reads = store.reads_of("manufacturers/viessmann")
    breaker.record_failure(DeviceOffline("gateway offline"))
    assert store.reads_of("manufacturers/viessmann") == reads
