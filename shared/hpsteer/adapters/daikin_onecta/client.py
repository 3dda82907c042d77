"""The Daikin Onecta cloud API over HTTP: OAuth2 token refresh, reading gateway devices, PATCHing
characteristics of their management points.

Promises:

- **Credentials** (:mod:`hpsteer.adapters.credentials`): hpsteer's confidential client from
  Daikin's developer portal (one per application: secrets ``onecta-client-id`` and
  ``onecta-client-secret``, read once per instance) and the account's refresh token (from the
  authorization-code consent a person gives once at onboarding, scope ``openid
  onecta:basic.integration offline_access``), sealed in the account's credentials document. Only
  the refresh grant runs here: ``POST {token_url}`` form ``grant_type=refresh_token, client_id,
  client_secret, refresh_token``. A refresh token in the answer that differs from the one sent is
  stored at once (whether Daikin rotates is **unconfirmed**; storing whenever it does is safe
  either way). When a refresh is refused and a newer refresh token was stored meanwhile (another
  instance rotated it), the refresh is tried once more with it.
- The access token is kept in memory until 60 s before it expires, renewed by one thread at
  a time (:class:`~hpsteer.adapters.oauth.AccessTokenKeeper`: the credentials document is read
  only then): the one stored with the refresh token when another instance got it within the
  hour (:func:`~hpsteer.adapters.oauth.access_token_for`), else a refresh, which stores the new
  one when it writes anyway (a rotated refresh token). A 401 answer refreshes (unless another
  thread already did; never taking up the refused token from the store) and retries the request
  once; a second 401 is :class:`~hpsteer.errors.CredentialsInvalid`.
- Endpoints (reference/manufacturer-apis.md §3): ``GET /v1/gateway-devices`` (every unit of the
  account, a JSON list), ``GET /v1/gateway-devices/{id}`` (one unit; that it answers the list's
  element shape is **unconfirmed**: the recorded bodies are all of the list endpoint), and
  ``PATCH /v1/gateway-devices/{id}/management-points/{embeddedId}/characteristics/{name}`` with
  ``{"value": V}`` or ``{"value": V, "path": "/operationModes/heating/setpoints/…"}`` → 204 (body
  shape as jwillemsen/daikin_onecta ``device.py`` ``set_path`` sends it).
- Failures become hpsteer errors:

  ======================================================  ====================================
  429                                                     OemRateLimited; ``retry_at`` from
                                                          ``Retry-After`` (seconds), else
                                                          ``RateLimit-Reset`` (seconds), else
                                                          one minute when
                                                          ``X-RateLimit-Remaining-minute`` is 0
  5xx, 408, a non-JSON body on a read (gateway HTML       OemUnavailable
  page), timeouts, connection errors
  401 after a refresh, a refused refresh, missing or      CredentialsInvalid
  unopenable credentials, 403
  a PATCH refused with 400/404/409/422 (e.g. ``{"code":   CommandRejected
  "READ_ONLY_CHARACTERISTIC", "message": …}``)
  a read refused with 400/404                             UnknownDevice
  ======================================================  ====================================

  A unit whose ``isCloudConnectionUp`` is false is not an HTTP failure: the adapter decides
  (:class:`~hpsteer.errors.DeviceOffline` for commands, ``online=False`` for state).
- **No secret leaves this module**: no client id or secret, refresh or access token appears in a
  log line, an exception message or a ``repr``; httpx errors are never chained (their request
  carries the ``Authorization`` header); messages name the method and the URL path only.

Unconfirmed: token lifetimes and rotation, whether the token endpoint accepts HTTP Basic client
authentication instead of the form fields (we send the form fields, OAuth2
``client_secret_post``), the status and body of a PATCH to a unit that is offline, the body of a
429, and the unit of ``RateLimit-Reset`` (read as seconds, as in the IETF RateLimit header draft).

The Onecta particulars are here; the request with its retry after a 401 and the token
endpoint's POST are :class:`~hpsteer.adapters.oem_api_client.OemApiClient`'s.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any, Final
from urllib.parse import quote

import httpx

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
    "OnectaClient",
    "client_id_secret_name",
    "client_secret_secret_name",
]

MANUFACTURER: Final = "daikin_onecta"
DEFAULT_BASE_URL: Final = "https://api.onecta.daikineurope.com"
DEFAULT_TOKEN_URL: Final = "https://idp.onecta.daikineurope.com/v1/oidc/token"
_DEVICES_PATH: Final = "/v1/gateway-devices"
_CHARACTERISTIC_PATH: Final = (
    "/v1/gateway-devices/{device}/management-points/{point}/characteristics/{name}"
)
_REFUSED_COMMAND_STATUSES: Final = frozenset({400, 404, 409, 422})
_MINUTE: Final = timedelta(minutes=1)


def client_id_secret_name() -> str:
    """The secret holding hpsteer's client id from Daikin's developer portal (per application)."""
    return "onecta-client-id"


def client_secret_secret_name() -> str:
    """The secret holding that client's secret (Daikin's clients are confidential)."""
    return "onecta-client-secret"


class OnectaClient(OemApiClient):
    """One Onecta account's API access (its tokens, its quota)."""

    label = "Onecta"
    oem = MANUFACTURER
    default_base_url = DEFAULT_BASE_URL
    default_token_url = DEFAULT_TOKEN_URL
    _log = logging.getLogger(__name__)  # log lines name this module

    # -- the API --------------------------------------------------------------------------

    def gateway_devices(self) -> list[dict[str, Any]]:
        """``GET /v1/gateway-devices``: every unit of the account (discovery)."""
        document = self._call("GET", _DEVICES_PATH)
        if not isinstance(document, list):
            raise OemUnavailable(f"Onecta GET {_DEVICES_PATH}: answer is not a list of devices")
        return [device for device in document if isinstance(device, dict)]

    def gateway_device(self, device_id: str) -> dict[str, Any]:
        """``GET /v1/gateway-devices/{id}``: one unit, with its management points."""
        path = f"{_DEVICES_PATH}/{quote(device_id, safe='')}"
        document = self._call("GET", path)
        if not isinstance(document, dict) or not isinstance(document.get("managementPoints"), list):
            raise OemUnavailable(f"Onecta GET {path}: answer is not a device with managementPoints")
        return document

    def patch_characteristic(
        self, device_id: str, embedded_id: str, characteristic: str, body: Mapping[str, Any]
    ) -> int:
        """PATCH one characteristic; returns the HTTP status (204 when accepted)."""
        path = _CHARACTERISTIC_PATH.format(
            device=quote(device_id, safe=""),
            point=quote(embedded_id, safe=""),
            name=quote(characteristic, safe=""),
        )
        status: int = self._call("PATCH", path, json_body=dict(body), is_command=True)
        return status

    # -- HTTP -----------------------------------------------------------------------------

    def _answer_fields(self, response: httpx.Response) -> dict[str, str | None]:
        return {
            "remaining_minute": response.headers.get("X-RateLimit-Remaining-minute"),
            "remaining_day": response.headers.get("X-RateLimit-Remaining-day"),
        }

    def _answer(self, response: httpx.Response, method: str, path: str, *, is_command: bool) -> Any:
        return _translate(response, method, path, is_command=is_command, now=self._clock.now())

    # -- tokens ---------------------------------------------------------------------------

    def _refresher(self) -> Callable[[str], dict[str, Any]]:
        client_id = self._credentials.app_secret(client_id_secret_name())
        client_secret = self._credentials.app_secret(client_secret_secret_name())
        return lambda refresh_token: self._token_request(client_id, client_secret, refresh_token)

    def _token_request(
        self, client_id: str, client_secret: str, refresh_token: str
    ) -> dict[str, Any]:
        return self._post_token_form(
            {
                "grant_type": "refresh_token",
                "client_id": client_id,
                "client_secret": client_secret,
                "refresh_token": refresh_token,
            },
            what="the refresh",
            retry_at=lambda response, _body, now: _retry_at(response, now),
        )


# -- response translation -------------------------------------------------------------------


def _translate(
    response: httpx.Response, method: str, path: str, *, is_command: bool, now: datetime
) -> Any:
    status = response.status_code
    label = f"Onecta {method} {path}"
    if 200 <= status < 300:
        if is_command:
            return status  # 204 No Content; any 2xx means the cloud accepted it
        document = json_or_none(response)
        if document is None:
            raise OemUnavailable(f"{label}: HTTP {status} with a non-JSON body")
        return document
    document = json_or_none(response)
    body = document if isinstance(document, dict) else {}
    detail = f"HTTP {status} {short(body.get('code'))}: {short(body.get('message'))}"
    if status == 429:
        raise OemRateLimited(
            f"{label}: rate limit exceeded (HTTP 429, {_windows_spent(response)})",
            retry_at=_retry_at(response, now),
        )
    if status >= 500 or status == 408:
        shown = detail if document is not None else f"HTTP {status} with a non-JSON body"
        raise OemUnavailable(f"{label}: {shown}")
    if status == 403:
        raise CredentialsInvalid(f"{label}: {detail}")
    if is_command and status in _REFUSED_COMMAND_STATUSES:
        raise CommandRejected(f"{label}: {detail}")
    if not is_command and status in (400, 404):
        raise UnknownDevice(f"{label}: {detail}")
    raise OemUnavailable(f"{label}: {detail}")


def _windows_spent(response: httpx.Response) -> str:
    spent = [
        window
        for window in ("minute", "day")
        if response.headers.get(f"X-RateLimit-Remaining-{window}", "").strip() == "0"
    ]
    return "spent: " + ", ".join(spent) if spent else "window not named"


def _retry_at(response: httpx.Response, now: datetime) -> datetime | None:
    for header in ("Retry-After", "RateLimit-Reset"):
        value = response.headers.get(header, "").strip()
        if value.isdigit():
            return now + timedelta(seconds=int(value))
    if response.headers.get("X-RateLimit-Remaining-minute", "").strip() == "0":
        return now + _MINUTE
    return None
