"""The Pub/Sub emulator for the contract tests, started once per session.

``pubsub_emulator`` runs ``gcloud beta emulators pubsub start`` on a free port through
:func:`hpsteer.runtime.emulators.pubsub_emulator`, which waits until the port answers HTTP, and
sets ``PUBSUB_EMULATOR_HOST`` for the session so the real client libraries talk to it. Tests
isolate themselves by using unique topic names.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from hpsteer.runtime import emulators
from tests.support.emulator import available

PUBSUB_PROJECT = "hpsteer-test"


@dataclass(frozen=True)
class PubSubEmulator:
    host: str
    project: str
    start_seconds: float


@pytest.fixture(scope="session")
def pubsub_emulator() -> Iterator[PubSubEmulator]:
    started = time.monotonic()
    with available(emulators.pubsub_emulator(PUBSUB_PROJECT)) as host:
        emulator = PubSubEmulator(
            host=host,
            project=PUBSUB_PROJECT,
            start_seconds=time.monotonic() - started,
        )
        print(f"\npubsub emulator ready on {emulator.host} in {emulator.start_seconds:.1f} s")
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("PUBSUB_EMULATOR_HOST", emulator.host)
            yield emulator
