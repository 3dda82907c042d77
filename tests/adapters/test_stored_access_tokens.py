"""The access token stored, sealed, with the refresh token (hpsteer.adapters.credentials, oauth):
a function instance that has not met an account within the hour uses the token another instance
got instead of refreshing, and the stored token is never shown in clear, never taken up again
once refused here, and never replaces a newer one.

Two rigs. The simulated fleet's three manufacturers (their real token endpoints, rotating
refresh tokens, access tokens of 3600 s answered 401 once expired), each "instance" an
:class:`AdapterContext` of its own over one document store and one secret store, with the token
endpoint calls counted on the transport. And ViCare's fake API of ``test_viessmann`` as
``test_instance_caches`` deploys it (two :class:`ManufacturerGateway` over one store), where a
test can revoke a token early or script the token endpoint's answer.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from hpsteer.adapters.credentials import (
    AccountCredentials,
    CredentialStore,
    add_data_key,
    credentials_path,
)
from hpsteer.adapters.oauth import stored_access_token
from hpsteer.adapters.protocol import AdapterContext, ManufacturerAdapter
from hpsteer.adapters.registry import default_registry
from hpsteer.backends.local.secrets import FileSecretStore, MemorySecretStore
from hpsteer.backends.local.store import LocalDocumentStore
from hpsteer.errors import CredentialsInvalid, HpsteerError, InvalidInput
from hpsteer.ports.clock import SimulatedClock
from hpsteer.ports.store import DocumentStore
from hpsteer.sim import MANUFACTURERS, FaultPlan, Fleet, SimApp, SimTransport
from tests.adapters.test_instance_caches import (
    CREDENTIALS,
    Deployment,
    RecordingStore,
    deploy,
)
from tests.adapters.test_viessmann import (
    ACCESS_TOKEN,
    ACCOUNT,
    REFRESH_TOKEN,
)

T0 = datetime(2025, 1, 15, 6, 0, tzinfo=UTC)
BASE = "http://fleet.sim"
TOKEN_PATHS = {"/idp/v3/token", "/oauth/token", "/v1/oidc/token"}
SIM_TOKEN = re.compile(r"sim-(?:at|rt)-[0-9a-f]{24}")
WITHIN_MARGIN = timedelta(minutes=59, seconds=30)
"""A token issued this long ago has less than the 60 s margin left: it is not used."""


class CountingTransport(httpx.BaseTransport):
    """The simulated fleet's transport, counting the calls to the token endpoints."""

    def __init__(self, inner: SimTransport) -> None:
        self.inner = inner
        self.token_calls = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.path in TOKEN_PATHS:
            self.token_calls += 1
        return self.inner.handle_request(request)


@dataclass
class SimDeployment:
    """The fleet, one document store and one secret store; :meth:`instance` starts a function
    instance (its own credential store, key cache and access tokens)."""

    clock: SimulatedClock
    fleet: Fleet
    transport: CountingTransport
    secrets: FileSecretStore
    store: RecordingStore
    seeded: CredentialStore
    contexts: list[AdapterContext] = field(default_factory=list)

    def instance(self) -> dict[str, ManufacturerAdapter]:
        context = AdapterContext(
            secrets=self.secrets,
            clock=self.clock,
            base_urls=dict.fromkeys(MANUFACTURERS, BASE),
            transport=self.transport,
            store=self.store,
        )
        self.contexts.append(context)
        registry = default_registry()
        return {m: registry.build(m, context) for m in MANUFACTURERS}

    def read(self, instance: dict[str, ManufacturerAdapter], manufacturer: str) -> None:
        home = next(h for h in self.fleet if h.manufacturer == manufacturer)
        assert instance[manufacturer].get_device_state(home.ref()).online is True

    def stored(self, manufacturer: str) -> AccountCredentials:
        """The account's credentials as a new instance opens them."""
        home = next(h for h in self.fleet if h.manufacturer == manufacturer)
        return CredentialStore(self.store.inner, self.secrets, self.clock).require(
            manufacturer, home.account_id
        )

    def path(self, manufacturer: str) -> str:
        home = next(h for h in self.fleet if h.manufacturer == manufacturer)
        return credentials_path(manufacturer, home.account_id)

    def stored_text(self) -> str:
        """Every credentials document as JSON text (what Firestore would hold)."""
        page = self.store.inner.collection_group("credentials")
        return json.dumps([d.data for d in page.documents], default=str)


@pytest.fixture
def sim(tmp_path: Path) -> SimDeployment:
    clock = SimulatedClock(T0)
    fleet = Fleet(clock, homes=3, seed=11, faults=FaultPlan(seed=11))
    transport = CountingTransport(SimTransport(SimApp(fleet)))
    secrets = FileSecretStore(tmp_path / "secrets")
    store = RecordingStore(LocalDocumentStore(clock=clock))
    seeded = fleet.seed_credentials(secrets, store.inner)
    return SimDeployment(clock, fleet, transport, secrets, store, seeded)


manufacturers = pytest.mark.parametrize("manufacturer", MANUFACTURERS)


# -- another instance uses the stored token ------------------------------------------------------


@manufacturers
def test_another_instance_uses_the_stored_access_token_without_asking_the_token_endpoint(
    sim: SimDeployment, manufacturer: str
) -> None:
    dispatcher, verifier = sim.instance(), sim.instance()
    sim.read(dispatcher, manufacturer)  # a refresh: the rotation stores the access token with it
    assert sim.transport.token_calls == 1
    stored = sim.stored(manufacturer)
    assert stored.access_expires_at == T0 + timedelta(seconds=3600)
    reads = sim.store.reads_of(sim.path(manufacturer))

    sim.clock.advance(timedelta(minutes=10))  # the verification, on another instance
    sim.read(verifier, manufacturer)

    assert sim.transport.token_calls == 1  # no refresh...
    assert sim.store.reads_of(sim.path(manufacturer)) == reads + 1  # ...one document read...
    assert sim.stored(manufacturer).generation == stored.generation  # ...and nothing written
    sim.clock.advance(timedelta(minutes=10))
    sim.read(verifier, manufacturer)  # then kept in the instance's memory, as before
    assert sim.store.reads_of(sim.path(manufacturer)) == reads + 1


@manufacturers
def test_a_stored_token_about_to_expire_is_refreshed_and_replaced(
    sim: SimDeployment, manufacturer: str
) -> None:
    first, second, third = sim.instance(), sim.instance(), sim.instance()
    sim.read(first, manufacturer)
    before = sim.stored(manufacturer)

    sim.clock.advance(WITHIN_MARGIN)
    sim.read(second, manufacturer)

    assert sim.transport.token_calls == 2
    after = sim.stored(manufacturer)
    assert after.generation == before.generation + 1  # the rotation's write carried it
    assert after.access_token != before.access_token
    assert after.refresh_token != before.refresh_token
    assert after.access_expires_at == T0 + WITHIN_MARGIN + timedelta(seconds=3600)
    sim.clock.advance(timedelta(minutes=30))
    sim.read(third, manufacturer)  # the replaced token serves a third instance
    assert sim.transport.token_calls == 2


@manufacturers
def test_the_access_token_is_stored_sealed_and_never_in_clear(
    sim: SimDeployment, manufacturer: str
) -> None:
    sim.read(sim.instance(), manufacturer)
    stored = sim.stored(manufacturer)
    assert stored.access_token is not None
    assert SIM_TOKEN.fullmatch(stored.access_token)
    document = sim.store.inner.get(sim.path(manufacturer))
    assert document is not None
    assert set(document.data["sealed"]) == {"alg", "kid", "nonce", "ciphertext"}
    assert document.data["access_expires_at"] == stored.access_expires_at
    text = sim.stored_text()
    assert stored.access_token not in text
    assert stored.refresh_token is not None
    assert stored.refresh_token not in text
    assert not SIM_TOKEN.search(text)
    assert stored.access_token not in repr(stored)


# -- documents from before, key rotation ----------------------------------------------------------


@manufacturers
def test_a_document_without_an_access_token_refreshes_once_and_gains_one(
    sim: SimDeployment, manufacturer: str
) -> None:
    old = sim.store.inner.get(sim.path(manufacturer))
    assert old is not None
    assert "access_expires_at" not in old.data  # as onboarding wrote them before, and still does
    assert sim.stored(manufacturer).access_token is None

    sim.read(sim.instance(), manufacturer)
    sim.read(sim.instance(), manufacturer)

    assert sim.transport.token_calls == 1
    assert sim.stored(manufacturer).access_token is not None


def test_a_stored_token_without_its_expiry_is_not_used(sim: SimDeployment) -> None:
    sim.read(sim.instance(), "viessmann")
    document = sim.store.inner.get(sim.path("viessmann"))
    assert document is not None
    data = {k: v for k, v in document.data.items() if k != "access_expires_at"}
    sim.store.inner.set(sim.path("viessmann"), data)
    assert sim.stored("viessmann").access_token is None

    sim.read(sim.instance(), "viessmann")
    assert sim.transport.token_calls == 2


def test_an_access_token_sealed_with_the_previous_key_opens_and_its_refresh_reseals(
    sim: SimDeployment,
) -> None:
    sim.read(sim.instance(), "viessmann")
    assert sim.stored("viessmann").key_version == "1"
    assert add_data_key(sim.secrets) == "2"  # the operator rotates the data key

    sim.clock.advance(timedelta(minutes=10))
    sim.read(sim.instance(), "viessmann")  # a new instance (key 2 newest) opens key 1's token
    assert sim.transport.token_calls == 1
    assert sim.stored("viessmann").key_version == "1"  # using it writes nothing

    sim.clock.advance(timedelta(minutes=50))  # expired: the refresh reseals with key 2
    sim.read(sim.instance(), "viessmann")
    assert sim.transport.token_calls == 2
    resealed = sim.stored("viessmann")
    assert resealed.key_version == "2"
    assert resealed.access_token is not None
    sim.clock.advance(timedelta(minutes=10))
    sim.read(sim.instance(), "viessmann")
    assert sim.transport.token_calls == 2


# -- refused tokens and races (ViCare's fake API) -------------------------------------------------


@pytest.fixture
def deployment(tmp_path: Path) -> Iterator[Deployment]:
    with deploy(tmp_path, T0) as deployed:
        yield deployed


def stored(deployment: Deployment) -> AccountCredentials:
    return deployment.vault.instance().require("viessmann", ACCOUNT)


def bearers(deployment: Deployment) -> list[str]:
    """The access token each API request presented, in order."""
    return [
        r.headers["Authorization"].removeprefix("Bearer ") for r in deployment.fake.api_requests()
    ]


def test_a_401_on_a_stored_token_refreshes_once_and_the_refresh_replaces_it(
    deployment: Deployment,
) -> None:
    first, second = deployment.instance(), deployment.instance()
    first.read_state(deployment.device())  # stores access token 1
    deployment.fake.valid_tokens.discard(f"{ACCESS_TOKEN}-1")  # ViCare ends it early

    deployment.clock.advance(timedelta(minutes=10))
    second.read_state(deployment.device())

    # The refused token is still the stored one when the second instance looks again: it is
    # not taken up (that would be a second 401 and "invalid credentials"); a refresh is.
    assert len(deployment.fake.token_requests()) == 2
    assert bearers(deployment) == [f"{ACCESS_TOKEN}-1", f"{ACCESS_TOKEN}-1", f"{ACCESS_TOKEN}-2"]
    assert stored(deployment).access_token == f"{ACCESS_TOKEN}-2"
    second.read_state(deployment.device())
    assert len(deployment.fake.token_requests()) == 2


def test_a_refused_token_left_in_the_store_is_never_taken_up_again(
    deployment: Deployment,
) -> None:
    first, second = deployment.instance(), deployment.instance()
    first.read_state(deployment.device())  # stores access token 1 (valid for the hour)
    deployment.fake.valid_tokens.discard(f"{ACCESS_TOKEN}-1")
    # A refresh that does not rotate writes nothing: token 1 stays stored.
    deployment.fake.token_answers.append(
        httpx.Response(200, json={"access_token": "fake-unrotated-at", "expires_in": 3600})
    )
    deployment.fake.valid_tokens.add("fake-unrotated-at")
    deployment.clock.advance(timedelta(minutes=5))
    second.read_state(deployment.device())  # 401 on token 1, refresh: the unrotated token
    assert stored(deployment).access_token == f"{ACCESS_TOKEN}-1"

    deployment.fake.valid_tokens.discard("fake-unrotated-at")  # that one is ended too
    deployment.clock.advance(timedelta(minutes=5))
    second.read_state(deployment.device())  # 401; token 1 is stored and unexpired, but refused

    assert bearers(deployment)[-2:] == ["fake-unrotated-at", f"{ACCESS_TOKEN}-2"]
    assert f"{ACCESS_TOKEN}-1" not in bearers(deployment)[3:]
    assert stored(deployment).access_token == f"{ACCESS_TOKEN}-2"


def test_of_two_instances_refreshing_at_once_the_winners_tokens_stay_stored_together(
    deployment: Deployment,
) -> None:
    first, second, third = deployment.instance(), deployment.instance(), deployment.instance()

    # While the first instance's refresh is at the token endpoint, the second refreshes too
    # (same stored refresh token) and stores its rotated token, and its access token, first.
    def second_refreshes() -> None:
        second.read_state(deployment.device())

    deployment.fake.before_token.append(second_refreshes)
    first.read_state(deployment.device())

    winner = stored(deployment)
    assert winner.generation == 2  # onboarding, then exactly one rotation
    assert winner.refresh_token == f"{REFRESH_TOKEN}-r1"  # the second's, stored first
    assert winner.access_token == f"{ACCESS_TOKEN}-1"  # issued with it, not the loser's
    deployment.clock.advance(timedelta(minutes=10))
    third.read_state(deployment.device())
    assert len(deployment.fake.token_requests()) == 2
    assert bearers(deployment)[-1] == f"{ACCESS_TOKEN}-1"


def test_a_new_consent_drops_the_stored_access_token(deployment: Deployment) -> None:
    deployment.instance().read_state(deployment.device())
    assert stored(deployment).access_token is not None
    deployment.vault.instance().onboard("viessmann", ACCOUNT, refresh_token="fake-consent-2")
    assert stored(deployment).access_token is None
    assert "access_expires_at" not in deployment.vault.document("viessmann", ACCOUNT)
    deployment.instance().read_state(deployment.device())
    assert deployment.fake.refresh_tokens_seen[-1] == "fake-consent-2"


def test_an_access_token_to_store_needs_a_value_and_an_aware_expiry(
    deployment: Deployment,
) -> None:
    credentials = deployment.vault.instance()
    used = credentials.require("viessmann", ACCOUNT)
    naive = T0.replace(tzinfo=None)
    with pytest.raises(InvalidInput, match=r"non-empty string"):
        credentials.store_refresh_token(used, "rt", access_token="", access_expires_at=T0)
    with pytest.raises(InvalidInput, match=r"timezone-aware"):
        credentials.store_refresh_token(used, "rt", access_token="at", access_expires_at=naive)
    with pytest.raises(InvalidInput, match=r"timezone-aware"):
        credentials.store_refresh_token(used, "rt", access_token="at")
    assert stored(deployment).generation == used.generation  # nothing written


# -- nothing shows ---------------------------------------------------------------------------------


def test_no_stored_access_token_reaches_a_log_record_an_error_or_the_document_in_clear(
    deployment: Deployment, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    first, second = deployment.instance(), deployment.instance()
    shown: list[str] = []
    first.read_state(deployment.device())
    deployment.clock.advance(timedelta(minutes=10))
    second.read_state(deployment.device())  # the stored token, taken up
    deployment.fake.valid_tokens.clear()
    deployment.clock.advance(timedelta(minutes=10))
    second.read_state(deployment.device())  # a 401, then a refresh
    deployment.fake.valid_tokens.clear()
    deployment.fake.token_answers.append(httpx.Response(400, json={"error": "invalid_grant"}))
    deployment.clock.advance(timedelta(minutes=10))
    with pytest.raises(HpsteerError) as refused:
        deployment.instance().read_state(deployment.device())  # 401 on stored, refusal
    assert isinstance(refused.value, CredentialsInvalid)
    shown += [str(refused.value), repr(refused.value), repr(refused.value.__context__)]
    shown += [repr(stored(deployment)), repr(first), repr(second)]

    records = [record.getMessage() for record in caplog.records]
    records += [json.dumps(record.__dict__, default=str) for record in caplog.records]
    assert any("taken from the credentials document" in r for r in records)
    document = json.dumps(deployment.vault.document("viessmann", ACCOUNT), default=str)
    issued = [f"{ACCESS_TOKEN}-{n}" for n in range(1, deployment.fake.issued + 1)]
    assert len(issued) == 2
    for token in [*issued, REFRESH_TOKEN, *deployment.fake.refresh_tokens_seen]:
        assert not [line for line in records if token in line], token
        assert not [text for text in shown if token in text], token
        assert token not in document, token


def test_the_credentials_document_is_read_once_when_the_stored_token_serves(
    deployment: Deployment,
) -> None:
    deployment.instance().read_state(deployment.device())
    reads = deployment.store.reads_of(CREDENTIALS)
    assert reads == 1  # the refresh: the token; the rotation writes on that read's update_time
    deployment.clock.advance(timedelta(minutes=10))
    deployment.instance().read_state(deployment.device())
    assert deployment.store.reads_of(CREDENTIALS) == reads + 1


# -- on both stores -------------------------------------------------------------------------------


def test_a_stored_access_token_opens_with_its_expiry_on_each_store(
    document_store: DocumentStore,
) -> None:
    clock = SimulatedClock(T0)
    secrets = MemorySecretStore()
    add_data_key(secrets)
    writer = CredentialStore(document_store, secrets, clock)
    used = writer.onboard("viessmann", ACCOUNT, refresh_token=REFRESH_TOKEN)
    expires_at = T0 + timedelta(seconds=3600)
    written = writer.store_refresh_token(
        used, "fake-rt-2", access_token="fake-at-2", access_expires_at=expires_at
    )
    assert written is not None

    opened = CredentialStore(document_store, secrets, clock).require("viessmann", ACCOUNT)
    assert (opened.refresh_token, opened.access_token) == ("fake-rt-2", "fake-at-2")
    assert opened.access_expires_at == expires_at
    found = stored_access_token(opened, T0 + timedelta(minutes=58))
    assert found is not None
    assert found.value == "fake-at-2"
    assert stored_access_token(opened, T0 + timedelta(minutes=58), refused={"fake-at-2"}) is None
    assert stored_access_token(opened, T0 + timedelta(minutes=59)) is None  # within the margin
    # A key-rotation reseal keeps it; a rotation that got no access token keeps it too.
    add_data_key(secrets)
    resealer = CredentialStore(document_store, secrets, clock)
    assert resealer.reseal(resealer.require("viessmann", ACCOUNT))
    again = resealer.require("viessmann", ACCOUNT)
    assert (again.key_version, again.access_token) == ("2", "fake-at-2")
    kept = resealer.store_refresh_token(again, "fake-rt-3")
    assert kept is not None
    assert resealer.require("viessmann", ACCOUNT).access_token == "fake-at-2"
