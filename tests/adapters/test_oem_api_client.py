"""What every manufacturer's API client does alike (hpsteer.adapters.oem_api_client), specified
on a made-up manufacturer "Acme" served through httpx.MockTransport."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, cast
from urllib.parse import parse_qs

import httpx
import pytest

from hpsteer.adapters.credentials import CredentialStore
from hpsteer.adapters.oauth import AccessToken
from hpsteer.adapters.oem_api_client import OemApiClient, json_or_none, parsed_url, short
from hpsteer.errors import CredentialsInvalid, OemRateLimited, OemUnavailable
from hpsteer.ports.clock import SimulatedClock

NOW = datetime(2025, 1, 15, 12, 0, tzinfo=UTC)
SECRET = "s3cr3t-refresh-token"
TOKEN_1 = "tok-first-9f2c"
TOKEN_2 = "tok-second-7d1a"
Handler = Callable[[httpx.Request], httpx.Response]


class AcmeClient(OemApiClient):
    label = "Acme"
    oem = "acme"
    default_base_url = "https://api.acme.test/"
    default_token_url = "https://id.acme.test/token"
    _log = logging.getLogger("tests.acme")

    def __init__(self, handler: Handler, *, tokens: list[str] | None = None) -> None:
        super().__init__(
            "a1",
            cast(CredentialStore, None),  # _obtain below never reads credentials
            SimulatedClock(NOW),
            http=httpx.Client(transport=httpx.MockTransport(handler)),
        )
        self.tokens = list(tokens or [TOKEN_1, TOKEN_2, "tok-3"])
        self.refused_seen: list[frozenset[str]] = []

    def _obtain(self, refused: frozenset[str]) -> AccessToken:
        self.refused_seen.append(refused)
        return AccessToken(self.tokens.pop(0), NOW + timedelta(hours=1))

    def _answer(self, response: httpx.Response, method: str, path: str, *, is_command: bool) -> Any:
        return {"status": response.status_code, "body": json_or_none(response)}

    def _answer_fields(self, response: httpx.Response) -> dict[str, str | None]:
        return {"remaining": response.headers.get("X-Remaining")}

    def refresh(
        self,
        form: Mapping[str, str],
        *,
        auth: tuple[str, str] | None = None,
        retry_at: Callable[[httpx.Response, Any, datetime], datetime | None] = (
            lambda response, body, now: None
        ),
    ) -> dict[str, Any]:
        return self._post_token_form(form, what="the refresh", retry_at=retry_at, auth=auth)


def answering(*responses: httpx.Response, seen: list[httpx.Request] | None = None) -> Handler:
    queue = list(responses)

    def handler(request: httpx.Request) -> httpx.Response:
        if seen is not None:
            seen.append(request)
        return queue.pop(0)

    return handler


def raising(error: Exception) -> Handler:
    def handler(request: httpx.Request) -> httpx.Response:
        raise error

    return handler


# -- requests -------------------------------------------------------------------------------


def test_a_request_carries_the_kept_token_to_the_base_url_and_its_answer_is_translated() -> None:
    seen: list[httpx.Request] = []
    client = AcmeClient(answering(httpx.Response(200, json={"ok": 1}), seen=seen))

    answer = client._call("GET", "/v1/things", params={"page": "2"})

    assert answer == {"status": 200, "body": {"ok": 1}}
    assert str(seen[0].url) == "https://api.acme.test/v1/things?page=2"
    assert seen[0].headers["Authorization"] == f"Bearer {TOKEN_1}"
    assert seen[0].headers["Accept"] == "application/json"


def test_a_401_gets_another_token_that_is_not_the_refused_one_and_retries_once() -> None:
    seen: list[httpx.Request] = []
    client = AcmeClient(
        answering(httpx.Response(401), httpx.Response(200, json=[]), seen=seen),
    )

    assert client._call("POST", "/x", json_body={"v": 1}, is_command=True)["status"] == 200

    assert [r.headers["Authorization"] for r in seen] == [f"Bearer {TOKEN_1}", f"Bearer {TOKEN_2}"]
    assert client.refused_seen == [frozenset(), frozenset({TOKEN_1})]
    assert seen[1].content == b'{"v":1}'


def test_a_second_401_is_credentials_invalid_naming_the_request_and_account() -> None:
    client = AcmeClient(answering(httpx.Response(401), httpx.Response(401)))

    with pytest.raises(CredentialsInvalid) as raised:
        client._call("GET", "/x")

    assert str(raised.value) == (
        "Acme GET /x: HTTP 401 after a token refresh; account a1 needs a new consent"
    )
    assert raised.value.__cause__ is None
    assert raised.value.__suppress_context__


@pytest.mark.parametrize(
    ("error", "message"),
    [
        (httpx.ReadTimeout("slow"), "Acme GET /x: timed out (ReadTimeout)"),
        (httpx.ConnectError("refused"), "Acme GET /x: connection failed (ConnectError)"),
    ],
)
def test_a_request_that_fails_to_arrive_is_oem_unavailable_and_never_chained(
    error: Exception, message: str
) -> None:
    client = AcmeClient(raising(error))

    with pytest.raises(OemUnavailable) as raised:
        client._call("GET", "/x")

    assert str(raised.value) == message
    assert raised.value.__cause__ is None
    assert raised.value.__suppress_context__


def test_an_answer_is_logged_on_the_clients_logger_with_its_fields_and_no_token(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="tests.acme")
    client = AcmeClient(
        answering(httpx.Response(401), httpx.Response(200, json={}, headers={"X-Remaining": "7"}))
    )

    client._call("GET", "/x")

    records = [r for r in caplog.records if r.name == "tests.acme"]
    assert [r.getMessage() for r in records] == [
        "Acme answered",
        "Acme access token refused; refreshing once",
        "Acme answered",
    ]
    last = records[-1].__dict__
    assert {k: last[k] for k in ("oem", "method", "path", "status", "remaining")} == {
        "oem": "acme",
        "method": "GET",
        "path": "/x",
        "status": 200,
        "remaining": "7",
    }
    assert all(TOKEN_1 not in str(r.__dict__) for r in records)
    assert all(TOKEN_2 not in str(r.__dict__) for r in records)


def test_the_repr_names_the_client_class_and_no_token() -> None:
    client = AcmeClient(answering(httpx.Response(200, json={})))
    client._call("GET", "/x")

    assert repr(client) == "AcmeClient(account_id='a1', base_url='https://api.acme.test')"


# -- the token endpoint ---------------------------------------------------------------------


def test_the_token_form_is_posted_and_its_json_answer_returned() -> None:
    seen: list[httpx.Request] = []
    client = AcmeClient(answering(httpx.Response(200, json={"access_token": "a"}), seen=seen))

    document = client.refresh({"grant_type": "refresh_token", "refresh_token": SECRET})

    assert document == {"access_token": "a"}
    assert str(seen[0].url) == "https://id.acme.test/token"
    assert parse_qs(seen[0].content.decode()) == {
        "grant_type": ["refresh_token"],
        "refresh_token": [SECRET],
    }
    assert "Authorization" not in seen[0].headers


def test_client_authentication_is_http_basic_when_given() -> None:
    seen: list[httpx.Request] = []
    client = AcmeClient(answering(httpx.Response(200, json={}), seen=seen))

    client.refresh({"grant_type": "client_credentials"}, auth=("id", "pw"))

    assert seen[0].headers["Authorization"] == httpx.BasicAuth("id", "pw")._auth_header


def test_a_429_from_the_token_endpoint_is_rate_limited_with_the_clients_retry_at() -> None:
    later = NOW + timedelta(minutes=5)
    given: list[Any] = []

    def retry_at(response: httpx.Response, body: Any, now: datetime) -> datetime:
        given.append((response.status_code, body, now))
        return later

    client = AcmeClient(answering(httpx.Response(429, json={"wait": 300})))

    with pytest.raises(OemRateLimited) as raised:
        client.refresh({"grant_type": "refresh_token"}, retry_at=retry_at)

    assert str(raised.value) == "Acme token endpoint: rate limited (HTTP 429)"
    assert raised.value.retry_at == later
    assert given == [(429, {"wait": 300}, NOW)]


@pytest.mark.parametrize(
    ("response", "error", "message"),
    [
        (httpx.Response(503), OemUnavailable, "Acme token endpoint: HTTP 503"),
        (httpx.Response(408), OemUnavailable, "Acme token endpoint: HTTP 408"),
        (
            httpx.Response(200, text="<html>"),
            OemUnavailable,
            "Acme token endpoint: HTTP 200 with a non-JSON body",
        ),
        (
            httpx.Response(400, json={"error": "invalid_grant", "error_description": SECRET}),
            CredentialsInvalid,
            "Acme token endpoint refused the refresh for account a1: HTTP 400 invalid_grant; "
            "a person must consent again",
        ),
        (
            httpx.Response(401, text="nope"),
            CredentialsInvalid,
            "Acme token endpoint refused the refresh for account a1: HTTP 401 -; "
            "a person must consent again",
        ),
    ],
)
def test_token_endpoint_failures_are_classified(
    response: httpx.Response, error: type[Exception], message: str
) -> None:
    client = AcmeClient(answering(response))

    with pytest.raises(error) as raised:
        client.refresh({"grant_type": "refresh_token", "refresh_token": SECRET})

    assert str(raised.value) == message


@pytest.mark.parametrize(
    ("failure", "message"),
    [
        (httpx.ConnectTimeout("slow"), "Acme token endpoint: timed out (ConnectTimeout)"),
        (httpx.ConnectError("down"), "Acme token endpoint: connection failed (ConnectError)"),
    ],
)
def test_a_token_request_that_fails_to_arrive_is_unavailable_and_never_chained(
    failure: Exception, message: str
) -> None:
    client = AcmeClient(raising(failure))

    with pytest.raises(OemUnavailable) as raised:
        client.refresh({"grant_type": "refresh_token", "refresh_token": SECRET})

    assert str(raised.value) == message
    assert raised.value.__cause__ is None
    assert raised.value.__suppress_context__


def test_the_token_endpoint_answer_is_logged_without_the_form(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="tests.acme")
    client = AcmeClient(answering(httpx.Response(200, json={"access_token": "a"})))

    client.refresh({"grant_type": "refresh_token", "refresh_token": SECRET})

    (record,) = [r for r in caplog.records if r.name == "tests.acme"]
    assert record.getMessage() == "Acme token endpoint answered"
    fields = record.__dict__
    assert (fields["oem"], fields["account_id"], fields["status"]) == ("acme", "a1", 200)
    assert SECRET not in str(fields)


# -- helpers --------------------------------------------------------------------------------


def test_a_url_is_parsed_once_and_shared() -> None:
    text = "https://api.acme.test/v1/only-this-test"
    first = parsed_url(text)

    assert parsed_url(text) is first
    assert first == httpx.URL(text)


def test_short_collapses_whitespace_and_cuts_long_values() -> None:
    assert short(None) == "-"
    assert short("a \n  b") == "a b"
    assert short("x" * 130) == "x" * 120 + "…"
    assert short({"k": 1}, limit=4) == "{'k'…"


def test_json_or_none_is_none_for_a_body_that_is_not_json() -> None:
    assert json_or_none(httpx.Response(200, text="<html>")) is None
    assert json_or_none(httpx.Response(200, json=[1])) == [1]
