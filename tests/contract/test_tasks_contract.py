"""The task queue contract: the same tests against the local queue and Cloud Tasks' stand-in.

Each backend is presented through a :class:`Driver`: the local queue runs on a simulated clock
(waiting means advancing the clock to ``next_due_at`` and calling ``run_due``); the Cloud Tasks
backend talks to gcloud-tasks-emulator, which delivers to a real HTTP target, so waiting means
polling that target with a bounded timeout. Both deliver to the same :class:`TaskTarget`.

gcloud-tasks-emulator 0.6.2 does not implement everything Cloud Tasks does. The tests it cannot
check still run against it, marked as strictly expected failures by :data:`EMULATOR_CANNOT` with
the reason read from its source: if a later stand-in gains the feature, the XPASS fails the run
and the entry must go.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import pytest

from hpsteer.backends.local.tasks import DispatchedRequest, DispatchResult, LocalTaskQueue
from hpsteer.errors import InvalidInput, TaskAlreadyExists, TaskQueueUnavailable, UnknownQueue
from hpsteer.ports.clock import SimulatedClock
from hpsteer.ports.tasks import QueueConfig, RateLimits, RetryConfig, TaskQueue, TaskRequest
from tests.support.cloud_tasks import (  # noqa: F401 - pytest finds the fixtures by their names here
    CloudTasksEmulator,
    ReceivedRequest,
    TargetServer,
    TaskTarget,
    cloud_tasks_emulator,
    task_target_server,
)
from tests.support.emulator import free_port

EMULATOR_CANNOT = {
    "duplicate names": "gcloud-tasks-emulator accepts a task name already in the queue "
    "(QueueState.create_task has no ALREADY_EXISTS check) and delivers both",
    "name reuse delay": "gcloud-tasks-emulator keeps no record of finished task names",
    "unknown queue": "gcloud-tasks-emulator answers FAILED_PRECONDITION for a missing queue "
    "where Cloud Tasks answers NOT_FOUND",
    "delete task": "gcloud-tasks-emulator does not implement DeleteTask (UNIMPLEMENTED)",
    "short queue name header": "gcloud-tasks-emulator sends the full queue path "
    "(projects/…/queues/Q) as X-CloudTasks-QueueName; Cloud Tasks sends the queue id",
    "execution count": "gcloud-tasks-emulator sends TaskExecutionCount = TaskRetryCount, "
    "counting 5xx answers too",
}
"""What the stand-in cannot check, with the reason; the local backend supports all of it."""

PROJECT = "hpsteer-test"
LOCATION = "europe-west1"


class Driver:
    """One backend as the tests see it: a queue, the target it delivers to, and time."""

    backend: str

    def __init__(self, queue: TaskQueue, target: TaskTarget, base_url: str) -> None:
        self.queue = queue
        self.target = target
        self.base_url = base_url
        self.queues: list[str] = []

    def now(self) -> datetime:
        raise NotImplementedError

    def wait_until(self, condition: Callable[[], bool]) -> bool:
        """Let the queue work until ``condition`` holds or waiting is pointless; return it."""
        raise NotImplementedError

    def pause(self) -> None:
        """Let a moment pass without reaching anything scheduled a second or more ahead."""
        raise NotImplementedError

    def settle(self) -> None:
        """Let every retry or redelivery that could still come, come."""
        raise NotImplementedError

    def close(self) -> None:
        pass

    node: pytest.Item | None = None

    def requires(self, capability: str) -> None:
        if self.backend == "cloud_tasks" and capability in EMULATOR_CANNOT:
            assert self.node is not None
            reason = f"stand-in cannot check: {EMULATOR_CANNOT[capability]}"
            self.node.add_marker(pytest.mark.xfail(reason=reason, strict=True))

    def new_queue(self) -> str:
        name = f"q-{uuid.uuid4().hex[:12]}"
        retry = RetryConfig(max_attempts=10, min_backoff=timedelta(seconds=0.1))
        self.queue.ensure_queue(QueueConfig(name, retry=retry))
        self.queues.append(name)
        return name

    def task(self, queue: str, **overrides: Any) -> TaskRequest:
        fields: dict[str, Any] = {
            "queue": queue,
            "name": f"t-{uuid.uuid4().hex[:12]}",
            "url": f"{self.base_url}/tasks/run",
            "schedule_at": self.now(),
            "body": b'{"hello": "tasks"}',
            "headers": {"Content-Type": "application/json"},
        }
        fields.update(overrides)
        return TaskRequest(**fields)

    def wait_for(self, task_name: str, count: int) -> list[ReceivedRequest]:
        self.wait_until(lambda: len(self.target.received(task_name)) >= count)
        received = self.target.received(task_name)
        assert len(received) >= count, f"{len(received)} of {count} deliveries of {task_name}"
        return received


class LocalDriver(Driver):
    """The local queue on a simulated clock; waiting advances the clock to the next due task."""

    backend = "local"
    HORIZON = timedelta(hours=2)

    def __init__(self) -> None:
        self.clock = SimulatedClock(datetime(2024, 1, 15, 12, 0, tzinfo=UTC))
        target = TaskTarget(self.clock.now)
        self.local = LocalTaskQueue(self.clock, self._dispatch)
        super().__init__(self.local, target, "http://127.0.0.1:9")

    def _dispatch(self, request: DispatchedRequest) -> DispatchResult:
        parts = urlsplit(request.url)
        path = f"{parts.path}?{parts.query}" if parts.query else parts.path
        status, headers = self.target.handle(request.method, path, request.headers, request.body)
        return DispatchResult(status, headers)

    def now(self) -> datetime:
        return self.clock.now()

    def wait_until(self, condition: Callable[[], bool]) -> bool:
        until = self.clock.now() + self.HORIZON
        for _ in range(1000):
            self.local.run_due()
            if condition():
                return True
            nxt = self.local.next_due_at()
            if nxt is None or nxt > until:
                break
            self.clock.advance_to(nxt)
        return condition()

    def pause(self) -> None:
        self.local.run_due()

    def settle(self) -> None:
        self.wait_until(lambda: False)


class EmulatorDriver(Driver):
    """The Cloud Tasks backend on gcloud-tasks-emulator; waiting polls the HTTP target."""

    backend = "cloud_tasks"
    TIMEOUT_S = 10.0
    QUIET_S = 0.6  # the emulator passes over its queues every 0.1 s

    def __init__(self, emulator: CloudTasksEmulator, server: TargetServer) -> None:
        from hpsteer.backends.gcp.cloud_tasks import CloudTasksQueue, emulator_client

        self.client = emulator_client(emulator.host_port)
        server.target.reset()
        queue = CloudTasksQueue(PROJECT, LOCATION, self.client)
        super().__init__(queue, server.target, server.base_url)

    def now(self) -> datetime:
        return datetime.now(UTC)

    def wait_until(self, condition: Callable[[], bool]) -> bool:
        deadline = time.monotonic() + self.TIMEOUT_S
        while not condition() and time.monotonic() < deadline:
            time.sleep(0.05)
        return condition()

    def pause(self) -> None:
        time.sleep(0.5)

    def settle(self) -> None:
        time.sleep(self.QUIET_S)

    def close(self) -> None:
        for name in self.queues:  # deleting a queue stops the emulator's retries of its tasks
            self.client.delete_queue(name=f"projects/{PROJECT}/locations/{LOCATION}/queues/{name}")
        self.client.transport.close()


@pytest.fixture(params=["local", pytest.param("cloud_tasks", marks=pytest.mark.emulator)])
def driver(request: pytest.FixtureRequest) -> Iterator[Driver]:
    drv: Driver
    if request.param == "local":
        drv = LocalDriver()
    else:
        emulator: CloudTasksEmulator = request.getfixturevalue("cloud_tasks_emulator")
        server: TargetServer = request.getfixturevalue("task_target_server")
        drv = EmulatorDriver(emulator, server)
    drv.node = request.node  # type: ignore[assignment]  # a test item while a test runs
    try:
        yield drv
    finally:
        drv.close()


# -- delivery --------------------------------------------------------------------------------


def test_both_backends_are_task_queues(driver: Driver) -> None:
    assert isinstance(driver.queue, TaskQueue)


def test_a_task_is_delivered_to_its_url_with_its_method_body_and_own_headers(
    driver: Driver,
) -> None:
    queue = driver.new_queue()
    task = driver.task(
        queue,
        url=f"{driver.base_url}/tasks/plan?home=h1",
        http_method="PUT",
        body=b'{"plan": 42}',
        headers={"Content-Type": "application/json", "X-Hpsteer-Trace": "trace-1"},
    )
    driver.queue.create_task(task)

    [delivery] = driver.wait_for(task.name, 1)

    assert delivery.method == "PUT"
    assert delivery.path == "/tasks/plan?home=h1"
    assert delivery.body == b'{"plan": 42}'
    assert delivery.header("Content-Type") == "application/json"
    assert delivery.header("X-Hpsteer-Trace") == "trace-1"


def test_a_delivery_names_its_task_in_x_cloudtasks_taskname(driver: Driver) -> None:
    queue = driver.new_queue()
    task = driver.task(queue)
    driver.queue.create_task(task)

    [delivery] = driver.wait_for(task.name, 1)

    assert delivery.header("X-CloudTasks-TaskName") == task.name
    assert delivery.header("X-CloudTasks-QueueName")
    assert delivery.header("X-CloudTasks-TaskRetryCount") == "0"


def test_a_delivery_names_its_queue_id_in_x_cloudtasks_queuename(driver: Driver) -> None:
    driver.requires("short queue name header")
    queue = driver.new_queue()
    task = driver.task(queue)
    driver.queue.create_task(task)

    [delivery] = driver.wait_for(task.name, 1)

    assert delivery.header("X-CloudTasks-QueueName") == queue


def test_a_delivery_carries_its_schedule_time_as_x_cloudtasks_tasketa(driver: Driver) -> None:
    queue = driver.new_queue()
    task = driver.task(queue, schedule_at=driver.now() + timedelta(seconds=1))
    driver.queue.create_task(task)

    [delivery] = driver.wait_for(task.name, 1)

    eta = delivery.header("X-CloudTasks-TaskETA")
    assert eta is not None
    assert float(eta) == pytest.approx(task.schedule_at.timestamp(), abs=1e-3)


def test_a_task_scheduled_in_the_future_is_not_delivered_early(driver: Driver) -> None:
    queue = driver.new_queue()
    task = driver.task(queue, schedule_at=driver.now() + timedelta(seconds=2))
    driver.queue.create_task(task)

    driver.pause()
    assert driver.target.received(task.name) == []

    [delivery] = driver.wait_for(task.name, 1)
    assert delivery.received_at >= task.schedule_at


def test_a_task_answered_with_2xx_is_not_delivered_again(driver: Driver) -> None:
    queue = driver.new_queue()
    task = driver.task(queue)
    driver.target.answer(task.name, 204)
    driver.queue.create_task(task)

    driver.wait_for(task.name, 1)
    driver.settle()

    assert len(driver.target.received(task.name)) == 1


# -- retries ---------------------------------------------------------------------------------


def test_a_task_failing_with_5xx_is_retried_with_a_higher_retry_count(driver: Driver) -> None:
    queue = driver.new_queue()
    task = driver.task(queue)
    driver.target.answer(task.name, 503, 500)
    driver.queue.create_task(task)

    deliveries = driver.wait_for(task.name, 3)
    driver.settle()

    counts = [int(d.header("X-CloudTasks-TaskRetryCount") or -1) for d in deliveries]
    assert counts == [0, 1, 2]
    assert all(d.body == task.body for d in deliveries)
    assert len(driver.target.received(task.name)) == 3  # the 200 ended it


def test_a_5xx_answer_does_not_count_as_an_execution_but_a_4xx_does(driver: Driver) -> None:
    driver.requires("execution count")
    queue = driver.new_queue()
    task = driver.task(queue)
    driver.target.answer(task.name, 503, 404)
    driver.queue.create_task(task)

    deliveries = driver.wait_for(task.name, 3)

    counts = [d.header("X-CloudTasks-TaskExecutionCount") for d in deliveries]
    assert counts == ["0", "0", "1"]


# -- names -----------------------------------------------------------------------------------


def test_a_duplicate_task_name_raises_task_already_exists(driver: Driver) -> None:
    driver.requires("duplicate names")
    queue = driver.new_queue()
    task = driver.task(queue, schedule_at=driver.now() + timedelta(minutes=5))
    driver.queue.create_task(task)

    with pytest.raises(TaskAlreadyExists):
        driver.queue.create_task(task)


def test_a_name_stays_taken_after_its_task_completed(driver: Driver) -> None:
    driver.requires("name reuse delay")
    queue = driver.new_queue()
    task = driver.task(queue)
    driver.queue.create_task(task)
    driver.wait_for(task.name, 1)

    with pytest.raises(TaskAlreadyExists):
        driver.queue.create_task(driver.task(queue, name=task.name))


def test_a_malformed_task_name_is_refused_before_anything_is_created(driver: Driver) -> None:
    queue = driver.new_queue()

    with pytest.raises(InvalidInput):
        driver.queue.create_task(driver.task(queue, name="no/slashes"))
    driver.pause()

    assert driver.target.received() == []


def test_creating_a_task_on_an_unknown_queue_raises_unknown_queue(driver: Driver) -> None:
    driver.requires("unknown queue")

    with pytest.raises(UnknownQueue):
        driver.queue.create_task(driver.task(f"missing-{uuid.uuid4().hex[:8]}"))


# -- deletion --------------------------------------------------------------------------------


def test_deleting_a_pending_task_prevents_its_delivery(driver: Driver) -> None:
    driver.requires("delete task")
    queue = driver.new_queue()
    task = driver.task(queue, schedule_at=driver.now() + timedelta(seconds=2))
    driver.queue.create_task(task)

    assert driver.queue.delete_task(queue, task.name) is True
    driver.settle()

    assert driver.target.received(task.name) == []


def test_deleting_a_task_that_does_not_exist_returns_false(driver: Driver) -> None:
    driver.requires("delete task")
    queue = driver.new_queue()

    assert driver.queue.delete_task(queue, "never-created") is False


# -- what only the Cloud Tasks backend does --------------------------------------------------


@pytest.mark.emulator
def test_cloud_tasks_ensure_queue_sends_retry_config_and_rate_limits(
    request: pytest.FixtureRequest,
) -> None:
    emulator: CloudTasksEmulator = request.getfixturevalue("cloud_tasks_emulator")
    drv = EmulatorDriver(emulator, request.getfixturevalue("task_target_server"))
    try:
        name = f"q-{uuid.uuid4().hex[:12]}"
        retry = RetryConfig(
            max_attempts=7,
            max_retry_duration=timedelta(minutes=5),
            min_backoff=timedelta(seconds=10),
            max_backoff=timedelta(seconds=300),
            max_doublings=3,
        )
        drv.queue.ensure_queue(QueueConfig(name, retry, RateLimits(max_dispatches_per_second=2)))
        drv.queues.append(name)

        stored = drv.client.get_queue(name=f"projects/{PROJECT}/locations/{LOCATION}/queues/{name}")

        assert stored.retry_config.max_attempts == 7
        assert stored.retry_config.max_retry_duration == timedelta(minutes=5)
        assert stored.retry_config.min_backoff == timedelta(seconds=10)
        assert stored.retry_config.max_backoff == timedelta(seconds=300)
        assert stored.retry_config.max_doublings == 3
        assert stored.rate_limits.max_dispatches_per_second == 2
    finally:
        drv.close()


@pytest.mark.emulator
@pytest.mark.parametrize("audience", [None, "https://europe-west1-p.cloudfunctions.net/dispatch"])
def test_cloud_tasks_create_task_sends_oidc_token_deadline_and_full_name(
    request: pytest.FixtureRequest, audience: str | None
) -> None:
    emulator: CloudTasksEmulator = request.getfixturevalue("cloud_tasks_emulator")
    drv = EmulatorDriver(emulator, request.getfixturevalue("task_target_server"))
    try:
        queue = drv.new_queue()
        task = drv.task(
            queue,
            schedule_at=drv.now() + timedelta(minutes=10),
            oidc_service_account="tasks@hpsteer-test.iam.gserviceaccount.com",
            oidc_audience=audience,
            dispatch_deadline=timedelta(minutes=2),
        )
        drv.queue.create_task(task)

        parent = f"projects/{PROJECT}/locations/{LOCATION}/queues/{queue}"
        [stored] = drv.client.list_tasks(parent=parent)

        assert stored.name == f"{parent}/tasks/{task.name}"
        assert stored.http_request.oidc_token.service_account_email == task.oidc_service_account
        assert stored.http_request.oidc_token.audience == (audience or task.url)
        assert stored.dispatch_deadline == timedelta(minutes=2)
        assert stored.schedule_time == task.schedule_at
    finally:
        drv.close()


def test_cloud_tasks_that_does_not_answer_raises_task_queue_unavailable() -> None:
    from hpsteer.backends.gcp.cloud_tasks import CloudTasksQueue, emulator_client

    client = emulator_client(f"127.0.0.1:{free_port()}")
    queue = CloudTasksQueue(PROJECT, LOCATION, client, timeout_s=2.0)
    try:
        with pytest.raises(TaskQueueUnavailable):
            queue.create_task(TaskRequest("q", "t1", "http://127.0.0.1:9/run", datetime.now(UTC)))
    finally:
        client.transport.close()


# -- what only the local queue does: delivering over HTTP ------------------------------------


def test_the_local_http_dispatcher_delivers_over_http_and_reads_retry_after(
    request: pytest.FixtureRequest,
) -> None:
    from hpsteer.backends.local.tasks import http_dispatcher

    server: TargetServer = request.getfixturevalue("task_target_server")
    server.target.reset()
    clock = SimulatedClock(datetime(2024, 1, 15, 12, 0, tzinfo=UTC))
    queue = LocalTaskQueue(clock, http_dispatcher())
    queue.ensure_queue(QueueConfig("q"))
    server.target.answer("t1", (503, {"Retry-After": "30"}))
    queue.create_task(TaskRequest("q", "t1", f"{server.base_url}/run", clock.now(), b"x"))

    assert queue.run_due() == 1
    assert queue.next_due_at() == clock.now() + timedelta(seconds=30)
    clock.advance(timedelta(seconds=30))
    assert queue.run_due() == 1

    deliveries = server.target.received("t1")
    assert [(d.method, d.path, d.body) for d in deliveries] == [("POST", "/run", b"x")] * 2
    assert queue.pending_tasks("q") == []


def test_the_local_http_dispatcher_counts_a_refused_connection_as_a_failed_attempt() -> None:
    from hpsteer.backends.local.tasks import http_dispatcher

    clock = SimulatedClock(datetime(2024, 1, 15, 12, 0, tzinfo=UTC))
    queue = LocalTaskQueue(clock, http_dispatcher())
    queue.ensure_queue(QueueConfig("q", RetryConfig(max_attempts=1)))
    url = f"http://127.0.0.1:{free_port()}/run"
    queue.create_task(TaskRequest("q", "t1", url, clock.now()))

    queue.run_due()

    [failed] = queue.failed_tasks()
    assert (failed.attempts, failed.last_status) == (1, None)
