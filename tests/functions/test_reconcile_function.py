"""The reconcile Cloud Function through functions-framework, on the local command path.

A CloudEvent as Eventarc builds it for a ``reconcile-requests`` message is POSTed to the app
functions-framework makes of ``functions/reconcile/main.py``; the handler reconciles against the
simulated fleet and hands a remediation to the dispatch queue.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from cloudevents.conversion import to_structured
from cloudevents.http import CloudEvent
from functions_framework import create_app

from hpsteer.domain.messages import ReconcileRequest, Topic
from hpsteer.messaging.envelope import encode_json_message, pubsub_cloudevent
from hpsteer.runtime.entrypoint import use_dependencies
from hpsteer.runtime.local_fleet import LocalFleet
from tests.services.test_reconcile import SLOT, T0, Rig

SOURCE = str(Path(__file__).resolve().parents[2] / "functions" / "reconcile" / "main.py")


def post(event: CloudEvent) -> int:
    client = create_app("reconcile", SOURCE, "cloudevent").test_client()
    headers, body = to_structured(event)
    return int(client.post("/", headers=headers, data=body).status_code)


@pytest.fixture
def installed() -> Iterator[None]:
    yield
    use_dependencies(None)


def test_a_scheduled_request_remediates_a_rebooted_home_through_the_dispatch_queue(
    installed: None,
) -> None:
    local = LocalFleet.build(start=T0, homes=3, seed=21)
    local.register_devices()
    rig = Rig(local)
    home = rig.home("viessmann")
    rig.steer(home)
    local.run_until(SLOT + timedelta(minutes=41))
    local.fleet.reboot(home.home_id)
    use_dependencies(local.deps)
    request = ReconcileRequest(scheduled_at=local.clock.now(), shard_size=100)
    event = pubsub_cloudevent(
        topic=Topic.RECONCILE_REQUESTS.value,
        project=local.deps.settings.project,
        message_id="r1",
        data=encode_json_message(request),
        attributes={},
        publish_time=local.clock.now(),
    )

    assert post(event) == 200
    assert post(event) == 200  # redelivered: the page is done, nothing happens twice

    commands = local.deps.store.query(f"devices/{home.home_id}/commands").documents
    remedies = [c for c in commands if c.id.startswith("remedy-")]
    assert len(remedies) == 1
    local.run_until(local.clock.now() + timedelta(minutes=1))
    assert home.target_c == pytest.approx(home.room_setpoint_c + 2.0)


def test_a_malformed_request_is_acknowledged(installed: None) -> None:
    local = LocalFleet.build(start=T0, homes=1, seed=1)
    use_dependencies(local.deps)
    event = pubsub_cloudevent(
        topic=Topic.RECONCILE_REQUESTS.value,
        project=local.deps.settings.project,
        message_id="bad",
        data=b"{not json",
        attributes={},
        publish_time=local.clock.now(),
    )
    assert post(event) == 200
