"""Bootstrap wires the right backend behind each port and imports only what is used."""

import json
import os
import subprocess
import sys

from hpsteer.config import Settings
from hpsteer.ports.analytics import Analytics
from hpsteer.ports.bus import MessageBus
from hpsteer.ports.clock import SimulatedClock
from hpsteer.ports.secrets import SecretStore
from hpsteer.ports.store import DocumentStore
from hpsteer.ports.tasks import TaskQueue
from hpsteer.runtime import bootstrap


def test_local_wiring_gives_every_port_and_builds_each_once(tmp_path):
    from datetime import UTC, datetime

    clock = SimulatedClock(datetime(2024, 1, 15, tzinfo=UTC))
    deps = bootstrap.local(clock=clock, state_dir=tmp_path, dispatcher=lambda request: 200)
    assert deps.built() == frozenset()
    assert isinstance(deps.store, DocumentStore)
    assert deps.store is deps.store
    assert isinstance(deps.bus, MessageBus)
    assert isinstance(deps.tasks, TaskQueue)
    assert isinstance(deps.analytics, Analytics)
    assert isinstance(deps.secrets, SecretStore)
    assert deps.built() == {"store", "bus", "tasks", "analytics", "secrets"}
    assert deps.clock is clock


def test_from_settings_follows_the_backend_setting():
    deps = bootstrap.from_settings(Settings(backend="local"))
    assert deps.settings.backend == "local"


PROBE = """
import json, sys
from hpsteer.config import Settings
from hpsteer.runtime import bootstrap
deps = bootstrap.{wiring}
{touch}
heavy = ("google.cloud.", "ortools", "hpsteer.backends.")
print(json.dumps(sorted(m for m in sys.modules if m.startswith(heavy))))
"""


def loaded_modules(wiring: str, touch: str) -> list[str]:
    code = PROBE.format(wiring=wiring, touch=touch)
    # An emulator host keeps the Pub/Sub client from looking for credentials; nothing connects.
    env = {**os.environ, "PUBSUB_EMULATOR_HOST": "127.0.0.1:9"}
    out = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True, env=env
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def test_production_wiring_imports_a_google_client_only_when_its_port_is_used():
    wiring = 'production(Settings(backend="gcp", project="acme-energy-prod"))'
    assert loaded_modules(wiring, "") == []
    touched = loaded_modules(wiring, "deps.bus")
    assert "hpsteer.backends.gcp.pubsub_bus" in touched
    assert not any(
        m.startswith(("google.cloud.bigquery", "google.cloud.firestore")) for m in touched
    )
    assert not any(m.startswith("ortools") for m in touched)


def test_local_wiring_imports_no_google_client():
    touch = "deps.store; deps.bus; deps.analytics; deps.secrets"
    loaded = loaded_modules('local(Settings(backend="local"))', touch)
    assert "hpsteer.backends.local.store" in loaded
    assert not any(
        m.startswith(("google.cloud.", "ortools", "hpsteer.backends.gcp")) for m in loaded
    )
