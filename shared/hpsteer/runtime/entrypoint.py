"""What every Cloud Function entry point does around its one service call.

A function's ``main.py`` decodes nothing itself; it hands the CloudEvent and its service to
:func:`run_pubsub`, which

1. reads the Pub/Sub message out of the CloudEvent (a malformed envelope is permanent),
2. drops a message older than ``max_age`` (logged: a redelivery of yesterday's request must not
   act today),
3. binds the message id to every log line and calls the service with the message and the
   instance's :class:`~hpsteer.runtime.bootstrap.Dependencies`,
4. maps errors: a :class:`~hpsteer.errors.PermanentError` is logged once and acknowledged
   (redelivery cannot help); a :class:`~hpsteer.errors.TransientError` escapes, so Pub/Sub
   delivers again.

Dependencies are built once per function instance from the environment (:func:`dependencies`);
the local runtime and the tests install their own with :func:`use_dependencies`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import timedelta

from cloudevents.http import CloudEvent
from opentelemetry.trace import StatusCode

from hpsteer.errors import PermanentError
from hpsteer.messaging.envelope import PubSubMessage, read_pubsub_message
from hpsteer.observability.logging import configure_logging, log_context
from hpsteer.observability.tracing import (
    TRACEPARENT,
    configure_production_tracing,
    continued,
)
from hpsteer.runtime.bootstrap import Dependencies, from_settings

__all__ = ["dependencies", "run_pubsub", "use_dependencies"]

_log = logging.getLogger(__name__)
_lock = threading.Lock()
_installed: Dependencies | None = None

PubSubService = Callable[[PubSubMessage, Dependencies], None]


def dependencies() -> Dependencies:
    """This instance's dependencies: built from the environment on first use."""
    global _installed
    with _lock:
        if _installed is None:
            built = from_settings()
            settings = built.settings
            configure_logging(settings.log_level, project=settings.project)
            if settings.backend == "gcp":
                configure_production_tracing(settings.project, settings.trace_sample_rate)
            _installed = built
        return _installed


def use_dependencies(deps: Dependencies | None) -> None:
    """Install ``deps`` for every entry point in this process (None: back to the environment)."""
    global _installed
    with _lock:
        _installed = deps


def run_pubsub(
    event: CloudEvent, service: PubSubService, *, max_age: timedelta | None = None
) -> None:
    deps = dependencies()
    try:
        message = read_pubsub_message(event)
    except PermanentError as err:
        _log.error("dropped an undecodable event: %s", err, extra={"event_id": event["id"]})
        return
    with log_context(message_id=message.message_id):
        age = deps.clock.now() - message.publish_time
        if max_age is not None and age > max_age:
            _log.warning(
                "dropped a message published %s ago (older than %s)",
                age,
                max_age,
                extra={"publish_time": message.publish_time.isoformat()},
            )
            return
        attributes = {"messaging.message_id": message.message_id}
        with continued(message.attributes.get(TRACEPARENT), service.__name__, attributes) as span:
            try:
                service(message, deps)
            except PermanentError as err:
                span.set_status(StatusCode.ERROR, f"{type(err).__name__}: {err}")
                _log.error("refused for good: %s: %s", type(err).__name__, err)
