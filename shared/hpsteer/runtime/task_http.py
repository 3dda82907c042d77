"""What an HTTP function that Cloud Tasks calls does around its one service call.

:func:`serve_task` is the Cloud Tasks counterpart of :func:`~hpsteer.runtime.entrypoint.run_pubsub`:

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
from collections.abc import Callable, Iterable, Mapping
from typing import Protocol

from hpsteer.observability.logging import log_context
from hpsteer.runtime.bootstrap import Dependencies
from hpsteer.runtime.entrypoint import dependencies
from hpsteer.services.dispatch import Reply, TaskDelivery

__all__ = ["HttpAnswer", "TaskHandler", "serve_task"]

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
