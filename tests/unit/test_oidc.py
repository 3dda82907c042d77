"""The OIDC check in front of ``dispatch``: which Cloud Tasks tokens pass, which are refused, and
how often Google's certificates are fetched.

Tokens are real RS256 JWTs signed by google-auth with keys made here; "Google" is a small fake
certificate endpoint (:class:`FakeGoogleCerts`) behind the injectable fetcher, or an
``httpx.MockTransport`` behind the default one.
"""

from __future__ import annotations

import base64
import functools
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from hpsteer.errors import TransientError
from hpsteer.runtime.oidc import (
    GOOGLE_CERTS_URL,
    AccessDenied,
    AuthenticationFailed,
    CertsUnavailable,
    GoogleCerts,
    OidcPolicy,
    OidcVerifier,
    fetch_google_certs,
)
from tests.support.oidc import SigningKey, make_key

FUNCTION_URL = "https://europe-north1-hpsteer.cloudfunctions.net/dispatch"
TASKS_SA = "tasks-invoker@hpsteer.iam.gserviceaccount.com"
POLICY = OidcPolicy(audience=FUNCTION_URL, service_account=TASKS_SA)


@pytest.fixture(scope="module")
def google_key() -> SigningKey:
    return make_key("google-key-1")


@pytest.fixture(scope="module")
def rotated_key() -> SigningKey:
    return make_key("google-key-2")


@pytest.fixture(scope="module")
def intruder_key() -> SigningKey:
    """Not Google's: a token it signs under Google's key id must fail the signature check."""
    return make_key("google-key-1")


@dataclass
class FakeGoogleCerts:
    """Google's certificate endpoint: what it publishes now, and how often it was asked."""

    published: dict[str, str]
    max_age_s: float | None = 20_000.0
    fetches: int = 0
    failing: bool = False

    def __call__(self) -> tuple[Mapping[str, str], float | None]:
        self.fetches += 1
        if self.failing:
            raise CertsUnavailable("certificate endpoint answered 503")
        return dict(self.published), self.max_age_s


@dataclass
class FakeClock:
    at_s: float = 1_000_000.0

    def __call__(self) -> float:
        return self.at_s


@dataclass
class Setup:
    google: FakeGoogleCerts
    clock: FakeClock
    verifier: OidcVerifier
    key: SigningKey


@pytest.fixture
def setup(google_key: SigningKey) -> Setup:
    google = FakeGoogleCerts({google_key.kid: google_key.cert_pem})
    clock = FakeClock()
    verifier = OidcVerifier(POLICY, GoogleCerts(google, now=clock))
    return Setup(google, clock, verifier, google_key)


def task_claims(**changes: Any) -> dict[str, Any]:
    """The claims of a token Cloud Tasks mints for a dispatch task; a change of None drops one."""
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": "https://accounts.google.com",
        "aud": FUNCTION_URL,
        "azp": "112233445566778899000",
        "sub": "112233445566778899000",
        "email": TASKS_SA,
        "email_verified": True,
        "iat": now,
        "exp": now + 3600,
    }
    claims.update(changes)
    return {name: value for name, value in claims.items() if value is not None}


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def refused(
    verifier: OidcVerifier, authorization: str | None, error: type[Exception], token: str = ""
) -> str:
    """The refusal's message, checked to be of ``error`` and free of the token."""
    with pytest.raises(error) as caught:
        verifier.verify(authorization)
    message = str(caught.value)
    if token:
        assert token not in message
        assert token not in repr(caught.value)
    return message


# What passes


@pytest.mark.parametrize("issuer", ["https://accounts.google.com", "accounts.google.com"])
def test_a_task_token_from_the_expected_service_account_yields_its_claims(
    setup: Setup, issuer: str
) -> None:
    token = setup.key.sign(task_claims(iss=issuer))

    claims = setup.verifier.verify(f"Bearer {token}")

    assert claims["email"] == TASKS_SA
    assert claims["aud"] == FUNCTION_URL
    assert claims["iss"] == issuer


def test_the_bearer_scheme_is_case_insensitive(setup: Setup) -> None:
    token = setup.key.sign(task_claims())

    assert setup.verifier.verify(f"bearer {token}")["email"] == TASKS_SA


def test_a_token_expired_within_the_clock_skew_is_accepted(setup: Setup) -> None:
    lenient = OidcVerifier(
        OidcPolicy(FUNCTION_URL, TASKS_SA, clock_skew_s=300), GoogleCerts(setup.google)
    )
    now = int(time.time())
    token = setup.key.sign(task_claims(iat=now - 3660, exp=now - 60))

    assert lenient.verify(f"Bearer {token}")["email"] == TASKS_SA


# 401: not a valid Google token for this function


@pytest.mark.parametrize("authorization", [None, "", "   "])
def test_a_request_without_authorization_is_unauthenticated(
    setup: Setup, authorization: str | None
) -> None:
    assert "no Authorization header" in refused(setup.verifier, authorization, AuthenticationFailed)
    assert AuthenticationFailed.status == 401


@pytest.mark.parametrize("scheme", ["Basic", "Token", "Bearer:"])
def test_a_header_that_is_not_a_bearer_token_is_unauthenticated(setup: Setup, scheme: str) -> None:
    token = setup.key.sign(task_claims())

    message = refused(setup.verifier, f"{scheme} {token}", AuthenticationFailed, token)

    assert "not a Bearer token" in message


@pytest.mark.parametrize("authorization", ["Bearer", "Bearer   ", "Bearer abc.def.ghi extra"])
def test_a_bearer_header_without_exactly_one_token_is_unauthenticated(
    setup: Setup, authorization: str
) -> None:
    refused(setup.verifier, authorization, AuthenticationFailed)


@pytest.mark.parametrize(
    "garbage",
    [
        "not-a-jwt-but-a-long-opaque-string",
        "only-two-segments-here.still-no-signature",
        "bm90LWpzb24tYXQtYWxs.bm90LWpzb24tYXQtYWxs.c2lnbmF0dXJl",
        "WzEsMiwzXQ.eyJpc3MiOiJ4In0.c2lnbmF0dXJlc2lnbmF0dXJl",
    ],
    ids=["no-dots", "two-segments", "segments-not-json", "header-not-an-object"],
)
def test_a_token_that_is_not_a_jwt_is_unauthenticated_without_quoting_it(
    setup: Setup, garbage: str
) -> None:
    message = refused(setup.verifier, f"Bearer {garbage}", AuthenticationFailed, garbage)

    assert "not a JWT" in message
    for segment in garbage.split("."):
        assert segment not in message


def test_an_expired_token_is_unauthenticated(setup: Setup) -> None:
    now = int(time.time())
    token = setup.key.sign(task_claims(iat=now - 7200, exp=now - 3600))

    message = refused(setup.verifier, f"Bearer {token}", AuthenticationFailed, token)

    assert "expired" in message


def test_a_token_without_an_expiry_is_unauthenticated(setup: Setup) -> None:
    token = setup.key.sign(task_claims(exp=None))

    assert "exp" in refused(setup.verifier, f"Bearer {token}", AuthenticationFailed, token)


def test_a_token_for_another_audience_is_unauthenticated(setup: Setup) -> None:
    other = "https://europe-north1-hpsteer.cloudfunctions.net/verify"
    token = setup.key.sign(task_claims(aud=other))

    message = refused(setup.verifier, f"Bearer {token}", AuthenticationFailed, token)

    assert "audience" in message
    assert other in message
    assert FUNCTION_URL in message


def test_a_token_from_another_issuer_is_unauthenticated(setup: Setup) -> None:
    token = setup.key.sign(task_claims(iss="https://securetoken.google.com/hpsteer"))

    message = refused(setup.verifier, f"Bearer {token}", AuthenticationFailed, token)

    assert "issuer is 'https://securetoken.google.com/hpsteer'" in message


def test_a_token_signed_by_another_key_under_googles_key_id_is_unauthenticated(
    setup: Setup, intruder_key: SigningKey
) -> None:
    token = intruder_key.sign(task_claims())

    message = refused(setup.verifier, f"Bearer {token}", AuthenticationFailed, token)

    assert "signature" in message


def test_a_token_whose_payload_was_altered_is_unauthenticated(setup: Setup) -> None:
    token = setup.key.sign(task_claims(email="attacker@evil.example"))
    header, _, signature = token.split(".")
    honest_payload = setup.key.sign(task_claims()).split(".")[1]
    forged = f"{header}.{honest_payload}.{signature}"

    refused(setup.verifier, f"Bearer {forged}", AuthenticationFailed, forged)


# 403: a genuine token, but not the caller dispatch expects


def test_a_token_of_another_service_account_is_denied(setup: Setup) -> None:
    stranger = "someone-else@hpsteer.iam.gserviceaccount.com"
    token = setup.key.sign(task_claims(email=stranger))

    message = refused(setup.verifier, f"Bearer {token}", AccessDenied, token)

    assert stranger in message
    assert TASKS_SA in message
    assert AccessDenied.status == 403


def test_a_token_without_an_email_is_denied(setup: Setup) -> None:
    token = setup.key.sign(task_claims(email=None))

    refused(setup.verifier, f"Bearer {token}", AccessDenied, token)


@pytest.mark.parametrize("email_verified", [False, "false", None])
def test_a_token_whose_email_is_not_verified_is_denied(
    setup: Setup, email_verified: object
) -> None:
    token = setup.key.sign(task_claims(email_verified=email_verified))

    assert "not verified" in refused(setup.verifier, f"Bearer {token}", AccessDenied, token)


# How often Google is asked


def test_certificates_are_fetched_once_for_many_verifications(setup: Setup) -> None:
    tokens = [setup.key.sign(task_claims(sub=str(n))) for n in range(20)]

    for token in tokens:
        setup.verifier.verify(f"Bearer {token}")

    assert setup.google.fetches == 1


def test_certificates_are_refetched_once_their_max_age_has_passed(setup: Setup) -> None:
    token = setup.key.sign(task_claims())
    setup.verifier.verify(f"Bearer {token}")

    setup.clock.at_s += 19_999
    setup.verifier.verify(f"Bearer {token}")
    assert setup.google.fetches == 1

    setup.clock.at_s += 1
    setup.verifier.verify(f"Bearer {token}")
    assert setup.google.fetches == 2


def test_certificates_without_a_max_age_are_kept_for_an_hour(setup: Setup) -> None:
    setup.google.max_age_s = None
    token = setup.key.sign(task_claims())
    setup.verifier.verify(f"Bearer {token}")

    setup.clock.at_s += 3599
    setup.verifier.verify(f"Bearer {token}")
    assert setup.google.fetches == 1

    setup.clock.at_s += 1
    setup.verifier.verify(f"Bearer {token}")
    assert setup.google.fetches == 2


def test_a_max_age_of_zero_does_not_make_every_verification_fetch(setup: Setup) -> None:
    setup.google.max_age_s = 0.0
    token = setup.key.sign(task_claims())

    for _ in range(5):
        setup.verifier.verify(f"Bearer {token}")

    assert setup.google.fetches == 1


def test_a_token_with_a_key_id_published_after_the_last_fetch_triggers_one_refetch(
    setup: Setup, rotated_key: SigningKey
) -> None:
    setup.verifier.verify(f"Bearer {setup.key.sign(task_claims())}")
    setup.google.published[rotated_key.kid] = rotated_key.cert_pem  # Google rotates its keys

    claims = setup.verifier.verify(f"Bearer {rotated_key.sign(task_claims())}")

    assert claims["email"] == TASKS_SA
    assert setup.google.fetches == 2


def test_unknown_key_ids_are_refused_after_at_most_one_refetch_a_minute(
    setup: Setup, rotated_key: SigningKey
) -> None:
    setup.verifier.verify(f"Bearer {setup.key.sign(task_claims())}")
    made_up = [rotated_key.sign(task_claims(), kid=f"made-up-{n}") for n in range(10)]

    for token in made_up:
        message = refused(setup.verifier, f"Bearer {token}", AuthenticationFailed, token)
        assert "is not among Google's certificates" in message
    assert setup.google.fetches == 2

    setup.clock.at_s += 60
    refused(setup.verifier, f"Bearer {made_up[0]}", AuthenticationFailed, made_up[0])
    assert setup.google.fetches == 3


def test_a_failed_refresh_keeps_the_stale_certificates_and_retries_a_minute_later(
    setup: Setup,
) -> None:
    token = setup.key.sign(task_claims())
    setup.verifier.verify(f"Bearer {token}")
    setup.google.failing = True
    setup.clock.at_s += 20_000

    setup.verifier.verify(f"Bearer {token}")
    setup.verifier.verify(f"Bearer {token}")
    assert setup.google.fetches == 2

    setup.clock.at_s += 60
    setup.google.failing = False
    setup.verifier.verify(f"Bearer {token}")
    assert setup.google.fetches == 3


def test_without_any_certificates_a_failed_fetch_is_transient(setup: Setup) -> None:
    setup.google.failing = True
    token = setup.key.sign(task_claims())

    with pytest.raises(CertsUnavailable) as caught:
        setup.verifier.verify(f"Bearer {token}")

    assert isinstance(caught.value, TransientError)
    assert caught.value.status == 503
    assert token not in str(caught.value)


# The default fetcher: an HTTP GET of Google's certificate URL


def _google_endpoint(
    response: httpx.Response, seen: list[httpx.Request] | None = None
) -> httpx.MockTransport:
    def handle(request: httpx.Request) -> httpx.Response:
        if seen is not None:
            seen.append(request)
        return response

    return httpx.MockTransport(handle)


def test_the_default_fetcher_reads_the_certificates_and_their_remaining_max_age(
    google_key: SigningKey,
) -> None:
    seen: list[httpx.Request] = []
    response = httpx.Response(
        200,
        json={google_key.kid: google_key.cert_pem},
        headers={
            "Cache-Control": "public, max-age=19774, must-revalidate, no-transform",
            "Age": "74",
        },
    )

    certs, fresh_for_s = fetch_google_certs(transport=_google_endpoint(response, seen))

    assert certs == {google_key.kid: google_key.cert_pem}
    assert fresh_for_s == 19_700
    assert [(r.method, str(r.url)) for r in seen] == [("GET", GOOGLE_CERTS_URL)]


@pytest.mark.parametrize(
    ("cache_control", "fresh_for_s"),
    [(None, None), ("no-transform", None), ("s-maxage=50, max-age=120", 120.0)],
)
def test_the_default_fetcher_reads_only_the_max_age_directive(
    google_key: SigningKey, cache_control: str | None, fresh_for_s: float | None
) -> None:
    headers = {} if cache_control is None else {"Cache-Control": cache_control}
    response = httpx.Response(200, json={google_key.kid: google_key.cert_pem}, headers=headers)

    assert fetch_google_certs(transport=_google_endpoint(response))[1] == fresh_for_s


@pytest.mark.parametrize(
    "response",
    [
        httpx.Response(503, text="unavailable"),
        httpx.Response(200, text="<html>not json</html>"),
        httpx.Response(200, json=["not", "an", "object"]),
        httpx.Response(200, json={"kid": 42}),
    ],
    ids=["5xx", "not-json", "json-list", "json-not-strings"],
)
def test_the_default_fetcher_turns_every_failure_into_certs_unavailable(
    response: httpx.Response,
) -> None:
    with pytest.raises(CertsUnavailable):
        fetch_google_certs(transport=_google_endpoint(response))


def test_the_default_fetcher_turns_a_network_failure_into_certs_unavailable() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    with pytest.raises(CertsUnavailable):
        fetch_google_certs(transport=httpx.MockTransport(refuse))


def test_a_verifier_over_the_default_fetcher_accepts_a_task_token(google_key: SigningKey) -> None:
    body = json.dumps({google_key.kid: google_key.cert_pem}).encode()
    response = httpx.Response(200, content=body, headers={"Cache-Control": "max-age=3600"})
    fetch = functools.partial(fetch_google_certs, transport=_google_endpoint(response))
    verifier = OidcVerifier(POLICY, GoogleCerts(fetch))

    claims = verifier.verify(f"Bearer {google_key.sign(task_claims())}")

    assert claims["email"] == TASKS_SA


@pytest.mark.parametrize("header_field", ["alg", "kid"])
def test_a_header_that_quotes_the_tokens_own_payload_is_refused_without_echoing_it(
    setup: Setup, header_field: str
) -> None:
    honest = setup.key.sign(task_claims())
    payload_segment = honest.split(".")[1]
    header = {"alg": "RS256", "kid": setup.key.kid, "typ": "JWT", header_field: payload_segment}
    encoded_header = _b64url(json.dumps(header).encode())
    forged = f"{encoded_header}.{payload_segment}.{honest.split('.')[2]}"

    message = refused(setup.verifier, f"Bearer {forged}", AuthenticationFailed, forged)

    assert payload_segment not in message
    assert "<token>" in message
