"""The households' credentials, sealed in the document store (hpsteer.adapters.credentials).

Each test runs on the local store and on Firestore's emulator (``document_store``). Secrets live
in a :class:`MemorySecretStore`; each :class:`CredentialStore` built here is one function
instance (its own key and app-secret caches, the same secrets and documents).
"""

from __future__ import annotations

import base64
import json
import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from hpsteer.adapters.credentials import (
    ALGORITHM,
    KEY_SECRET,
    NONCE_BYTES,
    CredentialStore,
    DataKeys,
    account_known,
    add_data_key,
    credentials_path,
    onboard_account,
)
from hpsteer.adapters.oauth import refresh_with_rotation
from hpsteer.backends.local.secrets import MemorySecretStore
from hpsteer.errors import CredentialsInvalid, HpsteerError, InvalidInput
from hpsteer.ports.clock import SimulatedClock
from hpsteer.ports.secrets import SecretValue
from hpsteer.ports.store import DocumentStore

T0 = datetime(2025, 3, 3, 8, tzinfo=UTC)
OEM = "viessmann"
ACCOUNT = "acct-1"
PATH = credentials_path(OEM, ACCOUNT)
TOKEN = "fake-refresh-token-5be1d0"
CLIENT_ID = "fake-own-client-id-aa91"
CLIENT_SECRET = "fake-own-client-secret-6c02"


@pytest.fixture
def secrets() -> MemorySecretStore:
    store = MemorySecretStore()
    add_data_key(store)
    return store


@pytest.fixture
def clock() -> SimulatedClock:
    return SimulatedClock(T0)


@pytest.fixture
def instance(
    document_store: DocumentStore, secrets: MemorySecretStore, clock: SimulatedClock
) -> Callable[[], CredentialStore]:
    """A new function instance's credential store."""
    return lambda: CredentialStore(document_store, secrets, clock)


def key_text(secrets: MemorySecretStore, version: str = "latest") -> str:
    return secrets.get(KEY_SECRET, version).reveal_text()


def stored(document_store: DocumentStore, path: str = PATH) -> dict[str, Any]:
    found = document_store.get(path)
    assert found is not None
    return found.data


# -- sealing -----------------------------------------------------------------------------------


def test_onboarded_credentials_open_as_they_were_stored_in_another_instance(
    instance: Callable[[], CredentialStore],
) -> None:
    onboarded = instance().onboard(
        "nibe_myuplink", ACCOUNT, refresh_token=TOKEN, client_id=CLIENT_ID
    )
    opened = instance().require("nibe_myuplink", ACCOUNT)
    assert opened == onboarded
    assert (opened.refresh_token, opened.client_id, opened.client_secret) == (
        TOKEN,
        CLIENT_ID,
        None,
    )
    assert (opened.generation, opened.key_version) == (1, "1")


def test_the_document_holds_only_an_aes_gcm_envelope_and_plain_facts(
    instance: Callable[[], CredentialStore],
    document_store: DocumentStore,
    secrets: MemorySecretStore,
    clock: SimulatedClock,
) -> None:
    instance().onboard(OEM, ACCOUNT, refresh_token=TOKEN)
    data = stored(document_store)
    assert set(data) == {
        "manufacturer",
        "account_id",
        "generation",
        "onboarded_at",
        "stored_at",
        "sealed",
    }
    assert (data["manufacturer"], data["account_id"], data["generation"]) == (OEM, ACCOUNT, 1)
    assert data["onboarded_at"] == data["stored_at"] == clock.now()
    sealed = data["sealed"]
    assert set(sealed) == {"alg", "kid", "nonce", "ciphertext"}
    assert (sealed["alg"], sealed["kid"]) == (ALGORITHM, "1")
    assert len(base64.b64decode(sealed["nonce"])) == NONCE_BYTES
    text = json.dumps(data, default=str)
    assert TOKEN not in text
    assert key_text(secrets) not in text


def test_every_sealing_draws_a_new_nonce(
    instance: Callable[[], CredentialStore], document_store: DocumentStore
) -> None:
    seen = set()
    for _ in range(3):
        instance().onboard(OEM, ACCOUNT, refresh_token=TOKEN)  # the same plaintext each time
        sealed = stored(document_store)["sealed"]
        seen.add((sealed["nonce"], sealed["ciphertext"]))
    assert len(seen) == 3


def test_an_altered_ciphertext_does_not_open(
    instance: Callable[[], CredentialStore], document_store: DocumentStore
) -> None:
    instance().onboard(OEM, ACCOUNT, refresh_token=TOKEN)
    sealed = stored(document_store)["sealed"]
    raw = bytearray(base64.b64decode(sealed["ciphertext"]))
    raw[0] ^= 0x01
    document_store.update(PATH, {"sealed.ciphertext": base64.b64encode(bytes(raw)).decode()})
    with pytest.raises(CredentialsInvalid, match=r"does not open .*altered, or copied") as err:
        instance().require(OEM, ACCOUNT)
    assert TOKEN not in str(err.value)


def test_an_altered_nonce_does_not_open(
    instance: Callable[[], CredentialStore], document_store: DocumentStore
) -> None:
    instance().onboard(OEM, ACCOUNT, refresh_token=TOKEN)
    document_store.update(PATH, {"sealed.nonce": base64.b64encode(bytes(12)).decode()})
    with pytest.raises(CredentialsInvalid, match=r"does not open"):
        instance().require(OEM, ACCOUNT)


def test_a_document_copied_to_another_account_does_not_open(
    instance: Callable[[], CredentialStore], document_store: DocumentStore
) -> None:
    instance().onboard(OEM, ACCOUNT, refresh_token=TOKEN)
    other = credentials_path(OEM, "acct-2")
    document_store.set(other, {**stored(document_store), "account_id": "acct-2"})
    with pytest.raises(CredentialsInvalid, match=r"account acct-2: does not open"):
        instance().require(OEM, "acct-2")
    assert instance().require(OEM, ACCOUNT).refresh_token == TOKEN  # the original still opens


def test_a_document_copied_to_another_manufacturer_does_not_open(
    instance: Callable[[], CredentialStore], document_store: DocumentStore
) -> None:
    instance().onboard(OEM, ACCOUNT, refresh_token=TOKEN)
    document_store.set(credentials_path("daikin_onecta", ACCOUNT), stored(document_store))
    with pytest.raises(CredentialsInvalid, match=r"does not open"):
        instance().require("daikin_onecta", ACCOUNT)


@pytest.mark.parametrize(
    "envelope",
    [
        None,
        "text",
        {"alg": "AES-128-CBC", "kid": "1", "nonce": "AAAA", "ciphertext": "AAAA"},
        {"alg": ALGORITHM, "kid": "1", "nonce": "not base64!", "ciphertext": "AAAA"},
        {"alg": ALGORITHM, "kid": "1", "nonce": "AAAA", "ciphertext": "AAAA"},
        {"alg": ALGORITHM, "kid": 1, "nonce": "A" * 16, "ciphertext": "A" * 24},
    ],
)
def test_a_malformed_envelope_is_invalid_credentials(
    instance: Callable[[], CredentialStore], document_store: DocumentStore, envelope: Any
) -> None:
    instance().onboard(OEM, ACCOUNT, refresh_token=TOKEN)
    document_store.update(PATH, {"sealed": envelope})
    with pytest.raises(CredentialsInvalid, match=r"stored credentials of viessmann account"):
        instance().require(OEM, ACCOUNT)


# -- onboarding and knowing an account -------------------------------------------------------


def test_an_account_is_known_once_onboarded_and_knowing_reads_no_secret(
    document_store: DocumentStore, secrets: MemorySecretStore, clock: SimulatedClock
) -> None:
    assert not account_known(document_store, OEM, ACCOUNT)
    onboard_account(document_store, secrets, clock, OEM, ACCOUNT, refresh_token=TOKEN)
    assert account_known(document_store, OEM, ACCOUNT)
    assert not account_known(document_store, OEM, "acct-2")
    assert not account_known(document_store, "daikin_onecta", ACCOUNT)


@pytest.mark.parametrize("account_id", ["a/b", "", "../x", "__x__", "a" * 200])
def test_an_account_id_that_cannot_name_one_document_is_not_known_and_cannot_be_onboarded(
    instance: Callable[[], CredentialStore], document_store: DocumentStore, account_id: str
) -> None:
    assert not account_known(document_store, OEM, account_id)
    with pytest.raises(InvalidInput, match=r"account id"):
        instance().onboard(OEM, account_id, refresh_token=TOKEN)


def test_a_malformed_manufacturer_name_is_invalid_input(document_store: DocumentStore) -> None:
    with pytest.raises(InvalidInput, match=r"not a manufacturer name"):
        account_known(document_store, "Vi/essmann", ACCOUNT)


def test_onboarding_needs_a_refresh_token_or_the_accounts_own_client(
    instance: Callable[[], CredentialStore],
) -> None:
    with pytest.raises(InvalidInput, match=r"a refresh token, or a client id and secret"):
        instance().onboard(OEM, ACCOUNT, client_id=CLIENT_ID)
    with pytest.raises(InvalidInput, match=r"empty refresh_token"):
        instance().onboard(OEM, ACCOUNT, refresh_token=" ")
    own = instance().onboard(
        "nibe_myuplink", ACCOUNT, client_id=CLIENT_ID, client_secret=CLIENT_SECRET
    )
    assert own.refresh_token is None


def test_a_new_consent_moves_the_generation_on_so_an_older_rotation_writes_nothing(
    instance: Callable[[], CredentialStore], document_store: DocumentStore, clock: SimulatedClock
) -> None:
    first = instance().onboard(OEM, ACCOUNT, refresh_token=TOKEN)
    clock.advance(timedelta(days=30))
    again = instance().onboard(OEM, ACCOUNT, refresh_token="fake-consented-again")
    assert again.generation == first.generation + 1
    assert instance().store_refresh_token(first, "fake-rotated-from-the-old-one") is None
    assert instance().require(OEM, ACCOUNT).refresh_token == "fake-consented-again"
    assert stored(document_store)["onboarded_at"] == clock.now()


# -- rotation races ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "with_access_token",
    [False, True],
    ids=["a transaction on the generation", "a write conditional on the read's update_time"],
)
def test_of_two_instances_rotating_the_same_generation_exactly_one_writes(
    instance: Callable[[], CredentialStore], clock: SimulatedClock, with_access_token: bool
) -> None:
    instance().onboard(OEM, ACCOUNT, refresh_token=TOKEN)
    instances = [instance(), instance()]
    read = [i.require(OEM, ACCOUNT) for i in instances]
    start = threading.Barrier(2)
    results: list[Any] = [None, None]
    expires = clock.now() + timedelta(hours=1)

    def rotate(n: int) -> None:
        start.wait()
        access = {"access_token": f"fake-at-{n}", "access_expires_at": expires}
        results[n] = instances[n].store_refresh_token(
            read[n], f"fake-rotated-by-{n}", **(access if with_access_token else {})
        )

    threads = [threading.Thread(target=rotate, args=(n,)) for n in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    winners = [n for n, result in enumerate(results) if result is not None]
    assert len(winners) == 1
    final = instance().require(OEM, ACCOUNT)
    assert final.refresh_token == f"fake-rotated-by-{winners[0]}"
    assert final.generation == 2
    if with_access_token:
        assert final.access_token == f"fake-at-{winners[0]}"
        assert final.access_expires_at == expires


def test_a_rotation_after_a_new_consent_writes_nothing_though_it_got_an_access_token(
    instance: Callable[[], CredentialStore], clock: SimulatedClock
) -> None:
    instance().onboard(OEM, ACCOUNT, refresh_token=TOKEN)
    read = instance().require(OEM, ACCOUNT)
    instance().onboard(OEM, ACCOUNT, refresh_token="fake-consented-again")
    rotated = instance().store_refresh_token(
        read,
        "fake-rotated-from-the-old-one",
        access_token="fake-at",
        access_expires_at=clock.now() + timedelta(hours=1),
    )
    assert rotated is None
    assert instance().require(OEM, ACCOUNT).refresh_token == "fake-consented-again"


def test_rotations_in_turn_each_write_on_the_one_before(
    instance: Callable[[], CredentialStore], clock: SimulatedClock
) -> None:
    """A rotation's result carries the document as written, so the same instance's next
    rotation is conditional on it, and a rotation on a stale read writes nothing."""
    store = instance()
    stale = store.onboard(OEM, ACCOUNT, refresh_token=TOKEN)
    current = store.require(OEM, ACCOUNT)
    for n in range(3):
        clock.advance(timedelta(hours=1))
        expires = clock.now() + timedelta(hours=1)
        written = store.store_refresh_token(
            current, f"fake-rt-{n}", access_token=f"fake-at-{n}", access_expires_at=expires
        )
        assert written is not None
        assert written.generation == current.generation + 1
        current = written
    assert instance().require(OEM, ACCOUNT).refresh_token == "fake-rt-2"
    assert (
        store.store_refresh_token(stale, "fake-late", access_token="x", access_expires_at=expires)
        is None
    )


class TokenEndpoint:
    """A manufacturer's token endpoint: every refresh issues a new refresh token; with
    ``revokes_used`` the one presented stops working (as the simulated fleet does)."""

    def __init__(self, valid: str, *, revokes_used: bool) -> None:
        self.valid = {valid}
        self.revokes_used = revokes_used
        self.presented: list[str] = []
        self.issued = 0

    def refresh(self, token: str) -> dict[str, Any]:
        self.presented.append(token)
        if token not in self.valid:
            raise CredentialsInvalid("token endpoint refused the refresh: invalid_grant")
        if self.revokes_used:
            self.valid.discard(token)
        self.issued += 1
        rotated = f"fake-rt-{self.issued}"
        self.valid.add(rotated)
        return {"access_token": f"fake-at-{self.issued}", "refresh_token": rotated}


def test_a_refresh_that_lost_the_race_tries_the_token_the_winner_stored_once(
    instance: Callable[[], CredentialStore],
) -> None:
    instance().onboard(OEM, ACCOUNT, refresh_token=TOKEN)
    endpoint = TokenEndpoint(TOKEN, revokes_used=True)
    winner, loser = instance(), instance()
    read_by_loser = loser.require(OEM, ACCOUNT)

    def loser_request(token: str) -> dict[str, Any]:
        if not endpoint.presented:  # the winner's whole refresh happens first
            current = winner.require(OEM, ACCOUNT)
            refresh_with_rotation(winner, current, endpoint.refresh, label="test")
        return endpoint.refresh(token)

    answer = refresh_with_rotation(loser, read_by_loser, loser_request, label="test")

    assert endpoint.presented == [TOKEN, TOKEN, "fake-rt-1"]
    assert answer["access_token"] == "fake-at-2"
    final = instance().require(OEM, ACCOUNT)
    assert (final.refresh_token, final.generation) == ("fake-rt-2", 3)


def test_a_refresh_whose_rotated_token_lost_the_race_keeps_the_winners_and_its_access_token(
    instance: Callable[[], CredentialStore],
) -> None:
    instance().onboard(OEM, ACCOUNT, refresh_token=TOKEN)
    endpoint = TokenEndpoint(TOKEN, revokes_used=False)  # the old token keeps working
    winner, loser = instance(), instance()
    read_by_loser = loser.require(OEM, ACCOUNT)

    def loser_request(token: str) -> dict[str, Any]:
        answer = endpoint.refresh(token)
        refresh_with_rotation(
            winner, winner.require(OEM, ACCOUNT), endpoint.refresh, label="test"
        )  # the winner stores its token while the loser's answer is on its way
        return answer

    answer = refresh_with_rotation(loser, read_by_loser, loser_request, label="test")

    assert answer["access_token"] == "fake-at-1"
    final = instance().require(OEM, ACCOUNT)
    assert (final.refresh_token, final.generation) == ("fake-rt-2", 2)


def test_a_refused_refresh_with_no_newer_token_is_refused_without_a_second_try(
    instance: Callable[[], CredentialStore],
) -> None:
    instance().onboard(OEM, ACCOUNT, refresh_token=TOKEN)
    endpoint = TokenEndpoint("fake-some-other-token", revokes_used=True)
    store = instance()
    with pytest.raises(CredentialsInvalid):
        refresh_with_rotation(store, store.require(OEM, ACCOUNT), endpoint.refresh, label="t")
    assert endpoint.presented == [TOKEN]


# -- the data key and its rotation -------------------------------------------------------------


def test_the_previous_key_still_opens_and_a_refresh_reseals_with_the_newest(
    instance: Callable[[], CredentialStore],
    document_store: DocumentStore,
    secrets: MemorySecretStore,
) -> None:
    instance().onboard(OEM, ACCOUNT, refresh_token=TOKEN)
    assert add_data_key(secrets) == "2"  # the operator rotates the key

    fresh = instance()
    opened = fresh.require(OEM, ACCOUNT)
    assert (opened.refresh_token, opened.key_version) == (TOKEN, "1")
    refresh_with_rotation(  # a refresh that does not rotate: the account is resealed
        fresh, opened, lambda token: {"access_token": "fake-at"}, label="test"
    )

    assert stored(document_store)["sealed"]["kid"] == "2"
    resealed = instance().require(OEM, ACCOUNT)
    assert (resealed.refresh_token, resealed.generation) == (TOKEN, 2)
    assert not fresh.reseal(resealed)  # already under the newest key: nothing written


def test_a_key_older_than_the_accepted_previous_versions_no_longer_opens(
    instance: Callable[[], CredentialStore], secrets: MemorySecretStore
) -> None:
    instance().onboard(OEM, ACCOUNT, refresh_token=TOKEN)
    add_data_key(secrets)
    add_data_key(secrets)
    with pytest.raises(
        CredentialsInvalid, match=r"sealed with version 1 of secret .* not accepted"
    ):
        instance().require(OEM, ACCOUNT)


def test_a_destroyed_previous_key_no_longer_opens(
    instance: Callable[[], CredentialStore], secrets: MemorySecretStore
) -> None:
    instance().onboard(OEM, ACCOUNT, refresh_token=TOKEN)
    add_data_key(secrets)
    secrets.destroy_version(KEY_SECRET, "1")
    with pytest.raises(CredentialsInvalid, match=r"not accepted"):
        instance().require(OEM, ACCOUNT)


def test_an_instance_started_before_a_key_rotation_opens_newer_documents_and_seals_with_them(
    instance: Callable[[], CredentialStore],
    document_store: DocumentStore,
    secrets: MemorySecretStore,
) -> None:
    old = instance()
    old.onboard(OEM, ACCOUNT, refresh_token=TOKEN)  # reads key version 1
    add_data_key(secrets)
    instance().onboard(OEM, "acct-2", refresh_token="fake-sealed-with-2")

    assert old.require(OEM, "acct-2").refresh_token == "fake-sealed-with-2"
    assert old.keys.newest() == "2"
    old.onboard(OEM, "acct-3", refresh_token="fake-third")
    assert stored(document_store, credentials_path(OEM, "acct-3"))["sealed"]["kid"] == "2"


class CountingSecrets(MemorySecretStore):
    def __init__(self, inner: MemorySecretStore) -> None:
        super().__init__()
        self.inner = inner
        self.reads: list[tuple[str, str]] = []

    def get(self, name: str, version: str = "latest") -> SecretValue:
        self.reads.append((name, version))
        return self.inner.get(name, version)


def test_the_key_is_read_once_per_instance_however_many_accounts_it_opens(
    document_store: DocumentStore, secrets: MemorySecretStore, clock: SimulatedClock
) -> None:
    counting = CountingSecrets(secrets)
    store = CredentialStore(document_store, counting, clock)
    for n in range(5):
        store.onboard(OEM, f"acct-{n}", refresh_token=f"fake-token-{n}")
        store.require(OEM, f"acct-{n}")
    assert counting.reads == [(KEY_SECRET, "latest")]


def test_a_missing_key_is_invalid_credentials_naming_the_secret(
    document_store: DocumentStore, clock: SimulatedClock
) -> None:
    store = CredentialStore(document_store, MemorySecretStore(), clock)
    with pytest.raises(CredentialsInvalid, match=r"credentials-encryption-key not found"):
        store.onboard(OEM, ACCOUNT, refresh_token=TOKEN)
    assert document_store.get(PATH) is None


@pytest.mark.parametrize("payload", [b"not base64 at all!", base64.b64encode(b"too short")])
def test_a_malformed_key_is_invalid_credentials_naming_its_version_only(
    document_store: DocumentStore, clock: SimulatedClock, payload: bytes
) -> None:
    secrets = MemorySecretStore()
    secrets.add_version(KEY_SECRET, payload)
    store = CredentialStore(document_store, secrets, clock)
    with pytest.raises(
        CredentialsInvalid, match=r"secret credentials-encryption-key version 1"
    ) as err:
        store.onboard(OEM, ACCOUNT, refresh_token=TOKEN)
    assert payload.decode() not in str(err.value)


def test_previous_versions_are_bounded() -> None:
    with pytest.raises(InvalidInput):
        DataKeys(MemorySecretStore(), previous_versions=11)


# -- nothing secret shows ----------------------------------------------------------------------


def test_no_token_or_key_reaches_a_log_record_an_error_or_a_repr(
    instance: Callable[[], CredentialStore],
    document_store: DocumentStore,
    secrets: MemorySecretStore,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    shown: list[str] = []
    first = instance()
    onboarded = first.onboard(
        "nibe_myuplink",
        ACCOUNT,
        refresh_token=TOKEN,
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
    )
    shown += [repr(first), str(first), repr(onboarded), str(onboarded), repr(first.keys)]
    endpoint = TokenEndpoint(TOKEN, revokes_used=True)
    for _ in range(3):
        store = instance()
        current = store.require("nibe_myuplink", ACCOUNT)
        shown.append(repr(current))
        refresh_with_rotation(store, current, endpoint.refresh, label="test")
    add_data_key(secrets)
    store = instance()
    refresh_with_rotation(
        store, store.require("nibe_myuplink", ACCOUNT), endpoint.refresh, label="test"
    )
    path = credentials_path("nibe_myuplink", ACCOUNT)
    refusing = TokenEndpoint("fake-nothing-valid", revokes_used=True)

    def refused_refresh() -> None:
        refresh_with_rotation(
            store, store.require("nibe_myuplink", ACCOUNT), refusing.refresh, label="test"
        )

    def altered_document() -> None:
        sealed = stored(document_store, path)["sealed"]
        document_store.update(path, {"sealed.ciphertext": sealed["ciphertext"][::-1]})
        instance().require("nibe_myuplink", ACCOUNT)

    for attempt in (refused_refresh, altered_document):
        with pytest.raises(HpsteerError) as err:
            attempt()
        shown += [str(err.value), repr(err.value), repr(err.value.__cause__)]
        shown.append(repr(err.value.__context__))

    records = [record.getMessage() for record in caplog.records]
    records += [json.dumps(record.__dict__, default=str) for record in caplog.records]
    assert records, "the credential store logs"
    stored_text = json.dumps(stored(document_store, path), default=str)
    tokens = [TOKEN, CLIENT_ID, CLIENT_SECRET, *(f"fake-rt-{n}" for n in range(1, 5))]
    keys = [key_text(secrets, "1"), key_text(secrets, "2")]
    keys += [base64.b64decode(k).hex() for k in keys]
    for secret in tokens + keys:
        assert not [line for line in records if secret in line], secret
        assert not [text for text in shown if secret in text], secret
        assert secret not in stored_text


def test_an_app_secret_is_read_once_and_kept_for_the_instances_life(
    document_store: DocumentStore, secrets: MemorySecretStore, clock: SimulatedClock
) -> None:
    secrets.add_version("x-client-id", b" fake-app-client-1 \n")
    store = CredentialStore(document_store, secrets, clock)
    assert store.app_secret("x-client-id") == "fake-app-client-1"
    secrets.add_version("x-client-id", b"fake-app-client-2")
    assert store.app_secret("x-client-id") == "fake-app-client-1"  # until a new instance
    assert CredentialStore(document_store, secrets, clock).app_secret("x-client-id") == (
        "fake-app-client-2"
    )
    with pytest.raises(CredentialsInvalid, match=r"app credentials missing: secret y-client-id"):
        store.app_secret("y-client-id")
