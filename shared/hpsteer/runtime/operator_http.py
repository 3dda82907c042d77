"""The API transport of the operator's commands: HTTP to the deployed operator API.

Each operation is the API route of the same operation id (:data:`hpsteer.api.routes.ROUTES`,
from which ``docs/openapi.json`` is generated), so methods, paths and bodies are the API's by
construction; answers are read into the API's own models.

**Identity.** Every call carries a Google ID token (``Authorization: Bearer``), found in this
order (:func:`identity_token`): ``--token``; ``--impersonate-service-account SA``, minted by
``gcloud auth print-identity-token --impersonate-service-account=SA --audiences=URL
--include-email`` (a token for the API's URL, with the account's email); ``HPSTEER_ID_TOKEN``;
else the active gcloud account's ``gcloud auth print-identity-token``. A person's account cannot
ask gcloud for an audience, so its token carries gcloud's own, which the API accepts only when
``HPSTEER_API_EXTRA_AUDIENCES`` lists it. The token is never printed or logged: refusals name
the identity by the token's (unverified) email and audience, never by the token.

**Refusals** become :class:`~hpsteer.runtime.operator_client.ApiRefusal` with the API's status,
code, field and sentence. 401 and 403 are explained: which identity was refused, and what role
the operation needs (:data:`hpsteer.domain.roles.REQUIRED_ROLE`); a 401/403 without the API's
JSON body came from Cloud Run's own check (the invoker binding, ``var.api_invokers``).
"""

from __future__ import annotations

import base64
import json
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import quote, urlsplit

import httpx
from pydantic import BaseModel, ValidationError

from hpsteer import __version__
from hpsteer.api.routes import ROUTES
from hpsteer.api.routing import Route
from hpsteer.domain.operator_requests import (
    AlertListQuery,
    DeviceListQuery,
    DeviceRegistration,
    DeviceUpdate,
)
from hpsteer.domain.operator_views import (
    AlertsPage,
    AlertView,
    DeletedDevice,
    DevicesPage,
    DeviceStatus,
    DeviceView,
    ImportReport,
)
from hpsteer.domain.roles import REQUIRED_ROLE
from hpsteer.runtime.operator_client import (
    TOKEN_ENV,
    ApiRefusal,
    ClientError,
    Registration,
    one_line,
)

__all__ = [
    "GCLOUD",
    "ApiClient",
    "IdentityToken",
    "api_base_url",
    "gcloud_command",
    "identity_token",
]

GCLOUD = "gcloud"
GCLOUD_TIMEOUT_S = 60.0
TIMEOUT = httpx.Timeout(120.0, connect=10.0)
"""Generous: an import of 1,000 rows is one request."""
IDENTITY_HEADER = "X-Hpsteer-Identity"
GCLOUD_AUDIENCE_HINT = (
    "a person's gcloud token carries gcloud's own audience, which the API accepts only when "
    "HPSTEER_API_EXTRA_AUDIENCES lists it; else use --impersonate-service-account SA"
)

M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True, slots=True)
class IdentityToken:
    value: str = field(repr=False)
    source: str
    """Where it came from, for messages: ``--token``, ``HPSTEER_ID_TOKEN``, ``gcloud``, or
    ``gcloud as SA``."""

    def claims(self) -> dict[str, Any]:
        """The token's payload, NOT verified (the API verifies it): only to name the identity
        in a message. Empty when it is no JWT."""
        parts = self.value.split(".")
        if len(parts) != 3:
            return {}
        try:
            payload = base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4))
            claims = json.loads(payload)
        except (ValueError, UnicodeDecodeError):
            return {}
        return claims if isinstance(claims, dict) else {}

    def who(self) -> str:
        """``email (audience aud)`` from the claims, or where the token came from."""
        claims = self.claims()
        email = claims.get("email")
        name = str(email) if isinstance(email, str) else f"the token from {self.source}"
        audience = claims.get("aud")
        return f"{name} (audience {audience})" if isinstance(audience, str) else name


def gcloud_command(api_url: str, impersonate: str | None) -> list[str]:
    """The gcloud call that prints an ID token (module docstring)."""
    argv = [GCLOUD, "auth", "print-identity-token"]
    if impersonate:
        argv += [
            f"--impersonate-service-account={impersonate}",
            f"--audiences={api_url}",
            "--include-email",
        ]
    return argv


def _run(argv: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv, capture_output=True, text=True, timeout=GCLOUD_TIMEOUT_S, check=False
    )


def identity_token(
    api_url: str,
    *,
    token: str | None,
    impersonate: str | None,
    environ: Mapping[str, str],
) -> IdentityToken:
    """The caller's ID token (module docstring); ClientError when there is none."""
    if token is not None:
        if not token.strip():
            raise ClientError("--token is empty")
        return IdentityToken(token.strip(), "--token")
    if not impersonate and environ.get(TOKEN_ENV, "").strip():
        return IdentityToken(environ[TOKEN_ENV].strip(), TOKEN_ENV)
    argv = gcloud_command(api_url, impersonate)
    source = f"gcloud as {impersonate}" if impersonate else "gcloud"
    try:
        done = _run(argv)
    except FileNotFoundError:
        raise ClientError(
            f"no ID token: gcloud is not installed; pass --token or set {TOKEN_ENV}"
        ) from None
    except subprocess.TimeoutExpired:
        raise ClientError(f"no ID token: {' '.join(argv[:3])} did not answer in time") from None
    if done.returncode != 0:
        said = [line for line in (done.stderr or "").splitlines() if line.strip()]
        why = said[-1] if said else f"exit status {done.returncode}"
        raise ClientError(f"no ID token: {' '.join(argv[:3])} failed: {why}")
    value = (done.stdout or "").strip()
    if not value:
        raise ClientError(f"no ID token: {' '.join(argv[:3])} printed none")
    return IdentityToken(value, source)


_ROUTES: dict[str, Route] = {route.operation_id: route for route in ROUTES}


def api_base_url(url: str) -> str:
    """``url`` without a trailing slash; ClientError unless it is an http(s) URL."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ClientError(f"--api needs the API's http(s) URL, not {url!r}")
    return url.rstrip("/")


class ApiClient:
    """:class:`~hpsteer.runtime.operator_client.OperatorClient` over HTTP (module docstring).
    ``transport`` replaces the network (tests drive the real API app through it)."""

    def __init__(
        self, url: str, token: IdentityToken, *, transport: httpx.BaseTransport | None = None
    ) -> None:
        self.url = api_base_url(url)
        self.token = token
        self._http = httpx.Client(
            base_url=self.url + "/",
            transport=transport,
            timeout=TIMEOUT,
            follow_redirects=False,
            headers={
                "Authorization": f"Bearer {token.value}",
                "Accept": "application/json",
                "User-Agent": f"hpsteer-cli/{__version__}",
            },
        )

    # -- one call --------------------------------------------------------------------------------

    def _call(
        self,
        operation_id: str,
        path: Mapping[str, str] | None = None,
        *,
        query: Mapping[str, Any] | None = None,
        body: Any = None,
        csv: bytes | None = None,
    ) -> httpx.Response:
        route = _ROUTES[operation_id]
        target = route.template.lstrip("/").format_map(
            {name: quote(value, safe="") for name, value in (path or {}).items()}
        )
        headers: dict[str, str] = {}
        content: bytes | None = None
        if csv is not None:
            content, headers["Content-Type"] = csv, "text/csv; charset=utf-8"
        elif body is not None:
            content = json.dumps(body, allow_nan=False).encode()
            headers["Content-Type"] = "application/json"
        try:
            response = self._http.request(
                route.method, target, params=query, content=content, headers=headers
            )
        except httpx.HTTPError as err:
            raise ClientError(
                f"cannot reach the API at {self.url}: {type(err).__name__}: {err}"
            ) from None
        if response.status_code >= 400:
            raise self._refusal(route, response)
        return response

    def _answer(self, response: httpx.Response, model: type[M]) -> M:
        try:
            return model.model_validate(response.json())
        except (ValueError, ValidationError) as err:
            raise ClientError(
                f"the API answered {response.status_code} with a body this hpsteer does not "
                f"read as {model.__name__}: {one_line(str(err), 200)}"
            ) from None

    def _refusal(self, route: Route, response: httpx.Response) -> ApiRefusal:
        status = response.status_code
        error = _error_body(response)
        required = REQUIRED_ROLE[route.operation].value
        if error is None:
            text = one_line(response.text, 160) or response.reason_phrase
            if status == 401:
                return ApiRefusal(
                    status,
                    "refused_by_cloud_run",
                    f"Cloud Run refused the ID token of {self.token.who()} before the API saw "
                    f"the call: expired, or not for {self.url} ({text})",
                )
            if status == 403:
                return ApiRefusal(
                    status,
                    "refused_by_cloud_run",
                    f"Cloud Run refused {self.token.who()} before the API saw the call: the "
                    "caller needs roles/run.invoker on the API (terraform var.api_invokers), "
                    f"and {route.operation_id} needs the API role {required} ({text})",
                )
            return ApiRefusal(status, "not_the_api", f"{self.url} answered {status}: {text}")
        code, message, at = error
        if status == 401:
            hint = (
                GCLOUD_AUDIENCE_HINT
                if self.token.source == "gcloud"
                else f"it must be a current Google ID token for audience {self.url}"
            )
            message = f"the API refused the ID token of {self.token.who()}: {message}; {hint}"
        elif status == 403:
            identity = response.headers.get(IDENTITY_HEADER) or self.token.who()
            if code == "role_too_low":
                message = (
                    f"{identity} may not {route.operation_id} ({route.method} {route.template}): "
                    f"it needs role {required} or above (the API's HPSTEER_API_ROLES)"
                )
            else:
                message = (
                    f"{message}; {identity} was refused, and {route.operation_id} needs role "
                    f"{required} or above (the API's HPSTEER_API_ROLES)"
                )
        return ApiRefusal(status, code, message, at)

    # -- the operations --------------------------------------------------------------------------

    def list_devices(self, query: DeviceListQuery) -> DevicesPage:
        params = query.model_dump(mode="json", exclude_none=True)
        return self._answer(self._call("listDevices", query=params), DevicesPage)

    def register_device(self, registration: DeviceRegistration) -> Registration:
        body = registration.model_dump(mode="json", exclude_unset=True)
        response = self._call("registerDevice", body=body)
        return Registration(self._answer(response, DeviceView), response.status_code == 201)

    def import_devices(self, csv: bytes) -> ImportReport:
        return self._answer(self._call("importDevices", csv=csv), ImportReport)

    def device_status(self, device_id: str) -> DeviceStatus:
        response = self._call("getDeviceStatus", {"device_id": device_id})
        return self._answer(response, DeviceStatus)

    def set_steering(self, device_id: str, enabled: bool) -> DeviceView:
        response = self._call("setSteering", {"device_id": device_id}, body={"enabled": enabled})
        return self._answer(response, DeviceView)

    def update_device(self, device_id: str, update: DeviceUpdate) -> DeviceView:
        body = update.model_dump(mode="json", exclude_unset=True)
        response = self._call("updateDevice", {"device_id": device_id}, body=body)
        return self._answer(response, DeviceView)

    def delete_device(self, device_id: str) -> DeletedDevice:
        response = self._call("deleteDevice", {"device_id": device_id})
        return self._answer(response, DeletedDevice)

    def list_alerts(self, query: AlertListQuery) -> AlertsPage:
        params = query.model_dump(mode="json", exclude_none=True)
        return self._answer(self._call("listAlerts", query=params), AlertsPage)

    def acknowledge_alert(self, alert_id: str, note: str | None) -> AlertView:
        body = {"note": note} if note is not None else None
        response = self._call("acknowledgeAlert", {"alert_id": alert_id}, body=body)
        return self._answer(response, AlertView)

    def take_notes(self) -> list[str]:
        return []

    def close(self) -> None:
        self._http.close()


def _error_body(response: httpx.Response) -> tuple[str, str, str | None] | None:
    """``(code, message, field)`` of the API's JSON error, or None for another body."""
    try:
        body = response.json()
    except ValueError:
        return None
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict) or not isinstance(error.get("code"), str):
        return None
    field_at = error.get("field")
    return (
        error["code"],
        str(error.get("message") or ""),
        field_at if isinstance(field_at, str) else None,
    )
