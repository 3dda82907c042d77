"""The Cloud Tasks side of rechecks: when a device whose poll failed is looked at again, its queue,
its task.

A reconcile run that could not read a device (the manufacturer answered 5xx or 429, the account's
read share was spent, the manufacturer's breaker was open) leaves it unjudged; without more, the
next run judges it an interval later, and a drift that became visible at this run is corrected an
interval late. A **recheck** is that device's reconciliation again, for the same run, a minute or
so later (:mod:`hpsteer.services.recheck`), made by a Cloud Task:

- **when** (:func:`recheck_at`): :data:`RECHECK_DELAY` after the failure, or when the failure
  says the manufacturer (a 429's ``Retry-After``), the account's budget or the breaker
  (half-open) will let a read through, whichever is later; none when that is more than half an
  interval after the run's tick (the recheck's correction would arrive as late as the next
  run's), and none for an offline device, a telemetry that stopped moving, a device whose poll
  was not due, or a permanent error (nothing a minute changes).
- **queue** ``recheck-devices`` (:data:`RECHECK_QUEUE`): one for every manufacturer, since a
  recheck is paid from the same read share and passes the same breaker as the run's poll, which
  protect each manufacturer; its retries (:data:`RECHECK_RETRY`) carry a recheck whose read
  failed again (answered 503 with ``Retry-After``: :func:`recheck_at` again) and the recheck
  function's own failures (a store error).
- **name**: the device and the run's tick, so a page delivered twice makes one recheck per device
  (:class:`~hpsteer.errors.TaskAlreadyExists` for the second); a recheck never makes another
  task, it is retried.
- **URL**: ``settings.recheck_url``, the ``recheck`` function (``functions/reconcile/main.py``),
  which is also the OIDC audience of its token.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Final

from hpsteer.config import Settings
from hpsteer.domain.messages import RecheckTask
from hpsteer.ports.tasks import QueueConfig, RateLimits, RetryConfig, TaskRequest
from hpsteer.services.command_tasks import task_name, task_request

__all__ = [
    "RECHECK_AFTER",
    "RECHECK_DELAY",
    "RECHECK_QUEUE",
    "RECHECK_RETRY",
    "recheck_at",
    "recheck_task",
    "recheck_task_name",
]

RECHECK_AFTER: Final = frozenset({"OemUnavailable", "OemRateLimited", "CircuitOpen"})
"""The failures of a reconcile read worth a recheck (the error class names a device's outcome
carries): the manufacturer's 5xx or timeout, a 429 or a spent read share, an open breaker."""

RECHECK_DELAY: Final = timedelta(seconds=60)
"""How long after a failed read its recheck comes at the earliest: a 5xx or a timeout seldom
comes alone, so a read a few seconds later (the page's second look) fails often where one a
minute later succeeds, and a minute still leaves most of an interval for its correction."""

RECHECK_RETRY: Final = RetryConfig(
    max_attempts=3,
    min_backoff=timedelta(seconds=15),
    max_backoff=timedelta(seconds=60),
    max_doublings=2,
)
"""Three attempts: a recheck whose read failed again is retried after its ``Retry-After`` (a
minute at least), one whose store failed 15 and 30 s later; the last attempt answers 200 whatever
happened (the handler knows it from ``X-CloudTasks-TaskRetryCount``), and the next run judges the
device."""

RECHECK_QUEUE: Final = QueueConfig(
    "recheck-devices",
    RECHECK_RETRY,
    RateLimits(max_dispatches_per_second=20, max_concurrent_dispatches=20),
)


def recheck_at(
    error: str | None,
    retry_at: datetime | None,
    failed_at: datetime,
    tick: datetime,
    interval: timedelta,
) -> datetime | None:
    """When to recheck a device whose read at the run of ``tick`` failed at ``failed_at`` with
    ``error`` (``retry_at``: when the failure says a read may pass again); ``None``: leave it to
    the next run (module docstring)."""
    if error not in RECHECK_AFTER:
        return None
    at = failed_at + RECHECK_DELAY
    if retry_at is not None and retry_at > at:
        at = retry_at
    if at > tick + interval / 2:
        return None
    return at


def recheck_task_name(device_id: str, tick: datetime) -> str:
    return task_name("recheck", device_id, tick.isoformat())


def recheck_task(
    settings: Settings, device_id: str, tick: datetime, at: datetime, traceparent: str | None = None
) -> TaskRequest:
    body = RecheckTask(device_id=device_id, tick=tick).model_dump_json().encode()
    name = recheck_task_name(device_id, tick)
    url = settings.recheck_url
    return task_request(
        settings, RECHECK_QUEUE.name, name, url, at, body, traceparent, audience=url
    )
