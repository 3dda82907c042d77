"""The Firestore emulator for contract tests: started once per session, emptied before each test.

``firestore_emulator`` starts ``gcloud emulators firestore start`` (native mode) on a free
loopback port through :func:`hpsteer.runtime.emulators.firestore_emulator`, which waits until it
answers HTTP, and points the client at it through ``FIRESTORE_EMULATOR_HOST``.
``reset_firestore`` deletes every document of the test project through the emulator's own DELETE
endpoint, which is much faster than deleting documents.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from hpsteer.runtime import emulators
from tests.support.emulator import available

PROJECT = "demo-hpsteer-test"


@dataclass(frozen=True)
class FirestoreEmulator:
    host: str
    project: str
    start_seconds: float

    def reset(self) -> None:
        url = (
            f"http://{self.host}/emulator/v1/projects/{self.project}/databases/(default)/documents"
        )
        response = httpx.delete(url, timeout=10.0)
        response.raise_for_status()


@pytest.fixture(scope="session")
def firestore_emulator() -> Iterator[FirestoreEmulator]:
    started = time.monotonic()
    with available(emulators.firestore_emulator(PROJECT)) as host:
        emulator = FirestoreEmulator(host, PROJECT, time.monotonic() - started)
        previous = os.environ.get("FIRESTORE_EMULATOR_HOST")
        os.environ["FIRESTORE_EMULATOR_HOST"] = host
        try:
            yield emulator
        finally:
            if previous is None:
                os.environ.pop("FIRESTORE_EMULATOR_HOST", None)
            else:
                os.environ["FIRESTORE_EMULATOR_HOST"] = previous


@pytest.fixture
def reset_firestore(firestore_emulator: FirestoreEmulator) -> FirestoreEmulator:
    """The emulator, with every document of the test project deleted."""
    firestore_emulator.reset()
    return firestore_emulator
