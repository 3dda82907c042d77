"""Secrets in Google Secret Manager (google-cloud-secret-manager): the production secret store.

Promises, beyond the port's:

* ``get`` reads ``projects/P/secrets/N/versions/V`` and returns the version number the service
  resolved (``latest`` → ``"7"``). When the response carries ``data_crc32c`` the payload's CRC32C
  is checked; a mismatch raises :class:`~hpsteer.errors.SecretsUnavailable` (corrupted in transit:
  reading again may succeed).
* ``add_version`` adds a version with ``data_crc32c`` set, so the service refuses a payload
  damaged on the way; if the secret does not exist it is created first (automatic replication).
* ``destroy_version`` destroys ``projects/P/secrets/N/versions/V`` (not retried); NOT_FOUND and
  FAILED_PRECONDITION (already destroyed) count as done, so it is idempotent; ``latest`` is refused.
* Errors name the secret, never the payload: NOT_FOUND → :class:`~hpsteer.errors.SecretNotFound`
  (also FAILED_PRECONDITION, which is a disabled or destroyed version), PERMISSION_DENIED →
  :class:`~hpsteer.errors.PermanentError`, INVALID_ARGUMENT → InvalidInput, UNAVAILABLE,
  DEADLINE_EXCEEDED, INTERNAL, RESOURCE_EXHAUSTED and exhausted retries →
  :class:`~hpsteer.errors.SecretsUnavailable`. Reads retry transient errors for at most
  ``deadline_s``; adds are not retried (a retried add could create two versions).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from hpsteer.backends.local.secrets import check_name, check_version
from hpsteer.errors import (
    HpsteerError,
    InvalidInput,
    PermanentError,
    SecretNotFound,
    SecretsUnavailable,
)
from hpsteer.ports.secrets import SecretValue

if TYPE_CHECKING:
    from hpsteer.config import Settings

__all__ = ["SecretManagerStore", "emulator_client"]

T = TypeVar("T")


class SecretManagerStore:
    """Secrets of one Google Cloud project."""

    def __init__(
        self,
        project: str,
        client: Any = None,
        *,
        deadline_s: float = 10.0,
        request_timeout_s: float = 5.0,
        replica_location: str | None = None,
    ) -> None:
        from google.api_core import exceptions as api
        from google.api_core import retry as retries
        from google.cloud import secretmanager_v1

        self._project = project
        self._replica_location = replica_location
        """Where a secret this store creates keeps its replica (user-managed replication, so
        households' credentials stay in the region); Google's automatic choice when unset."""
        self._client = (
            client if client is not None else secretmanager_v1.SecretManagerServiceClient()
        )
        self._read_retry = retries.Retry(
            predicate=retries.if_exception_type(
                api.ServiceUnavailable, api.ResourceExhausted, api.DeadlineExceeded
            ),
            initial=0.1,
            maximum=2.0,
            timeout=deadline_s,
        )
        self._timeout = request_timeout_s

    @classmethod
    def for_settings(cls, settings: Settings) -> SecretManagerStore:
        """The store of ``settings.project``; over plain gRPC to
        ``HPSTEER_SECRET_MANAGER_EMULATOR_HOST`` when that is set (tests, local stand-ins)."""
        host = settings.secret_manager_emulator_host
        return cls(
            settings.project,
            emulator_client(host) if host else None,
            replica_location=None if host else settings.region,
        )

    def __repr__(self) -> str:
        return f"SecretManagerStore(project={self._project!r})"

    def get(self, name: str, version: str = "latest") -> SecretValue:
        import google_crc32c

        check_name(name)
        check_version(version)
        path = f"projects/{self._project}/secrets/{name}/versions/{version}"
        response = self._call(
            name,
            version,
            lambda: self._client.access_secret_version(
                name=path, retry=self._read_retry, timeout=self._timeout
            ),
        )
        data = bytes(response.payload.data)
        if "data_crc32c" in response.payload and (
            google_crc32c.value(data) != response.payload.data_crc32c
        ):
            raise SecretsUnavailable(
                f"secret {name} version {version}: payload checksum mismatch (corrupted in transit)"
            )
        resolved = response.name.rsplit("/", 1)[-1] if response.name else version
        return SecretValue(name=name, version=resolved, _payload=data)

    def add_version(self, name: str, payload: bytes) -> str:
        import google_crc32c
        from google.api_core import exceptions as api
        from google.cloud import secretmanager_v1 as sm

        check_name(name)
        if not isinstance(payload, bytes):
            raise InvalidInput(f"secret {name}: payload must be bytes")
        parent = f"projects/{self._project}/secrets/{name}"
        secret_payload = sm.SecretPayload(data=payload, data_crc32c=google_crc32c.value(payload))
        if self._replica_location is None:
            replication = sm.Replication(automatic=sm.Replication.Automatic())
        else:
            replica = sm.Replication.UserManaged.Replica(location=self._replica_location)
            replication = sm.Replication(
                user_managed=sm.Replication.UserManaged(replicas=[replica])
            )
        new_secret = sm.Secret(replication=replication)

        def add() -> Any:
            return self._client.add_secret_version(
                parent=parent, payload=secret_payload, retry=None, timeout=self._timeout
            )

        def create_secret() -> None:
            with contextlib.suppress(api.AlreadyExists):  # created meanwhile by someone else
                self._client.create_secret(
                    parent=f"projects/{self._project}",
                    secret_id=name,
                    secret=new_secret,
                    retry=None,
                    timeout=self._timeout,
                )

        try:
            created = self._call(name, "new", add)
        except SecretNotFound:
            self._call(name, "new", create_secret)
            created = self._call(name, "new", add)
        return str(created.name.rsplit("/", 1)[-1])

    def destroy_version(self, name: str, version: str) -> None:
        from google.api_core import exceptions as api

        check_name(name)
        if check_version(version) == "latest":
            raise InvalidInput(f"secret {name}: destroy a numbered version, not 'latest'")
        path = f"projects/{self._project}/secrets/{name}/versions/{version}"

        def destroy() -> None:
            with contextlib.suppress(api.NotFound, api.FailedPrecondition):  # already gone
                self._client.destroy_secret_version(name=path, retry=None, timeout=self._timeout)

        self._call(name, version, destroy)

    def _call(self, name: str, version: str, call: Callable[[], T]) -> T:
        from google.api_core import exceptions as api

        what = f"secret {name} version {version}"
        try:
            return call()
        except HpsteerError:
            raise
        except (api.NotFound, api.FailedPrecondition) as err:
            raise SecretNotFound(f"{what} not found, disabled or destroyed") from err
        except api.PermissionDenied as err:
            raise PermanentError(f"permission denied on {what}") from err
        except api.InvalidArgument as err:
            raise InvalidInput(f"Secret Manager refused {what}: {err.message}") from err
        except (
            api.ServiceUnavailable,
            api.DeadlineExceeded,
            api.InternalServerError,
            api.TooManyRequests,
            api.RetryError,
            api.Aborted,
            api.Unknown,
        ) as err:
            raise SecretsUnavailable(f"Secret Manager did not answer for {what}") from err
        except api.GoogleAPICallError as err:
            raise PermanentError(f"Secret Manager failed for {what}: {type(err).__name__}") from err


def emulator_client(host: str) -> Any:
    """A Secret Manager client on an insecure gRPC channel to ``host`` (``127.0.0.1:PORT``)."""
    import grpc
    from google.cloud.secretmanager_v1 import SecretManagerServiceClient
    from google.cloud.secretmanager_v1.services.secret_manager_service.transports import (
        SecretManagerServiceGrpcTransport,
    )

    channel = grpc.insecure_channel(host.removeprefix("http://"))
    return SecretManagerServiceClient(transport=SecretManagerServiceGrpcTransport(channel=channel))
