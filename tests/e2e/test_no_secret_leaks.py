"""No credential reaches a log line, a stored document or an analytics row, whatever happens.

A full command cycle runs on the local command path with its state on disk (SQLite files for
the store and analytics): plans are released, commands dispatched through the real adapters
(OAuth token refresh with rotating refresh tokens, each rotation sealed into the account's
credentials document), some refused by faults and retried, then verified. Every log record at
DEBUG (as the JSON Cloud Logging would get) and every byte of the persisted state, which holds
the sealed credentials documents, are searched for the fleet's client secrets, refresh tokens,
access tokens and the data key that seals them.
"""

from __future__ import annotations

import base64
import io
import logging
import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from hpsteer.adapters.credentials import KEY_SECRET
from hpsteer.config import Settings
from hpsteer.domain.actions import GenericAction
from hpsteer.observability.logging import JsonFormatter
from hpsteer.runtime.local_fleet import LocalFleet
from hpsteer.sim.faults import FaultSpec
from tests.services.test_dispatch import SLOT, T0, publish_plan

TOKEN = re.compile(rb"sim-(?:at|rt)-[0-9a-f]{24}")


@pytest.fixture
def captured_logs() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter(project="leak-test"))
    handler.setLevel(logging.DEBUG)
    root = logging.getLogger()
    previous = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield stream
    finally:
        root.removeHandler(handler)
        root.setLevel(previous)


def test_a_full_command_cycle_with_faults_leaks_no_credential(
    tmp_path: Path, captured_logs: io.StringIO
) -> None:
    state = tmp_path / "state"
    local = LocalFleet.build(
        start=T0,
        homes=6,
        seed=5,
        settings=Settings(backend="local", local_state_dir=state),
    )
    local.register_devices()
    secrets = {c.client_secret.encode() for c in local.fleet.all_credentials()}
    for home in local.fleet:
        publish_plan(
            local,
            home.home_id,
            "p1",
            [
                (SLOT, GenericAction.SET_MODE_MAX),
                (SLOT + timedelta(hours=2), GenericAction.SET_MODE_MID),
            ],
        )
    local.fleet.faults.set_manufacturer(
        "viessmann", FaultSpec(server_error_rate=0.5, wire_faults_on_writes_only=True)
    )
    local.fleet.faults.set_manufacturer("daikin_onecta", FaultSpec(rate_limit_rate=0.3))
    local.run_until(SLOT + timedelta(hours=1))
    for credentials in local.fleet.all_credentials():
        local.fleet.rotate(credentials)  # the next refresh rotates the stored refresh token
    local.run_until(SLOT + timedelta(hours=4))

    logs = captured_logs.getvalue().encode()
    assert b"dispatch" in logs or b"command" in logs  # the run did log
    persisted = b"".join(p.read_bytes() for p in state.rglob("*") if p.is_file())
    assert persisted  # the run did store
    assert b"AES-256-GCM" in persisted  # ...the sealed credentials documents among it
    secrets |= {c.refresh_token.encode() for c in local.fleet.all_credentials()}
    key = local.deps.secrets.get(KEY_SECRET).reveal()
    secrets |= {key, base64.b64decode(key)}
    for where, blob in (("logs", logs), ("stored state", persisted)):
        assert not TOKEN.search(blob), f"a token appears in the {where}"
        for secret in secrets:
            assert secret not in blob, f"a client secret appears in the {where}"
    completed = local.metrics.counter("commands_success_total")
    assert completed >= 6  # the cycle went through, faults and all
