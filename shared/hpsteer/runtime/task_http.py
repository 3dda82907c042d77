"""What an HTTP function that Cloud Tasks calls does around its service calls.

:func:`serve_task` is the Cloud Tasks counterpart of :func:`~hpsteer.runtime.entrypoint.run_pubsub`:

0. :func:`serve_routes` first picks the route: one function serves several URLs (dispatch: the
   function's own URL for commands, ``/verify`` below it for their verifications), each with its
   handler. A request whose path is none of the routes' paths (:func:`route_paths`) is answered
   404 before its token or its body is read (a path is all that is looked at; Cloud Run's IAM
   has already admitted only the invoker account, and the paths are no secret). Every route's
   token has the function's own URL for audience: Cloud Run admits a token whose audience is the
   service's URL, so a task for a path below it names that URL as its audience
   (``TaskRequest.oidc_audience``, :mod:`hpsteer.services.command_tasks`) rather than Cloud
   Tasks' default, the task's whole URL.
1. In production (``HPSTEER_BACKEND=gcp`` with ``dispatch_require_oidc``), the ``Authorization``
   header must carry a Google-signed OIDC token for the configured URL (the audience Cloud Tasks
   uses: the task's URL) from ``tasks_service_account``; anything else is refused with 401 or 403
   **before the body is read**. Without a configured account every call is refused (500: fail
   closed). The local runtime calls the service handlers directly and checks nothing.
2. The body and the ``X-CloudTasks-*`` headers become a
   :class:`~hpsteer.services.dispatch.TaskDelivery`; the handler's
   :class:`~hpsteer.services.dispatch.Reply` becomes the HTTP answer (status, ``Retry-After``,
   JSON body). An exception escaping the handler is logged and answered 500, so Cloud Tasks
   retries with the queue's backoff.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Protocol
from urllib.parse import urlsplit

from hpsteer.observability.logging import log_context
from hpsteer.runtime.bootstrap import Dependencies
from hpsteer.runtime.entrypoint import dependencies
from hpsteer.services.dispatch import Reply, TaskDelivery

__all__ = ["HttpAnswer", "TaskHandler", "route_paths", "serve_routes", "serve_task"]

_log = logging.getLogger(__name__)

TaskHandler = Callable[[TaskDelivery, Dependencies], Reply]
HttpAnswer = tuple[str, int, dict[str, str]]


class _Headers(Protocol):
    def get(self, key: str, /) -> str | None: ...

    def items(self) -> Iterable[tuple[str, str]]: ...


class TaskRequest(Protocol):
    """The part of a Flask request this module reads."""

    @property
    def headers(self) -> _Headers: ...

    @property
    def path(self) -> str: ...

    def get_data(self) -> bytes: ...


def _json(status: int, body: Mapping[str, object], headers: Mapping[str, str] = {}) -> HttpAnswer:
    return json.dumps(body), status, {"Content-Type": "application/json", **headers}


def _authorize(deps: Dependencies, audience: str, authorization: str | None) -> HttpAnswer | None:
    settings = deps.settings
    if settings.backend != "gcp" or not settings.dispatch_require_oidc:
        return None
    account = settings.tasks_service_account
    if not account:
        _log.critical("refused a task call: HPSTEER_TASKS_SERVICE_ACCOUNT is not configured")
        return _json(500, {"error": "dispatch is not configured to accept any caller"})
    from hpsteer.runtime.oidc import (
        AccessDenied,
        AuthenticationFailed,
        CertsUnavailable,
        OidcPolicy,
        OidcVerifier,
    )

    verifier = deps.singleton(
        f"oidc:{audience}",
        lambda: OidcVerifier(OidcPolicy(audience=audience, service_account=account)),
    )
    try:
        verifier.verify(authorization)
    except (AuthenticationFailed, AccessDenied) as err:
        _log.warning("refused a task call: %s", err)
        return _json(err.status, {"error": type(err).__name__})
    except CertsUnavailable as err:
        _log.error("cannot check task calls: %s", err)
        return _json(503, {"error": "CertsUnavailable"}, {"Retry-After": "30"})
    return None


def serve_task(request: TaskRequest, handler: TaskHandler, *, audience: str) -> HttpAnswer:
    """Authorize, decode, handle (see the module docstring)."""
    deps = dependencies()
    refused = _authorize(deps, audience, request.headers.get("Authorization"))
    if refused is not None:
        return refused
    delivery = TaskDelivery.from_headers(dict(request.headers.items()), request.get_data())
    with log_context(task=delivery.task_name, queue=delivery.queue_name):
        try:
            reply = handler(delivery, deps)
        except Exception:  # noqa: BLE001 - any handler failure is a 500: Cloud Tasks retries
            _log.exception("task %s failed; Cloud Tasks will retry it", delivery.task_name)
            return _json(500, {"outcome": "error"})
    return _json(reply.status, reply.body(), reply.headers())


def route_paths(url: str, function_url: str) -> frozenset[str]:
    """The request paths a call to ``url`` can reach the function whose own URL is
    ``function_url`` with: ``url``'s path, and, when that lies under ``function_url``'s path, what
    follows it (``/`` for the function's own URL). A function's ``cloudfunctions.net`` URL ends
    with the function's name, which the platform strips before the request reaches the code
    (``.../dispatch/verify`` arrives as ``/verify``, as Cloud Functions documents for its first
    generation), while a ``run.app`` URL's path and the local runtime's arrive as they are: both
    forms are accepted (for dispatch's two routes they never overlap)."""
    path = urlsplit(url).path or "/"
    base = urlsplit(function_url).path.rstrip("/")
    paths = {path}
    if base and (path == base or path.startswith(base + "/")):
        paths.add(path[len(base) :] or "/")
    return frozenset(paths)


def serve_routes(request: TaskRequest, routes: Sequence[tuple[str, TaskHandler]]) -> HttpAnswer:
    """Serve ``request`` by the first of ``routes`` (URL, handler) whose :func:`route_paths`
    hold its path; the first route's URL is the function's own, and the audience every route's
    token is checked against (:func:`serve_task`; the tasks name it,
    :mod:`hpsteer.services.command_tasks`). No route: 404, nothing else read (the module
    docstring)."""
    function_url = routes[0][0]
    for url, handler in routes:
        if request.path in route_paths(url, function_url):
            return serve_task(request, handler, audience=function_url)
    _log.warning("refused a task call to an unknown path %.200r", request.path)
    return _json(404, {"error": "NotFound"})
