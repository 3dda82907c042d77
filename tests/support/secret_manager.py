"""A fake Secret Manager for the contract tests: a real gRPC server speaking the service's messages.

Google publishes no Secret Manager emulator. :class:`FakeSecretManager` serves
``google.cloud.secretmanager.v1.SecretManagerService`` on ``127.0.0.1`` with ``grpc.server``;
its handlers (de)serialise with the client library's own proto-plus message classes, so the real
``SecretManagerServiceClient`` builds its requests and parses its responses exactly as it does
against Google. It implements ``CreateSecret``, ``GetSecret``, ``AddSecretVersion`` and
``AccessSecretVersion`` (``latest`` resolves to the highest version; the response names the
resolved version and carries ``data_crc32c``), answers ``NOT_FOUND`` and ``ALREADY_EXISTS`` as
the service does, and refuses a version whose ``data_crc32c`` does not match its data
(``INVALID_ARGUMENT``). Every other method answers ``UNIMPLEMENTED`` (gRPC's default).

:meth:`FakeSecretManager.corrupt_next_checksum` makes the next access answer a wrong checksum;
:meth:`FakeSecretManager.fail_next` makes the next calls fail with a given status code.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from concurrent import futures
from dataclasses import dataclass, field
from typing import Any

import grpc
import pytest

from tests.support.emulator import free_port

__all__ = ["FakeSecretManager", "secret_manager_fake"]

PROJECT = "hpsteer-test"
SERVICE = "google.cloud.secretmanager.v1.SecretManagerService"


@dataclass
class _Secret:
    versions: list[bytes | None] = field(default_factory=list)
    """Payloads by version number - 1; ``None`` is a destroyed version."""


class FakeSecretManager:
    """Secrets in a dict behind a gRPC server; thread-safe."""

    def __init__(self) -> None:
        self._secrets: dict[str, _Secret] = {}
        self._lock = threading.Lock()
        self._corrupt_next = False
        self._failures: list[grpc.StatusCode] = []
        self._server: grpc.Server | None = None
        self.target = ""
        self.start_seconds = 0.0

    # -- control from the tests --

    def reset(self) -> None:
        with self._lock:
            self._secrets.clear()
            self._corrupt_next = False
            self._failures.clear()

    def fail_next(self, code: grpc.StatusCode, times: int = 1) -> None:
        """Answer the next ``times`` calls (any method) with ``code``."""
        with self._lock:
            self._failures.extend([code] * times)

    def corrupt_next_checksum(self) -> None:
        with self._lock:
            self._corrupt_next = True

    def client(self) -> Any:
        """The real client over an insecure gRPC channel to this server."""
        from hpsteer.backends.gcp.secret_manager import emulator_client

        return emulator_client(self.target)

    # -- server --

    def start(self) -> FakeSecretManager:
        from google.cloud import secretmanager_v1 as sm

        started = time.monotonic()

        def unary(
            handler: Callable[[Any, grpc.ServicerContext], Any], request: Any, response: Any
        ) -> grpc.RpcMethodHandler:
            def failing_first(message: Any, context: grpc.ServicerContext) -> Any:
                with self._lock:
                    failure = self._failures.pop(0) if self._failures else None
                if failure is not None:
                    context.abort(failure, f"injected {failure.name}")
                return handler(message, context)

            return grpc.unary_unary_rpc_method_handler(
                failing_first,
                request_deserializer=request.deserialize,
                response_serializer=response.serialize,
            )

        handlers = {
            "CreateSecret": unary(self._create_secret, sm.CreateSecretRequest, sm.Secret),
            "GetSecret": unary(self._get_secret, sm.GetSecretRequest, sm.Secret),
            "AddSecretVersion": unary(
                self._add_version, sm.AddSecretVersionRequest, sm.SecretVersion
            ),
            "AccessSecretVersion": unary(
                self._access, sm.AccessSecretVersionRequest, sm.AccessSecretVersionResponse
            ),
            "DestroySecretVersion": unary(
                self._destroy, sm.DestroySecretVersionRequest, sm.SecretVersion
            ),
        }
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
        port = free_port()
        if server.add_insecure_port(f"127.0.0.1:{port}") == 0:
            raise RuntimeError(f"cannot bind 127.0.0.1:{port}")
        server.start()
        self._server = server
        self.target = f"127.0.0.1:{port}"
        self.start_seconds = time.monotonic() - started
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop(grace=None).wait(5)

    # -- handlers --

    def _create_secret(self, request: Any, context: grpc.ServicerContext) -> Any:
        from google.cloud import secretmanager_v1 as sm

        name = f"{request.parent}/secrets/{request.secret_id}"
        with self._lock:
            if name in self._secrets:
                context.abort(grpc.StatusCode.ALREADY_EXISTS, f"Secret [{name}] already exists.")
            self._secrets[name] = _Secret()
        return sm.Secret(name=name, replication=request.secret.replication)

    def _get_secret(self, request: Any, context: grpc.ServicerContext) -> Any:
        from google.cloud import secretmanager_v1 as sm

        with self._lock:
            if request.name not in self._secrets:
                context.abort(grpc.StatusCode.NOT_FOUND, f"Secret [{request.name}] not found.")
        return sm.Secret(name=request.name)

    def _add_version(self, request: Any, context: grpc.ServicerContext) -> Any:
        import google_crc32c
        from google.cloud import secretmanager_v1 as sm

        data = bytes(request.payload.data)
        if "data_crc32c" in request.payload and (
            google_crc32c.value(data) != request.payload.data_crc32c
        ):
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "Checksum mismatch.")
        with self._lock:
            secret = self._secrets.get(request.parent)
            if secret is None:
                context.abort(grpc.StatusCode.NOT_FOUND, f"Secret [{request.parent}] not found.")
            secret.versions.append(data)
            number = len(secret.versions)
        return sm.SecretVersion(
            name=f"{request.parent}/versions/{number}",
            state=sm.SecretVersion.State.ENABLED,
            client_specified_payload_checksum="data_crc32c" in request.payload,
        )

    def _access(self, request: Any, context: grpc.ServicerContext) -> Any:
        import google_crc32c
        from google.cloud import secretmanager_v1 as sm

        secret_name, _, version = request.name.rpartition("/versions/")
        with self._lock:
            secret = self._secrets.get(secret_name)
            if secret is None:
                context.abort(grpc.StatusCode.NOT_FOUND, f"Secret [{secret_name}] not found.")
            number = len(secret.versions) if version == "latest" else _number(version)
            if not 1 <= number <= len(secret.versions):
                context.abort(
                    grpc.StatusCode.NOT_FOUND, f"Secret Version [{request.name}] not found."
                )
            data = secret.versions[number - 1]
            if data is None:
                context.abort(
                    grpc.StatusCode.FAILED_PRECONDITION,
                    f"Secret Version [{secret_name}/versions/{number}] is in DESTROYED state.",
                )
            checksum = google_crc32c.value(data)
            if self._corrupt_next:
                self._corrupt_next = False
                checksum ^= 1
        return sm.AccessSecretVersionResponse(
            name=f"{secret_name}/versions/{number}",
            payload=sm.SecretPayload(data=data, data_crc32c=checksum),
        )

    def _destroy(self, request: Any, context: grpc.ServicerContext) -> Any:
        from google.cloud import secretmanager_v1 as sm

        secret_name, _, version = request.name.rpartition("/versions/")
        with self._lock:
            secret = self._secrets.get(secret_name)
            number = _number(version)
            if secret is None or not 1 <= number <= len(secret.versions):
                context.abort(
                    grpc.StatusCode.NOT_FOUND, f"Secret Version [{request.name}] not found."
                )
            if secret.versions[number - 1] is None:
                context.abort(
                    grpc.StatusCode.FAILED_PRECONDITION,
                    f"Secret Version [{request.name}] is in DESTROYED state.",
                )
            secret.versions[number - 1] = None
        return sm.SecretVersion(name=request.name, state=sm.SecretVersion.State.DESTROYED)


def _number(version: str) -> int:
    return int(version) if version.isdigit() else 0


@pytest.fixture(scope="session")
def secret_manager_fake() -> Iterator[FakeSecretManager]:
    fake = FakeSecretManager().start()
    try:
        yield fake
    finally:
        fake.stop()
