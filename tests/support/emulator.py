"""Start and stop emulator processes for the contract tests.

Each emulator runs in its own process group (``start_new_session``) and is stopped by signalling
the whole group: ``gcloud`` is a launcher, and killing it alone leaves its Java child running.
An emulator that cannot start fails the test under ``CI=true`` (CI must exercise every backend)
and is skipped elsewhere, with the reason printed.
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
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import NoReturn

import pytest

ROOT = Path(__file__).resolve().parents[2]
TOOLS = ROOT / ".tools"


def running_in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


def unavailable(reason: str) -> NoReturn:
    """Fail under CI, skip elsewhere."""
    if running_in_ci():
        pytest.fail(f"emulator unavailable under CI=true: {reason}", pytrace=False)
    pytest.skip(f"emulator unavailable: {reason}")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.2)
        return sock.connect_ex((host, port)) == 0


def require_executable(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        unavailable(f"{name!r} is not on PATH")
    return path


def tool_executable(venv: str, name: str) -> str:
    """An executable from one of the Makefile's tool venvs under ``.tools/``."""
    path = TOOLS / venv / "bin" / name
    if not path.exists():
        unavailable(f"{path} is missing; run `make tools` (part of `make test`)")
    return str(path)


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
        self._log = tempfile.NamedTemporaryFile(  # noqa: SIM115 - closed in stop()
            prefix=f"hpsteer-{name}-", suffix=".log", delete=False
        )
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> EmulatorProcess:
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
            unavailable(f"{self.name} could not be started ({err})")
        deadline = time.monotonic() + self._timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                self.stop()
                unavailable(f"{self.name} exited with {self._proc.returncode}: {self.log_tail()}")
            try:
                if self._ready():
                    return self
            except Exception:  # noqa: BLE001 - readiness probes fail in many ways while starting
                pass
            time.sleep(0.2)
        self.stop()
        unavailable(f"{self.name} not ready after {self._timeout:.0f} s: {self.log_tail()}")

    def log_tail(self, chars: int = 2000) -> str:
        try:
            return Path(self._log.name).read_text(errors="replace")[-chars:]
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        proc = self._proc
        if proc is not None and proc.poll() is None:
            for sig, wait_s in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
                try:
                    os.killpg(proc.pid, sig)
                except ProcessLookupError:
                    break
                try:
                    proc.wait(timeout=wait_s)
                    break
                except subprocess.TimeoutExpired:
                    continue
        if proc is not None:
            # The launcher may be gone while children of its group live on: sweep the group.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
        self._log.close()
        Path(self._log.name).unlink(missing_ok=True)
