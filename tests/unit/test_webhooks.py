"""Standard Webhooks verification: what is accepted, what is refused and with which status.

The verifier runs on real local parts: secrets in a :class:`MemorySecretStore` (versions as
Secret Manager numbers them), replay records in the local document store, a simulated clock.
Requests are signed here with :func:`sign`, which is itself checked against the specification's
published test vector.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

import pytest

from hpsteer.backends.local.secrets import MemorySecretStore
from hpsteer.backends.local.store import LocalDocumentStore
from hpsteer.errors import InvalidInput, SecretNotFound
from hpsteer.ports.clock import SimulatedClock
from hpsteer.ports.secrets import SecretValue
from hpsteer.services.webhooks import (
    HEADER_ID,
    HEADER_SIGNATURE,
    HEADER_TIMESTAMP,
    Claim,
    Keyring,
    NoUsableSecret,
    SignatureInvalid,
    TimestampOutOfTolerance,
    WebhookMalformed,
    WebhookOptions,
    WebhookRefused,
    WebhookVerifier,
    decode_secret,
    sign,
    signed_headers,
    webhook_id_path,
)

NOW = datetime(2025, 2, 24, 5, 37, tzinfo=UTC)
T = int(NOW.timestamp())
NAME = "telemetry-webhook-secret"
KEY = bytes(range(32))
OLD_KEY = bytes(range(100, 132))
NEWEST_KEY = bytes(range(200, 232))
OTHER_KEY = bytes(range(50, 82))
BODY = b'{"manufacturer": "viessmann", "device_id": "d1", "observed_at": "2025-02-24T05:36:00Z"}'
ID = "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W"


def whsec(key: bytes) -> bytes:
    return b"whsec_" + base64.b64encode(key)


@dataclass
class Endpoint:
    clock: SimulatedClock
    secrets: MemorySecretStore
    store: LocalDocumentStore
    verifier: WebhookVerifier


def endpoint(*keys: bytes, options: WebhookOptions | None = None) -> Endpoint:
    clock = SimulatedClock(NOW)
    secrets = MemorySecretStore()
    for key in keys:
        secrets.add_version(NAME, whsec(key))
    store = LocalDocumentStore(clock=clock)
    options = options or WebhookOptions(secret_name=NAME)
    verifier = WebhookVerifier(Keyring(secrets, clock, options), store, clock, options)
    return Endpoint(clock, secrets, store, verifier)


def headers(
    key: bytes = KEY, webhook_id: str = ID, timestamp: int = T, body: bytes = BODY
) -> dict[str, str]:
    return signed_headers([key], webhook_id, timestamp, body)


# -- the algorithm ----------------------------------------------------------------------------


def test_signing_reproduces_the_specifications_published_test_vector() -> None:
    # Svix's vector, used by the standard-webhooks libraries' own tests (and reproduced by the
    # standardwebhooks 1.1.0 package's sign()).
    secret = SecretValue(NAME, "1", b"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
    key = decode_secret(secret).reveal()

    signature = sign(key, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, b'{"test": 2432232314}')

    assert signature == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_the_specifications_test_vector_verifies_at_its_own_time() -> None:
    signed_at = datetime.fromtimestamp(1614265330, UTC)
    clock = SimulatedClock(signed_at + timedelta(seconds=30))
    secrets = MemorySecretStore()
    secrets.add_version(NAME, b"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
    options = WebhookOptions(secret_name=NAME)
    store = LocalDocumentStore(clock=clock)
    verifier = WebhookVerifier(Keyring(secrets, clock, options), store, clock, options)

    verified = verifier.verify(
        {
            HEADER_ID: "msg_p5jXN8AQM9LWM0D4loKWxJek",
            HEADER_TIMESTAMP: "1614265330",
            HEADER_SIGNATURE: "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
        },
        b'{"test": 2432232314}',
    )

    assert (verified.webhook_id, verified.sent_at) == ("msg_p5jXN8AQM9LWM0D4loKWxJek", signed_at)


# -- accepted and refused requests -------------------------------------------------------------


def tamper(name: str, value: str) -> Callable[[dict[str, str]], dict[str, str]]:
    return lambda h: {**h, name: value}


def drop(name: str) -> Callable[[dict[str, str]], dict[str, str]]:
    return lambda h: {k: v for k, v in h.items() if k != name}


def garbage(value: str) -> Callable[[dict[str, str]], dict[str, str]]:
    return tamper(HEADER_SIGNATURE, value)


def also(entry: str, first: bool = True) -> Callable[[dict[str, str]], dict[str, str]]:
    def change(h: dict[str, str]) -> dict[str, str]:
        parts = [entry, h[HEADER_SIGNATURE]] if first else [h[HEADER_SIGNATURE], entry]
        return {**h, HEADER_SIGNATURE: " ".join(parts)}

    return change


def same(h: dict[str, str]) -> dict[str, str]:
    return h


WRONG_SIGNATURE = sign(OTHER_KEY, ID, T, BODY)


SIG, BAD, AGE = SignatureInvalid, WebhookMalformed, TimestampOutOfTolerance
STATUS: dict[type[WebhookRefused], int] = {SIG: 401, BAD: 400, AGE: 400}
TS = HEADER_TIMESTAMP
NO_SCHEME = WRONG_SIGNATURE[3:]


@pytest.mark.parametrize(
    ("case", "signed_at", "body", "change", "refused"),
    [
        ("valid", T, BODY, same, None),
        ("header names in any case", T, BODY, lambda h: {k.title(): v for k, v in h.items()}, None),
        ("5 minutes old exactly", T - 300, BODY, same, None),
        ("5 minutes ahead exactly", T + 300, BODY, same, None),
        ("tampered id", T, BODY, tamper(HEADER_ID, "msg_other"), SIG),
        ("tampered timestamp", T, BODY, tamper(TS, str(T - 1)), SIG),
        ("tampered body", T, BODY.replace(b"d1", b"d2"), same, SIG),
        ("signed with another secret", T, BODY, garbage(WRONG_SIGNATURE), SIG),
        ("older than 5 minutes", T - 301, BODY, same, AGE),
        ("a day old", T - 86_400, BODY, same, AGE),
        ("more than 5 minutes ahead", T + 301, BODY, same, AGE),
        ("no webhook-id", T, BODY, drop(HEADER_ID), SIG),
        ("no webhook-timestamp", T, BODY, drop(TS), SIG),
        ("no webhook-signature", T, BODY, drop(HEADER_SIGNATURE), SIG),
        ("empty webhook-signature", T, BODY, garbage(""), SIG),
        ("signature without scheme", T, BODY, garbage(NO_SCHEME), SIG),
        ("signature not base64", T, BODY, garbage("v1,!!!not-base64!!!"), SIG),
        ("signature of the wrong length", T, BODY, garbage("v1,AAAA"), SIG),
        ("only an unknown scheme", T, BODY, garbage("v9," + NO_SCHEME), SIG),
        ("several signatures, one valid", T, BODY, also(f"v1a,x {WRONG_SIGNATURE} v1,AAAA"), None),
        ("valid signature listed last", T, BODY, also(WRONG_SIGNATURE), None),
        ("valid signature listed first", T, BODY, also(WRONG_SIGNATURE, first=False), None),
        ("timestamp with a fraction", T, BODY, tamper(TS, f"{T}.5"), BAD),
        ("negative timestamp", T, BODY, tamper(TS, "-5"), BAD),
        ("timestamp in ISO form", T, BODY, tamper(TS, "2025-02-24T05:37:00Z"), BAD),
        ("id with a dot", T, BODY, tamper(HEADER_ID, "msg.1"), BAD),
        ("id with a space", T, BODY, tamper(HEADER_ID, "msg 1"), BAD),
        ("id over 256 characters", T, BODY, tamper(HEADER_ID, "m" * 257), BAD),
    ],
)
def test_a_webhook_is_accepted_only_when_authentic_and_fresh(
    case: str,
    signed_at: int,
    body: bytes,
    change: Callable[[dict[str, str]], dict[str, str]],
    refused: type[WebhookRefused] | None,
) -> None:
    ep = endpoint(KEY)
    request = change(headers(timestamp=signed_at))

    if refused is None:
        verified = ep.verifier.verify(request, body)
        assert verified.secret_version == "1"
        assert verified.body == body
    else:
        with pytest.raises(refused) as caught:
            ep.verifier.verify(request, body)
        assert caught.value.status == STATUS[refused]


def test_a_refusal_message_names_neither_the_secret_nor_a_signature() -> None:
    ep = endpoint(KEY)
    request = headers(key=OTHER_KEY)
    with pytest.raises(SignatureInvalid) as caught:
        ep.verifier.verify(request, BODY)
    text = str(caught.value)
    assert request[HEADER_SIGNATURE][3:] not in text
    assert whsec(KEY).decode() not in text


# -- replays ----------------------------------------------------------------------------------


def test_an_id_is_new_once_then_unfinished_until_processed_then_a_replay() -> None:
    ep = endpoint(KEY)
    verified = ep.verifier.verify(headers(), BODY)

    assert ep.verifier.claim(verified) is Claim.NEW
    assert ep.verifier.claim(verified) is Claim.UNFINISHED
    ep.verifier.mark_processed(verified, samples=1)
    assert ep.verifier.claim(verified) is Claim.PROCESSED


def test_a_replay_signed_anew_within_the_window_is_still_recognised() -> None:
    ep = endpoint(KEY)
    first = ep.verifier.verify(headers(), BODY)
    ep.verifier.claim(first)
    ep.verifier.mark_processed(first)
    ep.clock.advance(timedelta(minutes=4))

    retried = ep.verifier.verify(headers(timestamp=T + 240), BODY)

    assert ep.verifier.claim(retried) is Claim.PROCESSED


def test_the_replay_record_holds_an_expiry_and_no_secret_or_signature() -> None:
    ep = endpoint(KEY)
    request = headers()
    verified = ep.verifier.verify(request, BODY)
    ep.verifier.claim(verified)

    record = ep.store.get(webhook_id_path(NAME, ID))
    assert record is not None
    assert record.data["expires_at"] == NOW + timedelta(hours=24)
    assert record.data["status"] == "received"
    assert record.data["secret_version"] == "1"
    stored = repr(record.data)
    assert request[HEADER_SIGNATURE][3:] not in stored
    assert base64.b64encode(KEY).decode() not in stored
    assert record.id == webhook_id_path(NAME, ID).rsplit("/", 1)[1]
    assert ID not in record.path  # the sender's id never becomes a path


def test_the_same_id_on_two_endpoints_is_two_records() -> None:
    assert webhook_id_path("a-secret", ID) != webhook_id_path("b-secret", ID)


# -- secrets and rotation ---------------------------------------------------------------------


def test_during_rotation_the_new_and_the_previous_secret_are_both_accepted() -> None:
    ep = endpoint(OLD_KEY, KEY)

    assert ep.verifier.verify(headers(key=KEY), BODY).secret_version == "2"
    assert ep.verifier.verify(headers(key=OLD_KEY), BODY).secret_version == "1"


def test_a_secret_rotated_out_of_the_accepted_versions_is_refused() -> None:
    ep = endpoint(OLD_KEY, KEY, NEWEST_KEY)

    assert ep.verifier.verify(headers(key=NEWEST_KEY), BODY).secret_version == "3"
    assert ep.verifier.verify(headers(key=KEY), BODY).secret_version == "2"
    with pytest.raises(SignatureInvalid):
        ep.verifier.verify(headers(key=OLD_KEY), BODY)


def test_with_no_previous_versions_only_the_latest_secret_is_accepted() -> None:
    ep = endpoint(OLD_KEY, KEY, options=WebhookOptions(secret_name=NAME, previous_versions=0))

    ep.verifier.verify(headers(key=KEY), BODY)
    with pytest.raises(SignatureInvalid):
        ep.verifier.verify(headers(key=OLD_KEY), BODY)


class DestroyableSecrets(MemorySecretStore):
    """Secret Manager's disabled or destroyed versions: reading them is SecretNotFound."""

    def __init__(self) -> None:
        super().__init__()
        self.destroyed: set[str] = set()

    def get(self, name: str, version: str = "latest") -> SecretValue:
        if version in self.destroyed:
            raise SecretNotFound(f"secret {name} version {version} is destroyed")
        return super().get(name, version)


def test_a_destroyed_previous_version_is_refused_once_the_cache_expires() -> None:
    clock = SimulatedClock(NOW)
    secrets = DestroyableSecrets()
    secrets.add_version(NAME, whsec(OLD_KEY))
    secrets.add_version(NAME, whsec(KEY))
    options = WebhookOptions(secret_name=NAME)
    store = LocalDocumentStore(clock=clock)
    verifier = WebhookVerifier(Keyring(secrets, clock, options), store, clock, options)
    verifier.verify(headers(key=OLD_KEY), BODY)

    secrets.destroyed.add("1")
    clock.advance(options.key_cache_ttl)

    with pytest.raises(SignatureInvalid):
        verifier.verify(headers(key=OLD_KEY, timestamp=T + 60), BODY)
    verifier.verify(headers(key=KEY, timestamp=T + 60), BODY)


def test_a_new_version_is_used_once_the_key_cache_expires() -> None:
    ep = endpoint(KEY)
    ep.verifier.verify(headers(), BODY)  # fills the cache
    ep.secrets.add_version(NAME, whsec(NEWEST_KEY))

    with pytest.raises(SignatureInvalid):
        ep.verifier.verify(headers(key=NEWEST_KEY), BODY)
    ep.clock.advance(timedelta(seconds=60))
    assert ep.verifier.verify(headers(key=NEWEST_KEY, timestamp=T + 60), BODY).secret_version == "2"


def test_a_version_that_is_no_webhook_secret_is_skipped_and_the_others_still_work(
    caplog: pytest.LogCaptureFixture,
) -> None:
    ep = endpoint(KEY)
    ep.secrets.add_version(NAME, b"not base64 at all: s3cr3t!")

    ep.verifier.verify(headers(key=KEY), BODY)

    assert "version 2 is not a whsec_<base64> webhook secret" in caplog.text
    assert "s3cr3t" not in caplog.text


def test_without_any_secret_the_endpoint_refuses_to_verify() -> None:
    ep = endpoint()
    with pytest.raises(NoUsableSecret):
        ep.verifier.verify(headers(), BODY)


@pytest.mark.parametrize(
    ("payload", "accepted"),
    [
        (whsec(KEY), True),
        (base64.b64encode(KEY), True),  # the prefix is optional
        (whsec(KEY).rstrip(b"="), True),  # so is base64 padding
        (whsec(bytes(23)), False),  # the specification asks for at least 24 bytes
        (whsec(bytes(65)), False),
        (b"whsec_", False),
        (b"\xff\xfe", False),
    ],
)
def test_secrets_decode_from_whsec_base64_of_24_to_64_bytes(payload: bytes, accepted: bool) -> None:
    secret = SecretValue(NAME, "4", payload)
    if accepted:
        assert decode_secret(secret).reveal() == KEY
    else:
        with pytest.raises(InvalidInput, match="secret telemetry-webhook-secret version 4"):
            decode_secret(secret)


def test_a_decoded_key_shows_its_version_but_never_its_bytes() -> None:
    key = decode_secret(SecretValue(NAME, "7", whsec(KEY)))
    assert "7" in repr(key)
    assert repr(KEY) not in repr(key)
    assert base64.b64encode(KEY).decode() not in repr(key)


@pytest.mark.parametrize(
    "change",
    [
        {"previous_versions": -1},
        {"previous_versions": 11},
        {"tolerance": timedelta(0)},
        {"id_retention": timedelta(minutes=9)},
        {"max_samples": 0},
    ],
)
def test_options_that_would_weaken_the_checks_are_refused(change: dict[str, object]) -> None:
    with pytest.raises(ValueError, match="must"):
        replace(WebhookOptions(), **change)  # type: ignore[arg-type]  # deliberately wrong
