"""The simulated manufacturers' clouds: one application serving ViCare's, myUplink's and Onecta's
API paths and OAuth token endpoints over a :class:`~hpsteer.sim.fleet.Fleet`.

Promises:

- :meth:`SimApp.handle` is a plain synchronous handler (:class:`Request` in, :class:`Response`
  out); the in-process httpx transport (:mod:`hpsteer.sim.transport`) and the real server
  (:mod:`hpsteer.sim.serve`) call it directly, and :meth:`SimApp.__call__` is the same handler as
  an ASGI application (``httpx.ASGITransport(app=…)`` works too). A tiny router of its own: a
  table of (method, path pattern) → handler; no web framework.
- The three manufacturers' paths do not collide, so one base URL serves all of them (pass it as
  ``base_urls`` for ``viessmann``, ``nibe_myuplink`` and ``daikin_onecta``; each adapter then
  finds its token endpoint on the same host: ``/idp/v3/token``, ``/oauth/token``,
  ``/v1/oidc/token``).
- **OAuth.** Each token endpoint runs the refresh grant the adapters send (form fields; client id,
  and client secret for myUplink and Onecta) against the fleet's credentials. Every refresh
  rotates the refresh token: the answer carries a new one and the one sent stops working
  (``400 invalid_grant``). Access tokens live 3600 s of simulated time; an unknown or expired one
  is answered 401 in the manufacturer's shape. A token reaches only its own account's home.
- **Faults** (:mod:`hpsteer.sim.faults`) are played after authentication, per request and per
  device: latency (``Response.delay_s``), a 5xx in the manufacturer's error shape, 429 with
  ``Retry-After`` (ViCare also ``extendedPayload.limitReset`` in epoch ms; myUplink
  ``RateLimit-*``; Onecta ``X-RateLimit-*-minute``), a timeout (``Response.drop``). Gateway
  offline shows the manufacturer's way: ViCare answers 400 ``DEVICE_COMMUNICATION_ERROR``
  ``GATEWAY_OFFLINE``; myUplink ``connectionState: Disconnected``; Onecta
  ``isCloudConnectionUp: false``. A write that reaches an offline myUplink or Onecta unit anyway
  is accepted and not applied (what those clouds really answer is **unconfirmed**; the adapters
  never send one).
- Commands are checked against the lever's range and step (ViCare 422 with
  ``validationErrors``; myUplink and Onecta 400), then handed to the fleet, which applies them
  now, late or never.
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Final
from urllib.parse import parse_qs, unquote

import httpx

from hpsteer.sim.faults import FaultKind, WireFault
from hpsteer.sim.fleet import Fleet, Home
from hpsteer.sim.views import (
    MYUPLINK_BOOST_ID,
    MYUPLINK_OFFSET_ID,
    ONECTA_CLIMATE,
    ONECTA_DHW,
    VICARE_BOOST,
    VICARE_PROGRAM,
    myuplink_device,
    myuplink_points,
    myuplink_system,
    onecta_device,
    vicare_features,
    vicare_installation,
)

__all__ = ["Request", "Response", "SimApp"]

ACCESS_TOKEN_LIFETIME: Final = timedelta(hours=1)
ONECTA_ROOM_PATH: Final = "/operationModes/heating/setpoints/roomTemperature"

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Request:
    method: str
    path: str
    query: Mapping[str, str] = field(default_factory=dict)
    headers: Mapping[str, str] = field(default_factory=dict)
    """Lower-case names."""
    body: bytes = b""


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    body: bytes = b""
    headers: tuple[tuple[str, str], ...] = ()
    delay_s: float = 0.0
    """Wall-clock latency to add before answering (a latency fault)."""
    drop: bool = False
    """True: never answer (a timeout fault)."""


def _json(status: int, document: Any, headers: tuple[tuple[str, str], ...] = ()) -> Response:
    body = json.dumps(document, separators=(",", ":")).encode("utf-8")
    return Response(status, body, (("content-type", "application/json"), *headers))


@dataclass(frozen=True, slots=True)
class _Access:
    manufacturer: str
    account_id: str
    expires_at: datetime


Handler = Callable[["SimApp", Request, Home | None, re.Match[str]], Response]


@dataclass(frozen=True, slots=True)
class _Route:
    method: str
    pattern: re.Pattern[str]
    manufacturer: str
    handler: Handler | None
    """None: the manufacturer's OAuth token endpoint."""
    token: bool = False


class SimApp:
    """The simulated clouds of every manufacturer, over one fleet."""

    def __init__(self, fleet: Fleet) -> None:
        self.fleet = fleet
        self._access: dict[str, _Access] = {}
        self._lock = threading.Lock()
        self.requests = 0

    def __repr__(self) -> str:
        return f"SimApp(homes={len(self.fleet)})"

    # -- the handler ------------------------------------------------------------------------

    def handle(self, request: Request) -> Response:
        with self._lock:
            self.requests += 1
        for route in _ROUTES_BY_METHOD.get(request.method, ()):
            match = route.pattern.fullmatch(request.path)
            if match is None:
                continue
            if route.handler is None:
                return _token_endpoint(self, request, route.manufacturer)
            return self._serve(route, route.handler, request, match)
        return _json(404, {"statusCode": 404, "errorType": "NOT_FOUND", "path": request.path})

    def _serve(
        self, route: _Route, handler: Handler, request: Request, match: re.Match[str]
    ) -> Response:
        manufacturer = route.manufacturer
        access = self._authorize(request, manufacturer)
        if access is None:
            return _ERRORS[manufacturer].unauthorized()
        home: Home | None
        groups = match.groupdict()
        key = groups.get("key")
        if "inst" in groups:  # ViCare's device is installation/gateway/device
            key = f"{groups['inst']}/{groups['serial']}/{groups['dev']}"
        if key is not None:
            home = self.fleet.find(manufacturer, unquote(key))
            if home is None or home.account_id != access.account_id:
                return _ERRORS[manufacturer].not_found(request.path)
        else:
            home = next(
                (h for h in self.fleet if h.account_id == access.account_id), None
            )  # the account's home, for a list endpoint's faults
        wire = self.fleet.faults.wire(
            manufacturer,
            home.home_id if home else None,
            write=request.method in ("POST", "PUT", "PATCH", "DELETE"),
        )
        failed = self._wire_fault(manufacturer, wire)
        if failed is not None:
            return failed
        with self.fleet.lock:
            if home is not None:
                self.fleet.sync_home(home)
            response = handler(self, request, home, match)
        if wire.latency_s:
            return Response(response.status, response.body, response.headers, wire.latency_s)
        return response

    def _wire_fault(self, manufacturer: str, wire: WireFault) -> Response | None:
        errors = _ERRORS[manufacturer]
        if wire.kind is FaultKind.TIMEOUT:
            return Response(504, delay_s=wire.latency_s, drop=True)
        if wire.kind is FaultKind.RATE_LIMITED:
            answer = errors.rate_limited(wire.retry_after_s, self.fleet.clock.now())
        elif wire.kind is FaultKind.SERVER_ERROR:
            answer = errors.server_error(wire.status)
        else:
            return None
        return Response(answer.status, answer.body, answer.headers, wire.latency_s)

    def _authorize(self, request: Request, manufacturer: str) -> _Access | None:
        token = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
        with self._lock:
            access = self._access.get(token)
        if access is None or access.manufacturer != manufacturer:
            return None
        if self.fleet.clock.now() >= access.expires_at:
            return None
        return access

    def issue_access(self, manufacturer: str, account_id: str) -> str:
        token = self.fleet.new_token("at")
        with self._lock:
            self._access[token] = _Access(
                manufacturer, account_id, self.fleet.clock.now() + ACCESS_TOKEN_LIFETIME
            )
        return token

    # -- ASGI -----------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The same handler as an ASGI 3 application (HTTP and lifespan)."""
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body", False):
                break
        query_string = scope.get("query_string", b"").decode("latin-1")
        request = Request(
            method=scope["method"],
            path=scope["path"],
            query={k: v[0] for k, v in parse_qs(query_string).items()},
            headers={k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]},
            body=body,
        )
        response = self.handle(request)
        if response.delay_s:
            await asyncio.sleep(response.delay_s)
        if response.drop:
            raise httpx.ReadTimeout("simulated timeout: the cloud did not answer")
        await send(
            {
                "type": "http.response.start",
                "status": response.status,
                "headers": [
                    (k.encode("latin-1"), v.encode("latin-1")) for k, v in response.headers
                ],
            }
        )
        await send({"type": "http.response.body", "body": response.body})


# -- errors per manufacturer -------------------------------------------------------------------


class _Errors:
    """A manufacturer's error answers (each subclass gives its own shapes)."""

    @staticmethod
    def unauthorized() -> Response:
        raise NotImplementedError

    @staticmethod
    def not_found(path: str) -> Response:
        raise NotImplementedError

    @staticmethod
    def server_error(status: int) -> Response:
        raise NotImplementedError

    @staticmethod
    def rate_limited(retry_after_s: int, now: datetime) -> Response:
        raise NotImplementedError


class _ViCareErrors(_Errors):
    @staticmethod
    def unauthorized() -> Response:
        return _json(
            401,
            {
                "statusCode": 401,
                "errorType": "UNAUTHORIZED",
                "message": "Token provided in request is expired or invalid.",
                "error": "EXPIRED TOKEN",
            },
        )

    @staticmethod
    def not_found(path: str) -> Response:
        return _json(404, {"statusCode": 404, "errorType": "NOT_FOUND", "message": path})

    @staticmethod
    def server_error(status: int) -> Response:
        return _json(
            status,
            {
                "viErrorId": "sim",
                "statusCode": status,
                "errorType": "INTERNAL_ERROR",
                "message": "Internal server error",
            },
        )

    @staticmethod
    def rate_limited(retry_after_s: int, now: datetime) -> Response:
        reset_ms = int((now + timedelta(seconds=retry_after_s)).timestamp() * 1000)
        return _json(
            429,
            {
                "errorType": "RATE_LIMIT_EXCEEDED",
                "extendedPayload": {
                    "clientId": "sim",
                    "limitReset": reset_ms,
                    "name": "ViCare day limit",
                    "requestCountLimit": 1450,
                    "userId": "sim",
                },
                "message": "API calls rate limit has been exceeded. Please wait until your "
                "limit will renew.",
                "statusCode": 429,
                "viErrorId": "sim",
            },
            (("retry-after", str(retry_after_s)),),
        )


class _MyUplinkErrors(_Errors):
    @staticmethod
    def unauthorized() -> Response:
        return _json(401, {"title": "Unauthorized", "status": 401})

    @staticmethod
    def not_found(path: str) -> Response:
        return _json(404, {"title": "Not Found", "status": 404, "detail": path})

    @staticmethod
    def server_error(status: int) -> Response:
        return _json(status, {"title": "Internal Server Error", "status": status})

    @staticmethod
    def rate_limited(retry_after_s: int, now: datetime) -> Response:
        return _json(
            429,
            {"title": "Too Many Requests", "status": 429},
            (
                ("ratelimit-limit", "25"),
                ("ratelimit-remaining", "0"),
                ("ratelimit-reset", str(retry_after_s)),
                ("retry-after", str(retry_after_s)),
            ),
        )


class _OnectaErrors(_Errors):
    @staticmethod
    def unauthorized() -> Response:
        return _json(401, {"code": "UNAUTHORIZED", "message": "invalid or expired token"})

    @staticmethod
    def not_found(path: str) -> Response:
        return _json(404, {"code": "NOT_FOUND", "message": path})

    @staticmethod
    def server_error(status: int) -> Response:
        return _json(status, {"code": "INTERNAL_SERVER_ERROR", "message": "simulated failure"})

    @staticmethod
    def rate_limited(retry_after_s: int, now: datetime) -> Response:
        return _json(
            429,
            {"code": "TOO_MANY_REQUESTS", "message": "rate limit exceeded"},
            (
                ("retry-after", str(retry_after_s)),
                ("x-ratelimit-limit-minute", "20"),
                ("x-ratelimit-remaining-minute", "0"),
                ("x-ratelimit-limit-day", "200"),
            ),
        )


_ERRORS: Final[dict[str, type[_Errors]]] = {
    "viessmann": _ViCareErrors,
    "nibe_myuplink": _MyUplinkErrors,
    "daikin_onecta": _OnectaErrors,
}

_VICARE_GATEWAY_OFFLINE: Final = {
    "viErrorId": "sim",
    "statusCode": 400,
    "errorType": "DEVICE_COMMUNICATION_ERROR",
    "message": "",
    "extendedPayload": {"httpStatusCode": "NotFound", "code": "404", "reason": "GATEWAY_OFFLINE"},
}


# -- OAuth ------------------------------------------------------------------------------------


def _token_endpoint(app: SimApp, request: Request, manufacturer: str) -> Response:
    form = {k: v[0] for k, v in parse_qs(request.body.decode("utf-8", "replace")).items()}
    if form.get("grant_type") != "refresh_token":
        return _json(400, {"error": "unsupported_grant_type"})
    presented = form.get("refresh_token", "")
    fleet = app.fleet
    with fleet.lock:
        found = next(
            (
                c
                for c in fleet.all_credentials()
                if c.manufacturer == manufacturer and c.refresh_token == presented
            ),
            None,
        )
        if found is None:
            return _json(400, {"error": "invalid_grant"})
        if form.get("client_id") != found.client_id or (
            manufacturer != "viessmann" and form.get("client_secret") != found.client_secret
        ):
            return _json(401, {"error": "invalid_client"})
        rotated = fleet.rotate(found)
    access = app.issue_access(manufacturer, found.account_id)
    return _json(
        200,
        {
            "access_token": access,
            "refresh_token": rotated.refresh_token,
            "token_type": "Bearer",
            "expires_in": int(ACCESS_TOKEN_LIFETIME.total_seconds()),
        },
    )


# -- ViCare -----------------------------------------------------------------------------------


def _vicare_installations(
    app: SimApp, request: Request, home: Home | None, m: re.Match[str]
) -> Response:
    return _json(200, {"data": [vicare_installation(home)] if home is not None else []})


def _vicare_features(
    app: SimApp, request: Request, home: Home | None, m: re.Match[str]
) -> Response:
    assert home is not None  # the route has a key
    if not app.fleet.online(home):
        return _json(400, _VICARE_GATEWAY_OFFLINE)
    return _json(200, vicare_features(home))


def _vicare_command(app: SimApp, request: Request, home: Home | None, m: re.Match[str]) -> Response:
    assert home is not None  # the route has a key
    if not app.fleet.online(home):
        return _json(400, _VICARE_GATEWAY_OFFLINE)
    feature, command = unquote(m["feature"]), unquote(m["command"])
    params = _json_body(request)
    if feature == VICARE_PROGRAM and command == "setTemperature":
        value = params.get("targetTemperature") if isinstance(params, dict) else None
        problem = _lever_problem(home, value)
        if problem is not None:
            return _json(
                422,
                {
                    "statusCode": 422,
                    "errorType": "VALIDATION_ERROR",
                    "message": "Validation error",
                    "validationErrors": [{"path": "targetTemperature", "message": problem}],
                },
            )
        app.fleet.command(home, float(value))  # type: ignore[arg-type]  # checked by _lever_problem
    elif feature == VICARE_BOOST and command == "activate":
        app.fleet.boost_dhw(home)
    elif feature == VICARE_BOOST and command == "deactivate":
        home.dhw_boost = False
    else:
        return _json(
            404,
            {"statusCode": 404, "errorType": "NOT_FOUND", "message": f"{feature}/{command}"},
        )
    return _json(200, {"data": {"success": True, "reason": "COMMAND_OK"}})


# -- myUplink ---------------------------------------------------------------------------------


def _myuplink_systems(
    app: SimApp, request: Request, home: Home | None, m: re.Match[str]
) -> Response:
    systems = [myuplink_system(home, app.fleet.online(home))] if home is not None else []
    return _json(200, {"page": 1, "itemsPerPage": 99, "numItems": len(systems), "systems": systems})


def _myuplink_device(
    app: SimApp, request: Request, home: Home | None, m: re.Match[str]
) -> Response:
    assert home is not None  # the route has a key
    return _json(200, myuplink_device(home, app.fleet.online(home)))


def _myuplink_points(
    app: SimApp, request: Request, home: Home | None, m: re.Match[str]
) -> Response:
    assert home is not None  # the route has a key
    points = myuplink_points(home)
    wanted = request.query.get("parameters")
    if wanted:
        ids = set(wanted.split(","))
        points = [p for p in points if p["parameterId"] in ids]
    return _json(200, points)


def _myuplink_patch(app: SimApp, request: Request, home: Home | None, m: re.Match[str]) -> Response:
    assert home is not None  # the route has a key
    body = _json_body(request)
    if not isinstance(body, dict) or not body:
        return _json(400, {"title": "Bad Request", "status": 400, "detail": "body"})
    online = app.fleet.online(home)
    answer: dict[str, str] = {}
    for parameter_id, raw in body.items():
        try:
            value = float(raw)
        except (TypeError, ValueError):
            return _json(400, {"title": "Bad Request", "status": 400, "detail": parameter_id})
        if parameter_id == MYUPLINK_OFFSET_ID:
            problem = _lever_problem(home, value)
            if problem is not None:
                return _json(400, {"title": "Bad Request", "status": 400, "detail": problem})
            if online:
                app.fleet.command(home, value)
        elif parameter_id == MYUPLINK_BOOST_ID and value in (0.0, 1.0):
            if online and value == 1.0:
                app.fleet.boost_dhw(home)
            elif online:
                home.dhw_boost = False
        else:
            return _json(400, {"title": "Bad Request", "status": 400, "detail": parameter_id})
        answer[parameter_id] = "modified"
    return _json(200, answer)


# -- Onecta -----------------------------------------------------------------------------------


def _onecta_devices(app: SimApp, request: Request, home: Home | None, m: re.Match[str]) -> Response:
    devices = [onecta_device(home, app.fleet.online(home))] if home is not None else []
    return _json(200, devices)


def _onecta_device(app: SimApp, request: Request, home: Home | None, m: re.Match[str]) -> Response:
    assert home is not None  # the route has a key
    return _json(200, onecta_device(home, app.fleet.online(home)))


def _onecta_patch(app: SimApp, request: Request, home: Home | None, m: re.Match[str]) -> Response:
    assert home is not None  # the route has a key
    point, name = unquote(m["point"]), unquote(m["name"])
    body = _json_body(request)
    value = body.get("value") if isinstance(body, dict) else None
    online = app.fleet.online(home)
    if point == ONECTA_CLIMATE and name == "temperatureControl":
        if not isinstance(body, dict) or body.get("path") != ONECTA_ROOM_PATH:
            return _json(400, {"code": "INVALID_PATH", "message": str(body)[:80]})
        problem = _lever_problem(home, value)
        if problem is not None:
            return _json(400, {"code": "VALUE_OUT_OF_RANGE", "message": problem})
        if online:
            app.fleet.command(home, float(value))  # type: ignore[arg-type]  # checked above
    elif point == ONECTA_DHW and name == "powerfulMode" and value in ("on", "off"):
        if online and value == "on":
            app.fleet.boost_dhw(home)
        elif online:
            home.dhw_boost = False
    else:
        return _json(
            400, {"code": "READ_ONLY_CHARACTERISTIC", "message": f"{point}/{name} not settable"}
        )
    return Response(204)


# -- helpers ----------------------------------------------------------------------------------


def _json_body(request: Request) -> Any:
    try:
        return json.loads(request.body or b"null")
    except ValueError:
        return None


def _lever_problem(home: Home, value: Any) -> str | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return "value must be a number"
    lever = home.lever
    if not lever.minimum <= value <= lever.maximum:
        return f"{value:g} is outside [{lever.minimum:g}, {lever.maximum:g}]"
    steps = (value - lever.minimum) / lever.step
    if abs(steps - round(steps)) > 1e-6:
        return f"{value:g} is not on the step {lever.step:g}"
    return None


_VICARE_DEVICE: Final = (
    r"/iot/v2/features/installations/(?P<inst>[^/]+)/gateways/(?P<serial>[^/]+)"
    r"/devices/(?P<dev>[^/]+)"
)


def _route(method: str, pattern: str, manufacturer: str, handler: Handler | None) -> _Route:
    return _Route(method, re.compile(pattern), manufacturer, handler, token=handler is None)


_ROUTES: Final[tuple[_Route, ...]] = (
    _route("POST", r"/idp/v3/token", "viessmann", None),
    _route("POST", r"/oauth/token", "nibe_myuplink", None),
    _route("POST", r"/v1/oidc/token", "daikin_onecta", None),
    _route("GET", r"/iot/v2/equipment/installations", "viessmann", _vicare_installations),
    _route("GET", _VICARE_DEVICE + "/features", "viessmann", _vicare_features),
    _route(
        "POST",
        _VICARE_DEVICE + r"/features/(?P<feature>[^/]+)/commands/(?P<command>[^/]+)",
        "viessmann",
        _vicare_command,
    ),
    _route("GET", r"/v2/systems/me", "nibe_myuplink", _myuplink_systems),
    _route("GET", r"/v2/devices/(?P<key>[^/]+)", "nibe_myuplink", _myuplink_device),
    _route("GET", r"/v2/devices/(?P<key>[^/]+)/points", "nibe_myuplink", _myuplink_points),
    _route("PATCH", r"/v2/devices/(?P<key>[^/]+)/points", "nibe_myuplink", _myuplink_patch),
    _route("GET", r"/v1/gateway-devices", "daikin_onecta", _onecta_devices),
    _route("GET", r"/v1/gateway-devices/(?P<key>[^/]+)", "daikin_onecta", _onecta_device),
    _route(
        "PATCH",
        r"/v1/gateway-devices/(?P<key>[^/]+)/management-points/(?P<point>[^/]+)"
        r"/characteristics/(?P<name>[^/]+)",
        "daikin_onecta",
        _onecta_patch,
    ),
)
_ROUTES_BY_METHOD: Final[dict[str, tuple[_Route, ...]]] = {
    method: tuple(route for route in _ROUTES if route.method == method)
    for method in dict.fromkeys(route.method for route in _ROUTES)
}
"""The routes of each method, in table order (a request is matched against its method's only)."""
