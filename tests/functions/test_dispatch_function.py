"""The dispatch Cloud Function's entry points through functions-framework.

Requests are POSTed as Cloud Tasks sends them (JSON body, ``X-CloudTasks-*`` headers, an OIDC
``Authorization`` header in production) to the apps that functions-framework makes of
``functions/dispatch/main.py``. The ``dispatch`` entry point serves two routes: the function's
own URL (commands) and ``/verify`` below it (their verifications); any other path is refused
with 404. On the local runtime the handlers run against the simulated fleet; with the production
settings every call must carry a Google-signed token for the route's URL from the tasks' service
account, checked before anything is read.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from functions_framework import create_app

from hpsteer.config import Settings
from hpsteer.domain.actions import GenericAction
from hpsteer.domain.commands import CommandState
from hpsteer.domain.messages import CommandTask
from hpsteer.ports.clock import SimulatedClock
from hpsteer.runtime import bootstrap
from hpsteer.runtime.entrypoint import use_dependencies
from hpsteer.runtime.local_fleet import LocalFleet
from hpsteer.runtime.oidc import GoogleCerts, OidcPolicy, OidcVerifier
from hpsteer.services.command_log import load_command
from hpsteer.services.command_tasks import dispatch_queue
from tests.services.test_dispatch import SLOT, T0, home_of, publish_plan
from tests.support.oidc import SigningKey, make_key

ROOT = Path(__file__).resolve().parents[2]
SOURCE = str(ROOT / "functions" / "dispatch" / "main.py")
DISPATCH_URL = "https://europe-west1-acme-energy-prod.cloudfunctions.net/dispatch"
VERIFY_URL = f"{DISPATCH_URL}/verify"  # terraform's local.verify_url
TASKS_SA = "tasks-invoker@acme-energy-prod.iam.gserviceaccount.com"


def post(
    target: str, body: bytes, headers: dict[str, str], path: str = "/"
) -> tuple[int, dict[str, Any], Any]:
    client = create_app(target, SOURCE, "http").test_client()
    response = client.post(path, data=body, headers=headers)
    return response.status_code, response.get_json(silent=True) or {}, response.headers


def task_headers(task_name: str, queue: str, retry: int = 0) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        "X-CloudTasks-TaskName": task_name,
        "X-CloudTasks-QueueName": queue,
        "X-CloudTasks-TaskRetryCount": str(retry),
        "X-CloudTasks-TaskExecutionCount": str(retry),
    }


@pytest.fixture
def installed() -> Iterator[None]:
    yield
    use_dependencies(None)


# -- the local runtime ------------------------------------------------------------------------


def test_locally_a_task_post_dispatches_and_a_verify_post_completes_the_command(
    installed: None,
) -> None:
    local = LocalFleet.build(start=T0, homes=3, seed=11)
    local.register_devices()
    home = home_of(local, "viessmann")
    [command_id] = publish_plan(local, home.home_id, "p1", [(SLOT, GenericAction.SET_MODE_MAX)])
    use_dependencies(local.deps)
    local.fleet.advance(SLOT)
    body = CommandTask(device_id=home.home_id, command_id=command_id, purpose="send")
    queue = dispatch_queue("viessmann").name

    status, answer, _ = post("dispatch", body.model_dump_json().encode(), task_headers("t", queue))

    assert (status, answer["outcome"]) == (200, "acknowledged")
    assert home.commands_received == 1
    local.fleet.advance(SLOT + timedelta(minutes=10))
    check = CommandTask(device_id=home.home_id, command_id=command_id, purpose="verify")
    verify_path = urlsplit(local.deps.settings.verify_url).path
    status, answer, _ = post(
        "dispatch",
        check.model_dump_json().encode(),
        task_headers("v", "verify-commands"),
        path=verify_path,
    )
    assert (status, answer["outcome"]) == (200, "completed")
    command = load_command(local.deps.store, home.home_id, command_id)
    assert command is not None
    assert command.state is CommandState.COMPLETED


def test_a_body_that_is_no_command_task_is_acknowledged_and_dropped(installed: None) -> None:
    local = LocalFleet.build(start=T0, homes=1, seed=1)
    use_dependencies(local.deps)
    for body in (b"{not json", b'{"schema_version": 1}', b'{"schema_version": 7}'):
        status, answer, _ = post("dispatch", body, task_headers("t", "dispatch-viessmann"))
        assert (status, answer["outcome"]) == (200, "malformed")


# -- production: OIDC before anything ---------------------------------------------------------


@pytest.fixture(scope="module")
def google_key() -> SigningKey:
    return make_key("google-key-1")


def production_deps(google_key: SigningKey, **overrides: Any) -> bootstrap.Dependencies:
    fields: dict[str, Any] = {
        "backend": "gcp",
        "project": "acme-energy-prod",
        "dispatch_url": DISPATCH_URL,
        "verify_url": VERIFY_URL,
        "tasks_service_account": TASKS_SA,
        **overrides,
    }
    settings = Settings(**fields)
    deps = bootstrap.production(settings, clock=SimulatedClock(T0))
    certs = GoogleCerts(lambda: ({google_key.kid: google_key.cert_pem}, 3600.0))
    for url in (DISPATCH_URL, VERIFY_URL):
        policy = OidcPolicy(audience=url, service_account=TASKS_SA)
        deps.singleton(f"oidc:{url}", lambda policy=policy: OidcVerifier(policy, certs))
    return deps


def ports_touched(deps: bootstrap.Dependencies) -> set[str]:
    return {name for name in deps.built() if not name.startswith("singleton:")}


def token(key: SigningKey, **claims: Any) -> str:
    now = int(time.time())
    return key.sign(
        {
            "iss": "https://accounts.google.com",
            "aud": DISPATCH_URL,
            "email": TASKS_SA,
            "email_verified": True,
            "iat": now,
            "exp": now + 3600,
            **claims,
        }
    )


@pytest.mark.parametrize(
    ("authorization", "status"),
    [
        (None, 401),
        ("Basic dXNlcjpwYXNz", 401),
        ("Bearer not-a-token", 401),
        ("aud", 401),
        ("email", 403),
    ],
)
def test_in_production_a_call_without_the_right_token_is_refused_before_anything_is_read(
    installed: None, google_key: SigningKey, authorization: str | None, status: int
) -> None:
    deps = production_deps(google_key)
    use_dependencies(deps)
    headers = task_headers("t", "dispatch-viessmann")
    if authorization == "aud":
        headers["Authorization"] = f"Bearer {token(google_key, aud='https://elsewhere.run.app')}"
    elif authorization == "email":
        headers["Authorization"] = f"Bearer {token(google_key, email='someone@example.com')}"
    elif authorization is not None:
        headers["Authorization"] = authorization

    code, answer, _ = post("dispatch", b'{"this body": "must not be read"}', headers)

    assert code == status
    assert answer["error"] in ("AuthenticationFailed", "AccessDenied")
    assert ports_touched(deps) == set()  # no store, no queue, no secrets: nothing was read


def test_in_production_a_valid_token_gets_through_to_the_handler(
    installed: None, google_key: SigningKey
) -> None:
    deps = production_deps(google_key)
    use_dependencies(deps)
    headers = task_headers("t", "dispatch-viessmann")
    headers["Authorization"] = f"Bearer {token(google_key)}"

    code, answer, _ = post("dispatch", b"{not json", headers)

    assert (code, answer["outcome"]) == (200, "malformed")  # past the check, into the handler


def test_in_production_without_a_configured_service_account_every_call_is_refused(
    installed: None, google_key: SigningKey
) -> None:
    deps = production_deps(google_key, tasks_service_account=None)
    use_dependencies(deps)
    headers = task_headers("t", "dispatch-viessmann")
    headers["Authorization"] = f"Bearer {token(google_key)}"
    code, _, _ = post("dispatch", b"{}", headers)
    assert code == 500
    assert ports_touched(deps) == set()


# -- cold start -------------------------------------------------------------------------------


def test_the_dispatch_function_never_imports_the_planner() -> None:
    code = f"""
import json, runpy, sys
sys.path.insert(0, {str(ROOT)!r})
runpy.run_path({SOURCE!r})
heavy = ("ortools", "hpsteer.optimizer", "hpsteer.thermal", "scipy")
print(json.dumps(sorted(m for m in sys.modules if m.startswith(heavy))))
"""
    out = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True
    ).stdout
    assert json.loads(out.strip().splitlines()[-1]) == []


# -- production: routes --------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/verify", "/dispatch/verify"])
def test_in_production_the_verify_route_takes_a_token_for_the_functions_own_url(
    installed: None, google_key: SigningKey, path: str
) -> None:
    # Cloud Run admits a token whose audience is the service's URL: verify tasks name the
    # function's own URL as their audience (command_tasks), not their /verify URL.
    deps = production_deps(google_key)
    use_dependencies(deps)
    headers = task_headers("v", "verify-commands")
    headers["Authorization"] = f"Bearer {token(google_key, aud=DISPATCH_URL)}"

    code, answer, _ = post("dispatch", b"{not json", headers, path=path)

    assert (code, answer["outcome"]) == (200, "malformed")  # past the check, into the handler


@pytest.mark.parametrize(
    ("path", "audience"),
    [("/verify", VERIFY_URL), ("/", VERIFY_URL), ("/dispatch", "https://elsewhere.example/x")],
)
def test_in_production_a_token_for_another_audience_is_refused_before_anything_is_read(
    installed: None, google_key: SigningKey, path: str, audience: str
) -> None:
    deps = production_deps(google_key)
    use_dependencies(deps)
    headers = task_headers("t", "verify-commands")
    headers["Authorization"] = f"Bearer {token(google_key, aud=audience)}"

    code, answer, _ = post("dispatch", b'{"this body": "must not be read"}', headers, path=path)

    assert (code, answer["error"]) == (401, "AuthenticationFailed")
    assert ports_touched(deps) == set()


@pytest.mark.parametrize("path", ["/verify/", "/dispatch/other", "/verifyx", "/elsewhere"])
@pytest.mark.parametrize("valid_token", [True, False])
def test_in_production_an_unknown_path_is_not_found_before_the_token_or_body_is_read(
    installed: None, google_key: SigningKey, path: str, valid_token: bool
) -> None:
    # Not found whether the token is good or bad: the route comes first, and nothing but the
    # path is looked at.
    deps = production_deps(google_key)
    use_dependencies(deps)
    headers = task_headers("t", "dispatch-viessmann")
    headers["Authorization"] = f"Bearer {token(google_key)}" if valid_token else "Bearer x"

    code, answer, _ = post("dispatch", b'{"this body": "must not be read"}', headers, path=path)

    assert (code, answer["error"]) == (404, "NotFound")
    assert ports_touched(deps) == set()
