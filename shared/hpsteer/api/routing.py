"""Routes: a method and a path template per operation, and matching a request to one.

A template is slash-separated literal segments and ``{name}`` segments (one whole segment each);
matching is segment by segment, so ``/v1/devices/{device_id}`` never swallows a ``/``. A path that
no template matches is 404; one that matches templates of other methods only is 405, with
``Allow`` listing them. One trailing slash is ignored. The route declares everything the HTTP
layer and the OpenAPI document need: the role its operation needs, the models of its path
parameters, query, body and answers.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel

from hpsteer.api.errors import ApiError
from hpsteer.domain.roles import Operation
from hpsteer.runtime.bootstrap import Dependencies
from hpsteer.services.operator.audit import Actor

__all__ = ["Answer", "Call", "Handler", "Route", "Router"]

BodyMedia = Literal["application/json", "text/csv"]


@dataclass(frozen=True)
class Call:
    """A request, parsed and validated: what a handler gets."""

    deps: Dependencies
    actor: Actor
    path: Any = None
    """An instance of the route's ``path_model`` (None without one)."""
    query: Any = None
    """An instance of the route's ``query_model`` (None without one)."""
    body: Any = None
    """An instance of ``body_model`` (JSON), the text (CSV), or None (no body allowed/sent)."""


@dataclass(frozen=True)
class Answer:
    status: int
    model: BaseModel


Handler = Callable[[Call], Answer]


@dataclass(frozen=True)
class Route:
    method: str
    template: str
    operation: Operation
    operation_id: str
    summary: str
    handler: Handler
    responses: dict[int, tuple[type[BaseModel], str]]
    """Success status -> (answer model, description)."""
    path_model: type[BaseModel] | None = None
    query_model: type[BaseModel] | None = None
    body_model: type[BaseModel] | None = None
    body_media: BodyMedia | None = None
    body_required: bool = False
    errors: tuple[int, ...] = ()
    """Error statuses beyond the ones every route may answer."""
    tags: tuple[str, ...] = ()
    description: str = ""
    segments: tuple[str, ...] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "segments", _segments(self.template))

    def match(self, segments: Sequence[str]) -> dict[str, str] | None:
        if len(segments) != len(self.segments):
            return None
        params: dict[str, str] = {}
        for template, actual in zip(self.segments, segments, strict=True):
            if template.startswith("{") and template.endswith("}"):
                if not actual:
                    return None
                params[template[1:-1]] = actual
            elif template != actual:
                return None
        return params


def _segments(path: str) -> tuple[str, ...]:
    if len(path) > 1 and path.endswith("/"):
        path = path[:-1]
    return tuple(path.split("/")[1:]) if path.startswith("/") else tuple(path.split("/"))


class Router:
    def __init__(self, routes: Sequence[Route]) -> None:
        self.routes = tuple(routes)
        seen = set()
        for route in self.routes:
            key = (route.method, route.template)
            if key in seen:
                raise ValueError(f"route {route.method} {route.template} declared twice")
            seen.add(key)

    def resolve(self, method: str, path: str) -> tuple[Route, dict[str, str]]:
        """The route and its path parameters; ApiError 404 or 405 otherwise."""
        segments = _segments(path)
        allowed: list[str] = []
        for route in self.routes:
            params = route.match(segments)
            if params is None:
                continue
            if route.method == method:
                return route, params
            allowed.append(route.method)
        if allowed:
            allow = ", ".join(sorted(set(allowed)))
            raise ApiError(
                405,
                "method_not_allowed",
                f"{method} is not allowed on {path}; allowed: {allow}",
                headers={"Allow": allow},
            )
        raise ApiError(404, "no_such_route", f"no operation at {path}")
