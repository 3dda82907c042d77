"""The local task queue finds the next due task across queues, retries and deletions in
schedule order (then creation order), whatever happened to the tasks before."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hpsteer.backends.local.tasks import DispatchedRequest, LocalTaskQueue
from hpsteer.ports.clock import SimulatedClock
from hpsteer.ports.tasks import QueueConfig, RetryConfig, TaskRequest

T0 = datetime(2024, 1, 15, 12, 0, tzinfo=UTC)
RETRY = RetryConfig(max_attempts=-1, min_backoff=timedelta(seconds=10), max_doublings=0)


def test_tasks_of_every_queue_go_in_schedule_order_with_retries_and_deletions() -> None:
    clock = SimulatedClock(T0)
    calls: list[tuple[float, str]] = []
    failing_once = {"b1"}

    def target(request: DispatchedRequest) -> int:
        name = request.headers["X-CloudTasks-TaskName"]
        calls.append(((clock.now() - T0).total_seconds(), name))
        if name in failing_once:
            failing_once.discard(name)
            return 500
        return 200

    queue = LocalTaskQueue(clock, target)
    for name in ("a", "b"):
        queue.ensure_queue(QueueConfig(name, retry=RETRY))

    def create(queue_name: str, name: str, seconds: float) -> None:
        at = T0 + timedelta(seconds=seconds)
        queue.create_task(TaskRequest(queue_name, name, "https://x.example/t", at))

    create("a", "a3", 3)
    create("b", "b1", 1)  # fails once: retried 10 s after its dispatch, at 11 s
    create("a", "a1", 1)  # same time as b1, created after it
    create("b", "b5", 5)
    create("a", "a12", 12)
    create("b", "gone", 2)
    assert queue.delete_task("b", "gone")
    create("b", "b11", 11)  # due with b1's retry: b1 was created first, so it goes first

    while (due := queue.next_due_at()) is not None:
        clock.advance_to(due)
        queue.run_due()

    assert calls == [
        (1.0, "b1"),
        (1.0, "a1"),
        (3.0, "a3"),
        (5.0, "b5"),
        (11.0, "b1"),
        (11.0, "b11"),
        (12.0, "a12"),
    ]
