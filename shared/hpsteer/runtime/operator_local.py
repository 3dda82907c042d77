"""The local transport of the operator's commands: the services in-process on a run's store.

``hpsteer devices …`` without ``--api`` opens the store a local run left (``STATE/store.sqlite``,
what ``hpsteer simulate`` writes and ``hpsteer inspect`` reads) and calls
:mod:`hpsteer.services.operator` on it, as the API's handlers would, as the fixed local admin
(:data:`~hpsteer.api.auth.LOCAL_IDENTITY`, the identity the API uses locally). Besides the
store, the services need:

- **a clock.** A run's store has the time of the run (a simulated one lives in a past winter), so
  "now" is the store's latest write, the moment the run that made it stopped, as ``hpsteer
  inspect`` takes it: a change lands right after the run, and a device's status says what it
  was doing then. An empty store takes the wall clock.
- **analytics**, for the audit events and command events the changes append: SQLite
  ``analytics.sqlite`` beside the store, as the local backends keep it with a state directory
  (:func:`hpsteer.runtime.bootstrap.local`). The audit events are in the store in any case.
- **a task queue and a bus**, for a hand-back command's send (Cloud Tasks) and a re-plan request
  (Pub/Sub). Nothing runs on a store between runs, and ``hpsteer simulate`` starts each run
  from a fresh store, so nothing here would deliver them. They are held, not pretended:
  the command is in the store (``pending``, with its task's name; in the cloud the command
  sweep re-enqueues such a command whose task was lost), and each held task and message is
  said on stderr (:meth:`LocalClient.take_notes`).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import sqlite3
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

from hpsteer.api.auth import LOCAL_IDENTITY
from hpsteer.backends.local.analytics import SqliteAnalytics
from hpsteer.config import Settings
from hpsteer.domain.instants import format_instant, parse_instant
from hpsteer.domain.operator_requests import (
    AlertListQuery,
    DeviceListQuery,
    DeviceRegistration,
    DeviceUpdate,
)
from hpsteer.domain.operator_views import (
    AlertsPage,
    AlertView,
    DeletedDevice,
    DevicesPage,
    DeviceStatus,
    DeviceView,
    ImportReport,
)
from hpsteer.domain.roles import Role
from hpsteer.errors import (
    AnalyticsUnavailable,
    HpsteerError,
    InvalidInput,
    TaskAlreadyExists,
    TransientError,
)
from hpsteer.ports.clock import SimulatedClock
from hpsteer.ports.tasks import QueueConfig, TaskRef, TaskRequest
from hpsteer.runtime.bootstrap import Dependencies
from hpsteer.runtime.inspect import STORE_FILE
from hpsteer.runtime.operator_client import ApiRefusal, ClientError, Registration
from hpsteer.services.operator.audit import Actor

__all__ = ["ANALYTICS_FILE", "HeldMessages", "HeldTasks", "LocalClient", "store_file"]

ANALYTICS_FILE = "analytics.sqlite"
LOCAL_ADMIN = Actor(LOCAL_IDENTITY, Role.ADMIN)

_BAD_REQUEST_CODES = frozenset({"invalid_page_token", "malformed_csv", "empty_file"})
"""Refusals the API answers 400 rather than 422 (:mod:`hpsteer.api.http`)."""

T = TypeVar("T")


def store_file(state: Path) -> Path:
    """The store of a run's output folder, or the file itself (as ``hpsteer inspect``)."""
    return state if state.is_file() else state / STORE_FILE


def _latest_write(path: Path) -> datetime | None:
    """The newest ``update_time`` in a store file; ClientError if it is not one."""
    try:
        db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
        try:
            rows = db.execute("SELECT update_time FROM documents").fetchall()
        finally:
            db.close()
    except sqlite3.Error as err:
        raise ClientError(f"{path} is not a store file: {err}") from None
    try:
        return max((parse_instant(row[0]) for row in rows), default=None)
    except (TypeError, ValueError, InvalidInput) as err:
        raise ClientError(f"{path} is not a store file: {err}") from None


def _analytics(path: Path) -> SqliteAnalytics:
    """The analytics file beside the store; one that cannot be opened is unavailable (the
    services keep the audit events in the store, ``exported: false``)."""
    try:
        return SqliteAnalytics(path)
    except sqlite3.Error as err:
        raise AnalyticsUnavailable(f"cannot open {path}: {err}") from None


def _rollback_journal(path: Path) -> None:
    """The store file back in rollback-journal mode (the store opens it in WAL mode): a reader
    that opens it read-only, as ``hpsteer inspect`` does, then needs no ``-wal``/``-shm`` files
    beside it. Best effort: the file is whole either way."""
    with contextlib.suppress(sqlite3.Error):
        db = sqlite3.connect(path)
        try:
            db.execute("PRAGMA journal_mode=DELETE")
        finally:
            db.close()


class HeldTasks:
    """A task queue that keeps what it is given: nothing delivers a local store's tasks."""

    def __init__(self) -> None:
        self.held: dict[tuple[str, str], TaskRequest] = {}

    def ensure_queue(self, config: QueueConfig) -> None:
        return None

    def create_task(self, task: TaskRequest) -> TaskRef:
        if (task.queue, task.name) in self.held:
            raise TaskAlreadyExists(f"task {task.name} exists in {task.queue}")
        self.held[(task.queue, task.name)] = task
        return TaskRef(task.queue, task.name, task.schedule_at)

    def delete_task(self, queue: str, name: str) -> bool:
        return self.held.pop((queue, name), None) is not None


class HeldMessages:
    """A message bus that keeps what is published: nothing subscribes on a local store."""

    def __init__(self) -> None:
        self.held: list[tuple[str, bytes]] = []
        self._ids = itertools.count(1)

    def publish(
        self,
        topic: str,
        data: bytes,
        *,
        attributes: Mapping[str, str] | None = None,
        ordering_key: str | None = None,
    ) -> str:
        self.held.append((topic, bytes(data)))
        return f"held-{next(self._ids)}"


def _refusal(err: HpsteerError) -> ClientError:
    """The answer the API would give for a service's refusal (:mod:`hpsteer.api.http`)."""
    from hpsteer.services.operator.errors import Conflict, Refused, UnknownTarget
    from hpsteer.services.operator.views import UnreadableDocument

    if isinstance(err, UnknownTarget):
        return ApiRefusal(404, err.code, str(err))
    if isinstance(err, Conflict):
        return ApiRefusal(409, err.code, str(err), err.field)
    if isinstance(err, Refused):
        status = 400 if err.code in _BAD_REQUEST_CODES else 422
        return ApiRefusal(status, err.code, str(err), err.field)
    if isinstance(err, TransientError):
        return ApiRefusal(503, "unavailable", f"{type(err).__name__}: {err}; try again")
    if isinstance(err, UnreadableDocument):
        return ApiRefusal(500, "unreadable_document", str(err))
    if isinstance(err, InvalidInput):
        return ApiRefusal(400, "invalid_input", str(err))
    return ApiRefusal(500, "internal", f"{type(err).__name__}: {err}")


class LocalClient:
    """:class:`~hpsteer.runtime.operator_client.OperatorClient` on a local run's store (module
    docstring). ``announcement`` is the line that says who acts where."""

    def __init__(self, state: Path) -> None:
        from hpsteer.backends.local.secrets import MemorySecretStore
        from hpsteer.backends.local.store import LocalDocumentStore

        path = store_file(state)
        if not path.is_file():
            raise ClientError(
                f"no store at {path}: run `hpsteer simulate` first, or give --api URL"
            )
        latest = _latest_write(path)
        self.path = path
        self.clock = SimulatedClock(latest or datetime.now(UTC))
        try:
            settings = Settings(backend="local")
            self._store = LocalDocumentStore(clock=self.clock, path=path)
        except (ValueError, HpsteerError) as err:  # a setting from HPSTEER_*, or the file
            raise ClientError(str(err).splitlines()[0]) from None
        self.tasks = HeldTasks()
        self.messages = HeldMessages()
        self.deps = Dependencies(
            settings,
            self.clock,
            store=lambda: self._store,
            bus=lambda: self.messages,
            tasks=lambda: self.tasks,
            analytics=lambda: _analytics(path.parent / ANALYTICS_FILE),
            secrets=MemorySecretStore,
        )
        when = "the wall clock (an empty store)" if latest is None else "the store's latest write"
        self.announcement = (
            f"acting as local admin {LOCAL_IDENTITY} (local store {path}); "
            f"now = {format_instant(self.clock.now())}, {when}"
        )

    def _run(self, call: Callable[[], T]) -> T:
        try:
            return call()
        except HpsteerError as err:
            raise _refusal(err) from None

    # -- the operations --------------------------------------------------------------------------

    def list_devices(self, query: DeviceListQuery) -> DevicesPage:
        from hpsteer.services.operator import devices

        return self._run(lambda: devices.list_devices(self.deps, query))

    def register_device(self, registration: DeviceRegistration) -> Registration:
        from hpsteer.services.operator import devices

        done = self._run(lambda: devices.register_device(self.deps, LOCAL_ADMIN, registration))
        return Registration(done.device, done.created)

    def import_devices(self, csv: bytes) -> ImportReport:
        from hpsteer.services.operator.device_import import import_devices

        try:
            text = csv.decode("utf-8-sig")
        except UnicodeDecodeError as err:
            raise ApiRefusal(400, "malformed_csv", f"the CSV is not UTF-8: {err}") from None
        return self._run(lambda: import_devices(self.deps, LOCAL_ADMIN, text))

    def device_status(self, device_id: str) -> DeviceStatus:
        from hpsteer.services.operator.status import device_status

        return self._run(lambda: device_status(self.deps, device_id))

    def set_steering(self, device_id: str, enabled: bool) -> DeviceView:
        from hpsteer.services.operator import devices

        return self._run(lambda: devices.set_steering(self.deps, LOCAL_ADMIN, device_id, enabled))

    def update_device(self, device_id: str, update: DeviceUpdate) -> DeviceView:
        from hpsteer.services.operator import devices

        return self._run(lambda: devices.update_device(self.deps, LOCAL_ADMIN, device_id, update))

    def delete_device(self, device_id: str) -> DeletedDevice:
        from hpsteer.services.operator import devices

        return self._run(lambda: devices.delete_device(self.deps, LOCAL_ADMIN, device_id))

    def list_alerts(self, query: AlertListQuery) -> AlertsPage:
        from hpsteer.services.operator import alerts

        return self._run(lambda: alerts.list_alerts(self.deps, query))

    def acknowledge_alert(self, alert_id: str, note: str | None) -> AlertView:
        from hpsteer.services.operator import alerts

        return self._run(lambda: alerts.acknowledge_alert(self.deps, LOCAL_ADMIN, alert_id, note))

    # -- what was held ---------------------------------------------------------------------------

    def take_notes(self) -> list[str]:
        notes = [self._task_note(task) for task in self.tasks.held.values()]
        notes += [self._message_note(topic, data) for topic, data in self.messages.held]
        self.tasks.held.clear()
        self.messages.held.clear()
        return notes

    def _task_note(self, task: TaskRequest) -> str:
        try:
            body = json.loads(task.body)
            device_id, command_id = str(body["device_id"]), str(body["command_id"])
        except (ValueError, KeyError, TypeError):
            return (
                f"task {task.name} of queue {task.queue} is not delivered: nothing delivers a "
                "local store's tasks"
            )
        stored = self._store.get(f"devices/{device_id}/commands/{command_id}")
        state = stored.data.get("state") if stored is not None else "missing"
        return (
            f"command {command_id} of {device_id} is stored {state} but not sent: nothing "
            f"delivers a local store's tasks (in the cloud, Cloud Tasks sends it at "
            f"{format_instant(task.schedule_at)})"
        )

    def _message_note(self, topic: str, data: bytes) -> str:
        from hpsteer.domain.messages import ReplanRequest, Topic

        if topic == Topic.REPLAN_REQUESTS.value:
            try:
                request = ReplanRequest.parse_json(data)
            except HpsteerError:
                request = None
            if request is not None:
                target = request.device_id or (request.area.value if request.area else "?")
                return (
                    f"the re-plan of {target} ({request.reason}) is not delivered: nothing plans "
                    "on a local store (in the cloud, optimize re-plans it now)"
                )
        return f"a {topic} message is not delivered: nothing subscribes on a local store"

    def close(self) -> None:
        self._store.close()
        _rollback_journal(self.path)
        if "analytics" in self.deps.built():
            analytics = self.deps.analytics
            assert isinstance(analytics, SqliteAnalytics)
            analytics.close()
