"""The reconcile folder's Cloud Functions through functions-framework.

``reconcile``: a CloudEvent as Eventarc builds it for a ``reconcile-requests`` message is POSTed
to the app functions-framework makes of ``functions/reconcile/main.py``; the handler reconciles
against the simulated fleet and hands a remediation to the dispatch queue.

``recheck``: a task as Cloud Tasks sends it (``recheck-devices``); locally it reconciles the
device against the simulated fleet, and with the production settings the call must carry a
Google-signed token for the recheck function's own URL from the tasks' service account, checked
before anything is read.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from cloudevents.conversion import to_structured
from cloudevents.http import CloudEvent
from functions_framework import create_app

from hpsteer.config import Settings
from hpsteer.domain.messages import RecheckTask, ReconcileRequest, Topic
from hpsteer.messaging.envelope import encode_json_message, pubsub_cloudevent
from hpsteer.ports.clock import SimulatedClock
from hpsteer.runtime import bootstrap
from hpsteer.runtime.entrypoint import use_dependencies
from hpsteer.runtime.local_fleet import LocalFleet
from hpsteer.runtime.oidc import GoogleCerts, OidcPolicy, OidcVerifier
from hpsteer.services.recheck_tasks import RECHECK_QUEUE
from hpsteer.sim.fleet import Home
from tests.functions.test_dispatch_function import TASKS_SA, task_headers, token
from tests.services.test_reconcile import SLOT, T0, Rig
from tests.support.oidc import SigningKey, make_key

SOURCE = str(Path(__file__).resolve().parents[2] / "functions" / "reconcile" / "main.py")


def post(event: CloudEvent) -> int:
    client = create_app("reconcile", SOURCE, "cloudevent").test_client()
    headers, body = to_structured(event)
    return int(client.post("/", headers=headers, data=body).status_code)


@pytest.fixture
def installed() -> Iterator[None]:
    yield
    use_dependencies(None)


def rebooted_home() -> tuple[LocalFleet, Home]:
    """A viessmann home steered to max from 07:00 and rebooted at 07:41, on the local runtime
    the functions use."""
    local = LocalFleet.build(start=T0, homes=3, seed=21)
    local.register_devices()
    rig = Rig(local)
    home = rig.home("viessmann")
    rig.steer(home)
    local.run_until(SLOT + timedelta(minutes=41))
    local.fleet.reboot(home.home_id)
    use_dependencies(local.deps)
    return local, home


def test_a_scheduled_request_remediates_a_rebooted_home_through_the_dispatch_queue(
    installed: None,
) -> None:
    local, home = rebooted_home()
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


# -- recheck ----------------------------------------------------------------------------------

RECHECK_URL = "https://europe-west1-acme-energy-prod.cloudfunctions.net/recheck"


def post_task(body: bytes, headers: dict[str, str], path: str = "/") -> tuple[int, dict[str, Any]]:
    client = create_app("recheck", SOURCE, "http").test_client()
    response = client.post(path, data=body, headers=headers)
    return response.status_code, response.get_json(silent=True) or {}


def recheck_headers(authorization: str | None = None) -> dict[str, str]:
    headers = task_headers("r1", RECHECK_QUEUE.name)
    if authorization is not None:
        headers["Authorization"] = authorization
    return headers


def test_locally_a_recheck_post_remediates_a_rebooted_home(installed: None) -> None:
    local, home = rebooted_home()
    tick = SLOT + timedelta(minutes=50)
    local.run_until(tick + timedelta(minutes=1))
    body = RecheckTask(device_id=home.home_id, tick=tick).model_dump_json().encode()

    status, answer = post_task(body, recheck_headers())

    assert (status, answer["outcome"], answer["actions"]) == (200, "judged", ["Remediate"])
    local.run_until(local.clock.now() + timedelta(minutes=1))
    assert home.target_c == pytest.approx(home.room_setpoint_c + 2.0)


@pytest.fixture(scope="module")
def google_key() -> SigningKey:
    return make_key("google-key-recheck")


def production(google_key: SigningKey) -> bootstrap.Dependencies:
    settings = Settings(
        backend="gcp",
        project="acme-energy-prod",
        recheck_url=RECHECK_URL,
        tasks_service_account=TASKS_SA,
    )
    deps = bootstrap.production(settings, clock=SimulatedClock(T0))
    certs = GoogleCerts(lambda: ({google_key.kid: google_key.cert_pem}, 3600.0))
    policy = OidcPolicy(audience=RECHECK_URL, service_account=TASKS_SA)
    deps.singleton(f"oidc:{RECHECK_URL}", lambda: OidcVerifier(policy, certs))
    return deps


@pytest.mark.parametrize(
    ("claims", "status"),
    [
        (None, 401),
        ({"aud": "https://europe-west1-acme-energy-prod.cloudfunctions.net/dispatch"}, 401),
        ({"email": "someone@example.com"}, 403),
    ],
)
def test_in_production_a_recheck_without_a_token_for_its_own_url_is_refused_unread(
    installed: None, google_key: SigningKey, claims: dict[str, str] | None, status: int
) -> None:
    deps = production(google_key)
    use_dependencies(deps)
    claims = None if claims is None else {"aud": RECHECK_URL, **claims}
    authorization = None if claims is None else f"Bearer {token(google_key, **claims)}"

    code, answer = post_task(b'{"this body": "must not be read"}', recheck_headers(authorization))

    assert code == status
    assert answer["error"] in ("AuthenticationFailed", "AccessDenied")
    assert {name for name in deps.built() if not name.startswith("singleton:")} == set()


def test_in_production_a_valid_token_reaches_the_recheck_and_other_paths_are_404(
    installed: None, google_key: SigningKey
) -> None:
    use_dependencies(production(google_key))
    headers = recheck_headers(f"Bearer {token(google_key, aud=RECHECK_URL)}")
    status, answer = post_task(b"{not json", headers)
    assert (status, answer["outcome"]) == (200, "malformed")  # past the check, into the handler
    assert post_task(b"{}", headers, path="/verify")[0] == 404
