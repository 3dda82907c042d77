"""Emulator processes for the contract tests, on top of :mod:`hpsteer.runtime.emulators`.

The package starts and stops the processes (each in its own process group, stopped by signalling
the whole group: ``gcloud`` is a launcher, and killing it alone leaves its Java child running).
This module adds the tests' policy: an emulator that cannot start fails the test under
``CI=true`` (CI must exercise every backend) and is skipped elsewhere, with the reason printed.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import NoReturn, TypeVar

import pytest

from hpsteer.runtime import emulators
from hpsteer.runtime.emulators import EmulatorUnavailable, free_port, port_open

__all__ = [
    "EmulatorProcess",
    "available",
    "free_port",
    "port_open",
    "require_executable",
    "running_in_ci",
    "tool_executable",
    "unavailable",
]

ROOT = Path(__file__).resolve().parents[2]
TOOLS = ROOT / ".tools"

T = TypeVar("T")


def running_in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


def unavailable(reason: str) -> NoReturn:
    """Fail under CI, skip elsewhere."""
    if running_in_ci():
        pytest.fail(f"emulator unavailable under CI=true: {reason}", pytrace=False)
    pytest.skip(f"emulator unavailable: {reason}")


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


class EmulatorProcess(emulators.EmulatorProcess):
    """The package's emulator process, with a start that fails or skips the test instead of
    raising :class:`EmulatorUnavailable`."""

    def start(self) -> EmulatorProcess:
        try:
            super().start()
        except EmulatorUnavailable as err:
            unavailable(err.detailed())
        return self


@contextlib.contextmanager
def available(emulator: AbstractContextManager[T]) -> Iterator[T]:
    """Enter one of the package's emulator context managers; fail or skip if it cannot start."""
    with contextlib.ExitStack() as stack:
        try:
            value = stack.enter_context(emulator)
        except EmulatorUnavailable as err:
            unavailable(err.detailed())
        yield value
