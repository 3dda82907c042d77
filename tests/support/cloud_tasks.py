"""The Cloud Tasks stand-in for the contract tests: gcloud-tasks-emulator and an HTTP target.

``gcloud-tasks-emulator start`` has no option for the listening address and its gRPC server binds
``[::]`` (all interfaces) whatever host it is given, so the fixture runs the emulator's own
``create_server`` from its tool venv with the API thread's ``run`` replaced by one that binds
``127.0.0.1`` only (:data:`EMULATOR_LAUNCHER`). Proxy variables are dropped from its environment:
it delivers with ``urllib``, which would otherwise send ``127.0.0.1`` requests to a proxy.

:class:`TaskTarget` is what tasks are delivered to. It records every request and answers with a
status the test programs per task name (for example 503 for the first two attempts, then 200).
The local queue calls :meth:`TaskTarget.handle` in-process; :class:`TargetServer` serves the same
object over HTTP (stdlib ``http.server`` in a thread on ``127.0.0.1``) for the emulator.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.support.emulator import EmulatorProcess, free_port, port_open, tool_executable

__all__ = [
    "CloudTasksEmulator",
    "ReceivedRequest",
    "TargetServer",
    "TaskTarget",
    "cloud_tasks_emulator",
    "task_target_server",
]

EMULATOR_LAUNCHER = """
import logging, sys
from gcloud_tasks_emulator import server as emu

def run_on_loopback(self):
    # Same as APIThread.run, but bound to 127.0.0.1 instead of [::].
    self._httpd = emu.grpc.server(emu.futures.ThreadPoolExecutor(max_workers=4))
    emu.add_CloudTasksServicer_to_server(emu.Greeter(self._state), self._httpd)
    if not self._httpd.add_insecure_port("127.0.0.1:%d" % self._port):
        raise SystemExit("cannot bind 127.0.0.1:%d" % self._port)
    self._httpd.start()

emu.APIThread.run = run_on_loopback
logging.basicConfig(level=logging.WARNING)
port = int(sys.argv[1])
emu.create_server("127.0.0.1", port, "127.0.0.1", port, [], -1).run()
"""

_PROXY_VARS = ("http_proxy", "https_proxy", "all_proxy", "grpc_proxy")


@dataclass(frozen=True, slots=True)
class ReceivedRequest:
    method: str
    path: str
    headers: Mapping[str, str]
    """Header names lower-cased."""
    body: bytes
    received_at: datetime

    @property
    def task_name(self) -> str:
        return self.headers.get("x-cloudtasks-taskname", "")

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


class TaskTarget:
    """Records deliveries and answers with programmed statuses; thread-safe."""

    def __init__(self, clock: Callable[[], datetime]) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._received: list[ReceivedRequest] = []
        self._scripts: dict[str, list[tuple[int, dict[str, str]]]] = {}

    def answer(self, task_name: str, *responses: int | tuple[int, dict[str, str]]) -> None:
        """Answer the next deliveries of ``task_name`` with these statuses, then 200."""
        script = [r if isinstance(r, tuple) else (r, {}) for r in responses]
        with self._lock:
            self._scripts[task_name] = script

    def handle(
        self, method: str, path: str, headers: Mapping[str, str], body: bytes
    ) -> tuple[int, dict[str, str]]:
        request = ReceivedRequest(
            method, path, {k.lower(): v for k, v in headers.items()}, body, self._clock()
        )
        with self._lock:
            self._received.append(request)
            script = self._scripts.get(request.task_name)
            if script:
                return script.pop(0)
            return 200, {}

    def received(self, task_name: str | None = None) -> list[ReceivedRequest]:
        with self._lock:
            return [r for r in self._received if task_name is None or r.task_name == task_name]

    def reset(self) -> None:
        with self._lock:
            self._received.clear()
            self._scripts.clear()


class TargetServer:
    """A :class:`TaskTarget` served over HTTP on ``127.0.0.1``."""

    def __init__(self, target: TaskTarget) -> None:
        self.target = target

        class Handler(BaseHTTPRequestHandler):
            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                status, extra = target.handle(self.command, self.path, dict(self.headers), body)
                self.send_response(status)
                for key, value in extra.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _serve

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> TargetServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


@dataclass(frozen=True, slots=True)
class CloudTasksEmulator:
    host_port: str
    start_seconds: float


@pytest.fixture(scope="session")
def cloud_tasks_emulator() -> Iterator[CloudTasksEmulator]:
    """gcloud-tasks-emulator on a free 127.0.0.1 port, for the whole session."""
    python = tool_executable("tasks", "python")
    tool_executable("tasks", "gcloud-tasks-emulator")  # the package is installed in that venv
    port = free_port()
    # EmulatorProcess adds to os.environ, so proxies are blanked (urllib ignores empty values).
    env = {name: "" for var in _PROXY_VARS for name in (var, var.upper())}
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
    process = EmulatorProcess(
        "gcloud-tasks-emulator",
        [python, "-c", EMULATOR_LAUNCHER, str(port)],
        ready=lambda: port_open(port),
        env=env,
        start_timeout_s=30.0,
    )
    started = time.monotonic()
    process.start()
    try:
        yield CloudTasksEmulator(f"127.0.0.1:{port}", time.monotonic() - started)
    finally:
        process.stop()


@pytest.fixture(scope="session")
def task_target_server() -> Iterator[TargetServer]:
    """An HTTP task target on a free 127.0.0.1 port (wall-clock arrival times)."""
    from hpsteer.ports.clock import SystemClock

    server = TargetServer(TaskTarget(SystemClock().now)).start()
    try:
        yield server
    finally:
        server.stop()
