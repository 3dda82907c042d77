"""The myUplink v2 API over HTTP: OAuth2 tokens, discovery, reading and writing points.

Promises:

- **Credentials** (:mod:`hpsteer.adapters.credentials`): hpsteer's app registered at
  dev.myuplink.com (one per application: secrets ``myuplink-client-id`` and
  ``myuplink-client-secret``, read once per instance) and the account's sealed credentials
  document.

  * *Authorization code* (the normal case): a person consents once (scopes ``READSYSTEM
    WRITESYSTEM offline_access``) and the refresh token is stored. Here only the refresh grant
    runs: ``POST {token_url}`` form ``grant_type=refresh_token, refresh_token, client_id,
    client_secret`` → an access token (3600 s). A refresh token in the answer is stored at once
    (whether myUplink rotates it, and how long it lives, is **unconfirmed**: storing whatever
    comes back is safe either way). When a refresh is refused and a newer refresh token was
    stored meanwhile (another instance rotated it), it is tried once more.
  * *Client credentials*: an account onboarded with its **own** app's client id and secret and no
    refresh token is served with ``grant_type=client_credentials`` (HTTP Basic client id:secret,
    scope ``READSYSTEM WRITESYSTEM``). myUplink issues such tokens only for the systems of the
    account that owns the app (openHAB's binding uses it so): it suits a household running its
    own app, not a fleet, so that app's id and secret are per account and sealed with the
    account (an account's own app is also used for its refresh grant).

- The access token is kept in memory until 60 s before it expires, renewed by one thread at
  a time (:class:`~hpsteer.adapters.oauth.AccessTokenKeeper`: the credentials document is read
  only then). For a refresh-token account: the one stored with the refresh token when another
  instance got it within the hour (:func:`~hpsteer.adapters.oauth.access_token_for`), else a
  refresh, which stores the new one when it writes anyway (a rotated refresh token). A
  client-credentials token is never stored (nothing is written for it). A 401 refreshes (unless
  another thread already did; never taking up the refused token from the store) and retries the
  request once; a second 401 is :class:`~hpsteer.errors.CredentialsInvalid`.
- Failures become hpsteer errors:

  =========================================================  ===================================
  429                                                        OemRateLimited, ``retry_at`` = now +
                                                             ``RateLimit-Reset`` seconds, else
                                                             ``Retry-After``
  any 5xx, 408, a non-JSON 2xx body, timeouts, connection    OemUnavailable
  errors
  403 on PATCH/PUT (no active ``manage`` subscription, or    CommandRejected (permanent: a person
  the token lacks ``WRITESYSTEM``)                           must renew Premium or re-consent)
  400/404/409/422 on PATCH/PUT; a PATCH answer other than    CommandRejected
  ``"modified"`` for a point
  401 after a refresh, a refused refresh, missing or          CredentialsInvalid
  unopenable credentials, 403 on a read
  400/404 on a read                                          UnknownDevice
  =========================================================  ===================================

- **No secret leaves this module**: no client id or secret, refresh or access token appears in a
  log line, an exception message or a ``repr``; httpx errors are never chained (their request
  carries the ``Authorization`` header); messages name the method and the path without query.

Unconfirmed (reference/manufacturer-apis.md §2): the error bodies' shape (messages quote at most
120 characters of whatever comes back), whether ``RateLimit-Reset`` counts seconds from now (as
jaroschek/home-assistant-myuplink reads it; a value above 10⁹ is taken as epoch seconds), and
whether the limit is keyed per application or per user.

The myUplink particulars are here; the request with its retry after a 401 and the token
endpoint's POST are :class:`~hpsteer.adapters.oem_api_client.OemApiClient`'s.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, Final
from urllib.parse import quote

import httpx

from hpsteer.adapters.oauth import AccessToken, access_token_for, access_token_from
from hpsteer.adapters.oem_api_client import OemApiClient, json_or_none, short
from hpsteer.errors import (
    CommandRejected,
    CredentialsInvalid,
    OemRateLimited,
    OemUnavailable,
    UnknownDevice,
)

__all__ = [
    "DEFAULT_BASE_URL",
    "DEFAULT_TOKEN_URL",
    "MANUFACTURER",
    "PATCH_ACCEPTED",
    "MyUplinkClient",
    "client_id_secret_name",
    "client_secret_secret_name",
]

MANUFACTURER: Final = "nibe_myuplink"
DEFAULT_BASE_URL: Final = "https://api.myuplink.com"
DEFAULT_TOKEN_URL: Final = "https://api.myuplink.com/oauth/token"
CLIENT_CREDENTIALS_SCOPE: Final = "READSYSTEM WRITESYSTEM"
PATCH_ACCEPTED: Final = "modified"
"""myUplink's per-point answer to an accepted PATCH (the cloud took it; the device may not yet)."""
_JSON_PATCH: Final = "application/json-patch+json"  # what the reference clients send
_EPOCH_THRESHOLD_S: Final = 1_000_000_000
_REFUSED_COMMAND_STATUSES: Final = frozenset({400, 404, 409, 422})


def client_id_secret_name() -> str:
    """The secret holding hpsteer's myUplink app's client id (per application)."""
    return "myuplink-client-id"


def client_secret_secret_name() -> str:
    """The secret holding hpsteer's myUplink app's client secret."""
    return "myuplink-client-secret"


class MyUplinkClient(OemApiClient):
    """One myUplink account's API access (its tokens)."""

    label = "myUplink"
    oem = MANUFACTURER
    default_base_url = DEFAULT_BASE_URL
    default_token_url = DEFAULT_TOKEN_URL
    _log = logging.getLogger(__name__)  # log lines name this module

    # -- the API --------------------------------------------------------------------------

    def systems(self) -> list[dict[str, Any]]:
        """``GET /v2/systems/me?page=1&itemsPerPage=99`` → ``systems`` (discovery)."""
        document = self._call("GET", "/v2/systems/me", params={"page": "1", "itemsPerPage": "99"})
        systems = document.get("systems") if isinstance(document, dict) else None
        if not isinstance(systems, list):
            raise OemUnavailable("myUplink GET /v2/systems/me: answer without a systems list")
        return [system for system in systems if isinstance(system, dict)]

    def device(self, device_id: str) -> dict[str, Any]:
        """``GET /v2/devices/{id}``: connection state, product, ``availableFeatures``."""
        path = f"/v2/devices/{quote(device_id, safe='')}"
        document = self._call("GET", path)
        if not isinstance(document, dict):
            raise OemUnavailable(f"myUplink GET {path}: answer is not an object")
        return document

    def points(self, device_id: str, parameter_ids: tuple[str, ...] = ()) -> list[dict[str, Any]]:
        """``GET /v2/devices/{id}/points[?parameters=a,b]`` → the list of points."""
        path = f"/v2/devices/{quote(device_id, safe='')}/points"
        params = {"parameters": ",".join(parameter_ids)} if parameter_ids else None
        document = self._call("GET", path, params=params)
        if not isinstance(document, list):
            raise OemUnavailable(f"myUplink GET {path}: answer is not a list of points")
        return [point for point in document if isinstance(point, dict)]

    def patch_points(self, device_id: str, values: Mapping[str, str]) -> dict[str, Any]:
        """``PATCH /v2/devices/{id}/points`` with ``{"47011": "-2"}``; every point must come back
        ``"modified"``, else :class:`~hpsteer.errors.CommandRejected`."""
        path = f"/v2/devices/{quote(device_id, safe='')}/points"
        document = self._call("PATCH", path, json_body=dict(values), is_command=True)
        if not isinstance(document, dict):
            raise CommandRejected(f"myUplink PATCH {path}: answer is not an object of points")
        for parameter_id in values:
            answer = document.get(parameter_id)
            if answer != PATCH_ACCEPTED:
                raise CommandRejected(
                    f"myUplink PATCH {path}: point {parameter_id} answered {short(answer)}, "
                    f"not {PATCH_ACCEPTED!r}"
                )
        return document

    def set_smart_home_mode(self, system_id: str, mode: str) -> dict[str, Any]:
        """``PUT /v2/systems/{systemId}/smart-home-mode`` ``{"smartHomeMode": mode}``
        (``Default|Normal|Away|Vacation|Home``; its effect depends on the household's settings)."""
        path = f"/v2/systems/{quote(system_id, safe='')}/smart-home-mode"
        document = self._call("PUT", path, json_body={"smartHomeMode": mode}, is_command=True)
        return document if isinstance(document, dict) else {}

    def subscriptions(self, system_id: str) -> list[dict[str, Any]]:
        """``GET /v2/systems/{id}/subscriptions``: writes need an active ``manage`` one."""
        path = f"/v2/systems/{quote(system_id, safe='')}/subscriptions"
        document = self._call("GET", path)
        found = document.get("subscriptions") if isinstance(document, dict) else None
        return [s for s in found if isinstance(s, dict)] if isinstance(found, list) else []

    # -- HTTP -----------------------------------------------------------------------------

    def _request(
        self,
        method: str,
        path: str,
        params: Mapping[str, str] | None,
        json_body: Mapping[str, Any] | None,
        token: str,
    ) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
        if json_body is not None:
            headers["Content-Type"] = _JSON_PATCH
        return self._send(
            method,
            path,
            params=params,
            content=_json_bytes(json_body) if json_body is not None else None,
            headers=headers,
        )

    def _answer_fields(self, response: httpx.Response) -> dict[str, str | None]:
        return {"ratelimit_remaining": response.headers.get("RateLimit-Remaining")}

    def _answer(self, response: httpx.Response, method: str, path: str, *, is_command: bool) -> Any:
        return _translate(response, method, path, is_command=is_command, now=self._clock.now())

    # -- tokens ---------------------------------------------------------------------------

    def _obtain(self, refused: frozenset[str]) -> AccessToken:
        """An access token none of ``refused`` (the keeper calls this one thread at a time per
        account): for a refresh-token account the stored one or a refreshed one; for an account
        with its own app a client-credentials grant."""
        account = self._credentials.require(MANUFACTURER, self.account_id)
        if account.refresh_token is None:  # a household's own app (module docstring)
            if not account.client_id or not account.client_secret:
                raise CredentialsInvalid(
                    f"myUplink account {self.account_id} has neither a refresh token nor its own "
                    "app's client credentials: a person must consent"
                )
            document = self._token_request(
                {"grant_type": "client_credentials", "scope": CLIENT_CREDENTIALS_SCOPE},
                auth=(account.client_id, account.client_secret),
            )
            return access_token_from(document, label="myUplink", now=self._clock.now())

        def refresher() -> Callable[[str], dict[str, Any]]:
            client_id = account.client_id or self._credentials.app_secret(client_id_secret_name())
            client_secret = account.client_secret or self._credentials.app_secret(
                client_secret_secret_name()
            )
            return lambda refresh_token: self._token_request(
                {
                    "grant_type": "refresh_token",
                    "refresh_token": refresh_token,
                    "client_id": client_id,
                    "client_secret": client_secret,
                }
            )

        return access_token_for(
            self._credentials, account, refresher, label="myUplink", refused=refused
        )

    def _token_request(
        self, form: Mapping[str, str], *, auth: tuple[str, str] | None = None
    ) -> dict[str, Any]:
        return self._post_token_form(
            form,
            what=f"the {form.get('grant_type')} grant",
            retry_at=lambda response, _body, now: _retry_at(response, now),
            auth=auth,
        )


# -- response translation -------------------------------------------------------------------


def _translate(
    response: httpx.Response, method: str, path: str, *, is_command: bool, now: datetime
) -> Any:
    status = response.status_code
    label = f"myUplink {method} {path}"
    document = json_or_none(response)
    if 200 <= status < 300:
        if document is None:
            if is_command and not response.content.strip():
                return {}  # an empty success answer to a write
            raise OemUnavailable(f"{label}: HTTP {status} with a non-JSON body")
        return document
    detail = f"HTTP {status} {_detail(document, response)}"
    if status == 429:
        raise OemRateLimited(
            f"{label}: rate limited ({detail}; "
            f"limit {response.headers.get('RateLimit-Limit', '-')})",
            retry_at=_retry_at(response, now),
        )
    if status >= 500 or status == 408:
        raise OemUnavailable(f"{label}: {detail}")
    if status == 403 and is_command:
        raise CommandRejected(
            f"{label}: {detail}; writes need the system's active 'manage' (Premium) subscription "
            "and a token with WRITESYSTEM: a person must renew or re-consent"
        )
    if status == 403:
        raise CredentialsInvalid(f"{label}: {detail}; the account may not read this system")
    if is_command and status in _REFUSED_COMMAND_STATUSES:
        raise CommandRejected(f"{label}: {detail}")
    if not is_command and status in (400, 404):
        raise UnknownDevice(f"{label}: {detail}")
    raise OemUnavailable(f"{label}: {detail}")


def _retry_at(response: httpx.Response, now: datetime) -> datetime | None:
    for header in ("RateLimit-Reset", "Retry-After"):
        value = response.headers.get(header, "").strip()
        try:
            seconds = float(value)
        except ValueError:
            continue
        if seconds >= _EPOCH_THRESHOLD_S:
            return datetime.fromtimestamp(seconds, tz=UTC)
        if seconds >= 0:
            return now + timedelta(seconds=seconds)
    return None


def _detail(document: Any, response: httpx.Response) -> str:
    if isinstance(document, dict):
        for key in ("title", "detail", "message", "error", "errors"):
            if document.get(key):
                return short(document.get(key))
        return short(document)
    if document is not None:
        return short(document)
    return "with a non-JSON body" if response.content.strip() else "with an empty body"


def _json_bytes(body: Mapping[str, Any]) -> bytes:
    return json.dumps(dict(body), separators=(",", ":")).encode("utf-8")
