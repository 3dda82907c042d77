"""The operator API against its own OpenAPI document: whatever schemathesis generates from
``docs/openapi.json`` (valid requests and, in its coverage phase, boundary and invalid ones), the
API never answers 5xx, answers only statuses and shapes the document declares, and every 4xx is
a JSON ``ErrorBody``.

The requests reach the WSGI app functions-framework makes of ``functions/api/main.py`` on the
local backends (the fixed local admin, so every operation is reachable), with one onboarded
account, one device ``d1`` and one alert ``a-1`` to find. Generation is deterministic
(``derandomize``, a fixed seed) and bounded (a few dozen examples per operation), so a run takes
seconds and a failure repeats.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from hpsteer.adapters.credentials import add_data_key, onboard_account
from hpsteer.backends.local.secrets import MemorySecretStore
from hpsteer.domain.messages import Alert, AlertSeverity
from hpsteer.domain.operator_requests import DeviceRegistration
from hpsteer.domain.operator_views import ErrorBody
from hpsteer.domain.roles import Role
from hpsteer.ports.clock import SimulatedClock
from hpsteer.runtime import bootstrap
from hpsteer.runtime.entrypoint import use_dependencies
from hpsteer.services.alerts import raise_alert
from hpsteer.services.operator import devices
from hpsteer.services.operator.audit import Actor

schemathesis = pytest.importorskip("schemathesis")
from functions_framework import create_app  # noqa: E402 - after the skip: nothing to build
from schemathesis.checks import not_a_server_error  # noqa: E402
from schemathesis.specs.openapi.checks import (  # noqa: E402
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

ROOT = Path(__file__).resolve().parents[2]
T0 = datetime(2025, 1, 15, 6, tzinfo=UTC)
MAX_EXAMPLES = 25
SEED = 20251115

schema = schemathesis.openapi.from_path(ROOT / "docs" / "openapi.json")
schema.app = create_app("api", str(ROOT / "functions" / "api" / "main.py"), "http")
schema.config.generation.update(max_examples=MAX_EXAMPLES, deterministic=True, database="none")
schema.config.seed = SEED


@schemathesis.check
def refusals_are_json_errors(ctx: Any, response: Any, case: Any) -> bool | None:
    """Every 4xx carries ``{"error": {"code", "message", ...}}`` as JSON."""
    if 400 <= response.status_code < 500:
        ErrorBody.model_validate(response.json())
    return None


@pytest.fixture(scope="module")
def api_rig() -> Iterator[bootstrap.Dependencies]:
    """One rig for every generated request: state accumulates as the requests change it (a
    device deleted, an alert acknowledged), which is what the API meets in life too."""
    clock = SimulatedClock(T0)
    deps = bootstrap.local(clock=clock, secrets=MemorySecretStore())
    add_data_key(deps.secrets)
    onboard_account(deps.store, deps.secrets, clock, "viessmann", "acct-1", refresh_token="rt")
    body = {
        "device_id": "d1",
        "manufacturer": "viessmann",
        "external_id": "vitocal-1",
        "account_id": "acct-1",
        "price_area": "SE3",
        "location": {"latitude": 59.3, "longitude": 18.1},
        "archetype": "old_radiators",
        "comfort": {"min_indoor_temp_c": 20, "setpoint_c": 21, "max_indoor_temp_c": 23},
    }
    actor = Actor("setup@example.com", Role.ADMIN)
    devices.register_device(deps, actor, DeviceRegistration.model_validate(body))
    alert = Alert(
        alert_id="a-1",
        severity=AlertSeverity.WARNING,
        kind="device_unreachable",
        message="gone",
        raised_at=T0,
        device_id="d1",
    )
    raise_alert(deps.store, deps.bus, alert)
    use_dependencies(deps)
    yield deps
    use_dependencies(None)


@schema.parametrize()
def test_no_generated_request_makes_the_api_fail_and_every_refusal_is_a_json_error(
    case: Any, api_rig: bootstrap.Dependencies
) -> None:
    case.call_and_validate(
        checks=[
            not_a_server_error,
            status_code_conformance,
            content_type_conformance,
            response_schema_conformance,
            refusals_are_json_errors,
        ]
    )
