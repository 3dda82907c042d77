"""The Pub/Sub emulator for the contract tests, started once per session.

``pubsub_emulator`` runs ``gcloud beta emulators pubsub start`` on a free port, waits until the
port answers HTTP, and sets ``PUBSUB_EMULATOR_HOST`` for the session so the real client
libraries talk to it. Tests isolate themselves by using unique topic names.
"""

from __future__ import annotations

import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests.support.emulator import EmulatorProcess, free_port, require_executable

PUBSUB_PROJECT = "hpsteer-test"


@dataclass(frozen=True)
class PubSubEmulator:
    host: str
    project: str
    start_seconds: float


def _answers_http(port: int) -> bool:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1.0) as response:
        return bool(response.status == 200)


@pytest.fixture(scope="session")
def pubsub_emulator() -> Iterator[PubSubEmulator]:
    gcloud = require_executable("gcloud")
    port = free_port()
    process = EmulatorProcess(
        "pubsub-emulator",
        [
            gcloud,
            "beta",
            "emulators",
            "pubsub",
            "start",
            f"--host-port=127.0.0.1:{port}",
            f"--project={PUBSUB_PROJECT}",
            "--quiet",
        ],
        ready=lambda: _answers_http(port),
    )
    started = time.monotonic()
    process.start()
    emulator = PubSubEmulator(
        host=f"127.0.0.1:{port}",
        project=PUBSUB_PROJECT,
        start_seconds=time.monotonic() - started,
    )
    print(f"\npubsub emulator ready on {emulator.host} in {emulator.start_seconds:.1f} s")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PUBSUB_EMULATOR_HOST", emulator.host)
        try:
            yield emulator
        finally:
            process.stop()
