"""The task queue port: Cloud Tasks' named HTTP tasks with scheduled times and retries.

A task is an HTTP request that the queue delivers at or after ``schedule_at``. Only a 2xx answer
is success; anything else is retried after a backoff computed from the queue's
:class:`RetryConfig` by :func:`backoff_delay` (Cloud Tasks' arithmetic: ``min_backoff`` doubled
``max_doublings`` times, then growing linearly by the last doubled interval, capped at
``max_backoff``). Retrying stops only when every limit that is set is spent: with both set, once
the task was attempted ``max_attempts`` times *and* ``max_retry_duration`` has passed since its
first attempt; a limit set to "unlimited" (``-1`` / ``None``) does not hold the task back, so
only both unlimited retry forever (Cloud Tasks' RetryConfig: "if you want your task to retry
infinitely, you must set max_attempts to -1 and max_retry_duration to 0"). A task name is unique
in its queue: creating a name that exists, or existed until about an hour ago, raises
:class:`~hpsteer.errors.TaskAlreadyExists`.

Every delivery carries the ``X-CloudTasks-*`` headers: ``QueueName`` (the queue's short id),
``TaskName`` (the task's short id), ``TaskRetryCount`` (retries so far), ``TaskExecutionCount``
(dispatches that got a response other than 5xx), ``TaskETA`` (schedule time, seconds since the
epoch). :func:`validate_task_request` is what both backends check before creating a task.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Protocol, runtime_checkable
from urllib.parse import urlsplit

from hpsteer.domain.instants import ensure_utc
from hpsteer.errors import InvalidInput

__all__ = [
    "HTTP_METHODS",
    "QueueConfig",
    "RateLimits",
    "RetryConfig",
    "TaskQueue",
    "TaskRef",
    "TaskRequest",
    "backoff_delay",
    "validate_queue_config",
    "validate_queue_name",
    "validate_task_name",
    "validate_task_request",
]


@dataclass(frozen=True, slots=True)
class RetryConfig:
    """Cloud Tasks' RetryConfig; ``max_attempts=-1`` or ``max_retry_duration=None``: unlimited."""

    max_attempts: int = 100
    max_retry_duration: timedelta | None = None
    min_backoff: timedelta = timedelta(seconds=0.1)
    max_backoff: timedelta = timedelta(seconds=3600)
    max_doublings: int = 16

    def __post_init__(self) -> None:
        if self.max_attempts == 0 or self.max_attempts < -1:
            raise ValueError(f"max_attempts must be positive or -1, got {self.max_attempts}")
        if self.min_backoff <= timedelta(0) or self.max_backoff < self.min_backoff:
            raise ValueError("need 0 < min_backoff <= max_backoff")
        if self.max_doublings < 0:
            raise ValueError("max_doublings must be >= 0")


@dataclass(frozen=True, slots=True)
class RateLimits:
    max_dispatches_per_second: float = 500.0
    max_concurrent_dispatches: int = 1000
    max_burst_size: int = 100


@dataclass(frozen=True, slots=True)
class QueueConfig:
    name: str
    retry: RetryConfig = field(default_factory=RetryConfig)
    rate_limits: RateLimits = field(default_factory=RateLimits)


@dataclass(frozen=True, slots=True)
class TaskRequest:
    queue: str
    name: str
    url: str
    schedule_at: datetime
    body: bytes = b""
    headers: Mapping[str, str] = field(default_factory=dict)
    http_method: str = "POST"
    oidc_service_account: str | None = None
    """Cloud Tasks adds an OIDC token for this service account (audience: ``oidc_audience``)."""
    oidc_audience: str | None = None
    """The token's audience; ``None``: ``url`` (Cloud Tasks' own default). A task for a path
    below a function's URL names the function's URL here: Cloud Run admits a token whose
    audience is the service's URL."""
    dispatch_deadline: timedelta = timedelta(minutes=10)

    def __post_init__(self) -> None:
        object.__setattr__(self, "schedule_at", ensure_utc(self.schedule_at, field="schedule_at"))
        if not timedelta(seconds=15) <= self.dispatch_deadline <= timedelta(minutes=30):
            raise ValueError("dispatch_deadline must be between 15 s and 30 min")


@dataclass(frozen=True, slots=True)
class TaskRef:
    queue: str
    name: str
    schedule_at: datetime


@runtime_checkable
class TaskQueue(Protocol):
    def ensure_queue(self, config: QueueConfig) -> None:
        """Create the queue or update its configuration."""
        ...

    def create_task(self, task: TaskRequest) -> TaskRef:
        """Create a named task; raise TaskAlreadyExists for a name in use or recently used."""
        ...

    def delete_task(self, queue: str, name: str) -> bool:
        """Delete a task not yet run; return False if there was none."""
        ...


def backoff_delay(retry: RetryConfig, retries_so_far: int) -> timedelta:
    """Delay before the next attempt after ``retries_so_far + 1`` failed attempts.

    ``retries_so_far = 0`` is the delay after the first failure. With min 10 s, max 300 s and 3
    doublings the delays are 10, 20, 40, 80, 160, 240, 300, 300, …
    """
    if retries_so_far < 0:
        raise ValueError("retries_so_far must be >= 0")
    min_s = retry.min_backoff.total_seconds()
    max_s = retry.max_backoff.total_seconds()
    if retries_so_far <= retry.max_doublings:
        delay = min_s * 2**retries_so_far
    else:
        last_doubled = min_s * 2**retry.max_doublings
        delay = last_doubled * (1 + retries_so_far - retry.max_doublings)
    return timedelta(seconds=min(delay, max_s))


_QUEUE_ID = re.compile(r"[A-Za-z0-9-]{1,100}")
_TASK_ID = re.compile(r"[A-Za-z0-9_-]{1,500}")
HTTP_METHODS = frozenset({"POST", "GET", "HEAD", "PUT", "DELETE", "PATCH", "OPTIONS"})


def validate_queue_name(queue: str) -> None:
    """Raise InvalidInput unless ``queue`` is a Cloud Tasks queue id (letters, digits, hyphens)."""
    if not _QUEUE_ID.fullmatch(queue):
        raise InvalidInput(f"queue id must be 1-100 letters, digits or hyphens, got {queue!r}")


def validate_task_name(name: str) -> None:
    """Raise InvalidInput unless ``name`` is a Cloud Tasks task id."""
    if not _TASK_ID.fullmatch(name):
        raise InvalidInput(
            f"task id must be 1-500 letters, digits, hyphens or underscores, got {name!r}"
        )


def validate_task_request(task: TaskRequest) -> None:
    """Raise InvalidInput for a task Cloud Tasks would refuse: bad ids, URL or method."""
    validate_queue_name(task.queue)
    validate_task_name(task.name)
    parts = urlsplit(task.url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidInput(f"task url must be an absolute http(s) URL, got {task.url!r}")
    if task.http_method not in HTTP_METHODS:
        raise InvalidInput(f"http_method must be one of {sorted(HTTP_METHODS)}")


def validate_queue_config(config: QueueConfig) -> None:
    """Raise InvalidInput for a queue configuration Cloud Tasks would refuse."""
    validate_queue_name(config.name)
    limits = config.rate_limits
    if not limits.max_dispatches_per_second > 0:
        raise InvalidInput("max_dispatches_per_second must be > 0")
    if limits.max_concurrent_dispatches < 1 or limits.max_burst_size < 1:
        raise InvalidInput("max_concurrent_dispatches and max_burst_size must be >= 1")
