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

The ViCare particulars are here; the request with its retry after a 401 and the token
endpoint's POST are :class:`~hpsteer.adapters.oem_api_client.OemApiClient`'s.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, Final
from urllib.parse import quote

import httpx

from hpsteer.adapters.oem_api_client import OemApiClient, json_or_none, short
from hpsteer.errors import (
    CommandRejected,
    CredentialsInvalid,
    DeviceOffline,
    OemRateLimited,
    OemUnavailable,
    UnknownDevice,
)

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


def client_id_secret_name() -> str:
    """The secret holding hpsteer's client id from ViCare's developer portal (per application)."""
    return "vicare-client-id"


class ViCareClient(OemApiClient):
    """One ViCare account's API access (its tokens, its quota)."""

    label = "ViCare"
    oem = MANUFACTURER
    default_base_url = DEFAULT_BASE_URL
    default_token_url = DEFAULT_TOKEN_URL
    _log = logging.getLogger(__name__)  # log lines name this module

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
                f"reason {short(data.get('reason'))}, message {short(data.get('message'))}"
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

    def _answer(self, response: httpx.Response, method: str, path: str, *, is_command: bool) -> Any:
        return _translate(response, method, path, is_command=is_command, now=self._clock.now())

    # -- tokens ---------------------------------------------------------------------------

    def _refresher(self) -> Callable[[str], dict[str, Any]]:
        client_id = self._credentials.app_secret(client_id_secret_name())
        return lambda refresh_token: self._token_request(client_id, refresh_token)

    def _token_request(self, client_id: str, refresh_token: str) -> dict[str, Any]:
        return self._post_token_form(
            {"grant_type": "refresh_token", "client_id": client_id, "refresh_token": refresh_token},
            what="the refresh",
            retry_at=_retry_at,
        )


# -- response translation -------------------------------------------------------------------


def _translate(
    response: httpx.Response, method: str, path: str, *, is_command: bool, now: datetime
) -> Any:
    status = response.status_code
    document = json_or_none(response)
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
        f"HTTP {status} {short(error_type)} reason {short(reason)}: {short(body.get('message'))}"
    )
    if status == 429 or error_type == "RATE_LIMIT_EXCEEDED":
        limit = extended.get("name")
        raise OemRateLimited(
            f"{label}: rate limit {short(limit)} exceeded (HTTP {status})",
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
        f"{short(e.get('path'))} {short(e.get('message'))}"
        for e in errors[:3]
        if isinstance(e, dict)
    ]
    return "; validation: " + ", ".join(parts)


def _data_list(document: Any, what: str) -> list[dict[str, Any]]:
    data = document.get("data") if isinstance(document, dict) else None
    if not isinstance(data, list):
        raise OemUnavailable(f"ViCare {what}: answer without a data list")
    return [item for item in data if isinstance(item, dict)]
