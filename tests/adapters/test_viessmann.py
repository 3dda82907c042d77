"""The Viessmann ViCare adapter, against the recorded feature bodies of five Vitocal heat pumps
and ViCare's recorded error bodies, served through httpx.MockTransport.

Bodies built here rather than recorded (each says so): token-endpoint answers, a 401 "EXPIRED
TOKEN" (shape from reference/manufacturer-apis.md §1.5), a command's success body, validation
errors, an HTML gateway page.
"""

from __future__ import annotations

import copy
import json
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest

from hpsteer.adapters.credentials import KEY_SECRET
from hpsteer.adapters.protocol import (
    AdapterContext,
    DeviceRef,
    ManufacturerAdapter,
    RateWindow,
)
from hpsteer.adapters.viessmann import ViessmannAdapter, client_id_secret_name
from hpsteer.domain.actions import GenericAction, Mode
from hpsteer.errors import (
    CommandRejected,
    CredentialsInvalid,
    DeviceOffline,
    HpsteerError,
    OemRateLimited,
    OemUnavailable,
    UnknownDevice,
)
from hpsteer.ports.clock import SimulatedClock
from tests.adapters.vault import Vault

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "oem" / "viessmann_vicare"
API = "https://api.viessmann-climatesolutions.com"
TOKEN_URL = "https://iam.viessmann-climatesolutions.com/idp/v3/token"
ACCOUNT = "acct-1"
DEVICE = DeviceRef("viessmann", "1234567/7571381573112225/0", ACCOUNT, device_id="hp-1")
FEATURES_PATH = (
    "/iot/v2/features/installations/1234567/gateways/7571381573112225/devices/0/features"
)

CLIENT_ID = "fake-client-id-7f3a9c"
REFRESH_TOKEN = "fake-refresh-token-0b9c44"
ACCESS_TOKEN = "fake-access-token-51d2e8"

# model → (circuit in use, comfort-program feature that carries set_mode_*)
MODELS: dict[str, tuple[str, str]] = {
    "Vitocal151A": ("0", "heating.circuits.0.operating.programs.normalHeating"),
    "Vitocal200S": ("0", "heating.circuits.0.operating.programs.normal"),
    "Vitocal222S": ("0", "heating.circuits.0.operating.programs.normalHeating"),
    "Vitocal250A": ("0", "heating.circuits.0.operating.programs.normalHeating"),
    "Vitocal300G_CU401B": ("1", "heating.circuits.1.operating.programs.normal"),
}
MODES = [GenericAction.SET_MODE_MIN, GenericAction.SET_MODE_MID, GenericAction.SET_MODE_MAX]


def load(model: str) -> dict[str, Any]:
    document: dict[str, Any] = json.loads((FIXTURES / f"{model}.json").read_bytes())
    return document


def error_body(name: str) -> dict[str, Any]:
    document: dict[str, Any] = json.loads((FIXTURES / "errors" / name).read_bytes())
    return document


def feature(document: dict[str, Any], name: str) -> dict[str, Any]:
    found: dict[str, Any] = next(f for f in document["data"] if f["feature"] == name)
    return found


@dataclass
class FakeViCare:
    """ViCare's API and token endpoint for one account, recording every request."""

    features: dict[str, Any]
    requests: list[httpx.Request] = field(default_factory=list)
    scripted: list[httpx.Response | Exception] = field(default_factory=list)
    token_answers: list[httpx.Response] = field(default_factory=list)
    issued: int = 0
    valid_tokens: set[str] = field(default_factory=set)
    refresh_tokens_seen: list[str] = field(default_factory=list)
    before_token: list[Callable[[], None]] = field(default_factory=list)
    """Run (once each) when the token endpoint is asked, before it answers."""

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if str(request.url) == TOKEN_URL:
            return self._token(request)
        if self.scripted:
            answer = self.scripted.pop(0)
            if isinstance(answer, Exception):
                raise answer
            return answer
        bearer = request.headers.get("Authorization", "").removeprefix("Bearer ")
        if bearer not in self.valid_tokens:
            return httpx.Response(401, json=EXPIRED_TOKEN)
        if request.method == "GET" and request.url.path == "/iot/v2/equipment/installations":
            return httpx.Response(200, json=INSTALLATIONS)
        if request.method == "GET" and request.url.path == FEATURES_PATH:
            return httpx.Response(200, json=self.features)
        if request.method == "POST" and "/commands/" in request.url.path:
            # Shape per ignazhabibi/vi_api_client (reference §1.4); reason string unconfirmed.
            return httpx.Response(200, json={"data": {"success": True, "reason": "COMMAND_OK"}})
        return httpx.Response(404, json={"statusCode": 404, "errorType": "NOT_FOUND"})

    def _token(self, request: httpx.Request) -> httpx.Response:
        form = {k: v[0] for k, v in parse_qs(request.content.decode()).items()}
        assert form["grant_type"] == "refresh_token"
        assert form["client_id"] == CLIENT_ID
        self.refresh_tokens_seen.append(form["refresh_token"])
        while self.before_token:
            self.before_token.pop(0)()
        if self.token_answers:
            return self.token_answers.pop(0)
        self.issued += 1
        access = f"{ACCESS_TOKEN}-{self.issued}"
        self.valid_tokens.add(access)
        return httpx.Response(
            200,
            json={
                "access_token": access,
                "refresh_token": f"{REFRESH_TOKEN}-r{self.issued}",
                "token_type": "Bearer",
                "expires_in": 3600,
            },
        )

    def api_requests(self) -> list[httpx.Request]:
        return [r for r in self.requests if str(r.url) != TOKEN_URL]

    def token_requests(self) -> list[httpx.Request]:
        return [r for r in self.requests if str(r.url) == TOKEN_URL]

    def posts(self) -> list[tuple[str, dict[str, Any]]]:
        return [
            (r.url.path, json.loads(r.content)) for r in self.api_requests() if r.method == "POST"
        ]


# Built: the discovery shape of reference/manufacturer-apis.md §1.2 (no recorded body), with the
# device of Vitocal300G_CU401B.json and a gateway-role device that is not a heat pump.
INSTALLATIONS = {
    "data": [
        {
            "id": 1234567,
            "gateways": [
                {
                    "serial": "7571381573112225",
                    "devices": [
                        {
                            "id": "gateway",
                            "modelId": "Heatbox1",
                            "roles": ["type:gateway;VitoconnectOpto1"],
                        },
                        load("Vitocal300G_CU401B")["device"],
                    ],
                }
            ],
        }
    ]
}

EXPIRED_TOKEN = {
    "statusCode": 401,
    "errorType": "UNAUTHORIZED",
    "message": "Token provided in request is expired or invalid.",
    "error": "EXPIRED TOKEN",
}


@dataclass
class Rig:
    fake: FakeViCare
    adapter: ViessmannAdapter
    vault: Vault
    clock: SimulatedClock

    def stored_refresh_token(self) -> str | None:
        """What another instance reads from the account's credentials document."""
        return self.vault.instance().require("viessmann", ACCOUNT).refresh_token

    def generation(self) -> int:
        return self.vault.instance().require("viessmann", ACCOUNT).generation


def vicare_vault(directory: Path, clock: SimulatedClock) -> Vault:
    """ViCare's app client id and the data key as secrets; the account onboarded."""
    vault = Vault.create(directory, clock, {client_id_secret_name(): CLIENT_ID})
    vault.instance().onboard("viessmann", ACCOUNT, refresh_token=REFRESH_TOKEN)
    return vault


@pytest.fixture
def make_rig(tmp_path: Path) -> Iterator[Callable[[dict[str, Any]], Rig]]:
    clients: list[httpx.Client] = []

    def make(features: dict[str, Any]) -> Rig:
        clock = SimulatedClock(datetime(2025, 1, 15, 12, 0, tzinfo=UTC))
        vault = vicare_vault(tmp_path / f"vault-{len(clients)}", clock)
        fake = FakeViCare(features)
        http = httpx.Client(transport=httpx.MockTransport(fake))
        clients.append(http)
        return Rig(fake, ViessmannAdapter(vault.instance(), clock, http=http), vault, clock)

    yield make
    for client in clients:
        client.close()


@pytest.fixture(params=sorted(MODELS))
def model(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


# -- the protocol and its constants -----------------------------------------------------------


def test_the_adapter_implements_the_manufacturer_protocol_with_vicare_limits(
    make_rig: Callable[[dict[str, Any]], Rig],
) -> None:
    adapter = make_rig(load("Vitocal250A")).adapter
    assert isinstance(adapter, ManufacturerAdapter)
    assert adapter.name == "viessmann"
    assert adapter.rate_limits.windows == (
        RateWindow(120, timedelta(minutes=10), block_for=timedelta(hours=24)),
        RateWindow(1450, timedelta(hours=24), block_for=timedelta(hours=24)),
    )
    assert adapter.rate_limits.read_share == 0.3


def test_the_factory_uses_the_context_transport_base_url_and_credentials(tmp_path: Path) -> None:
    clock = SimulatedClock(datetime(2025, 1, 15, tzinfo=UTC))
    vault = vicare_vault(tmp_path, clock)
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        if request.url.path == "/idp/v3/token":
            return httpx.Response(200, json={"access_token": "a", "expires_in": 3600})
        return httpx.Response(200, json=load("Vitocal250A"))

    context = AdapterContext(
        secrets=vault.secrets,
        clock=clock,
        base_urls={"viessmann": "http://fleet.test"},
        transport=httpx.MockTransport(handler),
        store=vault.store,
    )
    ViessmannAdapter.factory(context).capabilities(DEVICE)
    assert seen == ["http://fleet.test/idp/v3/token", "http://fleet.test" + FEATURES_PATH]


def test_discovery_finds_the_heat_pumps_of_an_account(
    make_rig: Callable[[dict[str, Any]], Rig],
) -> None:
    rig = make_rig(load("Vitocal300G_CU401B"))
    assert rig.adapter.discover(ACCOUNT) == (DeviceRef("viessmann", DEVICE.external_id, ACCOUNT),)
    (request,) = rig.fake.api_requests()
    assert request.url.params["includeGateways"] == "true"


# -- per recorded model: capabilities, payloads, requests ---------------------------------------


def test_capabilities_come_from_the_device_features(
    model: str, make_rig: Callable[[dict[str, Any]], Rig]
) -> None:
    document = load(model)
    _, lever = MODELS[model]
    program = feature(document, lever)
    limits = program["commands"]["setTemperature"]["params"]["targetTemperature"]["constraints"]
    current = program["properties"]["temperature"]["value"]

    capabilities = make_rig(document).adapter.capabilities(DEVICE)

    assert capabilities.actions == frozenset(GenericAction)
    assert capabilities.setpoint_offset_range_k == (
        limits["min"] - current,
        limits["max"] - current,
    )
    assert f"{lever}/setTemperature" in capabilities.notes
    assert "heating.dhw.oneTimeCharge/activate" in capabilities.notes


@pytest.mark.parametrize("action", MODES, ids=lambda a: a.value)
def test_each_mode_sets_the_comfort_program_to_its_baseline_plus_the_mode_offset(
    model: str, action: GenericAction, make_rig: Callable[[dict[str, Any]], Rig]
) -> None:
    document = load(model)
    circuit, lever = MODELS[model]
    baseline = feature(document, lever)["properties"]["temperature"]["value"]
    rig = make_rig(document)
    assert action.mode is not None
    expected_target = baseline + action.mode.setpoint_offset_k

    payload = rig.adapter.translate_generic_command(action, DEVICE)
    assert payload == {
        "action": action.value,
        "feature": lever,
        "command": "setTemperature",
        "params": {"targetTemperature": expected_target},
        "circuit": circuit,
        "lever": "program_" + lever.rsplit(".", 1)[1],
        "offset_k": action.mode.setpoint_offset_k,
        "baseline": {"targetTemperature": baseline},
        "found_mode": "mid",  # the household's own setting: the baseline, learnt just now
    }
    assert rig.adapter.validate_command(action, payload, DEVICE).valid
    result = rig.adapter.send_command(action, payload, DEVICE)

    assert rig.fake.posts() == [
        (
            f"{FEATURES_PATH}/{lever}/commands/setTemperature",
            {"targetTemperature": expected_target},
        )
    ]
    assert result.accepted_at == rig.clock.now()
    assert result.response["success"] is True
    assert len([r for r in rig.fake.api_requests() if r.method == "GET"]) == 1  # cached features


def test_boost_dhw_activates_the_one_time_charge(
    model: str, make_rig: Callable[[dict[str, Any]], Rig]
) -> None:
    document = load(model)
    assert feature(document, "heating.dhw.oneTimeCharge")["commands"]["activate"]["isExecutable"]
    rig = make_rig(document)

    payload = rig.adapter.translate_generic_command(GenericAction.BOOST_DHW, DEVICE)
    assert payload == {
        "action": "boost_dhw",
        "feature": "heating.dhw.oneTimeCharge",
        "command": "activate",
        "params": {},
    }
    assert rig.adapter.validate_command(GenericAction.BOOST_DHW, payload, DEVICE).valid
    rig.adapter.send_command(GenericAction.BOOST_DHW, payload, DEVICE)
    assert rig.fake.posts() == [
        (f"{FEATURES_PATH}/heating.dhw.oneTimeCharge/commands/activate", {})
    ]


def test_no_payload_key_contains_a_dot(
    model: str, make_rig: Callable[[dict[str, Any]], Rig]
) -> None:
    rig = make_rig(load(model))

    def keys(value: Any) -> Iterator[str]:
        if isinstance(value, dict):
            for key, inner in value.items():
                yield key
                yield from keys(inner)

    for action in GenericAction:
        payload = rig.adapter.translate_generic_command(action, DEVICE)
        assert not [key for key in keys(payload) if "." in key]


def test_the_curve_shift_is_the_fallback_when_no_comfort_program_is_executable(
    model: str, make_rig: Callable[[dict[str, Any]], Rig]
) -> None:
    document = copy.deepcopy(load(model))
    circuit, lever = MODELS[model]
    feature(document, lever)["commands"]["setTemperature"]["isExecutable"] = False
    curve_name = f"heating.circuits.{circuit}.heating.curve"
    curve = feature(document, curve_name)
    shift = curve["properties"]["shift"]["value"]
    slope = curve["properties"]["slope"]["value"]
    rig = make_rig(document)

    payload = rig.adapter.translate_generic_command(GenericAction.SET_MODE_MAX, DEVICE)

    # +2 K room ≈ 2 · (1 + slope) K of flow, on integer shift steps (params.py docstring).
    delta = int(2 * (1 + slope) + 0.5)
    assert payload["feature"] == curve_name
    assert payload["command"] == "setCurve"
    assert payload["params"] == {"shift": shift + delta, "slope": slope}
    assert payload["baseline"] == {"shift": shift, "slope": slope}
    assert rig.adapter.validate_command(GenericAction.SET_MODE_MAX, payload, DEVICE).valid
    too_far = {**payload, "params": {"shift": 41, "slope": slope}}
    verdict = rig.adapter.validate_command(GenericAction.SET_MODE_MAX, too_far, DEVICE)
    assert not verdict.valid
    assert verdict.reason is not None
    assert "shift 41 is above the maximum 40" in verdict.reason


# -- validation ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        pytest.param(
            lambda p, hi: {**p, "params": {"targetTemperature": hi + 1}},
            "above the maximum",
            id="above-max",
        ),
        pytest.param(
            lambda p, hi: {**p, "params": {"targetTemperature": 2}},
            "below the minimum",
            id="below-min",
        ),
        pytest.param(
            lambda p, hi: {**p, "params": {"targetTemperature": 20.5}},
            "not on the stepping",
            id="off-step",
        ),
        pytest.param(
            lambda p, hi: {**p, "params": {"targetTemperature": "warm"}},
            "finite number",
            id="not-a-number",
        ),
        pytest.param(lambda p, hi: {**p, "params": {}}, "is required", id="missing-param"),
        pytest.param(
            lambda p, hi: {**p, "params": {"targetTemperature": 20, "x": 1}},
            "unknown parameter x",
            id="unknown-param",
        ),
        pytest.param(
            lambda p, hi: {**p, "feature": "heating.dhw.oneTimeCharge", "command": "activate"},
            "does not carry",
            id="wrong-action",
        ),
        pytest.param(
            lambda p, hi: {**p, "command": "activate"}, "does not carry", id="wrong-command"
        ),
        pytest.param(lambda p, hi: {"params": {}}, "lacks feature", id="no-feature"),
    ],
)
def test_validation_refuses_what_the_device_would_refuse(
    change: Callable[[dict[str, Any], int], dict[str, Any]],
    reason: str,
    make_rig: Callable[[dict[str, Any]], Rig],
) -> None:
    document = load("Vitocal250A")
    rig = make_rig(document)
    lever = MODELS["Vitocal250A"][1]
    limits = feature(document, lever)["commands"]["setTemperature"]["params"]["targetTemperature"]
    payload = rig.adapter.translate_generic_command(GenericAction.SET_MODE_MAX, DEVICE)

    verdict = rig.adapter.validate_command(
        GenericAction.SET_MODE_MAX, change(payload, limits["constraints"]["max"]), DEVICE
    )
    assert not verdict.valid
    assert verdict.reason is not None
    assert reason in verdict.reason


def test_validation_refuses_a_command_the_device_marks_not_executable(
    make_rig: Callable[[dict[str, Any]], Rig],
) -> None:
    document = copy.deepcopy(load("Vitocal250A"))
    rig = make_rig(document)
    payload = rig.adapter.translate_generic_command(GenericAction.BOOST_DHW, DEVICE)
    feature(document, "heating.dhw.oneTimeCharge")["commands"]["activate"]["isExecutable"] = False
    rig.clock.advance(timedelta(minutes=6))  # past the feature cache

    verdict = rig.adapter.validate_command(GenericAction.BOOST_DHW, payload, DEVICE)
    assert not verdict.valid
    assert verdict.reason == "heating.dhw.oneTimeCharge/activate is not executable now"


# -- state and baseline -------------------------------------------------------------------------


def test_state_maps_the_recorded_readings(
    model: str, make_rig: Callable[[dict[str, Any]], Rig]
) -> None:
    document = load(model)
    circuit, lever = MODELS[model]
    rig = make_rig(document)

    state = rig.adapter.get_device_state(DEVICE)

    def value(name: str) -> Any:
        return feature(document, name)["properties"]["value"]["value"]

    names = {f["feature"] for f in document["data"]}
    dhw_name = "heating.dhw.sensors.temperature." + (
        "dhwCylinder"
        if "heating.dhw.sensors.temperature.dhwCylinder" in names
        else "hotWaterStorage"
    )
    assert state.online is True
    assert state.observed_at == rig.clock.now()
    assert state.outdoor_temp_c == value("heating.sensors.temperature.outside")
    assert state.supply_temp_c == value(f"heating.circuits.{circuit}.sensors.temperature.supply")
    assert state.dhw_temp_c == value(dhw_name)
    assert state.indoor_temp_c is None  # no room sensor on any recorded Vitocal
    assert state.room_setpoint_c == feature(document, lever)["properties"]["temperature"]["value"]
    assert state.setpoint_offset_k is None  # not steered yet: no baseline known
    assert state.mode is None
    if model == "Vitocal250A":
        assert state.power_kw == value("heating.inverters.0.sensors.power.output") / 1000
    else:
        assert state.power_kw is None  # no inverter output reported (or notConnected)


def test_state_reports_the_mode_relative_to_the_stored_baseline(
    model: str, make_rig: Callable[[dict[str, Any]], Rig]
) -> None:
    document = copy.deepcopy(load(model))
    _, lever = MODELS[model]
    rig = make_rig(document)
    payload = rig.adapter.translate_generic_command(GenericAction.SET_MODE_MAX, DEVICE)
    rig.adapter.send_command(GenericAction.SET_MODE_MAX, payload, DEVICE)
    program = feature(document, lever)
    baseline = program["properties"]["temperature"]["value"]
    program["properties"]["temperature"]["value"] = baseline + 2  # the device applied it

    state = rig.adapter.get_device_state(DEVICE)
    assert state.mode is Mode.MAX
    assert state.setpoint_offset_k == 2.0
    assert state.room_setpoint_c == baseline + 2

    # The next command is relative to the stored baseline, not to the steered value.
    payload = rig.adapter.translate_generic_command(GenericAction.SET_MODE_MIN, DEVICE)
    assert payload["params"] == {"targetTemperature": baseline - 2}

    rig.adapter.forget_baseline(DEVICE)
    rig.clock.advance(timedelta(minutes=6))
    payload = rig.adapter.translate_generic_command(GenericAction.SET_MODE_MID, DEVICE)
    assert payload["params"] == {"targetTemperature": baseline + 2}


@pytest.mark.parametrize("body", ["device_offline.json", "gateway_offline.json"])
def test_an_offline_device_reads_as_offline_state(
    body: str, make_rig: Callable[[dict[str, Any]], Rig]
) -> None:
    rig = make_rig(load("Vitocal250A"))
    recorded = error_body(body)
    rig.fake.scripted.append(httpx.Response(recorded["statusCode"], json=recorded))

    state = rig.adapter.get_device_state(DEVICE)
    assert state.online is False
    assert state.outdoor_temp_c is None


# -- tokens -------------------------------------------------------------------------------------


def test_a_refresh_stores_the_rotated_refresh_token_and_uses_it_next_time(
    make_rig: Callable[[dict[str, Any]], Rig],
) -> None:
    rig = make_rig(load("Vitocal250A"))
    rig.adapter.get_device_state(DEVICE)
    rig.adapter.get_device_state(DEVICE)
    assert len(rig.fake.token_requests()) == 1  # the access token is kept until near expiry
    assert rig.stored_refresh_token() == f"{REFRESH_TOKEN}-r1"
    assert rig.generation() == 2

    rig.clock.advance(timedelta(seconds=3600 - 30))  # inside the 60 s margin
    rig.adapter.get_device_state(DEVICE)
    assert rig.fake.refresh_tokens_seen == [REFRESH_TOKEN, f"{REFRESH_TOKEN}-r1"]
    assert rig.stored_refresh_token() == f"{REFRESH_TOKEN}-r2"
    assert rig.generation() == 3


def test_a_rotation_rewrites_the_sealed_document_and_adds_no_secret_version(
    make_rig: Callable[[dict[str, Any]], Rig],
) -> None:
    rig = make_rig(load("Vitocal250A"))
    before = rig.vault.document("viessmann", ACCOUNT)

    rig.adapter.get_device_state(DEVICE)
    rig.clock.advance(timedelta(seconds=3600 - 30))
    rig.adapter.get_device_state(DEVICE)

    after = rig.vault.document("viessmann", ACCOUNT)
    assert after["sealed"]["ciphertext"] != before["sealed"]["ciphertext"]
    assert after["onboarded_at"] == before["onboarded_at"]
    assert rig.vault.secrets.get(KEY_SECRET).version == "1"
    assert rig.vault.secrets.get(client_id_secret_name()).version == "1"
    assert f"{REFRESH_TOKEN}-r2" not in rig.vault.stored_text()


def test_the_app_client_id_and_the_data_key_are_read_once_per_instance(
    make_rig: Callable[[dict[str, Any]], Rig],
) -> None:
    rig = make_rig(load("Vitocal250A"))
    rig.vault.reads.clear()  # onboarding's own reads
    for _ in range(3):
        rig.adapter.get_device_state(DEVICE)
        rig.clock.advance(timedelta(hours=1))  # every read refreshes and rotates
    assert len(rig.fake.token_requests()) == 3
    assert sorted(rig.vault.reads) == [f"{KEY_SECRET}/latest", f"{client_id_secret_name()}/latest"]


def test_an_expired_access_token_is_refreshed_and_the_request_retried_once(
    make_rig: Callable[[dict[str, Any]], Rig],
) -> None:
    rig = make_rig(load("Vitocal250A"))
    rig.adapter.get_device_state(DEVICE)
    rig.fake.valid_tokens.clear()  # ViCare expired it early

    state = rig.adapter.get_device_state(DEVICE)
    assert state.online is True
    assert len(rig.fake.token_requests()) == 2
    statuses = [r.method for r in rig.fake.api_requests()]
    assert statuses == ["GET", "GET", "GET"]


def test_a_second_401_after_refreshing_means_invalid_credentials(
    make_rig: Callable[[dict[str, Any]], Rig],
) -> None:
    rig = make_rig(load("Vitocal250A"))
    rig.fake.scripted += [httpx.Response(401, json=EXPIRED_TOKEN)] * 2

    with pytest.raises(CredentialsInvalid, match=r"HTTP 401 after a token refresh"):
        rig.adapter.get_device_state(DEVICE)
    assert len(rig.fake.api_requests()) == 2


def test_a_refused_refresh_means_invalid_credentials(
    make_rig: Callable[[dict[str, Any]], Rig],
) -> None:
    rig = make_rig(load("Vitocal250A"))
    # Built: an OAuth2 error body (RFC 6749 §5.2).
    rig.fake.token_answers.append(httpx.Response(400, json={"error": "invalid_grant"}))

    with pytest.raises(CredentialsInvalid, match=r"refused the refresh .* HTTP 400 invalid_grant"):
        rig.adapter.capabilities(DEVICE)


def test_a_refused_refresh_is_retried_with_a_refresh_token_another_instance_stored(
    make_rig: Callable[[dict[str, Any]], Rig],
) -> None:
    rig = make_rig(load("Vitocal250A"))
    elsewhere = rig.vault.instance()
    read_by_elsewhere = elsewhere.require("viessmann", ACCOUNT)

    # Another instance rotates the token while this one's refresh is on its way.
    def rotate_elsewhere() -> None:
        assert elsewhere.store_refresh_token(read_by_elsewhere, "elsewhere") is not None

    rig.fake.before_token.append(rotate_elsewhere)
    rig.fake.token_answers.append(httpx.Response(400, json={"error": "invalid_grant"}))

    rig.adapter.capabilities(DEVICE)
    assert rig.fake.refresh_tokens_seen == [REFRESH_TOKEN, "elsewhere"]
    assert rig.stored_refresh_token() == f"{REFRESH_TOKEN}-r1"
    assert rig.generation() == 3  # onboarding, the other instance, this one


def test_a_refused_refresh_with_no_newer_token_stored_is_not_retried(
    make_rig: Callable[[dict[str, Any]], Rig],
) -> None:
    rig = make_rig(load("Vitocal250A"))
    rig.fake.token_answers.append(httpx.Response(400, json={"error": "invalid_grant"}))
    with pytest.raises(CredentialsInvalid):
        rig.adapter.capabilities(DEVICE)
    assert rig.fake.refresh_tokens_seen == [REFRESH_TOKEN]
    assert rig.generation() == 1


def test_a_missing_app_client_id_is_invalid_credentials_naming_the_secret(tmp_path: Path) -> None:
    clock = SimulatedClock(datetime(2025, 1, 1, tzinfo=UTC))
    vault = Vault.create(tmp_path, clock, {})
    vault.instance().onboard("viessmann", ACCOUNT, refresh_token=REFRESH_TOKEN)
    http = httpx.Client(transport=httpx.MockTransport(lambda r: httpx.Response(500)))
    adapter = ViessmannAdapter(vault.instance(), clock, http=http)
    with pytest.raises(CredentialsInvalid, match=r"vicare-client-id not found"):
        adapter.capabilities(DEVICE)
    http.close()


def test_an_account_never_onboarded_is_invalid_credentials(tmp_path: Path) -> None:
    clock = SimulatedClock(datetime(2025, 1, 1, tzinfo=UTC))
    vault = Vault.create(tmp_path, clock, {client_id_secret_name(): CLIENT_ID})
    http = httpx.Client(transport=httpx.MockTransport(lambda r: httpx.Response(500)))
    adapter = ViessmannAdapter(vault.instance(), clock, http=http)
    with pytest.raises(CredentialsInvalid, match=r"viessmann account acct-1 has no stored"):
        adapter.capabilities(DEVICE)
    http.close()


# -- errors -------------------------------------------------------------------------------------


def recorded(name: str) -> httpx.Response:
    body = error_body(name)
    return httpx.Response(body["statusCode"], json=body)


def html_502() -> httpx.Response:
    """Built: the non-JSON gateway page PyViCare guards against."""
    return httpx.Response(
        502,
        headers={"Content-Type": "text/html"},
        text="<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>",
    )


ERROR_CASES = [
    pytest.param(
        recorded("rate_limit.json"),
        OemRateLimited,
        r"rate limit ViCare day limit exceeded \(HTTP 429\)",
        id="rate-limit-429",
    ),
    pytest.param(
        recorded("device_offline.json"), DeviceOffline, r"DEVICE_OFFLINE", id="device-offline"
    ),
    pytest.param(
        recorded("gateway_offline.json"), DeviceOffline, r"GATEWAY_OFFLINE", id="gateway-offline"
    ),
    pytest.param(
        recorded("error_500.json"), OemUnavailable, r"HTTP 500 INTERNAL_ERROR", id="error-500"
    ),
    pytest.param(
        recorded("error_502.json"),
        OemUnavailable,
        r"HTTP 502 DEVICE_COMMUNICATION_ERROR reason INTERNAL_SERVER_ERROR",
        id="error-502-not-delivered",
    ),
    pytest.param(html_502(), OemUnavailable, r"HTTP 502 with a non-JSON body", id="html-502"),
    pytest.param(
        httpx.Response(200, text="<html>maintenance</html>"),
        OemUnavailable,
        r"HTTP 200 with a non-JSON body",
        id="html-200",
    ),
    pytest.param(
        httpx.ConnectTimeout("timed out"),
        OemUnavailable,
        r"timed out \(ConnectTimeout\)",
        id="timeout",
    ),
    pytest.param(
        httpx.ConnectError("refused"),
        OemUnavailable,
        r"connection failed \(ConnectError\)",
        id="connect-error",
    ),
    pytest.param(
        # built: validation error shape per ignazhabibi/vi_api_client (unconfirmed)
        httpx.Response(
            422,
            json={
                "statusCode": 422,
                "errorType": "VALIDATION_ERROR",
                "message": "Validation failed",
                "validationErrors": [{"path": "targetTemperature", "message": "must be <= 37"}],
            },
        ),
        CommandRejected,
        r"HTTP 422 VALIDATION_ERROR.*targetTemperature must be <= 37",
        id="validation-422",
    ),
    pytest.param(
        # built: errorType from reference §1.5; its HTTP status is unconfirmed
        httpx.Response(
            403,
            json={
                "statusCode": 403,
                "errorType": "PACKAGE_NOT_PAID_FOR",
                "message": "",
                "extendedPayload": {"monetization": "User does not have access to given feature."},
            },
        ),
        CommandRejected,
        r"plan lacks this feature",
        id="package-not-paid-for",
    ),
    pytest.param(
        httpx.Response(
            200, json={"data": {"success": False, "reason": "COMMAND_FAILED", "message": "x"}}
        ),
        CommandRejected,
        r"success=false, reason COMMAND_FAILED",
        id="success-false",
    ),
]


@pytest.mark.parametrize(("answer", "error", "message"), ERROR_CASES)
def test_a_failed_command_raises_the_protocol_error(
    answer: httpx.Response | Exception,
    error: type[HpsteerError],
    message: str,
    make_rig: Callable[[dict[str, Any]], Rig],
) -> None:
    rig = make_rig(load("Vitocal250A"))
    payload = rig.adapter.translate_generic_command(GenericAction.BOOST_DHW, DEVICE)
    rig.fake.scripted.append(answer)

    with pytest.raises(error, match=message) as raised:
        rig.adapter.send_command(GenericAction.BOOST_DHW, payload, DEVICE)
    assert raised.value.__cause__ is None
    assert raised.value.__suppress_context__ is True or raised.value.__context__ is None


def test_a_rate_limit_names_the_reset_from_the_recorded_body_as_retry_at(
    make_rig: Callable[[dict[str, Any]], Rig],
) -> None:
    rig = make_rig(load("Vitocal250A"))
    body = error_body("rate_limit.json")
    rig.fake.scripted.append(recorded("rate_limit.json"))

    with pytest.raises(OemRateLimited) as raised:
        rig.adapter.get_device_state(DEVICE)
    reset_ms = body["extendedPayload"]["limitReset"]
    assert raised.value.retry_at == datetime.fromtimestamp(reset_ms / 1000, tz=UTC)
    assert raised.value.retry_at == datetime(2020, 3, 17, 16, 20, 10, 106000, tzinfo=UTC)


@pytest.mark.parametrize(
    ("answer", "error"),
    [
        pytest.param(recorded("error_500.json"), OemUnavailable, id="error-500"),
        pytest.param(html_502(), OemUnavailable, id="html-502"),
        pytest.param(
            httpx.Response(404, json={"statusCode": 404, "errorType": "NOT_FOUND"}),
            UnknownDevice,
            id="unknown-device",
        ),
        pytest.param(httpx.ReadTimeout("slow"), OemUnavailable, id="read-timeout"),
    ],
)
def test_a_failed_read_raises_the_protocol_error(
    answer: httpx.Response | Exception,
    error: type[HpsteerError],
    make_rig: Callable[[dict[str, Any]], Rig],
) -> None:
    rig = make_rig(load("Vitocal250A"))
    rig.fake.scripted.append(answer)
    with pytest.raises(error):
        rig.adapter.get_device_state(DEVICE)


def test_a_malformed_external_id_is_an_unknown_device(
    make_rig: Callable[[dict[str, Any]], Rig],
) -> None:
    rig = make_rig(load("Vitocal250A"))
    with pytest.raises(UnknownDevice, match=r"not installation/gateway/device"):
        rig.adapter.capabilities(DeviceRef("viessmann", "1234567/0", ACCOUNT))


# -- secrets never leak -------------------------------------------------------------------------


def test_no_credential_appears_in_any_log_record_error_or_repr(
    make_rig: Callable[[dict[str, Any]], Rig], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    rig = make_rig(load("Vitocal300G_CU401B"))
    shown: list[str] = [repr(rig.adapter), str(rig.adapter), repr(rig.vault.secrets)]
    shown += [repr(client) for client in rig.adapter._clients.values()]

    def attempt(call: Callable[[], object]) -> None:
        try:
            shown.append(repr(call()))
        except HpsteerError as err:
            shown.extend([str(err), repr(err), repr(err.__cause__), repr(err.__context__)])

    failures: list[httpx.Response | Exception] = [
        recorded("rate_limit.json"),
        recorded("device_offline.json"),
        recorded("error_502.json"),
        html_502(),
        httpx.ConnectTimeout("timed out"),
        httpx.Response(401, json=EXPIRED_TOKEN),
        httpx.Response(401, json=EXPIRED_TOKEN),
    ]
    for action in GenericAction:
        attempt(lambda: rig.adapter.discover(ACCOUNT))
        attempt(lambda: rig.adapter.capabilities(DEVICE))
        payload = rig.adapter.translate_generic_command(action, DEVICE)
        shown.append(repr(payload))
        attempt(lambda: rig.adapter.validate_command(action, payload, DEVICE))  # noqa: B023  # called at once
        attempt(lambda: rig.adapter.send_command(action, payload, DEVICE))  # noqa: B023  # called at once
        attempt(lambda: rig.adapter.get_device_state(DEVICE))
        rig.clock.advance(timedelta(hours=1))  # forces refreshes that rotate the refresh token
    for failure in failures:
        rig.fake.scripted.append(failure)
        attempt(lambda: rig.adapter.get_device_state(DEVICE))
    rig.fake.token_answers.append(httpx.Response(400, json={"error": "invalid_grant"}))
    rig.clock.advance(timedelta(hours=1))
    attempt(lambda: rig.adapter.get_device_state(DEVICE))
    shown += [repr(client) for client in rig.adapter._clients.values()]
    shown += [
        repr(rig.vault.instance().require("viessmann", ACCOUNT)),
        repr(rig.adapter._credentials),
    ]

    assert len(rig.fake.token_requests()) >= 4  # the cycle really refreshed and rotated
    assert any("Authorization" in r.headers for r in rig.fake.api_requests())
    records = [record.getMessage() for record in caplog.records]
    records += [json.dumps(record.__dict__, default=str) for record in caplog.records]
    assert records, "the adapter logs at DEBUG"
    stored = rig.vault.stored_text()
    key = rig.vault.key_bytes().decode()
    for secret in (CLIENT_ID, REFRESH_TOKEN, ACCESS_TOKEN, key):
        assert not [line for line in records if secret in line]
        assert not [text for text in shown if secret in text]
        assert secret not in stored
