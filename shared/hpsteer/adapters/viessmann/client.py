"""The ViCare IoT API over HTTP: OAuth2 token refresh, reading features, executing commands.

Promises:

- **Credentials** (:mod:`hpsteer.adapters.credentials`): hpsteer's client id from the developer
  portal (a public client, one per application: secret ``vicare-client-id``, read once per
  instance) and the account's refresh token (from the authorization-code + PKCE consent done once
  by a person), sealed in the account's credentials document. Only the refresh grant runs here:
  ``POST {token_url}`` form ``grant_type=refresh_token, client_id, refresh_token`` → an access
  token (3600 s) and, every time, a new refresh token, which is stored at once (whether the old
  one stops working is unconfirmed; storing every time is safe either way). When a refresh is
  refused with ``invalid_grant`` and a newer refresh token was stored meanwhile (another instance
  rotated it), the refresh is tried once more with that one.
- The access token is kept in memory until 60 s before it expires, renewed by one thread at
  a time (:class:`~hpsteer.adapters.oauth.AccessTokenKeeper`: the credentials document is read
  only then): the one stored with the refresh token when another instance got it within the
  hour (:func:`~hpsteer.adapters.oauth.access_token_for`), else a refresh, which stores the new
  one with the rotated refresh token. A 401 answer (``EXPIRED TOKEN``) refreshes (unless
  another thread already did; never taking up the refused token from the store) and retries the
  request once; a second 401 is :class:`~hpsteer.errors.CredentialsInvalid`.
- Failures become hpsteer errors (the recorded bodies in tests/fixtures/oem/viessmann_vicare):

  ===========================================================  ==============================
  429 ``RATE_LIMIT_EXCEEDED``                                  OemRateLimited, ``retry_at`` =
                                                               ``extendedPayload.limitReset``
                                                               (epoch ms), else Retry-After
  ``DEVICE_COMMUNICATION_ERROR`` reason ``DEVICE_OFFLINE`` /   DeviceOffline
  ``GATEWAY_OFFLINE`` (recorded as HTTP 400)
  502 ``DEVICE_COMMUNICATION_ERROR`` (command not delivered),  OemUnavailable
  any 5xx, a non-JSON body (gateway HTML page), timeouts,
  connection errors
  401 after a refresh, a refused refresh (``invalid_grant``),  CredentialsInvalid
  missing or unopenable credentials, 403 other than a plan limit
  a command refused: 400/404/409/422 (``validationErrors``),   CommandRejected
  ``PACKAGE_NOT_PAID_FOR``, ``{"data": {"success": false}}``
  a read refused with 400/404                                  UnknownDevice
  ===========================================================  ==============================

- **No secret leaves this module**: no client id, refresh token or access token appears in a log
  line, an exception message, a ``repr``; httpx errors are never chained (their request carries
  the ``Authorization`` header), messages name the method and the URL path without its query,
  and log records carry method, path, status and ViCare's error type only.

Unconfirmed (see reference/manufacturer-apis.md §1): whether the API needs ``Accept:
application/vnd.siren+json`` (PyViCare sends it; we send ``application/json``), the exact
success body of a command, the status code of ``PACKAGE_NOT_PAID_FOR``, the shape of validation
errors, and whether a 429 carries ``Retry-After``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any, Final
from urllib.parse import quote

import httpx

from hpsteer.adapters.credentials import CredentialStore
from hpsteer.adapters.oauth import AccessToken, AccessTokenKeeper, access_token_for
from hpsteer.errors import (
    CommandRejected,
    CredentialsInvalid,
    DeviceOffline,
    OemRateLimited,
    OemUnavailable,
    UnknownDevice,
)
from hpsteer.ports.clock import Clock

__all__ = [
    "DEFAULT_BASE_URL",
    "DEFAULT_TOKEN_URL",
    "MANUFACTURER",
    "ViCareClient",
    "client_id_secret_name",
]

MANUFACTURER: Final = "viessmann"
DEFAULT_BASE_URL: Final = "https://api.viessmann-climatesolutions.com"
DEFAULT_TOKEN_URL: Final = "https://iam.viessmann-climatesolutions.com/idp/v3/token"
_FEATURES_PATH: Final = "/iot/v2/features/installations/{inst}/gateways/{serial}/devices/{dev}"
_INSTALLATIONS_PATH: Final = "/iot/v2/equipment/installations"
_OFFLINE_REASONS: Final = frozenset({"DEVICE_OFFLINE", "GATEWAY_OFFLINE"})
_REFUSED_COMMAND_STATUSES: Final = frozenset({400, 404, 409, 422})

_URLS_KEPT: Final = 1024
"""Request URLs kept parsed (one or two per device: a function instance's devices fit)."""

_log = logging.getLogger(__name__)


def client_id_secret_name() -> str:
    """The secret holding hpsteer's client id from ViCare's developer portal (per application)."""
    return "vicare-client-id"


class _Unauthorized(Exception):
    """Internal: a 401, answered by one refresh and retry."""


class ViCareClient:
    """One ViCare account's API access (its tokens, its quota)."""

    def __init__(
        self,
        account_id: str,
        credentials: CredentialStore,
        clock: Clock,
        *,
        http: httpx.Client,
        base_url: str = DEFAULT_BASE_URL,
        token_url: str = DEFAULT_TOKEN_URL,
        timeout_s: float = 15.0,
    ) -> None:
        self.account_id = account_id
        self._credentials = credentials
        self._clock = clock
        self._http = http
        self._base_url = base_url.rstrip("/")
        self._token_url = token_url
        self._timeout = httpx.Timeout(timeout_s)
        self._tokens = AccessTokenKeeper(clock, self._obtain)

    def __repr__(self) -> str:
        return f"ViCareClient(account_id={self.account_id!r}, base_url={self._base_url!r})"

    # -- the API --------------------------------------------------------------------------

    def installations(self) -> list[dict[str, Any]]:
        """``GET /iot/v2/equipment/installations?includeGateways=true`` → ``data`` (discovery)."""
        document = self._call("GET", _INSTALLATIONS_PATH, params={"includeGateways": "true"})
        return _data_list(document, "installations")

    def features(
        self, installation_id: str, gateway_serial: str, device_id: str
    ) -> list[dict[str, Any]]:
        """Every feature of one device (``{"data": [feature, …]}`` → the list)."""
        path = self._device_path(installation_id, gateway_serial, device_id) + "/features"
        return _data_list(self._call("GET", path), "features")

    def execute(
        self,
        installation_id: str,
        gateway_serial: str,
        device_id: str,
        feature: str,
        command: str,
        params: Mapping[str, Any],
    ) -> dict[str, Any]:
        """``POST …/features/{feature}/commands/{command}`` with ``params`` as the JSON body."""
        path = (
            self._device_path(installation_id, gateway_serial, device_id)
            + f"/features/{quote(feature, safe='')}/commands/{quote(command, safe='')}"
        )
        document = self._call("POST", path, json_body=dict(params), is_command=True)
        data = document.get("data") if isinstance(document, dict) else None
        if isinstance(data, dict) and data.get("success") is False:
            raise CommandRejected(
                f"ViCare refused {feature}/{command}: success=false, "
                f"reason {_short(data.get('reason'))}, message {_short(data.get('message'))}"
            )
        return data if isinstance(data, dict) else {}

    # -- HTTP -----------------------------------------------------------------------------

    @staticmethod
    def _device_path(installation_id: str, gateway_serial: str, device_id: str) -> str:
        return _FEATURES_PATH.format(
            inst=quote(installation_id, safe=""),
            serial=quote(gateway_serial, safe=""),
            dev=quote(device_id, safe=""),
        )

    def _call(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        json_body: Mapping[str, Any] | None = None,
        is_command: bool = False,
    ) -> Any:
        token = self._tokens.token()
        try:
            return self._attempt(method, path, params, json_body, is_command, token)
        except _Unauthorized:
            _log.debug("ViCare access token refused; refreshing once", extra=_extra(method, path))
        token = self._tokens.token(refused=token)
        try:
            return self._attempt(method, path, params, json_body, is_command, token)
        except _Unauthorized:
            raise CredentialsInvalid(
                f"ViCare {method} {path}: HTTP 401 after a token refresh; "
                f"account {self.account_id} needs a new consent"
            ) from None

    def _attempt(
        self,
        method: str,
        path: str,
        params: Mapping[str, str] | None,
        json_body: Mapping[str, Any] | None,
        is_command: bool,
        token: str,
    ) -> Any:
        try:
            response = self._http.request(
                method,
                _parsed_url(self._base_url + path),
                params=params,
                json=json_body,
                headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
                timeout=self._timeout,
            )
        except httpx.TimeoutException as err:
            raise OemUnavailable(
                f"ViCare {method} {path}: timed out ({type(err).__name__})"
            ) from None
        except httpx.TransportError as err:
            raise OemUnavailable(
                f"ViCare {method} {path}: connection failed ({type(err).__name__})"
            ) from None
        if _log.isEnabledFor(logging.DEBUG):  # build the record's fields only when it is kept
            _log.debug(
                "ViCare answered",
                extra={**_extra(method, path), "status": response.status_code},
            )
        if response.status_code == 401:
            raise _Unauthorized
        return _translate(response, method, path, is_command=is_command, now=self._clock.now())

    # -- tokens ---------------------------------------------------------------------------

    def _obtain(self, refused: frozenset[str]) -> AccessToken:
        """An access token none of ``refused``: the stored one or a refreshed one (the keeper
        calls this one thread at a time per account)."""
        return access_token_for(
            self._credentials,
            self._credentials.require(MANUFACTURER, self.account_id),
            self._refresher,
            label="ViCare",
            refused=refused,
        )

    def _refresher(self) -> Callable[[str], dict[str, Any]]:
        client_id = self._credentials.app_secret(client_id_secret_name())
        return lambda refresh_token: self._token_request(client_id, refresh_token)

    def _token_request(self, client_id: str, refresh_token: str) -> dict[str, Any]:
        try:
            response = self._http.post(
                self._token_url,
                data={
                    "grant_type": "refresh_token",
                    "client_id": client_id,
                    "refresh_token": refresh_token,
                },
                headers={"Accept": "application/json"},
                timeout=self._timeout,
            )
        except httpx.TimeoutException as err:
            raise OemUnavailable(
                f"ViCare token endpoint: timed out ({type(err).__name__})"
            ) from None
        except httpx.TransportError as err:
            raise OemUnavailable(
                f"ViCare token endpoint: connection failed ({type(err).__name__})"
            ) from None
        status = response.status_code
        _log.debug(
            "ViCare token endpoint answered",
            extra={"oem": "viessmann", "account_id": self.account_id, "status": status},
        )
        document = _json_or_none(response)
        if status == 429:
            raise OemRateLimited(
                "ViCare token endpoint: rate limited (HTTP 429)",
                retry_at=_retry_at(response, document, self._clock.now()),
            )
        if status >= 500 or status == 408:
            raise OemUnavailable(f"ViCare token endpoint: HTTP {status}")
        if status >= 400:
            error = document.get("error") if isinstance(document, dict) else None
            raise CredentialsInvalid(
                f"ViCare token endpoint refused the refresh for account {self.account_id}: "
                f"HTTP {status} {_short(error)}; a person must consent again"
            )
        if not isinstance(document, dict):
            raise OemUnavailable(f"ViCare token endpoint: HTTP {status} with a non-JSON body")
        return document


@lru_cache(maxsize=_URLS_KEPT)
def _parsed_url(text: str) -> httpx.URL:
    """``text`` parsed once: given a string, httpx parses the URL again on every request, which
    cost a fifth of a request's own time (an ``httpx.URL`` is immutable: sharing it is safe)."""
    return httpx.URL(text)


# -- response translation -------------------------------------------------------------------


def _translate(
    response: httpx.Response, method: str, path: str, *, is_command: bool, now: datetime
) -> Any:
    status = response.status_code
    document = _json_or_none(response)
    label = f"ViCare {method} {path}"
    if 200 <= status < 300:
        if document is None:
            raise OemUnavailable(f"{label}: HTTP {status} with a non-JSON body")
        return document
    body = document if isinstance(document, dict) else {}
    error_type = body.get("errorType")
    extended = body.get("extendedPayload")
    extended = extended if isinstance(extended, dict) else {}
    reason = extended.get("reason")
    detail = (
        f"HTTP {status} {_short(error_type)} reason {_short(reason)}: {_short(body.get('message'))}"
    )
    if status == 429 or error_type == "RATE_LIMIT_EXCEEDED":
        limit = extended.get("name")
        raise OemRateLimited(
            f"{label}: rate limit {_short(limit)} exceeded (HTTP {status})",
            retry_at=_retry_at(response, body, now),
        )
    if error_type == "DEVICE_COMMUNICATION_ERROR" and reason in _OFFLINE_REASONS:
        raise DeviceOffline(f"{label}: {detail}")
    if document is None or status >= 500 or status == 408:
        shown = detail if document is not None else f"HTTP {status} with a non-JSON body"
        raise OemUnavailable(f"{label}: {shown}")
    if error_type == "PACKAGE_NOT_PAID_FOR":
        raise CommandRejected(f"{label}: the account's plan lacks this feature ({detail})")
    if status == 403:
        raise CredentialsInvalid(f"{label}: {detail}")
    if is_command and status in _REFUSED_COMMAND_STATUSES:
        raise CommandRejected(f"{label}: {detail}{_validation_errors(body)}")
    if not is_command and status in (400, 404):
        raise UnknownDevice(f"{label}: {detail}")
    raise OemUnavailable(f"{label}: {detail}")


def _retry_at(response: httpx.Response, body: Any, now: datetime) -> datetime | None:
    extended = body.get("extendedPayload") if isinstance(body, dict) else None
    reset_ms = extended.get("limitReset") if isinstance(extended, dict) else None
    if isinstance(reset_ms, int | float) and not isinstance(reset_ms, bool):
        return datetime.fromtimestamp(reset_ms / 1000, tz=UTC)
    retry_after = response.headers.get("Retry-After", "")
    if retry_after.isdigit():
        return now + timedelta(seconds=int(retry_after))
    return None


def _validation_errors(body: Mapping[str, Any]) -> str:
    errors = body.get("validationErrors")
    if not isinstance(errors, list) or not errors:
        return ""
    parts = [
        f"{_short(e.get('path'))} {_short(e.get('message'))}"
        for e in errors[:3]
        if isinstance(e, dict)
    ]
    return "; validation: " + ", ".join(parts)


def _json_or_none(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def _data_list(document: Any, what: str) -> list[dict[str, Any]]:
    data = document.get("data") if isinstance(document, dict) else None
    if not isinstance(data, list):
        raise OemUnavailable(f"ViCare {what}: answer without a data list")
    return [item for item in data if isinstance(item, dict)]


def _short(value: Any, limit: int = 120) -> str:
    text = " ".join(str(value).split()) if value is not None else "-"
    return text[:limit] + ("…" if len(text) > limit else "")


def _extra(method: str, path: str) -> dict[str, str]:
    return {"oem": "viessmann", "method": method, "path": path}
