"""An in-process task queue that follows Cloud Tasks' rules on a clock it is given.

Nothing runs by itself: :meth:`LocalTaskQueue.run_due` dispatches every task whose time has come,
and :meth:`LocalTaskQueue.next_due_at` says when the next one can run, so a test (or the local
runtime) advances a :class:`~hpsteer.ports.clock.SimulatedClock` to it and calls ``run_due``
again. The queue promises what Cloud Tasks does:

* a task is not dispatched before its ``schedule_at``; due tasks go in schedule order, paced per
  queue by a token bucket (``max_dispatches_per_second`` refill, ``max_burst_size`` capacity);
* only a 2xx completes a task; anything else (or a dispatcher that raises) is retried after
  :func:`~hpsteer.ports.tasks.backoff_delay` from the dispatch time, or after ``Retry-After``
  seconds when a 429/503 asks for longer;
* retrying stops only when every limit that is set is spent (``max_attempts`` dispatches *and*
  ``max_retry_duration`` since the first attempt); the task then lands in :meth:`failed_tasks`;
* a name stays taken while its task exists and for an hour after it completed, failed or was
  deleted (:class:`~hpsteer.errors.TaskAlreadyExists`).

``max_concurrent_dispatches`` has no effect: this queue dispatches one task at a time.
"""

from __future__ import annotations

import heapq
import math
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime

from hpsteer.errors import TaskAlreadyExists, UnknownQueue
from hpsteer.observability.tracing import with_traceparent
from hpsteer.ports.clock import Clock
from hpsteer.ports.tasks import (
    QueueConfig,
    RetryConfig,
    TaskRef,
    TaskRequest,
    backoff_delay,
    validate_queue_config,
    validate_queue_name,
    validate_task_name,
    validate_task_request,
)

__all__ = [
    "NAME_REUSE_DELAY",
    "DispatchResult",
    "DispatchedRequest",
    "Dispatcher",
    "FailedTask",
    "LocalTaskQueue",
    "PendingTask",
    "http_dispatcher",
    "retries_exhausted",
]

NAME_REUSE_DELAY = timedelta(hours=1)
"""How long a task name stays taken after its task completed, failed or was deleted."""

FAKE_LOCAL_TOKEN = "local-fake-oidc-token"
"""A marker in place of the OIDC token Cloud Tasks would mint; never a credential."""
_TOKEN_EPSILON = 1e-9


@dataclass(frozen=True, slots=True)
class DispatchedRequest:
    """The HTTP request a task turns into when it is dispatched."""

    url: str
    method: str
    headers: dict[str, str]
    body: bytes
    deadline: timedelta = timedelta(minutes=10)
    """How long Cloud Tasks would wait for the answer (the task's ``dispatch_deadline``)."""


@dataclass(frozen=True, slots=True)
class DispatchResult:
    """What the target answered: a status code and the response headers that matter."""

    status: int
    headers: Mapping[str, str] = field(default_factory=dict)


Dispatcher = Callable[[DispatchedRequest], "DispatchResult | int"]
"""Delivers one request; returns the status (plain ``int``) or a :class:`DispatchResult`."""


@dataclass(frozen=True, slots=True)
class PendingTask:
    """A task waiting for its (next) attempt."""

    queue: str
    name: str
    schedule_at: datetime
    retry_count: int
    last_status: int | None


@dataclass(frozen=True, slots=True)
class FailedTask:
    """A task that was dropped once its retries were spent."""

    queue: str
    name: str
    attempts: int
    last_status: int | None
    """The last HTTP status, or ``None`` if the last dispatch got no response."""
    first_attempt_at: datetime
    failed_at: datetime


def http_dispatcher() -> Dispatcher:
    """A dispatcher that sends each request over HTTP (``urllib``, no proxy), as Cloud Tasks does.

    Any HTTP status is returned with the response headers; no answer within the request's
    deadline (refused connection, timeout) raises, which the queue counts as a failed attempt.
    """
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def dispatch(request: DispatchedRequest) -> DispatchResult:
        http_request = urllib.request.Request(
            request.url,
            data=request.body or None,
            headers=request.headers,
            method=request.method,
        )
        timeout = request.deadline.total_seconds()
        try:
            with opener.open(http_request, timeout=timeout) as response:
                return DispatchResult(response.status, dict(response.headers.items()))
        except urllib.error.HTTPError as err:
            with err:
                return DispatchResult(err.code, dict(err.headers.items()))

    return dispatch


def retries_exhausted(
    retry: RetryConfig, attempts: int, first_attempt_at: datetime, now: datetime
) -> bool:
    """Whether a task that failed ``attempts`` times must not be tried again.

    Cloud Tasks stops only when every limit that is set is spent: ``max_attempts`` attempts made
    and ``max_retry_duration`` passed since the first attempt. An unlimited limit (``-1`` /
    ``None``) holds nothing back; with both unlimited the task is retried forever.
    """
    limit = retry.max_retry_duration
    duration = limit if limit is not None and limit > timedelta(0) else None
    if retry.max_attempts == -1 and duration is None:
        return False
    attempts_spent = retry.max_attempts == -1 or attempts >= retry.max_attempts
    duration_spent = duration is None or now - first_attempt_at >= duration
    return attempts_spent and duration_spent


@dataclass(slots=True)
class _Task:
    request: TaskRequest
    seq: int
    schedule_at: datetime
    dispatches: int = 0
    responses: int = 0  # dispatches answered with a status other than 5xx
    first_attempt_at: datetime | None = None
    last_status: int | None = None
    deleted: bool = False


class _TokenBucket:
    """Cloud Tasks' dispatch pacing: ``rate`` tokens a second, at most ``capacity`` stored."""

    def __init__(self, rate: float, capacity: int, now: datetime) -> None:
        self.rate = rate
        self.capacity = capacity
        self._tokens = float(capacity)
        self._at = now

    def reconfigure(self, rate: float, capacity: int, now: datetime) -> None:
        self._refill(now)
        self.rate, self.capacity = rate, capacity
        self._tokens = min(self._tokens, float(capacity))

    def ready_at(self) -> datetime:
        """The earliest instant at which a token is available."""
        missing = 1.0 - self._tokens
        if missing <= _TOKEN_EPSILON:
            return self._at
        micros = math.ceil(missing / self.rate * 1_000_000)
        return self._at + timedelta(microseconds=micros)

    def take(self, now: datetime) -> None:
        """Spend one token; the caller checked :meth:`ready_at` first."""
        self._refill(now)
        self._tokens = max(0.0, self._tokens - 1.0)

    def _refill(self, now: datetime) -> None:
        if now > self._at:
            gained = (now - self._at).total_seconds() * self.rate
            self._tokens = min(float(self.capacity), self._tokens + gained)
            self._at = now


@dataclass(slots=True)
class _Queue:
    config: QueueConfig
    bucket: _TokenBucket
    waiting: dict[str, _Task] = field(default_factory=dict)
    in_flight: dict[str, _Task] = field(default_factory=dict)
    released: dict[str, datetime] = field(default_factory=dict)  # name -> when it left
    # Every waiting task by (schedule_at, seq), plus stale entries (of tasks that left waiting or
    # were rescheduled) dropped when they reach the top: the next due task without a scan.
    # An entry's third item (a count of pushes) keeps two entries of one task from being compared
    # by the task itself.
    heap: list[tuple[datetime, int, int, _Task]] = field(default_factory=list)
    pushes: int = 0
    oldest_release: datetime | None = None  # at or before every time in released

    def wait(self, task: _Task) -> None:
        """``task`` waits for its attempt at ``task.schedule_at``."""
        self.waiting[task.request.name] = task
        self.pushes += 1
        heapq.heappush(self.heap, (task.schedule_at, task.seq, self.pushes, task))

    def first_waiting(self) -> _Task | None:
        """The waiting task that comes first in schedule order (stale entries dropped)."""
        heap = self.heap
        while heap:
            schedule_at, _, _, task = heap[0]
            if self.waiting.get(task.request.name) is task and task.schedule_at == schedule_at:
                return task
            heapq.heappop(heap)
        return None

    def name_taken(self, name: str, now: datetime) -> bool:
        left_at = self.released.get(name)
        recently = left_at is not None and now - left_at < NAME_REUSE_DELAY
        return name in self.waiting or name in self.in_flight or recently

    def release(self, name: str, at: datetime) -> None:
        """The name of a task that left the queue at ``at`` stays taken for a while."""
        self.released[name] = at
        if self.oldest_release is None or at < self.oldest_release:
            self.oldest_release = at

    def forget_old_names(self, now: datetime) -> None:
        oldest = self.oldest_release
        if oldest is None or now - oldest < NAME_REUSE_DELAY:
            return  # every name left within the delay: nothing to forget, no need to look
        for name in [n for n, at in self.released.items() if now - at >= NAME_REUSE_DELAY]:
            del self.released[name]
        self.oldest_release = min(self.released.values(), default=None)


class LocalTaskQueue:
    """The task queue port in memory; dispatches only when :meth:`run_due` is called."""

    def __init__(self, clock: Clock, dispatcher: Dispatcher) -> None:
        self._clock = clock
        self._dispatcher = dispatcher
        self._queues: dict[str, _Queue] = {}
        self._failed: list[FailedTask] = []
        self._seq = 0
        # Held for bookkeeping only, never while the dispatcher runs: a target may create tasks.
        self._lock = threading.RLock()

    # -- the port ---------------------------------------------------------------------------

    def ensure_queue(self, config: QueueConfig) -> None:
        validate_queue_config(config)
        limits = config.rate_limits
        now = self._clock.now()
        with self._lock:
            queue = self._queues.get(config.name)
            if queue is None:
                bucket = _TokenBucket(limits.max_dispatches_per_second, limits.max_burst_size, now)
                self._queues[config.name] = _Queue(config, bucket)
            else:
                queue.config = config
                queue.bucket.reconfigure(
                    limits.max_dispatches_per_second, limits.max_burst_size, now
                )

    def create_task(self, task: TaskRequest) -> TaskRef:
        validate_task_request(task)
        task = replace(task, headers=with_traceparent(task.headers))
        now = self._clock.now()
        with self._lock:
            queue = self._queue(task.queue)
            queue.forget_old_names(now)
            if queue.name_taken(task.name, now):
                raise TaskAlreadyExists(
                    f"task {task.name!r} exists in queue {task.queue!r} or was used within an hour"
                )
            self._seq += 1
            schedule_at = max(task.schedule_at, now)  # Cloud Tasks: a past time means now
            queue.wait(_Task(task, self._seq, schedule_at))
            return TaskRef(task.queue, task.name, schedule_at)

    def delete_task(self, queue: str, name: str) -> bool:
        validate_queue_name(queue)
        validate_task_name(name)
        now = self._clock.now()
        with self._lock:
            q = self._queue(queue)
            task = q.waiting.pop(name, None)
            if task is None:
                task = q.in_flight.get(name)
                if task is None or task.deleted:
                    return False
                task.deleted = True  # Cloud Tasks lets a dispatched task be deleted: no retry
            q.release(name, now)
            return True

    # -- driving and inspection -------------------------------------------------------------

    def run_due(self) -> int:
        """Dispatch every task due now, as far as the rate limits allow; return how many."""
        cutoff = self._clock.now()
        dispatched = 0
        while (picked := self._take_next(cutoff)) is not None:
            self._dispatch(*picked)
            dispatched += 1
        return dispatched

    def next_due_at(self) -> datetime | None:
        """When the next waiting task can be dispatched (schedule and rate limit), or None."""
        with self._lock:
            candidates = [
                max(first.schedule_at, q.bucket.ready_at())
                for q in self._queues.values()
                if (first := q.first_waiting()) is not None
            ]
        return min(candidates, default=None)

    def pending_tasks(self, queue: str) -> list[PendingTask]:
        """The tasks of ``queue`` waiting for an attempt, in schedule order."""
        with self._lock:
            q = self._queue(queue)
            tasks = sorted(q.waiting.values(), key=_schedule_order)
            return [
                PendingTask(queue, t.request.name, t.schedule_at, t.dispatches, t.last_status)
                for t in tasks
            ]

    def failed_tasks(self) -> list[FailedTask]:
        """Tasks dropped after their retries were spent, oldest first."""
        with self._lock:
            return list(self._failed)

    # -- internals --------------------------------------------------------------------------

    def _queue(self, name: str) -> _Queue:
        queue = self._queues.get(name)
        if queue is None:
            raise UnknownQueue(f"queue {name!r} does not exist")
        return queue

    def _take_next(self, cutoff: datetime) -> tuple[_Queue, _Task] | None:
        """The earliest due task whose queue has a dispatch token, moved to in-flight."""
        with self._lock:
            best: tuple[_Queue, _Task] | None = None
            for queue in self._queues.values():
                if queue.bucket.ready_at() > cutoff:
                    continue
                first = queue.first_waiting()
                if first is None or first.schedule_at > cutoff:
                    continue
                if best is None or _schedule_order(first) < _schedule_order(best[1]):
                    best = (queue, first)
            if best is None:
                return None
            queue, task = best
            queue.bucket.take(cutoff)
            del queue.waiting[task.request.name]
            queue.in_flight[task.request.name] = task
            return best

    def _dispatch(self, queue: _Queue, task: _Task) -> None:
        at = self._clock.now()
        request = self._request_for(task)
        status: int | None
        headers: Mapping[str, str] = {}
        try:
            result = self._dispatcher(request)
        except Exception:  # noqa: BLE001 - any target failure is a failed attempt
            status = None
        else:
            if isinstance(result, DispatchResult):
                status, headers = result.status, result.headers
            else:
                status = result
        self._settle(queue, task, at, status, headers)

    def _request_for(self, task: _Task) -> DispatchedRequest:
        req = task.request
        service = {
            "User-Agent": "Google-Cloud-Tasks",
            "X-CloudTasks-QueueName": req.queue,
            "X-CloudTasks-TaskName": req.name,
            "X-CloudTasks-TaskRetryCount": str(task.dispatches),
            "X-CloudTasks-TaskExecutionCount": str(task.responses),
            "X-CloudTasks-TaskETA": f"{task.schedule_at.timestamp():.6f}",
        }
        if req.oidc_service_account is not None:
            # Locally no real token is minted: the marker only shows that Cloud Tasks would send
            # an OIDC token for this service account (audience: oidc_audience, else the task URL).
            service["Authorization"] = f"Bearer {FAKE_LOCAL_TOKEN}"
        replaced = {k.lower() for k in service}
        own = {
            k: v
            for k, v in req.headers.items()
            if k.lower() not in replaced and not k.lower().startswith("x-cloudtasks-")
        }
        return DispatchedRequest(
            req.url, req.http_method, {**own, **service}, req.body, req.dispatch_deadline
        )

    def _settle(
        self,
        queue: _Queue,
        task: _Task,
        at: datetime,
        status: int | None,
        headers: Mapping[str, str],
    ) -> None:
        name = task.request.name
        with self._lock:
            del queue.in_flight[name]
            task.dispatches += 1
            task.first_attempt_at = task.first_attempt_at or at
            task.last_status = status
            if status is not None and status < 500:
                task.responses += 1
            if task.deleted:
                return
            if status is not None and 200 <= status < 300:
                queue.release(name, at)
                return
            retry = queue.config.retry
            if retries_exhausted(retry, task.dispatches, task.first_attempt_at, at):
                queue.release(name, at)
                self._failed.append(
                    FailedTask(
                        queue.config.name, name, task.dispatches, status, task.first_attempt_at, at
                    )
                )
                return
            delay = backoff_delay(retry, task.dispatches - 1)
            if status in (429, 503):
                delay = max(delay, _retry_after(headers, at))
            task.schedule_at = at + delay
            queue.wait(task)


def _schedule_order(task: _Task) -> tuple[datetime, int]:
    return task.schedule_at, task.seq


def _retry_after(headers: Mapping[str, str], now: datetime) -> timedelta:
    """The wait a ``Retry-After`` header asks for (seconds or an HTTP date); zero if none."""
    value = next((v for k, v in headers.items() if k.lower() == "retry-after"), None)
    if value is None:
        return timedelta(0)
    try:
        return timedelta(seconds=max(0.0, float(value.strip())))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return timedelta(0)
    if when.tzinfo is None:
        return timedelta(0)
    return max(timedelta(0), when - now)
