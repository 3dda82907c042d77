"""Cloud Tasks' retry arithmetic and the local queue's timing on a simulated clock.

The backoff schedule, the two retry limits and how they combine, ``Retry-After``, rate-limit
pacing and the hour a task name stays taken: the emulator cannot check any of these (it retries
every 0.1 s, ignores queue configuration and never refuses a name), so they are specified here.
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest

from hpsteer.backends.local.tasks import (
    FAKE_LOCAL_TOKEN,
    DispatchedRequest,
    DispatchResult,
    LocalTaskQueue,
)
from hpsteer.errors import InvalidInput, TaskAlreadyExists, UnknownQueue
from hpsteer.ports.clock import SimulatedClock
from hpsteer.ports.tasks import QueueConfig, RateLimits, RetryConfig, TaskRequest, backoff_delay

T0 = datetime(2024, 1, 15, 12, 0, tzinfo=UTC)
DOC_EXAMPLE = RetryConfig(
    max_attempts=-1,
    min_backoff=timedelta(seconds=10),
    max_backoff=timedelta(seconds=300),
    max_doublings=3,
)


def seconds(values: list[timedelta]) -> list[float]:
    return [v.total_seconds() for v in values]


class Target:
    """A dispatcher that answers from a script (then ``default``) and records each call."""

    def __init__(self, clock: SimulatedClock, *script: int | DispatchResult | Exception) -> None:
        self.clock = clock
        self.script = list(script)
        self.default: int | DispatchResult | Exception = 200
        self.calls: list[tuple[datetime, DispatchedRequest]] = []

    def __call__(self, request: DispatchedRequest) -> DispatchResult | int:
        self.calls.append((self.clock.now(), request))
        answer = self.script.pop(0) if self.script else self.default
        if isinstance(answer, Exception):
            raise answer
        return answer

    def times(self) -> list[datetime]:
        return [at for at, _ in self.calls]

    def gaps(self) -> list[float]:
        times = self.times()
        return [(b - a).total_seconds() for a, b in itertools.pairwise(times)]


def make_queue(
    *script: int | DispatchResult | Exception,
    retry: RetryConfig = DOC_EXAMPLE,
    limits: RateLimits | None = None,
) -> tuple[SimulatedClock, Target, LocalTaskQueue]:
    clock = SimulatedClock(T0)
    target = Target(clock, *script)
    queue = LocalTaskQueue(clock, target)
    queue.ensure_queue(QueueConfig("q", retry=retry, rate_limits=limits or RateLimits()))
    return clock, target, queue


def task(
    name: str = "t1",
    at: datetime = T0,
    *,
    headers: dict[str, str] | None = None,
    oidc_service_account: str | None = None,
) -> TaskRequest:
    return TaskRequest(
        "q",
        name,
        "https://example.test/run",
        at,
        b"{}",
        headers=headers or {},
        oidc_service_account=oidc_service_account,
    )


def drive(clock: SimulatedClock, queue: LocalTaskQueue, *, steps: int = 1000) -> None:
    """Run everything due, advancing the clock to the next due task, until nothing is left."""
    for _ in range(steps):
        queue.run_due()
        nxt = queue.next_due_at()
        if nxt is None:
            return
        clock.advance_to(nxt)


# -- backoff_delay ---------------------------------------------------------------------------


def test_backoff_with_min_10s_max_300s_and_3_doublings_is_10_20_40_80_160_240_300_300() -> None:
    retry = RetryConfig(
        min_backoff=timedelta(seconds=10), max_backoff=timedelta(seconds=300), max_doublings=3
    )
    delays = [backoff_delay(retry, n) for n in range(8)]
    assert seconds(delays) == [10, 20, 40, 80, 160, 240, 300, 300]


def test_backoff_with_no_doublings_grows_linearly_by_min_backoff() -> None:
    retry = RetryConfig(
        min_backoff=timedelta(seconds=10), max_backoff=timedelta(seconds=35), max_doublings=0
    )
    assert seconds([backoff_delay(retry, n) for n in range(5)]) == [10, 20, 30, 35, 35]


def test_backoff_refuses_a_negative_retry_count() -> None:
    with pytest.raises(ValueError, match="retries_so_far"):
        backoff_delay(DOC_EXAMPLE, -1)


# -- the local queue follows the schedule ----------------------------------------------------


def test_an_always_failing_task_is_dispatched_on_the_backoff_schedule() -> None:
    clock, target, queue = make_queue(retry=DOC_EXAMPLE)
    target.default = 500
    queue.create_task(task())

    for _ in range(9):
        drive(clock, queue, steps=1)

    assert target.times()[0] == T0
    assert target.gaps() == [10, 20, 40, 80, 160, 240, 300, 300]


def test_a_task_is_not_dispatched_before_its_schedule_time() -> None:
    clock, _target, queue = make_queue()
    queue.create_task(task(at=T0 + timedelta(seconds=30)))

    clock.advance(timedelta(seconds=29, microseconds=999_999))
    assert queue.run_due() == 0
    assert queue.next_due_at() == T0 + timedelta(seconds=30)

    clock.advance(timedelta(microseconds=1))
    assert queue.run_due() == 1


def test_due_tasks_are_dispatched_in_schedule_order() -> None:
    clock, target, queue = make_queue()
    queue.create_task(task("late", T0 + timedelta(seconds=3)))
    queue.create_task(task("early", T0 + timedelta(seconds=1)))
    queue.create_task(task("middle", T0 + timedelta(seconds=2)))
    clock.advance(timedelta(seconds=5))

    assert queue.run_due() == 3
    names = [r.headers["X-CloudTasks-TaskName"] for _, r in target.calls]
    assert names == ["early", "middle", "late"]


def test_a_2xx_completes_the_task() -> None:
    clock, target, queue = make_queue(201)
    queue.create_task(task())
    drive(clock, queue)

    assert len(target.calls) == 1
    assert queue.pending_tasks("q") == []
    assert queue.failed_tasks() == []


# -- when retrying stops ---------------------------------------------------------------------


def ten_seconds_apart(max_attempts: int, max_retry_duration: timedelta | None) -> RetryConfig:
    """Retries exactly 10 s after each failure, with the two limits given."""
    return RetryConfig(
        max_attempts=max_attempts,
        max_retry_duration=max_retry_duration,
        min_backoff=timedelta(seconds=10),
        max_backoff=timedelta(seconds=10),
        max_doublings=0,
    )


def test_spent_attempts_alone_do_not_stop_retrying_while_the_duration_lasts() -> None:
    retry = ten_seconds_apart(3, timedelta(seconds=100))
    clock, target, queue = make_queue(retry=retry)
    target.default = 503
    queue.create_task(task())

    for _ in range(3):
        drive(clock, queue, steps=1)
    assert len(target.calls) == 3
    assert [p.name for p in queue.pending_tasks("q")] == ["t1"]

    drive(clock, queue)
    # Attempts at 0, 10, …, 100 s: the attempt at 100 s is the first after both limits are spent.
    assert len(target.calls) == 11
    assert target.times()[-1] == T0 + timedelta(seconds=100)


def test_a_passed_duration_alone_does_not_stop_retrying_while_attempts_remain() -> None:
    retry = ten_seconds_apart(5, timedelta(seconds=15))
    clock, target, queue = make_queue(retry=retry)
    target.default = 503
    queue.create_task(task())

    drive(clock, queue)

    # 15 s have passed after the attempt at 20 s, yet attempts continue until the fifth (40 s).
    assert target.times() == [T0 + timedelta(seconds=s) for s in (0, 10, 20, 30, 40)]


def test_retrying_stops_once_both_limits_are_spent_and_the_task_is_reported_failed() -> None:
    retry = ten_seconds_apart(2, timedelta(seconds=5))
    clock, target, queue = make_queue(500, 502, 418, retry=retry)
    queue.create_task(task())

    drive(clock, queue)

    assert len(target.calls) == 2
    assert queue.pending_tasks("q") == []
    [failed] = queue.failed_tasks()
    assert (failed.queue, failed.name, failed.attempts, failed.last_status) == ("q", "t1", 2, 502)
    assert failed.first_attempt_at == T0
    assert failed.failed_at == T0 + timedelta(seconds=10)


def test_an_unlimited_duration_leaves_max_attempts_to_decide() -> None:
    retry = ten_seconds_apart(3, None)
    clock, target, queue = make_queue(retry=retry)
    target.default = 500
    queue.create_task(task())

    drive(clock, queue)

    assert len(target.calls) == 3
    assert len(queue.failed_tasks()) == 1


def test_unlimited_attempts_leave_max_retry_duration_to_decide() -> None:
    retry = ten_seconds_apart(-1, timedelta(seconds=25))
    clock, target, queue = make_queue(retry=retry)
    target.default = 500
    queue.create_task(task())

    drive(clock, queue)

    assert target.times()[-1] == T0 + timedelta(seconds=30)
    assert len(queue.failed_tasks()) == 1


def test_with_both_limits_unlimited_a_task_is_retried_forever() -> None:
    retry = ten_seconds_apart(-1, None)
    clock, target, queue = make_queue(retry=retry)
    target.default = 500
    queue.create_task(task())

    drive(clock, queue, steps=200)

    assert len(target.calls) == 200
    assert queue.failed_tasks() == []
    assert [p.retry_count for p in queue.pending_tasks("q")] == [200]


def test_a_dispatcher_that_raises_is_a_failed_attempt_without_an_execution() -> None:
    retry = ten_seconds_apart(3, None)
    clock, target, queue = make_queue(ConnectionError("refused"), 500, retry=retry)
    target.default = ConnectionError("refused")
    queue.create_task(task())

    drive(clock, queue)

    headers = [r.headers for _, r in target.calls]
    assert [h["X-CloudTasks-TaskRetryCount"] for h in headers] == ["0", "1", "2"]
    assert [h["X-CloudTasks-TaskExecutionCount"] for h in headers] == ["0", "0", "0"]
    [failed] = queue.failed_tasks()
    assert failed.last_status is None


def test_a_4xx_counts_as_an_execution_and_a_5xx_does_not() -> None:
    clock, target, queue = make_queue(404, 503, 200)
    queue.create_task(task())

    drive(clock, queue)

    counts = [r.headers["X-CloudTasks-TaskExecutionCount"] for _, r in target.calls]
    assert counts == ["0", "1", "1"]


# -- Retry-After -----------------------------------------------------------------------------


@pytest.mark.parametrize("status", [429, 503])
def test_retry_after_on_429_and_503_is_waited_for_when_longer_than_the_backoff(
    status: int,
) -> None:
    clock, target, queue = make_queue(DispatchResult(status, {"Retry-After": "120"}))
    queue.create_task(task())

    drive(clock, queue)

    assert target.gaps() == [120]


def test_a_shorter_retry_after_does_not_shorten_the_backoff() -> None:
    clock, target, queue = make_queue(DispatchResult(503, {"retry-after": "2"}))
    queue.create_task(task())

    drive(clock, queue)

    assert target.gaps() == [10]


def test_retry_after_on_other_statuses_is_ignored() -> None:
    clock, target, queue = make_queue(DispatchResult(500, {"Retry-After": "120"}))
    queue.create_task(task())

    drive(clock, queue)

    assert target.gaps() == [10]


def test_retry_after_may_be_an_http_date() -> None:
    clock, target, queue = make_queue(
        DispatchResult(429, {"Retry-After": "Mon, 15 Jan 2024 12:05:00 GMT"})
    )
    queue.create_task(task())

    drive(clock, queue)

    assert target.gaps() == [300]


# -- rate limits -----------------------------------------------------------------------------


def test_five_due_tasks_at_one_per_second_with_burst_one_go_out_over_five_seconds() -> None:
    limits = RateLimits(max_dispatches_per_second=1, max_burst_size=1)
    clock, target, queue = make_queue(limits=limits)
    for i in range(5):
        queue.create_task(task(f"t{i}"))

    assert queue.run_due() == 1
    assert queue.next_due_at() == T0 + timedelta(seconds=1)
    drive(clock, queue)

    assert target.times() == [T0 + timedelta(seconds=s) for s in range(5)]


def test_a_burst_goes_out_at_once_and_the_rest_at_the_dispatch_rate() -> None:
    limits = RateLimits(max_dispatches_per_second=2, max_burst_size=3)
    clock, target, queue = make_queue(limits=limits)
    for i in range(5):
        queue.create_task(task(f"t{i}"))

    drive(clock, queue)

    assert target.times() == [T0, T0, T0, T0 + timedelta(seconds=0.5), T0 + timedelta(seconds=1)]


# -- names -----------------------------------------------------------------------------------


def test_a_completed_task_name_can_be_reused_only_after_an_hour() -> None:
    clock, _target, queue = make_queue()
    queue.create_task(task())
    queue.run_due()

    clock.advance(timedelta(minutes=59, seconds=59))
    with pytest.raises(TaskAlreadyExists):
        queue.create_task(task(at=clock.now()))

    clock.advance(timedelta(seconds=1))
    queue.create_task(task(at=clock.now()))
    assert [p.name for p in queue.pending_tasks("q")] == ["t1"]


def test_a_deleted_task_name_is_held_for_an_hour_too() -> None:
    clock, target, queue = make_queue()
    queue.create_task(task(at=T0 + timedelta(minutes=5)))

    assert queue.delete_task("q", "t1") is True
    assert queue.delete_task("q", "t1") is False
    with pytest.raises(TaskAlreadyExists):
        queue.create_task(task())

    clock.advance(timedelta(hours=1))
    drive(clock, queue)
    assert target.calls == []
    queue.create_task(task(at=clock.now()))


def test_a_failed_task_name_is_held_for_an_hour() -> None:
    _clock, _target, queue = make_queue(500, retry=RetryConfig(max_attempts=1))
    queue.create_task(task())
    queue.run_due()

    assert len(queue.failed_tasks()) == 1
    with pytest.raises(TaskAlreadyExists):
        queue.create_task(task())


# -- requests, queues and bad input ----------------------------------------------------------


def test_a_dispatch_carries_the_task_and_service_headers() -> None:
    clock, target, queue = make_queue()
    queue.create_task(
        task(at=T0 + timedelta(seconds=1.5), headers={"X-Mine": "1", "X-CloudTasks-TaskName": "x"})
    )
    drive(clock, queue)

    [(_, request)] = target.calls
    assert request.url == "https://example.test/run"
    assert request.method == "POST"
    assert request.body == b"{}"
    assert request.headers["X-Mine"] == "1"
    assert request.headers["X-CloudTasks-QueueName"] == "q"
    assert request.headers["X-CloudTasks-TaskName"] == "t1"
    assert (
        request.headers["X-CloudTasks-TaskETA"]
        == f"{(T0 + timedelta(seconds=1.5)).timestamp():.6f}"
    )
    assert "Authorization" not in request.headers


def test_an_oidc_service_account_adds_a_fake_bearer_marker() -> None:
    _clock, target, queue = make_queue()
    queue.create_task(task(oidc_service_account="tasks@p.iam.gserviceaccount.com"))
    queue.run_due()

    [(_, request)] = target.calls
    assert request.headers["Authorization"] == f"Bearer {FAKE_LOCAL_TOKEN}"


def test_a_task_on_an_unknown_queue_raises_unknown_queue() -> None:
    _clock, _target, queue = make_queue()
    with pytest.raises(UnknownQueue):
        queue.create_task(TaskRequest("nope", "t1", "https://example.test/run", T0))
    with pytest.raises(UnknownQueue):
        queue.pending_tasks("nope")


def test_updating_a_queue_applies_its_new_retry_config_to_waiting_tasks() -> None:
    clock, target, queue = make_queue(500, 500)
    queue.create_task(task())
    queue.run_due()
    queue.ensure_queue(QueueConfig("q", retry=RetryConfig(max_attempts=2)))

    drive(clock, queue)

    assert len(target.calls) == 2
    assert len(queue.failed_tasks()) == 1


@pytest.mark.parametrize(
    ("name", "url", "method"),
    [
        ("has space", "https://example.test/run", "POST"),
        ("t1", "ftp://example.test/run", "POST"),
        ("t1", "/relative", "POST"),
        ("t1", "https://example.test/run", "TRACE"),
    ],
)
def test_a_malformed_task_is_refused_and_nothing_is_queued(
    name: str, url: str, method: str
) -> None:
    _clock, _target, queue = make_queue()
    with pytest.raises(InvalidInput):
        queue.create_task(TaskRequest("q", name, url, T0, http_method=method))
    assert queue.pending_tasks("q") == []


def test_a_queue_config_without_a_dispatch_rate_is_refused() -> None:
    _clock, _target, queue = make_queue()
    with pytest.raises(InvalidInput):
        queue.ensure_queue(QueueConfig("q2", rate_limits=RateLimits(max_dispatches_per_second=0)))
    with pytest.raises(UnknownQueue):
        queue.pending_tasks("q2")
