"""The Cloud Tasks side of commands: one queue per manufacturer, task names, task requests.

Queues (created by terraform in the cloud, by :func:`ensure_queues` locally):

- ``dispatch-{manufacturer}`` (``dispatch-viessmann``, ``dispatch-nibe-myuplink``, …): the
  commands of one manufacturer, so one manufacturer's outage or throttling never holds up
  another's. Retry: :data:`DISPATCH_RETRY`; the dispatch handler reads the same config to know
  its last attempt (``X-CloudTasks-TaskRetryCount + 1 == max_attempts``), so terraform must use
  these values (issue 10 generates them from here).
- ``verify-commands``: verification reads, :data:`VERIFY_RETRY`.

Rates: a queue's dispatch rate protects the manufacturer's cloud as a whole; the per-account
limits (ViCare's 120 per 10 minutes) are the rate budget's job (:mod:`hpsteer.adapters.budget`),
which answers 429 with ``Retry-After`` so that the queue backs off.

Task names are the ids Cloud Tasks deduplicates on: a hash prefix (Cloud Tasks recommends
names that do not share sequential prefixes) of what the task stands for.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta
from typing import Final

from hpsteer.config import Settings
from hpsteer.domain.messages import CommandTask, KnownCommand
from hpsteer.ports.tasks import QueueConfig, RateLimits, RetryConfig, TaskQueue, TaskRequest

__all__ = [
    "DISPATCH_RATE_LIMITS",
    "DISPATCH_RETRY",
    "VERIFY_QUEUE",
    "VERIFY_RETRY",
    "dispatch_queue",
    "dispatch_task",
    "ensure_queues",
    "max_attempts",
    "remediation_task_name",
    "send_task_name",
    "sweep_task_name",
    "task_name",
    "task_request",
    "verify_task",
    "verify_task_name",
]

DISPATCH_RETRY: Final = RetryConfig(
    max_attempts=8,
    min_backoff=timedelta(seconds=10),
    max_backoff=timedelta(seconds=300),
    max_doublings=3,
)
"""Attempts 10, 20, 40, 80, 160, 240, 300 s apart: about 14 minutes of retries, within the
hour-long slot a mode change is for."""

VERIFY_RETRY: Final = RetryConfig(
    max_attempts=5,
    min_backoff=timedelta(seconds=30),
    max_backoff=timedelta(seconds=600),
    max_doublings=3,
)

DISPATCH_RATE_LIMITS: Final[dict[str, RateLimits]] = {
    # Fleet-wide ceilings per manufacturer cloud; per-account limits are the budget's.
    "viessmann": RateLimits(max_dispatches_per_second=10, max_concurrent_dispatches=20),
    "nibe_myuplink": RateLimits(max_dispatches_per_second=10, max_concurrent_dispatches=20),
    "daikin_onecta": RateLimits(max_dispatches_per_second=5, max_concurrent_dispatches=10),
}
_DEFAULT_RATE: Final = RateLimits(max_dispatches_per_second=5, max_concurrent_dispatches=10)

VERIFY_QUEUE: Final = QueueConfig(
    "verify-commands",
    VERIFY_RETRY,
    RateLimits(max_dispatches_per_second=20, max_concurrent_dispatches=40),
)


def dispatch_queue(manufacturer: str) -> QueueConfig:
    return QueueConfig(
        f"dispatch-{manufacturer.replace('_', '-')}",
        DISPATCH_RETRY,
        DISPATCH_RATE_LIMITS.get(manufacturer, _DEFAULT_RATE),
    )


def max_attempts(queue_name: str) -> int:
    """The queue's ``max_attempts`` as the handler must assume it (-1: unlimited)."""
    return (
        VERIFY_RETRY.max_attempts
        if queue_name == VERIFY_QUEUE.name
        else DISPATCH_RETRY.max_attempts
    )


def ensure_queues(tasks: TaskQueue, manufacturers: tuple[str, ...]) -> None:
    for manufacturer in manufacturers:
        tasks.ensure_queue(dispatch_queue(manufacturer))
    tasks.ensure_queue(VERIFY_QUEUE)


def task_name(prefix: str, *parts: object) -> str:
    """A task name: a hash of what the task stands for (``parts``), then ``prefix`` (module
    docstring)."""
    digest = hashlib.sha256("|".join(map(str, parts)).encode()).hexdigest()[:32]
    return f"{digest}-{prefix}"


def send_task_name(device_id: str, plan_id: str, slot_index: int) -> str:
    return task_name("send", device_id, plan_id, slot_index)


def remediation_task_name(device_id: str, command_id: str, remediation: int) -> str:
    return task_name(f"remedy{remediation}", device_id, command_id)


def verify_task_name(device_id: str, command_id: str, attempt: int) -> str:
    return task_name(f"verify{attempt}", device_id, command_id)


def sweep_task_name(device_id: str, command_id: str, stuck_since: datetime) -> str:
    return task_name("sweep", device_id, command_id, stuck_since.isoformat())


def task_request(
    settings: Settings,
    queue: str,
    name: str,
    url: str,
    at: datetime,
    body: bytes,
    traceparent: str | None,
    *,
    audience: str,
) -> TaskRequest:
    """A JSON task for one of our functions: the tasks' service account's OIDC token with
    ``audience`` (the called function's own URL), the trace context, a 60 s deadline (the
    functions' timeout)."""
    headers = {"Content-Type": "application/json"}
    if traceparent:
        headers["traceparent"] = traceparent
    return TaskRequest(
        queue=queue,
        name=name,
        url=url,
        schedule_at=at,
        body=body,
        headers=headers,
        oidc_service_account=settings.tasks_service_account,
        oidc_audience=audience,
        dispatch_deadline=timedelta(seconds=60),
    )


def _request(
    settings: Settings,
    queue: str,
    name: str,
    url: str,
    at: datetime,
    body: CommandTask,
    traceparent: str | None,
) -> TaskRequest:
    """A command's task: both routes are the dispatch function's, whose URL is the audience."""
    return task_request(
        settings,
        queue,
        name,
        url,
        at,
        body.model_dump_json().encode(),
        traceparent,
        audience=settings.dispatch_url,
    )


def dispatch_task(
    settings: Settings,
    manufacturer: str,
    name: str,
    device_id: str,
    command_id: str,
    at: datetime,
    traceparent: str | None = None,
    known: KnownCommand | None = None,
) -> TaskRequest:
    body = CommandTask(device_id=device_id, command_id=command_id, purpose="send", known=known)
    queue = dispatch_queue(manufacturer).name
    return _request(settings, queue, name, settings.dispatch_url, at, body, traceparent)


def verify_task(
    settings: Settings,
    name: str,
    device_id: str,
    command_id: str,
    at: datetime,
    traceparent: str | None = None,
    known: KnownCommand | None = None,
) -> TaskRequest:
    body = CommandTask(device_id=device_id, command_id=command_id, purpose="verify", known=known)
    return _request(settings, VERIFY_QUEUE.name, name, settings.verify_url, at, body, traceparent)
