"""Start and stop the official Google Cloud emulators (Firestore, Pub/Sub) as local processes.

:func:`firestore_emulator` and :func:`pubsub_emulator` start ``gcloud`` (from ``PATH``) on a free
``127.0.0.1`` port, wait until the emulator answers HTTP, yield its ``host:port``, and stop it on
exit, whatever ends the block (an exception, ``KeyboardInterrupt``). They never touch
``os.environ``: the caller points the client libraries at the host (``FIRESTORE_EMULATOR_HOST``,
``PUBSUB_EMULATOR_HOST``) and restores the environment itself.

:class:`EmulatorProcess` runs any emulator in its own process group (``start_new_session``) and
stops it by signalling the whole group: ``gcloud`` is a launcher, and killing it alone leaves its
Java child running. An emulator that cannot be started, exits early or is not ready in time raises
:class:`EmulatorUnavailable`, whose message is one line saying why; the process group is stopped
before it is raised.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO

import httpx

__all__ = [
    "GCLOUD_MISSING",
    "EmulatorProcess",
    "EmulatorUnavailable",
    "firestore_emulator",
    "free_port",
    "port_open",
    "pubsub_emulator",
    "running",
]

LOOPBACK = "127.0.0.1"
GCLOUD_MISSING = (
    "gcloud is not on PATH (install the Google Cloud CLI with the firestore and pubsub "
    "emulators and Java)"
)


class EmulatorUnavailable(Exception):
    """An emulator that could not be started or did not become ready.

    ``str()`` is one line naming why; :attr:`log` holds the end of the emulator's own output (empty
    when it never ran), for whoever wants the details.
    """

    def __init__(self, reason: str, log: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.log = log

    def detailed(self) -> str:
        """The reason, followed by the end of the emulator's output when there is any."""
        return f"{self.reason}\n{self.log}" if self.log else self.reason


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listened on a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
        return port


def port_open(port: int, host: str = LOOPBACK) -> bool:
    """Whether something accepts TCP connections on ``host:port`` now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.2)
        return sock.connect_ex((host, port)) == 0


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else "no output"


class EmulatorProcess:
    """One emulator process group, with its output kept in a log file for error messages."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        ready: Callable[[], bool],
        env: Mapping[str, str] | None = None,
        cwd: str | Path | None = None,
        start_timeout_s: float = 60.0,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self._ready = ready
        self._env = {**os.environ, **(env or {})}
        self._cwd = cwd
        self._timeout = start_timeout_s
        self._log: IO[bytes] | None = None
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> EmulatorProcess:
        """Start the process group and wait until ``ready()`` is true.

        Raises :class:`EmulatorUnavailable` (after stopping the group) when it cannot start,
        exits or is not ready within the timeout; any other exception while waiting
        (``KeyboardInterrupt``) also stops the group before it propagates.
        """
        self._log = tempfile.NamedTemporaryFile(  # noqa: SIM115 - closed in stop()
            prefix=f"hpsteer-{self.name}-", suffix=".log", delete=False
        )
        try:
            self._proc = subprocess.Popen(
                self.argv,
                stdout=self._log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=self._env,
                cwd=self._cwd,
                start_new_session=True,
            )
        except OSError as err:
            self.stop()
            raise EmulatorUnavailable(f"{self.name} could not be started ({err})") from err
        try:
            self._wait_until_ready(self._proc)
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_until_ready(self, proc: subprocess.Popen[bytes]) -> None:
        deadline = time.monotonic() + self._timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise self._unavailable(f"exited with {proc.returncode}")
            if self._answers():
                return
            time.sleep(0.2)
        raise self._unavailable(f"not ready after {self._timeout:.0f} s")

    def _answers(self) -> bool:
        try:
            return self._ready()
        except Exception:  # noqa: BLE001 - readiness probes fail in many ways while starting
            return False

    def _unavailable(self, what: str) -> EmulatorUnavailable:
        log = self.log_tail()
        return EmulatorUnavailable(f"{self.name} {what}: {_last_line(log)}", log)

    def log_tail(self, chars: int = 2000) -> str:
        """The end of the emulator's output so far (``(no log)`` once stopped)."""
        if self._log is None:
            return "(no log)"
        try:
            return Path(self._log.name).read_text(errors="replace")[-chars:]
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        """Terminate the group (SIGTERM, then SIGKILL), sweep any survivors, wait (at most 3 s)
        until none is left, and drop the log.

        Safe to call more than once, and before or after a failed start.
        """
        proc = self._proc
        try:
            if proc is not None and proc.poll() is None:
                _terminate_group(proc)
        finally:
            if proc is not None:
                # The launcher may be gone while children of its group live on: sweep the group.
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(proc.pid, signal.SIGKILL)
                _await_group_gone(proc.pid)
            self._drop_log()

    def _drop_log(self) -> None:
        if self._log is not None:
            self._log.close()
            Path(self._log.name).unlink(missing_ok=True)
            self._log = None


def _terminate_group(proc: subprocess.Popen[bytes]) -> None:
    for sig, wait_s in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait_s)
            return
        except subprocess.TimeoutExpired:
            continue


def _await_group_gone(pgid: int, timeout_s: float = 3.0) -> None:
    """Wait (bounded) until no process of the group is left, so its ports are free on return."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except (ProcessLookupError, PermissionError):
            return
        time.sleep(0.02)


@contextlib.contextmanager
def running(process: EmulatorProcess) -> Iterator[EmulatorProcess]:
    """``process``, started for the block and stopped after it, whatever ends it."""
    process.start()
    try:
        yield process
    finally:
        process.stop()


def _gcloud() -> str:
    path = shutil.which("gcloud")
    if path is None:
        raise EmulatorUnavailable(GCLOUD_MISSING)
    return path


def _firestore_answers(host: str) -> bool:
    return httpx.get(f"http://{host}/", timeout=0.5).status_code == 200


def _pubsub_answers(host: str) -> bool:
    with urllib.request.urlopen(f"http://{host}/", timeout=1.0) as response:
        return bool(response.status == 200)


@contextlib.contextmanager
def firestore_emulator(project: str) -> Iterator[str]:
    """The Firestore emulator (native mode) on a free loopback port: yields ``127.0.0.1:PORT``.

    ``project`` is whatever the clients will use; the emulator serves every project.
    """
    del project  # the Firestore emulator takes no project; clients name theirs
    host = f"{LOOPBACK}:{free_port()}"
    argv = [
        _gcloud(),
        "emulators",
        "firestore",
        "start",
        f"--host-port={host}",
        "--database-mode=firestore-native",
        "--quiet",
    ]
    process = EmulatorProcess("firestore", argv, ready=lambda: _firestore_answers(host))
    with running(process):
        yield host


@contextlib.contextmanager
def pubsub_emulator(project: str) -> Iterator[str]:
    """The Pub/Sub emulator for ``project`` on a free loopback port: yields ``127.0.0.1:PORT``."""
    host = f"{LOOPBACK}:{free_port()}"
    argv = [
        _gcloud(),
        "beta",
        "emulators",
        "pubsub",
        "start",
        f"--host-port={host}",
        f"--project={project}",
        "--quiet",
    ]
    process = EmulatorProcess("pubsub-emulator", argv, ready=lambda: _pubsub_answers(host))
    with running(process):
        yield host
