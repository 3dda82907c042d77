"""The api Cloud Function through functions-framework: every endpoint, every role, every refusal,
on the local store and on Firestore (its emulator).

Requests go to the app functions-framework makes of ``functions/api/main.py``. Locally (backend
``local``) the caller is the fixed local admin and every answer says so. With production
settings (backend ``gcp``, its ports still the local ones here) the caller must bring a Google ID
token, signed here by a test key Google's certificate cache is given (tests/support/oidc.py),
whose email has a role in ``api_roles``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient
from functions_framework import create_app

from hpsteer.adapters.credentials import add_data_key, onboard_account
from hpsteer.api.auth import LOCAL_IDENTITY, caller_verifier, verifier_key
from hpsteer.api.http import MAX_BODY_BYTES
from hpsteer.api.routes import ROUTES
from hpsteer.backends.local.secrets import MemorySecretStore
from hpsteer.config import Settings
from hpsteer.domain.hand_back import is_hand_back
from hpsteer.domain.messages import Alert, AlertSeverity
from hpsteer.domain.operator_requests import DeviceRegistration
from hpsteer.domain.roles import REQUIRED_ROLE, Role
from hpsteer.ports.clock import SimulatedClock
from hpsteer.ports.store import DocumentStore
from hpsteer.runtime import bootstrap
from hpsteer.runtime.entrypoint import use_dependencies
from hpsteer.runtime.local_fleet import LocalFleet
from hpsteer.runtime.oidc import GoogleCerts
from hpsteer.services.alerts import raise_alert
from hpsteer.services.operator import devices
from hpsteer.services.operator.audit import AUDIT_EVENTS, Actor
from tests.services.test_dispatch import T0, home_of
from tests.support.oidc import SigningKey, make_key

ROOT = Path(__file__).resolve().parents[2]
SOURCE = str(ROOT / "functions" / "api" / "main.py")
API_URL = "https://europe-west1-acme-energy-prod.cloudfunctions.net/api"
COMFORT = {"min_indoor_temp_c": 20, "setpoint_c": 21, "max_indoor_temp_c": 23}
HEADER = "manufacturer,external_id,account_id,price_area,latitude,longitude,archetype,"
HEADER += "min_indoor_temp_c,setpoint_c,max_indoor_temp_c"


def client() -> FlaskClient:
    return create_app("api", SOURCE, "http").test_client()


@pytest.fixture
def installed() -> Iterator[None]:
    yield
    use_dependencies(None)


def registration_body(account_id: str, **changes: Any) -> dict[str, Any]:
    return {
        "manufacturer": "viessmann",
        "external_id": "vitocal-0001",
        "account_id": account_id,
        "price_area": "SE3",
        "location": {"latitude": 59.33, "longitude": 18.07},
        "archetype": "renovated_radiators",
        "comfort": COMFORT,
        **changes,
    }


def audit_count(store: DocumentStore) -> int:
    return len(store.query("audit_events").documents)


def device_count(store: DocumentStore) -> int:
    return len(store.query("devices").documents)


# == what the function loads =====================================================================


def test_the_api_reaches_neither_the_planner_nor_the_physics_nor_numpy() -> None:
    """The module closure deploy.stage follows (every import anywhere, lazy ones included)."""
    from deploy.stage import FUNCTIONS_DIR, import_closure

    closure = import_closure([FUNCTIONS_DIR / "api" / "main.py"])
    assert "hpsteer.api.http" in closure
    heavy = sorted(
        m for m in closure if m.startswith(("hpsteer.optimizer", "hpsteer.thermal", "hpsteer.sim"))
    )
    assert heavy == []
    requirements = (FUNCTIONS_DIR / "api" / "requirements.txt").read_text()
    assert not {"numpy", "ortools"} & {
        line.split(">")[0].split("=")[0] for line in requirements.splitlines()
    }


# == locally: the fixed admin, every endpoint ====================================================


@pytest.fixture
def local(document_store: DocumentStore, installed: None) -> LocalFleet:
    fleet = LocalFleet.build(start=T0, homes=3, seed=11, wrap_store=lambda _: document_store)
    fleet.register_devices()
    use_dependencies(fleet.deps)
    return fleet


def test_every_answer_says_the_caller_is_the_local_admin(local: LocalFleet) -> None:
    for response in (client().get("/v1/devices"), client().get("/v1/nowhere")):
        identity = response.headers["X-Hpsteer-Identity"]
        assert identity == f"{LOCAL_IDENTITY} (local runtime: fixed admin identity)"


def test_every_endpoint_answers_locally(local: LocalFleet) -> None:
    api = client()
    account = home_of(local, "viessmann").account_id
    store = local.deps.store

    document = api.get("/openapi.json")
    assert document.status_code == 200
    assert document.get_json() == json.loads((ROOT / "docs" / "openapi.json").read_text())

    created = api.post("/v1/devices", json=registration_body(account))
    assert created.status_code == 201
    device_id = created.get_json()["device_id"]
    assert api.post("/v1/devices", json=registration_body(account)).status_code == 200

    listed = api.get("/v1/devices", query_string={"manufacturer": "viessmann", "page_size": 10})
    assert listed.status_code == 200
    assert device_id in {d["device_id"] for d in listed.get_json()["devices"]}
    assert api.get(f"/v1/devices/{device_id}").get_json()["revision"] == 1

    band = {"min_indoor_temp_c": 19, "setpoint_c": 20, "max_indoor_temp_c": 22}
    patched = api.patch(f"/v1/devices/{device_id}", json={"comfort": band})
    assert patched.status_code == 200
    assert patched.get_json()["comfort"]["min_indoor_temp_c"] == 19.0

    seen = api.get(f"/v1/devices/{device_id}/status")
    assert seen.status_code == 200
    assert set(seen.get_json()) >= {"last_telemetry", "mode", "current_plan", "recent_commands"}

    assert api.post(f"/v1/devices/{device_id}/replan", json={"reason": "why"}).status_code == 202
    assert api.post("/v1/areas/SE3/replan").status_code == 202

    off = api.put(f"/v1/devices/{device_id}/steering", json={"enabled": False})
    assert off.status_code == 200
    assert is_hand_back(off.get_json()["hand_back_command_id"])
    on = api.put(f"/v1/devices/{device_id}/steering", json={"enabled": True})
    assert on.get_json()["steering_enabled"] is True

    raise_alert(
        store,
        local.deps.bus,
        Alert(
            alert_id="a-1",
            severity=AlertSeverity.WARNING,
            kind="device_unreachable",
            message="gone",
            raised_at=T0,
            device_id=device_id,
        ),
    )
    alerts = api.get("/v1/alerts", query_string={"device_id": device_id, "state": "open"})
    assert [a["alert_id"] for a in alerts.get_json()["alerts"]] == ["a-1"]
    assert api.get("/v1/alerts/a-1").get_json()["state"] == "open"
    acknowledged = api.post("/v1/alerts/a-1/acknowledge", json={"note": "seen"})
    assert acknowledged.get_json()["state"] == "acknowledged"
    assert api.post("/v1/alerts/a-1/acknowledge").get_json() == acknowledged.get_json()

    csv = f"{HEADER}\nviessmann,other,{account},SE3,59.3,18.1,old_radiators,20,21,23\n"
    imported = api.post("/v1/device-imports", data=csv, content_type="text/csv")
    assert imported.status_code == 200
    assert imported.get_json()["imported"] == 1

    deleted = api.delete(f"/v1/devices/{device_id}")
    assert deleted.status_code == 200
    assert api.get(f"/v1/devices/{device_id}").status_code == 404

    operations = [d.data["operation"] for d in store.query("audit_events").documents]
    assert sorted(operations) == sorted(
        [
            "register_device",
            "update_device",
            "replan",
            "replan",
            "disable_steering",
            "enable_steering",
            "acknowledge_alert",
            "register_device",
            "delete_device",
        ]
    )
    local.deps.analytics.ensure_table(AUDIT_EVENTS)
    rows = local.deps.analytics.query("SELECT COUNT(*) AS n FROM `audit_events`")
    assert rows[0]["n"] == len(operations)


def test_a_csv_with_a_bad_row_among_good_ones_imports_the_good_and_reports_the_bad(
    local: LocalFleet,
) -> None:
    account = home_of(local, "viessmann").account_id
    csv = (
        f"{HEADER}\n"
        f"viessmann,one,{account},SE3,59.3,18.1,old_radiators,20,21,23\n"
        f"viessmann,two,{account},SE3,59.3,18.1,old_radiators,20,20.5,20.5\n"
        f"viessmann,three,{account},SE3,59.3,18.1,old_radiators,20,21,23\n"
    )
    before = device_count(local.deps.store)

    answer = client().post("/v1/device-imports", data=csv, content_type="text/csv")

    assert answer.status_code == 200
    report = answer.get_json()
    assert (report["imported"], report["refused"]) == (2, 1)
    [bad] = [row for row in report["rows"] if row["status"] == "refused"]
    assert (bad["line"], bad["field"]) == (3, "comfort")
    assert "1 K" in bad["message"]
    assert device_count(local.deps.store) == before + 2


def _json(body: Any) -> dict[str, Any]:
    return {"data": json.dumps(body), "content_type": "application/json"}


BAD_REGISTRATIONS: dict[str, tuple[Callable[[str], dict[str, Any]], int, str, str | None]] = {
    # name: (request kwargs from the account id, status, code, field)
    "malformed JSON": (
        lambda a: {"data": b'{"manufacturer": ', "content_type": "application/json"},
        400,
        "malformed_json",
        None,
    ),
    "NaN is not JSON": (
        lambda a: {
            "data": json.dumps(registration_body(a)).replace("59.33", "NaN"),
            "content_type": "application/json",
        },
        400,
        "malformed_json",
        None,
    ),
    "not UTF-8": (
        lambda a: {"data": b'{"x": "\xff"}', "content_type": "application/json"},
        400,
        "malformed_json",
        None,
    ),
    "wrong type": (
        lambda a: _json(registration_body(a, price_area=3)),
        422,
        "invalid_body",
        "price_area",
    ),
    "number as a string": (
        lambda a: _json(registration_body(a, location={"latitude": "59", "longitude": 18})),
        422,
        "invalid_body",
        "location.latitude",
    ),
    "unknown field": (
        lambda a: _json({**registration_body(a), "colour": "red"}),
        422,
        "invalid_body",
        "colour",
    ),
    "not an object": (lambda a: _json([1, 2]), 422, "invalid_body", None),
    "band under 1 K": (
        lambda a: _json(
            registration_body(
                a, comfort={"min_indoor_temp_c": 21, "setpoint_c": 21, "max_indoor_temp_c": 21.5}
            )
        ),
        422,
        "invalid_body",
        "comfort",
    ),
    "band below 10 C": (
        lambda a: _json(registration_body(a, comfort={**COMFORT, "min_indoor_temp_c": 8})),
        422,
        "invalid_body",
        "comfort.min_indoor_temp_c",
    ),
    "band above 28 C": (
        lambda a: _json(registration_body(a, comfort={**COMFORT, "max_indoor_temp_c": 29})),
        422,
        "invalid_body",
        "comfort.max_indoor_temp_c",
    ),
    "off the globe": (
        lambda a: _json(registration_body(a, location={"latitude": 95, "longitude": 18})),
        422,
        "invalid_body",
        "location.latitude",
    ),
    "unknown manufacturer": (
        lambda a: _json(registration_body(a, manufacturer="acme_heat")),
        422,
        "invalid_body",
        "manufacturer",
    ),
    "unknown price area": (
        lambda a: _json(registration_body(a, price_area="SE9")),
        422,
        "invalid_body",
        "price_area",
    ),
    "unknown account": (
        lambda a: _json(registration_body("stranger")),
        422,
        "unknown_account",
        "account_id",
    ),
    "unknown tariff": (
        lambda a: _json(registration_body(a, tariff_id="se3-nowhere")),
        422,
        "unknown_tariff",
        "tariff_id",
    ),
    "tariff of another area": (
        lambda a: _json(registration_body(a, tariff_id="dk1-n1")),
        422,
        "tariff_area_mismatch",
        "tariff_id",
    ),
    "not JSON at all": (
        lambda a: {"data": "manufacturer=viessmann", "content_type": "text/plain"},
        415,
        "unsupported_media_type",
        None,
    ),
    "no body": (lambda a: {}, 400, "missing_body", None),
    "too large": (
        lambda a: {"data": b" " * (MAX_BODY_BYTES + 1), "content_type": "application/json"},
        413,
        "body_too_large",
        None,
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_REGISTRATIONS))
def test_a_bad_registration_is_refused_with_a_json_error_naming_the_field_and_writes_nothing(
    local: LocalFleet, case: str
) -> None:
    make, status, code, field = BAD_REGISTRATIONS[case]
    account = home_of(local, "viessmann").account_id
    before = (device_count(local.deps.store), audit_count(local.deps.store))

    answer = client().post("/v1/devices", **make(account))

    assert answer.status_code == status
    error = answer.get_json()["error"]
    assert (error["code"], error["field"]) == (code, field)
    assert error["message"]
    assert (device_count(local.deps.store), audit_count(local.deps.store)) == before


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status", "code", "field"),
    [
        (
            "GET",
            "/v1/devices",
            {"query_string": {"colour": "red"}},
            400,
            "unknown_parameter",
            "colour",
        ),
        ("GET", "/v1/devices?page_size=5&page_size=6", {}, 400, "repeated_parameter", "page_size"),
        (
            "GET",
            "/v1/devices",
            {"query_string": {"page_size": 0}},
            400,
            "invalid_query",
            "page_size",
        ),
        (
            "GET",
            "/v1/devices",
            {"query_string": {"page_token": "zz"}},
            400,
            "invalid_page_token",
            "page_token",
        ),
        ("GET", "/v1/alerts", {"query_string": {"state": "maybe"}}, 400, "invalid_query", "state"),
        ("GET", "/v1/devices/..", {}, 400, "invalid_path_parameter", "device_id"),
        ("GET", "/v1/devices/no-such-device", {}, 404, "unknown_device", None),
        ("GET", "/v1/devices/no-such-device/status", {}, 404, "unknown_device", None),
        ("POST", "/v1/alerts/no-such-alert/acknowledge", {}, 404, "unknown_alert", None),
        ("POST", "/v1/areas/SE9/replan", {}, 400, "invalid_path_parameter", "price_area"),
        ("GET", "/v2/devices", {}, 404, "no_such_route", None),
        ("POST", "/v1/devices/x/status", {}, 405, "method_not_allowed", None),
        (
            "PUT",
            "/v1/devices/x/steering",
            {"json": {"enabled": "off"}},
            422,
            "invalid_body",
            "enabled",
        ),
        ("PATCH", "/v1/devices/x", {"json": {}}, 422, "invalid_body", None),
        ("POST", "/v1/device-imports", {"json": {"rows": []}}, 415, "unsupported_media_type", None),
        (
            "POST",
            "/v1/device-imports",
            {"data": "colour\nred\n", "content_type": "text/csv"},
            422,
            "unknown_column",
            "colour",
        ),
        (
            "POST",
            "/v1/device-imports",
            {"data": b"\xff\xfe", "content_type": "text/csv"},
            400,
            "malformed_csv",
            None,
        ),
        (
            "POST",
            "/v1/device-imports",
            {"data": "a", "content_type": "text/csv; charset=latin-1"},
            415,
            "unsupported_charset",
            None,
        ),
    ],
)
def test_bad_requests_are_refused_with_a_json_error(
    local: LocalFleet,
    method: str,
    path: str,
    kwargs: dict[str, Any],
    status: int,
    code: str,
    field: str | None,
) -> None:
    answer = client().open(path, method=method, **kwargs)

    assert answer.status_code == status
    assert answer.headers["Content-Type"] == "application/json"
    error = answer.get_json()["error"]
    assert (error["code"], error["field"]) == (code, field)
    if status == 405:
        assert answer.headers["Allow"] == "GET"


def test_a_re_plan_of_a_device_whose_steering_is_off_conflicts(local: LocalFleet) -> None:
    device_id = home_of(local, "viessmann").home_id
    client().put(f"/v1/devices/{device_id}/steering", json={"enabled": False})

    answer = client().post(f"/v1/devices/{device_id}/replan")

    assert answer.status_code == 409
    assert answer.get_json()["error"]["code"] == "steering_disabled"


# == production: Google identity, roles ==========================================================


@pytest.fixture(scope="module")
def google_key() -> SigningKey:
    return make_key("google-key-1")


ROLES = {"viola@example.com": "viewer", "otto@example.com": "operator", "ada@example.com": "admin"}
EMAIL_OF = {Role(role): email for email, role in ROLES.items()}


@pytest.fixture
def production(
    document_store: DocumentStore, google_key: SigningKey, installed: None
) -> bootstrap.Dependencies:
    """Production settings (gcp backend, roles, the API's URL) over local ports, with one
    onboarded account, one registered device ``d1`` and one alert ``a-1``."""
    clock = SimulatedClock(T0)
    base = bootstrap.local(
        clock=clock, secrets=MemorySecretStore(), wrap_store=lambda _: document_store
    )
    settings = Settings(backend="gcp", project="acme-energy-prod", api_url=API_URL, api_roles=ROLES)
    deps = bootstrap.Dependencies(
        settings,
        clock,
        store=lambda: base.store,
        bus=lambda: base.bus,
        tasks=lambda: base.tasks,
        analytics=lambda: base.analytics,
        secrets=lambda: base.secrets,
    )
    certs = GoogleCerts(lambda: ({google_key.kid: google_key.cert_pem}, 3600.0))
    deps.singleton(verifier_key(API_URL), lambda: caller_verifier(API_URL, certs))
    add_data_key(deps.secrets)
    onboard_account(deps.store, deps.secrets, clock, "viessmann", "acct-1", refresh_token="rt")
    body = registration_body("acct-1", device_id="d1")
    devices.register_device(
        deps, Actor("setup@example.com", Role.ADMIN), DeviceRegistration.model_validate(body)
    )
    raise_alert(
        deps.store,
        deps.bus,
        Alert(
            alert_id="a-1",
            severity=AlertSeverity.CRITICAL,
            kind="command_failed",
            message="failed",
            raised_at=T0,
            device_id="d1",
        ),
    )
    use_dependencies(deps)
    return deps


def token(key: SigningKey, email: str, **claims: Any) -> str:
    now = int(time.time())
    return key.sign(
        {
            "iss": "https://accounts.google.com",
            "aud": API_URL,
            "email": email,
            "email_verified": True,
            "iat": now,
            "exp": now + 3600,
            **claims,
        }
    )


def bearer(value: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {value}"}


def test_a_google_token_for_the_api_of_an_email_with_a_role_is_let_in(
    production: bootstrap.Dependencies, google_key: SigningKey
) -> None:
    answer = client().get("/v1/devices", headers=bearer(token(google_key, "Viola@Example.com")))

    assert answer.status_code == 200
    assert answer.headers["X-Hpsteer-Identity"] == "viola@example.com (viewer)"
    assert [d["device_id"] for d in answer.get_json()["devices"]] == ["d1"]


@pytest.mark.parametrize(
    ("headers", "status", "code"),
    [
        ({}, 401, "unauthenticated"),
        ({"Authorization": "Basic dXNlcjpwdw=="}, 401, "unauthenticated"),
        ({"Authorization": "Bearer not.a.jwt"}, 401, "unauthenticated"),
        ("wrong audience", 401, "unauthenticated"),
        ("wrong issuer", 401, "unauthenticated"),
        ("expired", 401, "unauthenticated"),
        ("another key", 401, "unauthenticated"),
        ("unverified email", 403, "forbidden"),
        ("no role", 403, "no_role"),
    ],
)
def test_callers_without_a_valid_token_or_a_role_are_refused_before_anything_is_read(
    production: bootstrap.Dependencies,
    google_key: SigningKey,
    headers: dict[str, str] | str,
    status: int,
    code: str,
) -> None:
    if isinstance(headers, str):
        email = "mallory@example.com" if headers == "no role" else "otto@example.com"
        claims: dict[str, Any] = {
            "wrong audience": {
                "aud": "https://europe-west1-acme-energy-prod.cloudfunctions.net/dispatch"
            },
            "wrong issuer": {"iss": "https://evil.example.com"},
            "expired": {"iat": int(time.time()) - 7200, "exp": int(time.time()) - 3600},
            "unverified email": {"email_verified": False},
            "no role": {},
            "another key": {},
        }[headers]
        signer = make_key("google-key-1") if headers == "another key" else google_key
        headers = bearer(token(signer, email, **claims))
    before = audit_count(production.store)

    answer = client().post("/v1/areas/SE3/replan", headers=headers)

    assert answer.status_code == status
    assert answer.get_json()["error"]["code"] == code
    if status == 401:
        assert answer.headers["WWW-Authenticate"] == "Bearer"
    assert audit_count(production.store) == before


GCLOUD_AUDIENCE = "32555940559.apps.googleusercontent.com"
"""The audience of a person's ``gcloud auth print-identity-token``, which cannot ask for another."""


def test_a_person_s_gcloud_token_is_let_in_only_when_its_audience_is_configured(
    production: bootstrap.Dependencies, google_key: SigningKey
) -> None:
    gcloud_token = bearer(token(google_key, "otto@example.com", aud=GCLOUD_AUDIENCE))

    refused = client().post("/v1/areas/SE3/replan", headers=gcloud_token)

    settings = production.settings.model_copy(update={"api_extra_audiences": [GCLOUD_AUDIENCE]})
    widened = bootstrap.Dependencies(
        settings,
        production.clock,
        store=lambda: production.store,
        bus=lambda: production.bus,
        tasks=lambda: production.tasks,
        analytics=lambda: production.analytics,
        secrets=lambda: production.secrets,
    )
    certs = GoogleCerts(lambda: ({google_key.kid: google_key.cert_pem}, 3600.0))
    audiences = (API_URL, GCLOUD_AUDIENCE)
    widened.singleton(verifier_key(audiences), lambda: caller_verifier(audiences, certs))
    use_dependencies(widened)
    accepted = client().post("/v1/areas/SE3/replan", headers=gcloud_token)
    for_the_api = client().get("/v1/devices", headers=bearer(token(google_key, "otto@example.com")))
    for_another = bearer(token(google_key, "otto@example.com", aud=f"{API_URL}-other"))
    elsewhere = client().get("/v1/devices", headers=for_another)

    assert refused.status_code == 401
    assert accepted.status_code == 202
    assert accepted.headers["X-Hpsteer-Identity"] == "otto@example.com (operator)"
    assert for_the_api.status_code == 200
    assert elsewhere.status_code == 401


def _csv(account: str) -> str:
    return f"{HEADER}\nviessmann,imported,{account},SE3,59.3,18.1,old_radiators,20,21,23\n"


# operation id -> (method, path, request kwargs, the status an allowed caller gets)
EVERY_OPERATION: dict[str, tuple[str, str, dict[str, Any], int]] = {
    "getOpenApi": ("GET", "/openapi.json", {}, 200),
    "listDevices": ("GET", "/v1/devices", {}, 200),
    "registerDevice": (
        "POST",
        "/v1/devices",
        {"json": registration_body("acct-1", external_id="another")},
        201,
    ),
    "getDevice": ("GET", "/v1/devices/d1", {}, 200),
    "updateDevice": ("PATCH", "/v1/devices/d1", {"json": {"tariff_id": "se3-vattenfall-t4"}}, 200),
    "deleteDevice": ("DELETE", "/v1/devices/d1", {}, 200),
    "setSteering": ("PUT", "/v1/devices/d1/steering", {"json": {"enabled": False}}, 200),
    "getDeviceStatus": ("GET", "/v1/devices/d1/status", {}, 200),
    "replanDevice": ("POST", "/v1/devices/d1/replan", {}, 202),
    "importDevices": (
        "POST",
        "/v1/device-imports",
        {"data": _csv("acct-1"), "content_type": "text/csv"},
        200,
    ),
    "replanArea": ("POST", "/v1/areas/SE3/replan", {"json": {"reason": "prices"}}, 202),
    "listAlerts": ("GET", "/v1/alerts", {}, 200),
    "getAlert": ("GET", "/v1/alerts/a-1", {}, 200),
    "acknowledgeAlert": ("POST", "/v1/alerts/a-1/acknowledge", {"json": {"note": "x"}}, 200),
}


def test_the_role_table_covers_every_route() -> None:
    assert set(EVERY_OPERATION) == {route.operation_id for route in ROUTES}


@pytest.mark.parametrize("role", list(Role))
@pytest.mark.parametrize("operation_id", sorted(EVERY_OPERATION))
def test_each_role_may_do_exactly_what_its_rank_allows(
    production: bootstrap.Dependencies, google_key: SigningKey, operation_id: str, role: Role
) -> None:
    method, path, kwargs, success = EVERY_OPERATION[operation_id]
    [route] = [r for r in ROUTES if r.operation_id == operation_id]
    allowed = role.rank >= REQUIRED_ROLE[route.operation].rank
    changes = audit_count(production.store)

    answer = client().open(
        path, method=method, headers=bearer(token(google_key, EMAIL_OF[role])), **kwargs
    )

    if allowed:
        assert answer.status_code == success, answer.get_json()
    else:
        assert answer.status_code == 403
        assert answer.get_json()["error"]["code"] == "role_too_low"
        assert audit_count(production.store) == changes
    writes = route.method != "GET" and allowed
    if writes:
        audited = [d.data for d in production.store.query("audit_events").documents]
        assert {a["actor"] for a in audited} >= {EMAIL_OF[role]}
        assert {a["actor_role"] for a in audited if a["actor"] == EMAIL_OF[role]} == {role.value}
