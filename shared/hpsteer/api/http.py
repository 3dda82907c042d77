"""One HTTP request in, one JSON answer out (the ``api`` function's whole body).

In order: who calls (:mod:`.auth`: 401/403 before anything else is read), which route
(:mod:`.routing`: 404/405), whether the caller's role allows its operation (403), then the
request's parts, each validated into its model:

- path parameters (400 naming the parameter), query parameters (unknown or repeated ones
  refused, 400 naming it);
- the body: larger than :data:`MAX_BODY_BYTES` → 413 (refused from ``Content-Length`` before
  reading, and never read past the limit); a body of another media type than the route takes →
  415; not UTF-8 or not JSON (NaN and Infinity included) → 400; JSON that the model refuses
  (a wrong type: strict, no coercion; an unknown field; a value out of range) → 422 naming the
  field, e.g. ``comfort.min_indoor_temp_c``. A route whose body is optional takes an empty one.

Then the handler, whose errors map to answers: unknown target 404, conflict 409, refused 422
(400 for a bad page token or a file that is no CSV), a store or bus that does not answer 503 with
``Retry-After``. Anything else is a bug: logged with its traceback and answered 500 with the
same JSON shape. Every answer carries :data:`~hpsteer.api.auth.IDENTITY_HEADER` once the caller
is known.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from typing import IO, Any, Protocol

from pydantic import BaseModel, ValidationError

from hpsteer.api.auth import IDENTITY_HEADER, identify
from hpsteer.api.errors import ApiError, from_validation
from hpsteer.api.routes import ROUTER
from hpsteer.api.routing import Call, Route
from hpsteer.errors import InvalidInput, PermanentError, TransientError
from hpsteer.observability.logging import log_context
from hpsteer.runtime.bootstrap import Dependencies
from hpsteer.runtime.entrypoint import dependencies
from hpsteer.services.operator.errors import Conflict, Refused, UnknownTarget
from hpsteer.services.operator.views import UnreadableDocument

__all__ = ["MAX_BODY_BYTES", "ApiRequest", "HttpAnswer", "serve"]

_log = logging.getLogger(__name__)

MAX_BODY_BYTES = 1024 * 1024
"""1 MiB: a CSV of the largest import (1,000 rows) fits with room to spare."""

HttpAnswer = tuple[str, int, dict[str, str]]

_BAD_REQUEST_CODES = frozenset({"invalid_page_token", "malformed_csv", "empty_file"})


class _Headers(Protocol):
    def get(self, key: str, /) -> str | None: ...


class _Args(Protocol):
    def lists(self) -> Iterable[tuple[str, list[str]]]: ...


class ApiRequest(Protocol):
    """The part of a Flask request this module reads."""

    @property
    def method(self) -> str: ...

    @property
    def path(self) -> str: ...

    @property
    def headers(self) -> _Headers: ...

    @property
    def args(self) -> _Args: ...

    @property
    def content_length(self) -> int | None: ...

    @property
    def stream(self) -> IO[bytes]: ...


def _answer(status: int, body: Any, headers: Mapping[str, str]) -> HttpAnswer:
    return (
        json.dumps(body, ensure_ascii=False, allow_nan=False),
        status,
        {"Content-Type": "application/json", "Cache-Control": "no-store", **headers},
    )


def _media_type(headers: _Headers) -> tuple[str | None, dict[str, str]]:
    raw = headers.get("Content-Type")
    if not raw:
        return None, {}
    kind, *params = raw.split(";")
    parsed: dict[str, str] = {}
    for param in params:
        name, _, value = param.partition("=")
        parsed[name.strip().lower()] = value.strip().strip('"').lower()
    return kind.strip().lower(), parsed


def _read_body(request: ApiRequest) -> bytes:
    declared = request.content_length
    if declared is not None and declared > MAX_BODY_BYTES:
        raise ApiError(413, "body_too_large", f"the body exceeds {MAX_BODY_BYTES} bytes")
    data = request.stream.read(MAX_BODY_BYTES + 1)
    if len(data) > MAX_BODY_BYTES:
        raise ApiError(413, "body_too_large", f"the body exceeds {MAX_BODY_BYTES} bytes")
    return data


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _json_body(route: Route, data: bytes) -> BaseModel:
    assert route.body_model is not None
    try:
        text = data.decode("utf-8")
        json.loads(text, parse_constant=_refuse_constant)
    except (UnicodeDecodeError, ValueError) as err:
        raise ApiError(400, "malformed_json", f"the body is not JSON: {err}") from None
    try:
        return route.body_model.model_validate_json(text, strict=True)
    except ValidationError as err:
        raise from_validation(err, status=422, code="invalid_body") from None


def _csv_body(params: Mapping[str, str], data: bytes) -> str:
    charset = params.get("charset", "utf-8")
    if charset not in ("utf-8", "utf8"):
        raise ApiError(415, "unsupported_charset", f"CSV must be UTF-8, not {charset}")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise ApiError(400, "malformed_csv", f"the CSV is not UTF-8: {err}") from None


def _body(route: Route, request: ApiRequest) -> Any:
    if route.body_media is None:
        return None
    data = _read_body(request)
    if not data.strip():
        if route.body_required:
            raise ApiError(400, "missing_body", f"this operation needs a {route.body_media} body")
        return None
    media, params = _media_type(request.headers)
    if media != route.body_media:
        raise ApiError(
            415,
            "unsupported_media_type",
            f"the body must be {route.body_media}, not {media or 'unlabelled'}",
        )
    if route.body_media == "text/csv":
        return _csv_body(params, data)
    return _json_body(route, data)


def _path(route: Route, params: Mapping[str, str]) -> BaseModel | None:
    if route.path_model is None:
        return None
    try:
        return route.path_model.model_validate(dict(params))
    except ValidationError as err:
        raise from_validation(err, status=400, code="invalid_path_parameter") from None


def _query(route: Route, pairs: Iterable[tuple[str, list[str]]]) -> BaseModel | None:
    fields = route.query_model.model_fields if route.query_model is not None else {}
    values: dict[str, str] = {}
    for name, items in pairs:
        if name not in fields:
            known = ", ".join(fields) or "none"
            raise ApiError(
                400,
                "unknown_parameter",
                f"unknown query parameter {name!r} (known: {known})",
                field=name,
            )
        if len(items) != 1:
            raise ApiError(
                400, "repeated_parameter", f"{name} given {len(items)} times", field=name
            )
        values[name] = items[0]
    if route.query_model is None:
        return None
    try:
        return route.query_model.model_validate(values)
    except ValidationError as err:
        raise from_validation(err, status=400, code="invalid_query") from None


def _service_error(err: Exception) -> ApiError:
    if isinstance(err, UnknownTarget):
        return ApiError(404, err.code, str(err))
    if isinstance(err, Conflict):
        return ApiError(409, err.code, str(err), field=err.field)
    if isinstance(err, Refused):
        status = 400 if err.code in _BAD_REQUEST_CODES else 422
        return ApiError(status, err.code, str(err), field=err.field)
    if isinstance(err, TransientError):
        _log.warning("answered 503: %s: %s", type(err).__name__, err)
        return ApiError(
            503, "unavailable", f"{type(err).__name__}: try again", headers={"Retry-After": "5"}
        )
    if isinstance(err, UnreadableDocument):
        _log.error("a stored document cannot be shown: %s", err)
        return ApiError(500, "unreadable_document", str(err))
    if isinstance(err, InvalidInput):
        return ApiError(400, "invalid_input", str(err))
    _log.error("unexpected refusal: %s: %s", type(err).__name__, err)
    return ApiError(500, "internal", f"{type(err).__name__}")


def serve(request: ApiRequest, deps: Dependencies | None = None) -> HttpAnswer:
    """Answer one API request (module docstring)."""
    deps = deps or dependencies()
    headers: dict[str, str] = {}
    method = request.method.upper()
    try:
        caller = identify(deps, request.headers.get("Authorization"))
        headers[IDENTITY_HEADER] = caller.header()
        route, params = ROUTER.resolve("GET" if method == "HEAD" else method, request.path)
        if not caller.actor.role.allows(route.operation):
            raise ApiError(
                403,
                "role_too_low",
                f"{route.operation_id} needs the {route.operation.value} permission, which "
                f"role {caller.actor.role.value} lacks",
            )
        call = Call(
            deps,
            caller.actor,
            path=_path(route, params),
            query=_query(route, request.args.lists()),
            body=_body(route, request),
        )
        with log_context(api_operation=route.operation_id, actor=caller.actor.email):
            try:
                answer = route.handler(call)
            except (PermanentError, TransientError) as err:
                raise _service_error(err) from None
        return _answer(answer.status, answer.model.model_dump(mode="json"), headers)
    except ApiError as err:
        return _answer(err.status, err.body().model_dump(mode="json"), {**headers, **err.headers})
    except Exception:  # noqa: BLE001 - a bug: logged whole, answered as JSON
        _log.exception("API request %s %s failed", method, request.path)
        body = ApiError(500, "internal", "an internal error; it is logged").body()
        return _answer(500, body.model_dump(mode="json"), headers)
