"""The one place that decides which backend stands behind each port.

:func:`from_settings` gives the production wiring for ``HPSTEER_BACKEND=gcp`` (Firestore,
Pub/Sub, Cloud Tasks, BigQuery, Secret Manager, the system clock) and the local wiring for
``HPSTEER_BACKEND=local`` (in-process backends). Each port is built on first use, and a Google
backend's module (with its client library, 250-500 ms to import) is imported only then: a
function that never touches BigQuery never pays for it. Entry points keep one
:class:`Dependencies` per instance (module level), as Cloud Functions recommends for clients.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar, cast

from hpsteer.config import Settings
from hpsteer.ports.analytics import Analytics
from hpsteer.ports.bus import MessageBus
from hpsteer.ports.clock import Clock, SystemClock
from hpsteer.ports.secrets import SecretStore
from hpsteer.ports.store import DocumentStore
from hpsteer.ports.tasks import TaskQueue

if TYPE_CHECKING:
    from hpsteer.backends.local.tasks import Dispatcher

__all__ = ["Dependencies", "from_settings", "local", "production"]

T = TypeVar("T")


class Dependencies:
    """The ports a service needs, each built by its factory on first use."""

    def __init__(
        self,
        settings: Settings,
        clock: Clock,
        *,
        store: Callable[[], DocumentStore],
        bus: Callable[[], MessageBus],
        tasks: Callable[[], TaskQueue],
        analytics: Callable[[], Analytics],
        secrets: Callable[[], SecretStore],
    ) -> None:
        self.settings = settings
        self.clock = clock
        self._store_factory = store
        self._bus_factory = bus
        self._tasks_factory = tasks
        self._analytics_factory = analytics
        self._secrets_factory = secrets
        self._lock = threading.Lock()
        self._built: dict[str, object] = {}

    def _get(self, name: str, factory: Callable[[], T]) -> T:
        with self._lock:
            if name not in self._built:
                self._built[name] = factory()
            return cast(T, self._built[name])

    @property
    def store(self) -> DocumentStore:
        return self._get("store", self._store_factory)

    @property
    def bus(self) -> MessageBus:
        return self._get("bus", self._bus_factory)

    @property
    def tasks(self) -> TaskQueue:
        return self._get("tasks", self._tasks_factory)

    @property
    def analytics(self) -> Analytics:
        return self._get("analytics", self._analytics_factory)

    @property
    def secrets(self) -> SecretStore:
        return self._get("secrets", self._secrets_factory)

    def singleton(self, name: str, factory: Callable[[], T]) -> T:
        """A value built once for these dependencies (e.g. a provider client), then reused."""
        return self._get(f"singleton:{name}", factory)

    def built(self) -> frozenset[str]:
        """Names of the ports built so far (cold-start tests check what a function touched)."""
        with self._lock:
            return frozenset(self._built)


def production(settings: Settings, *, clock: Clock | None = None) -> Dependencies:
    """Google Cloud backends in ``settings.project`` (emulators when their hosts are set).

    ``clock`` is the system clock unless given (tests replaying a past day pass a simulated one).
    """

    def store() -> DocumentStore:
        from hpsteer.backends.gcp.firestore_store import FirestoreDocumentStore

        return FirestoreDocumentStore.for_project(settings.project, settings.firestore_database)

    def bus() -> MessageBus:
        from hpsteer.backends.gcp.pubsub_bus import PubSubMessageBus

        return PubSubMessageBus(settings.project)

    def tasks() -> TaskQueue:
        from hpsteer.backends.gcp.cloud_tasks import CloudTasksQueue, emulator_client

        client = (
            emulator_client(settings.tasks_emulator_host) if settings.tasks_emulator_host else None
        )
        return CloudTasksQueue(settings.project, settings.effective_tasks_location, client)

    def analytics() -> Analytics:
        from hpsteer.backends.gcp.bigquery_analytics import BigQueryAnalytics

        return BigQueryAnalytics.for_settings(settings)

    def secrets() -> SecretStore:
        from hpsteer.backends.gcp.secret_manager import SecretManagerStore

        return SecretManagerStore.for_settings(settings)

    return Dependencies(
        settings,
        clock or SystemClock(),
        store=store,
        bus=bus,
        tasks=tasks,
        analytics=analytics,
        secrets=secrets,
    )


def local(
    settings: Settings | None = None,
    *,
    clock: Clock | None = None,
    dispatcher: Dispatcher | None = None,
    state_dir: Path | None = None,
    secrets: SecretStore | None = None,
    wrap_store: Callable[[DocumentStore], DocumentStore] | None = None,
    bus: MessageBus | None = None,
) -> Dependencies:
    """In-process backends. With ``state_dir`` (or ``HPSTEER_LOCAL_STATE_DIR``) the store and the
    analytics tables persist as SQLite files there, and secrets are read from files there.

    ``dispatcher`` delivers due tasks; by default they are POSTed over HTTP to their URL, as
    Cloud Tasks would (the local runtime passes a dispatcher that calls handlers in process).
    ``secrets`` replaces the secret store (the simulated fleet's rotating tokens live in memory);
    ``wrap_store`` wraps the store once built (a benchmark counts its operations so); ``bus``
    replaces the in-process bus (the simulation on the Pub/Sub emulator).
    """
    settings = settings or Settings(backend="local")
    clock = clock or SystemClock()
    directory = state_dir or settings.local_state_dir
    if directory is not None:
        directory.mkdir(parents=True, exist_ok=True)

    def store() -> DocumentStore:
        from hpsteer.backends.local.store import LocalDocumentStore

        path = directory / "store.sqlite" if directory else None
        built = LocalDocumentStore(clock=clock, path=path)
        return wrap_store(built) if wrap_store is not None else built

    given_bus = bus

    def bus_factory() -> MessageBus:
        from hpsteer.backends.local.bus import LocalMessageBus

        if given_bus is not None:
            return given_bus
        return LocalMessageBus(clock, project=settings.project)

    def tasks() -> TaskQueue:
        from hpsteer.adapters.registry import DEFAULT_FACTORIES
        from hpsteer.backends.local.tasks import LocalTaskQueue, http_dispatcher
        from hpsteer.services.command_tasks import ensure_queues
        from hpsteer.services.recheck_tasks import RECHECK_QUEUE

        queue = LocalTaskQueue(clock, dispatcher or http_dispatcher())
        ensure_queues(queue, tuple(DEFAULT_FACTORIES))  # what terraform creates in the cloud
        queue.ensure_queue(RECHECK_QUEUE)
        return queue

    def analytics() -> Analytics:
        from hpsteer.backends.local.analytics import SqliteAnalytics

        return SqliteAnalytics(directory / "analytics.sqlite" if directory else None)

    given_secrets = secrets

    def secrets_factory() -> SecretStore:
        from hpsteer.backends.local.secrets import EnvSecretStore, FileSecretStore

        if given_secrets is not None:
            return given_secrets
        if directory is not None:
            return FileSecretStore(directory / "secrets")
        return EnvSecretStore()

    return Dependencies(
        settings,
        clock,
        store=store,
        bus=bus_factory,
        tasks=tasks,
        analytics=analytics,
        secrets=secrets_factory,
    )


def from_settings(settings: Settings | None = None) -> Dependencies:
    """Production or local wiring, as ``HPSTEER_BACKEND`` says."""
    settings = settings or Settings()
    return production(settings) if settings.backend == "gcp" else local(settings)
