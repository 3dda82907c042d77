"""The task queue on Google Cloud Tasks (``google-cloud-tasks``, ``tasks_v2``).

:class:`CloudTasksQueue` creates or updates queues (retry config and rate limits), creates named
HTTP tasks with schedule time, headers, body, dispatch deadline and, when asked, an OIDC token,
and deletes tasks. Input is checked before the client sees it, with the same checks as the local
queue (:func:`hpsteer.ports.tasks.validate_task_request`). Client-library errors become hpsteer
errors here: ``AlreadyExists`` is :class:`~hpsteer.errors.TaskAlreadyExists`, a missing queue
:class:`~hpsteer.errors.UnknownQueue`, a refused request :class:`~hpsteer.errors.InvalidInput`,
anything that may pass on retry :class:`~hpsteer.errors.TaskQueueUnavailable`.

``RateLimits.max_burst_size`` is not sent: Cloud Tasks sets it itself (output only in v2).
:func:`emulator_client` builds a client for a local emulator (plain gRPC, no credentials).

Google client libraries are imported lazily, inside constructors and functions.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from hpsteer.domain.instants import ensure_utc
from hpsteer.errors import (
    HpsteerError,
    InvalidInput,
    PermanentError,
    TaskAlreadyExists,
    TaskQueueUnavailable,
    UnknownQueue,
)
from hpsteer.observability.tracing import with_traceparent
from hpsteer.ports.tasks import (
    QueueConfig,
    TaskRef,
    TaskRequest,
    validate_queue_config,
    validate_queue_name,
    validate_task_name,
    validate_task_request,
)

__all__ = ["CloudTasksQueue", "emulator_client", "translate_error"]

DEFAULT_TIMEOUT_S = 30.0


def emulator_client(host_port: str) -> Any:
    """A ``CloudTasksClient`` talking plain gRPC to an emulator at ``host:port``."""
    import grpc
    from google.cloud import tasks_v2
    from google.cloud.tasks_v2.services.cloud_tasks.transports import CloudTasksGrpcTransport

    # A local address must not go through an HTTP(S) proxy set in the environment.
    channel = grpc.insecure_channel(host_port, options=[("grpc.enable_http_proxy", 0)])
    return tasks_v2.CloudTasksClient(transport=CloudTasksGrpcTransport(channel=channel))


def translate_error(err: BaseException, what: str, *, missing: str = "queue") -> HpsteerError:
    """The hpsteer error for a Cloud Tasks client failure while doing ``what``."""
    from google.api_core import exceptions as gexc

    if isinstance(err, gexc.AlreadyExists):
        return TaskAlreadyExists(f"{what}: the task name is in use or was used recently")
    if isinstance(err, gexc.NotFound):
        return UnknownQueue(f"{what}: {missing} not found ({err.message})")
    if isinstance(err, gexc.InvalidArgument | gexc.OutOfRange):
        return InvalidInput(f"{what}: refused by Cloud Tasks ({err.message})")
    transient = (
        gexc.ServiceUnavailable,
        gexc.DeadlineExceeded,
        gexc.InternalServerError,
        gexc.TooManyRequests,
        gexc.ResourceExhausted,
        gexc.Aborted,
        gexc.Unknown,
        gexc.RetryError,
    )
    if isinstance(err, transient):
        return TaskQueueUnavailable(f"{what}: Cloud Tasks did not answer ({type(err).__name__})")
    if isinstance(err, gexc.GoogleAPICallError):
        # Permission, authentication, unimplemented, failed precondition: repeating won't help.
        return PermanentError(f"{what}: Cloud Tasks refused ({type(err).__name__}: {err.message})")
    return TaskQueueUnavailable(f"{what}: {type(err).__name__}: {err}")


class CloudTasksQueue:
    """The task queue port on Cloud Tasks, for one project and location."""

    def __init__(
        self,
        project: str,
        location: str,
        client: Any = None,
        *,
        timeout_s: float = DEFAULT_TIMEOUT_S,
    ) -> None:
        if client is None:
            from google.cloud import tasks_v2

            client = tasks_v2.CloudTasksClient()
        self._client = client
        self._project = project
        self._location = location
        self._timeout = timeout_s

    def queue_path(self, queue: str) -> str:
        return f"projects/{self._project}/locations/{self._location}/queues/{queue}"

    def task_path(self, queue: str, name: str) -> str:
        return f"{self.queue_path(queue)}/tasks/{name}"

    def ensure_queue(self, config: QueueConfig) -> None:
        """Create or update the queue (Cloud Tasks' UpdateQueue creates a missing queue)."""
        from google.api_core import exceptions as gexc
        from google.cloud import tasks_v2
        from google.protobuf import field_mask_pb2

        validate_queue_config(config)
        retry = config.retry
        limits = config.rate_limits
        queue = tasks_v2.Queue(
            name=self.queue_path(config.name),
            retry_config=tasks_v2.RetryConfig(
                max_attempts=retry.max_attempts,
                max_retry_duration=retry.max_retry_duration or timedelta(0),  # 0: unlimited
                min_backoff=retry.min_backoff,
                max_backoff=retry.max_backoff,
                max_doublings=retry.max_doublings,
            ),
            rate_limits=tasks_v2.RateLimits(
                max_dispatches_per_second=limits.max_dispatches_per_second,
                max_concurrent_dispatches=limits.max_concurrent_dispatches,
            ),
        )
        mask = field_mask_pb2.FieldMask(
            paths=[
                "retry_config",
                "rate_limits.max_dispatches_per_second",
                "rate_limits.max_concurrent_dispatches",
            ]
        )
        try:
            self._client.update_queue(queue=queue, update_mask=mask, timeout=self._timeout)
        except gexc.GoogleAPICallError as err:
            raise translate_error(err, f"ensure queue {config.name!r}") from err

    def create_task(self, task: TaskRequest) -> TaskRef:
        from google.api_core import exceptions as gexc
        from google.cloud import tasks_v2

        validate_task_request(task)
        http_request = tasks_v2.HttpRequest(
            url=task.url,
            http_method=tasks_v2.HttpMethod.__members__[task.http_method],
            headers=with_traceparent(task.headers),
            body=task.body,
        )
        if task.oidc_service_account is not None:
            http_request.oidc_token = tasks_v2.OidcToken(
                service_account_email=task.oidc_service_account,
                audience=task.oidc_audience or task.url,
            )
        proto = tasks_v2.Task(
            name=self.task_path(task.queue, task.name),
            http_request=http_request,
            schedule_time=task.schedule_at,
            dispatch_deadline=task.dispatch_deadline,
        )
        what = f"create task {task.name!r} in queue {task.queue!r}"
        try:
            created = self._client.create_task(
                parent=self.queue_path(task.queue), task=proto, timeout=self._timeout
            )
        except gexc.GoogleAPICallError as err:
            raise translate_error(err, what) from err
        scheduled = created.schedule_time  # Cloud Tasks moves a past time to now
        return TaskRef(
            task.queue, task.name, ensure_utc(scheduled) if scheduled else task.schedule_at
        )

    def delete_task(self, queue: str, name: str) -> bool:
        """Delete a waiting task; False if Cloud Tasks knows no such task (or queue)."""
        from google.api_core import exceptions as gexc

        validate_queue_name(queue)
        validate_task_name(name)
        try:
            self._client.delete_task(name=self.task_path(queue, name), timeout=self._timeout)
        except gexc.NotFound:
            return False
        except gexc.GoogleAPICallError as err:
            raise translate_error(err, f"delete task {name!r} in queue {queue!r}") from err
        return True
