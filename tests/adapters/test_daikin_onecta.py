"""The Daikin Onecta adapter, against the recorded ``GET /v1/gateway-devices`` bodies of four
Altherma heat pumps and one offline unit, served through httpx.MockTransport.

Bodies built here rather than recorded (each says so): token-endpoint answers, the 401, the
single-device GET (the recorded list's element, as the client assumes), the PATCH's 204, rate-limit
headers, the ``READ_ONLY_CHARACTERISTIC`` body quoted in reference/manufacturer-apis.md §3.5, an
HTML gateway page.
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
from hpsteer.adapters.daikin_onecta import (
    DaikinOnectaAdapter,
    client_id_secret_name,
    client_secret_secret_name,
)
from hpsteer.adapters.protocol import AdapterContext, DeviceRef, ManufacturerAdapter, RateWindow
from hpsteer.adapters.registry import default_registry
from hpsteer.backends.local.secrets import FileSecretStore
from hpsteer.backends.local.store import LocalDocumentStore
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

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "oem" / "daikin_onecta"
API = "https://api.onecta.daikineurope.com"
TOKEN_URL = "https://idp.onecta.daikineurope.com/v1/oidc/token"
ACCOUNT = "acct-1"
NOW = datetime(2025, 1, 15, 12, 0, tzinfo=UTC)

CLIENT_ID = "fake-client-id-3c7d21"
CLIENT_SECRET = "fake-client-secret-9e04ab"
REFRESH_TOKEN = "fake-refresh-token-55aa10"
ACCESS_TOKEN = "fake-access-token-c0ffee"

# recorded unit → (setpoint that carries set_mode_*, lever name) in operation mode heating
STEERED: dict[str, tuple[str, str]] = {
    "altherma3m": ("leavingWaterOffset", "leaving_water_offset"),
    "altherma_boost": ("roomTemperature", "room_temperature"),
    "altherma_schedule": ("roomTemperature", "room_temperature"),
}
ALL_ALTHERMAS = ["altherma", *sorted(STEERED)]
MODES = [GenericAction.SET_MODE_MIN, GenericAction.SET_MODE_MID, GenericAction.SET_MODE_MAX]


def load(name: str) -> list[dict[str, Any]]:
    document: list[dict[str, Any]] = json.loads((FIXTURES / f"{name}.json").read_bytes())
    return document


def point(unit: dict[str, Any], embedded_id: str) -> dict[str, Any]:
    found: dict[str, Any] = next(
        p for p in unit["managementPoints"] if p["embeddedId"] == embedded_id
    )
    return found


def heating_setpoint(unit: dict[str, Any], setpoint: str) -> dict[str, Any]:
    control = point(unit, "climateControlMainZone")["temperatureControl"]["value"]
    found: dict[str, Any] = control["operationModes"]["heating"]["setpoints"][setpoint]
    return found


def ref(unit: dict[str, Any]) -> DeviceRef:
    return DeviceRef("daikin_onecta", unit["id"], ACCOUNT, device_id="hp-1")


@dataclass
class FakeOnecta:
    """Onecta's API and token endpoint for one account, recording every request."""

    units: list[dict[str, Any]]
    requests: list[httpx.Request] = field(default_factory=list)
    scripted: list[httpx.Response | Exception] = field(default_factory=list)
    token_answers: list[httpx.Response] = field(default_factory=list)
    issued: int = 0
    valid_tokens: set[str] = field(default_factory=set)
    refresh_tokens_seen: list[str] = field(default_factory=list)
    before_token: list[Callable[[], None]] = field(default_factory=list)

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
            return httpx.Response(401, json={"message": "Unauthorized"})  # built
        path = request.url.path
        if request.method == "GET" and path == "/v1/gateway-devices":
            return httpx.Response(200, json=self.units)
        if request.method == "GET" and path.startswith("/v1/gateway-devices/"):
            wanted = path.rsplit("/", 1)[1]
            for unit in self.units:
                if unit["id"] == wanted:
                    return httpx.Response(200, json=unit)
        if request.method == "PATCH" and "/characteristics/" in path:
            return httpx.Response(204)
        return httpx.Response(404, json={"code": "NOT_FOUND", "message": "not found"})

    def _token(self, request: httpx.Request) -> httpx.Response:
        form = {k: v[0] for k, v in parse_qs(request.content.decode()).items()}
        assert form["grant_type"] == "refresh_token"
        assert form["client_id"] == CLIENT_ID
        assert form["client_secret"] == CLIENT_SECRET
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

    def patches(self) -> list[tuple[str, dict[str, Any]]]:
        return [
            (r.url.path, json.loads(r.content)) for r in self.api_requests() if r.method == "PATCH"
        ]


@dataclass
class Rig:
    fake: FakeOnecta
    adapter: DaikinOnectaAdapter
    vault: Vault
    clock: SimulatedClock

    def stored_refresh_token(self) -> str | None:
        """What another instance reads from the account's credentials document."""
        return self.vault.instance().require("daikin_onecta", ACCOUNT).refresh_token

    def generation(self) -> int:
        return self.vault.instance().require("daikin_onecta", ACCOUNT).generation


APP = {client_id_secret_name(): CLIENT_ID, client_secret_secret_name(): CLIENT_SECRET}
"""hpsteer's confidential Onecta client, as secrets."""


def onecta_vault(directory: Path, clock: SimulatedClock) -> Vault:
    """The app's secrets and the data key; the account onboarded with its refresh token."""
    vault = Vault.create(directory, clock, APP)
    vault.instance().onboard("daikin_onecta", ACCOUNT, refresh_token=REFRESH_TOKEN)
    return vault


@pytest.fixture
def make_rig(tmp_path: Path) -> Iterator[Callable[[list[dict[str, Any]]], Rig]]:
    clients: list[httpx.Client] = []

    def make(units: list[dict[str, Any]]) -> Rig:
        clock = SimulatedClock(NOW)
        vault = onecta_vault(tmp_path / f"vault-{len(clients)}", clock)
        fake = FakeOnecta(units)
        http = httpx.Client(transport=httpx.MockTransport(fake))
        clients.append(http)
        return Rig(fake, DaikinOnectaAdapter(vault.instance(), clock, http=http), vault, clock)

    yield make
    for client in clients:
        client.close()


@pytest.fixture(params=sorted(STEERED))
def steered(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


@pytest.fixture(params=ALL_ALTHERMAS)
def altherma(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


def expected_target(unit: dict[str, Any], setpoint: str, mode: Mode) -> float:
    spec = heating_setpoint(unit, setpoint)
    wanted = spec["value"] + mode.setpoint_offset_k
    return float(min(spec["maxValue"], max(spec["minValue"], wanted)))


# -- the protocol and its constants -----------------------------------------------------------


def test_the_adapter_implements_the_manufacturer_protocol_with_onecta_limits(
    make_rig: Callable[[list[dict[str, Any]]], Rig],
) -> None:
    adapter = make_rig(load("altherma_boost")).adapter
    assert isinstance(adapter, ManufacturerAdapter)
    assert adapter.name == "daikin_onecta"
    assert adapter.rate_limits.windows == (
        RateWindow(20, timedelta(minutes=1)),
        RateWindow(200, timedelta(hours=24)),
    )
    assert adapter.rate_limits.read_share == 0.3


def test_the_registry_builds_the_adapter_from_its_import_path(tmp_path: Path) -> None:
    context = AdapterContext(
        secrets=FileSecretStore(tmp_path),
        clock=SimulatedClock(NOW),
        transport=None,
        store=LocalDocumentStore(),
    )
    adapter = default_registry().build("daikin_onecta", context)
    assert isinstance(adapter, DaikinOnectaAdapter)
    assert adapter._http is not None
    adapter._http.close()


def test_the_factory_uses_the_context_transport_base_url_and_credentials(tmp_path: Path) -> None:
    vault = onecta_vault(tmp_path, SimulatedClock(NOW))
    unit = load("altherma_boost")[0]
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        if request.url.path == "/v1/oidc/token":
            return httpx.Response(200, json={"access_token": "a", "expires_in": 3600})
        return httpx.Response(200, json=unit)

    context = AdapterContext(
        secrets=vault.secrets,
        clock=SimulatedClock(NOW),
        base_urls={"daikin_onecta": "http://fleet.test"},
        transport=httpx.MockTransport(handler),
        store=vault.store,
    )
    DaikinOnectaAdapter.factory(context).capabilities(ref(unit))
    assert seen == [
        "http://fleet.test/v1/oidc/token",
        f"http://fleet.test/v1/gateway-devices/{unit['id']}",
    ]


def test_discovery_keeps_the_heat_pump_and_leaves_out_the_air_conditioners(
    make_rig: Callable[[list[dict[str, Any]]], Rig],
) -> None:
    units = load("altherma")
    assert [u["deviceModel"] for u in units] == ["Altherma", "dx4", "dx4", "dx4", "dx4"]
    rig = make_rig(units)
    assert rig.adapter.discover(ACCOUNT) == (DeviceRef("daikin_onecta", units[0]["id"], ACCOUNT),)
    (request,) = rig.fake.api_requests()
    assert request.url.path == "/v1/gateway-devices"


# -- per recorded unit: capabilities, payloads, requests -----------------------------------------


def test_capabilities_come_from_the_settable_characteristics(
    steered: str, make_rig: Callable[[list[dict[str, Any]]], Rig]
) -> None:
    unit = load(steered)[0]
    setpoint, _ = STEERED[steered]
    spec = heating_setpoint(unit, setpoint)

    capabilities = make_rig([unit]).adapter.capabilities(ref(unit))

    assert capabilities.actions == frozenset(GenericAction)
    assert capabilities.setpoint_offset_range_k == (
        spec["minValue"] - spec["value"],
        spec["maxValue"] - spec["value"],
    )
    assert (
        f"climateControlMainZone/temperatureControl /operationModes/heating/setpoints/{setpoint}"
        in capabilities.notes
    )
    assert "boost_dhw via domesticHotWaterTank/powerfulMode" in capabilities.notes
    assert capabilities.model == "Daikin Altherma"


@pytest.mark.parametrize("action", MODES, ids=lambda a: a.value)
def test_each_mode_patches_the_setpoint_to_its_baseline_plus_the_mode_offset(
    steered: str, action: GenericAction, make_rig: Callable[[list[dict[str, Any]]], Rig]
) -> None:
    unit = load(steered)[0]
    setpoint, lever = STEERED[steered]
    baseline = heating_setpoint(unit, setpoint)["value"]
    rig = make_rig([unit])
    assert action.mode is not None
    target = expected_target(unit, setpoint, action.mode)
    path = f"/operationModes/heating/setpoints/{setpoint}"

    payload = rig.adapter.translate_generic_command(action, ref(unit))
    assert payload == {
        "action": action.value,
        "embedded_id": "climateControlMainZone",
        "characteristic": "temperatureControl",
        "body": {"value": target, "path": path},
        "operation_mode": "heating",
        "lever": lever,
        "offset_k": action.mode.setpoint_offset_k,
        "baseline": baseline,
        "found_mode": "mid",  # the household's own setting: the baseline, learnt just now
    }
    assert rig.adapter.validate_command(action, payload, ref(unit)).valid
    result = rig.adapter.send_command(action, payload, ref(unit))

    assert rig.fake.patches() == [
        (
            f"/v1/gateway-devices/{unit['id']}/management-points/climateControlMainZone"
            "/characteristics/temperatureControl",
            {"value": target, "path": path},
        )
    ]
    assert result.accepted_at == rig.clock.now()
    assert result.response == {
        "status": 204,
        "embedded_id": "climateControlMainZone",
        "characteristic": "temperatureControl",
        "path": path,
    }
    assert len([r for r in rig.fake.api_requests() if r.method == "GET"]) == 1  # cached unit


def test_a_target_outside_the_range_is_clamped_to_what_the_unit_accepts(
    make_rig: Callable[[list[dict[str, Any]]], Rig],
) -> None:
    unit = load("altherma_boost")[0]
    spec = heating_setpoint(unit, "roomTemperature")
    assert (spec["value"], spec["minValue"]) == (19, 18)  # the household sits 1 K above the floor
    rig = make_rig([unit])

    payload = rig.adapter.translate_generic_command(GenericAction.SET_MODE_MIN, ref(unit))
    assert payload["body"]["value"] == 18
    assert rig.adapter.capabilities(ref(unit)).setpoint_offset_range_k == (-1, 4)


def test_a_unit_that_is_cooling_is_not_steered_but_can_boost_hot_water(
    make_rig: Callable[[list[dict[str, Any]]], Rig],
) -> None:
    unit = load("altherma")[0]
    assert point(unit, "climateControlMainZone")["operationMode"]["value"] == "cooling"
    rig = make_rig([unit])

    capabilities = rig.adapter.capabilities(ref(unit))
    assert capabilities.actions == frozenset({GenericAction.BOOST_DHW})
    assert "operation mode cooling is not steered" in capabilities.notes
    with pytest.raises(CommandRejected, match=r"operation mode cooling is not steered"):
        rig.adapter.translate_generic_command(GenericAction.SET_MODE_MAX, ref(unit))


def test_the_same_unit_heating_steers_its_room_setpoint(
    make_rig: Callable[[list[dict[str, Any]]], Rig],
) -> None:
    unit = copy.deepcopy(load("altherma")[0])  # mutated: operationMode cooling → heating
    point(unit, "climateControlMainZone")["operationMode"]["value"] = "heating"
    rig = make_rig([unit])

    payload = rig.adapter.translate_generic_command(GenericAction.SET_MODE_MAX, ref(unit))
    assert payload["body"] == {
        "value": 20,
        "path": "/operationModes/heating/setpoints/roomTemperature",
    }
    assert payload["baseline"] == 18


def test_a_weather_dependent_unit_without_room_control_uses_the_leaving_water_offset(
    make_rig: Callable[[list[dict[str, Any]]], Rig],
) -> None:
    unit = load("altherma3m")[0]
    climate = point(unit, "climateControlMainZone")
    assert climate["controlMode"]["value"] == "leavingWaterTemperature"
    assert climate["setpointMode"]["value"] == "weatherDependent"
    rig = make_rig([unit])
    payload = rig.adapter.translate_generic_command(GenericAction.SET_MODE_MIN, ref(unit))
    assert payload["body"] == {
        "value": -2,
        "path": "/operationModes/heating/setpoints/leavingWaterOffset",
    }


def test_a_fixed_leaving_water_unit_offers_no_mode(
    make_rig: Callable[[list[dict[str, Any]]], Rig],
) -> None:
    unit = copy.deepcopy(load("altherma3m")[0])  # mutated: setpointMode → fixed
    point(unit, "climateControlMainZone")["setpointMode"]["value"] = "fixed"
    rig = make_rig([unit])
    assert rig.adapter.capabilities(ref(unit)).actions == frozenset({GenericAction.BOOST_DHW})
    with pytest.raises(CommandRejected, match=r"no settable setpoint for controlMode"):
        rig.adapter.translate_generic_command(GenericAction.SET_MODE_MID, ref(unit))


def test_boost_dhw_switches_the_tank_powerful_mode_on(
    altherma: str, make_rig: Callable[[list[dict[str, Any]]], Rig]
) -> None:
    unit = load(altherma)[0]
    assert point(unit, "domesticHotWaterTank")["powerfulMode"]["settable"] is True
    rig = make_rig([unit])

    payload = rig.adapter.translate_generic_command(GenericAction.BOOST_DHW, ref(unit))
    assert payload == {
        "action": "boost_dhw",
        "embedded_id": "domesticHotWaterTank",
        "characteristic": "powerfulMode",
        "body": {"value": "on"},
    }
    assert rig.adapter.validate_command(GenericAction.BOOST_DHW, payload, ref(unit)).valid
    rig.adapter.send_command(GenericAction.BOOST_DHW, payload, ref(unit))
    assert rig.fake.patches() == [
        (
            f"/v1/gateway-devices/{unit['id']}/management-points/domesticHotWaterTank"
            "/characteristics/powerfulMode",
            {"value": "on"},
        )
    ]


def test_no_payload_key_contains_a_dot(
    steered: str, make_rig: Callable[[list[dict[str, Any]]], Rig]
) -> None:
    unit = load(steered)[0]
    rig = make_rig([unit])

    def keys(value: Any) -> Iterator[str]:
        if isinstance(value, dict):
            for key, inner in value.items():
                yield key
                yield from keys(inner)

    for action in GenericAction:
        payload = rig.adapter.translate_generic_command(action, ref(unit))
        assert not [key for key in keys(payload) if "." in key]


# -- validation ---------------------------------------------------------------------------------


def _with_body(payload: dict[str, Any], **body: Any) -> dict[str, Any]:
    return {**payload, "body": {**payload["body"], **body}}


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        pytest.param(lambda p: _with_body(p, value=23.5), "above the maximum 23", id="above-max"),
        pytest.param(lambda p: _with_body(p, value=17.5), "below the minimum 18", id="below-min"),
        pytest.param(lambda p: _with_body(p, value=20.2), "not on the step 0.5", id="off-step"),
        pytest.param(lambda p: _with_body(p, value="warm"), "finite number", id="not-a-number"),
        pytest.param(lambda p: _with_body(p, value=float("nan")), "finite number", id="nan"),
        pytest.param(
            lambda p: _with_body(p, path="/operationModes/cooling/setpoints/roomTemperature"),
            "does not carry",
            id="cooling-path",
        ),
        pytest.param(
            lambda p: _with_body(p, path="/operationModes/heating/setpoints/bogus"),
            "does not carry",
            id="unknown-setpoint",
        ),
        pytest.param(
            lambda p: {**p, "characteristic": "onOffMode"}, "does not carry", id="wrong-char"
        ),
        pytest.param(
            lambda p: {**p, "embedded_id": "domesticHotWaterTank"},
            "domesticHotWaterTank/temperatureControl "
            "/operationModes/heating/setpoints/roomTemperature does not carry",
            id="wrong-point",
        ),
        pytest.param(
            lambda p: {**p, "embedded_id": "nowhere"}, "no management point nowhere", id="no-point"
        ),
        pytest.param(lambda p: _with_body(p, extra=1), "unknown keys", id="unknown-key"),
        pytest.param(lambda p: {**p, "body": {}}, "mapping with a value", id="no-value"),
        pytest.param(lambda p: {"body": p["body"]}, "lacks embedded_id", id="no-point-name"),
    ],
)
def test_validation_refuses_what_the_unit_would_refuse(
    change: Callable[[dict[str, Any]], dict[str, Any]],
    reason: str,
    make_rig: Callable[[list[dict[str, Any]]], Rig],
) -> None:
    unit = load("altherma_schedule")[0]
    rig = make_rig([unit])
    payload = rig.adapter.translate_generic_command(GenericAction.SET_MODE_MAX, ref(unit))

    verdict = rig.adapter.validate_command(GenericAction.SET_MODE_MAX, change(payload), ref(unit))
    assert not verdict.valid
    assert verdict.reason is not None
    assert reason in verdict.reason


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        pytest.param(lambda b: {"value": "off"}, "sets 'on', not 'off'", id="off"),
        pytest.param(lambda b: {"value": "max"}, "is not one of", id="not-a-value"),
        pytest.param(lambda b: {"value": True}, "must be a string", id="not-a-string"),
    ],
)
def test_validation_refuses_a_boost_that_is_not_powerful_mode_on(
    change: Callable[[dict[str, Any]], dict[str, Any]],
    reason: str,
    make_rig: Callable[[list[dict[str, Any]]], Rig],
) -> None:
    unit = load("altherma_schedule")[0]
    rig = make_rig([unit])
    payload = rig.adapter.translate_generic_command(GenericAction.BOOST_DHW, ref(unit))
    changed = {**payload, "body": change(payload["body"])}
    verdict = rig.adapter.validate_command(GenericAction.BOOST_DHW, changed, ref(unit))
    assert not verdict.valid
    assert verdict.reason is not None
    assert reason in verdict.reason


def test_validation_refuses_a_setpoint_the_unit_marks_not_settable(
    make_rig: Callable[[list[dict[str, Any]]], Rig],
) -> None:
    unit = copy.deepcopy(load("altherma_schedule")[0])
    rig = make_rig([unit])
    payload = rig.adapter.translate_generic_command(GenericAction.SET_MODE_MAX, ref(unit))
    heating_setpoint(unit, "roomTemperature")["settable"] = False  # mutated
    rig.clock.advance(timedelta(minutes=6))  # past the unit cache

    verdict = rig.adapter.validate_command(GenericAction.SET_MODE_MAX, payload, ref(unit))
    assert not verdict.valid
    assert verdict.reason == (
        "climateControlMainZone/temperatureControl "
        "/operationModes/heating/setpoints/roomTemperature is not settable"
    )


# -- state and baseline -------------------------------------------------------------------------


def test_state_maps_the_recorded_readings(
    altherma: str, make_rig: Callable[[list[dict[str, Any]]], Rig]
) -> None:
    unit = load(altherma)[0]
    rig = make_rig([unit])
    climate = point(unit, "climateControlMainZone")
    sensed = climate["sensoryData"]["value"]
    operation_mode = climate["operationMode"]["value"]
    setpoints = climate["temperatureControl"]["value"]["operationModes"][operation_mode][
        "setpoints"
    ]

    state = rig.adapter.get_device_state(ref(unit))

    assert state.online is True
    assert state.observed_at == NOW
    assert state.outdoor_temp_c == sensed["outdoorTemperature"]["value"]
    assert state.supply_temp_c == sensed["leavingWaterTemperature"]["value"]
    assert state.indoor_temp_c == (
        sensed["roomTemperature"]["value"] if "roomTemperature" in sensed else None
    )
    tank = point(unit, "domesticHotWaterTank")["sensoryData"]["value"]["tankTemperature"]
    assert state.dhw_temp_c == tank["value"]
    assert state.room_setpoint_c == (
        setpoints["roomTemperature"]["value"] if "roomTemperature" in setpoints else None
    )
    assert state.setpoint_offset_k is None  # not steered yet: no baseline known
    assert state.mode is None
    assert state.power_kw is None


def test_state_reads_the_altherma3m_literally(
    make_rig: Callable[[list[dict[str, Any]]], Rig],
) -> None:
    unit = load("altherma3m")[0]
    state = make_rig([unit]).adapter.get_device_state(ref(unit))
    assert (state.outdoor_temp_c, state.supply_temp_c, state.dhw_temp_c) == (10, 25, 46)
    assert state.indoor_temp_c is None  # leaving-water controlled: no room sensor
    assert state.room_setpoint_c is None


def test_state_reports_the_mode_relative_to_the_stored_baseline(
    steered: str, make_rig: Callable[[list[dict[str, Any]]], Rig]
) -> None:
    unit = copy.deepcopy(load(steered)[0])
    setpoint, _ = STEERED[steered]
    rig = make_rig([unit])
    spec = heating_setpoint(unit, setpoint)
    baseline = spec["value"]
    payload = rig.adapter.translate_generic_command(GenericAction.SET_MODE_MAX, ref(unit))
    rig.adapter.send_command(GenericAction.SET_MODE_MAX, payload, ref(unit))
    spec["value"] = payload["body"]["value"]  # the unit applied it

    state = rig.adapter.get_device_state(ref(unit))
    assert state.mode is Mode.MAX
    assert state.setpoint_offset_k == 2.0

    # The next command is relative to the stored baseline, not to the steered value.
    payload = rig.adapter.translate_generic_command(GenericAction.SET_MODE_MID, ref(unit))
    assert payload["body"]["value"] == baseline

    rig.adapter.forget_baseline(ref(unit))
    rig.clock.advance(timedelta(minutes=6))
    payload = rig.adapter.translate_generic_command(GenericAction.SET_MODE_MID, ref(unit))
    assert payload["body"]["value"] == baseline + 2


def test_an_offline_unit_reads_as_offline_state(
    make_rig: Callable[[list[dict[str, Any]]], Rig],
) -> None:
    unit = load("offlinedevice")[0]
    assert unit["isCloudConnectionUp"]["value"] is False
    state = make_rig([unit]).adapter.get_device_state(ref(unit))
    assert state.online is False
    assert state.outdoor_temp_c is None


@pytest.mark.parametrize("action", list(GenericAction), ids=lambda a: a.value)
def test_a_command_to_an_offline_unit_is_a_device_fault(
    action: GenericAction, make_rig: Callable[[list[dict[str, Any]]], Rig]
) -> None:
    unit = copy.deepcopy(load("altherma_schedule")[0])
    rig = make_rig([unit])
    payload = rig.adapter.translate_generic_command(action, ref(unit))
    unit["isCloudConnectionUp"]["value"] = False  # mutated: the unit drops off the cloud
    rig.clock.advance(timedelta(minutes=6))

    with pytest.raises(DeviceOffline, match=r"cloud connection is down"):
        rig.adapter.send_command(action, payload, ref(unit))
    with pytest.raises(DeviceOffline):
        rig.adapter.translate_generic_command(action, ref(unit))
    assert rig.fake.patches() == []
    assert rig.adapter.get_device_state(ref(unit)).online is False


def test_a_named_climate_point_is_steered_when_the_external_id_names_it(
    make_rig: Callable[[list[dict[str, Any]]], Rig],
) -> None:
    unit = load("altherma_schedule")[0]
    rig = make_rig([unit])
    named = DeviceRef("daikin_onecta", f"{unit['id']}/climateControlMainZone", ACCOUNT)
    payload = rig.adapter.translate_generic_command(GenericAction.SET_MODE_MAX, named)
    assert payload["embedded_id"] == "climateControlMainZone"
    with pytest.raises(CommandRejected, match=r"no climateControl point domesticHotWaterTank"):
        rig.adapter.translate_generic_command(
            GenericAction.SET_MODE_MAX,
            DeviceRef("daikin_onecta", f"{unit['id']}/domesticHotWaterTank", ACCOUNT),
        )


@pytest.mark.parametrize("external_id", ["", "a/b/c", "a//", "/b"])
def test_a_malformed_external_id_is_an_unknown_device(
    external_id: str, make_rig: Callable[[list[dict[str, Any]]], Rig]
) -> None:
    rig = make_rig(load("altherma_schedule"))
    with pytest.raises(UnknownDevice, match=r"not gateway-device-id\[/embeddedId\]"):
        rig.adapter.capabilities(DeviceRef("daikin_onecta", external_id, ACCOUNT))


# -- tokens -------------------------------------------------------------------------------------


def test_a_refresh_stores_the_rotated_refresh_token_and_uses_it_next_time(
    make_rig: Callable[[list[dict[str, Any]]], Rig],
) -> None:
    unit = load("altherma_boost")[0]
    rig = make_rig([unit])
    rig.adapter.get_device_state(ref(unit))
    rig.adapter.get_device_state(ref(unit))
    assert len(rig.fake.token_requests()) == 1  # the access token is kept until near expiry
    assert rig.stored_refresh_token() == f"{REFRESH_TOKEN}-r1"

    rig.clock.advance(timedelta(seconds=3600 - 30))  # inside the 60 s margin
    rig.adapter.get_device_state(ref(unit))
    assert rig.fake.refresh_tokens_seen == [REFRESH_TOKEN, f"{REFRESH_TOKEN}-r1"]
    assert rig.stored_refresh_token() == f"{REFRESH_TOKEN}-r2"
    assert rig.generation() == 3


def test_the_app_credentials_and_the_data_key_are_read_once_per_instance(
    make_rig: Callable[[list[dict[str, Any]]], Rig],
) -> None:
    unit = load("altherma_boost")[0]
    rig = make_rig([unit])
    rig.vault.reads.clear()  # onboarding's own reads
    for _ in range(3):
        rig.adapter.get_device_state(ref(unit))
        rig.clock.advance(timedelta(hours=1))  # every read refreshes and rotates
    assert len(rig.fake.token_requests()) == 3
    read_once = [KEY_SECRET, client_id_secret_name(), client_secret_secret_name()]
    assert sorted(rig.vault.reads) == sorted(f"{name}/latest" for name in read_once)


def test_an_expired_access_token_is_refreshed_and_the_request_retried_once(
    make_rig: Callable[[list[dict[str, Any]]], Rig],
) -> None:
    unit = load("altherma_boost")[0]
    rig = make_rig([unit])
    rig.adapter.get_device_state(ref(unit))
    rig.fake.valid_tokens.clear()  # Daikin revoked it early

    assert rig.adapter.get_device_state(ref(unit)).online is True
    assert len(rig.fake.token_requests()) == 2
    assert [r.method for r in rig.fake.api_requests()] == ["GET", "GET", "GET"]


def test_a_second_401_after_refreshing_means_invalid_credentials(
    make_rig: Callable[[list[dict[str, Any]]], Rig],
) -> None:
    unit = load("altherma_boost")[0]
    rig = make_rig([unit])
    rig.fake.scripted += [httpx.Response(401)] * 2

    with pytest.raises(CredentialsInvalid, match=r"HTTP 401 after a token refresh"):
        rig.adapter.get_device_state(ref(unit))
    assert len(rig.fake.api_requests()) == 2


def test_a_revoked_refresh_token_means_invalid_credentials(
    make_rig: Callable[[list[dict[str, Any]]], Rig],
) -> None:
    unit = load("altherma_boost")[0]
    rig = make_rig([unit])
    # Built: the refusal quoted in reference §3.1 (jwillemsen/daikin_onecta issue 41).
    rig.fake.token_answers.append(
        httpx.Response(
            400,
            json={
                "error": "invalid_grant",
                "error_description": "The provided authorization code or refresh token is revoked.",
            },
        )
    )
    with pytest.raises(CredentialsInvalid, match=r"refused the refresh .* HTTP 400 invalid_grant"):
        rig.adapter.capabilities(ref(unit))


def test_a_refused_refresh_is_retried_with_a_refresh_token_another_instance_stored(
    make_rig: Callable[[list[dict[str, Any]]], Rig],
) -> None:
    unit = load("altherma_boost")[0]
    rig = make_rig([unit])
    elsewhere = rig.vault.instance()
    read_by_elsewhere = elsewhere.require("daikin_onecta", ACCOUNT)

    def rotate_elsewhere() -> None:
        assert elsewhere.store_refresh_token(read_by_elsewhere, "elsewhere") is not None

    rig.fake.before_token.append(rotate_elsewhere)
    rig.fake.token_answers.append(httpx.Response(400, json={"error": "invalid_grant"}))

    rig.adapter.capabilities(ref(unit))
    assert rig.fake.refresh_tokens_seen == [REFRESH_TOKEN, "elsewhere"]
    assert rig.stored_refresh_token() == f"{REFRESH_TOKEN}-r1"


def test_missing_app_credentials_are_invalid_credentials_naming_the_secret(
    tmp_path: Path,
) -> None:
    vault = Vault.create(tmp_path, SimulatedClock(NOW), {})
    vault.instance().onboard("daikin_onecta", ACCOUNT, refresh_token=REFRESH_TOKEN)
    http = httpx.Client(transport=httpx.MockTransport(lambda r: httpx.Response(500)))
    adapter = DaikinOnectaAdapter(vault.instance(), SimulatedClock(NOW), http=http)
    with pytest.raises(CredentialsInvalid, match=r"onecta-client-id not found"):
        adapter.capabilities(DeviceRef("daikin_onecta", "unit-1", ACCOUNT))
    http.close()


def test_an_account_never_onboarded_is_invalid_credentials(tmp_path: Path) -> None:
    vault = Vault.create(tmp_path, SimulatedClock(NOW), APP)
    http = httpx.Client(transport=httpx.MockTransport(lambda r: httpx.Response(500)))
    adapter = DaikinOnectaAdapter(vault.instance(), SimulatedClock(NOW), http=http)
    with pytest.raises(CredentialsInvalid, match=r"daikin_onecta account acct-1 has no stored"):
        adapter.capabilities(DeviceRef("daikin_onecta", "unit-1", ACCOUNT))
    http.close()


@pytest.mark.parametrize(
    ("answer", "error"),
    [
        pytest.param(httpx.Response(503), OemUnavailable, id="token-503"),
        pytest.param(httpx.Response(429, headers={"Retry-After": "30"}), OemRateLimited, id="429"),
        pytest.param(httpx.Response(200, text="<html/>"), OemUnavailable, id="token-html"),
        pytest.param(httpx.Response(200, json={"token_type": "x"}), OemUnavailable, id="no-token"),
    ],
)
def test_a_failing_token_endpoint_raises_the_protocol_error(
    answer: httpx.Response,
    error: type[HpsteerError],
    make_rig: Callable[[list[dict[str, Any]]], Rig],
) -> None:
    unit = load("altherma_boost")[0]
    rig = make_rig([unit])
    rig.fake.token_answers.append(answer)
    with pytest.raises(error, match=r"Onecta token endpoint"):
        rig.adapter.get_device_state(ref(unit))


# -- errors -------------------------------------------------------------------------------------


def html_502() -> httpx.Response:
    """Built: a non-JSON gateway page."""
    return httpx.Response(
        502,
        headers={"Content-Type": "text/html"},
        text="<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>",
    )


# Built: the headers jwillemsen/daikin_onecta daikin_api.py reads (reference §3.5); values invented.
RATE_LIMITED_MINUTE = httpx.Response(
    429,
    headers={
        "X-RateLimit-Limit-minute": "20",
        "X-RateLimit-Remaining-minute": "0",
        "X-RateLimit-Limit-day": "200",
        "X-RateLimit-Remaining-day": "150",
        "Retry-After": "42",
    },
)
RATE_LIMITED_DAY = httpx.Response(
    429,
    headers={
        "X-RateLimit-Remaining-minute": "5",
        "X-RateLimit-Remaining-day": "0",
        "RateLimit-Reset": "3600",
    },
)

COMMAND_ERRORS = [
    pytest.param(
        RATE_LIMITED_MINUTE, OemRateLimited, r"HTTP 429, spent: minute", id="rate-limit-minute"
    ),
    pytest.param(RATE_LIMITED_DAY, OemRateLimited, r"HTTP 429, spent: day", id="rate-limit-day"),
    pytest.param(httpx.Response(500, json={}), OemUnavailable, r"HTTP 500", id="error-500"),
    pytest.param(html_502(), OemUnavailable, r"HTTP 502 with a non-JSON body", id="html-502"),
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
        # built: the body quoted in reference §3.5 (jwillemsen/daikin_onecta issue 334)
        httpx.Response(
            400,
            json={
                "code": "READ_ONLY_CHARACTERISTIC",
                "message": "Characteristic is read-only and therefore can not be set",
            },
        ),
        CommandRejected,
        r"HTTP 400 READ_ONLY_CHARACTERISTIC: Characteristic is read-only",
        id="read-only-400",
    ),
    pytest.param(
        httpx.Response(422, json={"code": "VALIDATION_ERROR", "message": "value out of range"}),
        CommandRejected,
        r"HTTP 422 VALIDATION_ERROR",
        id="validation-422",
    ),
    pytest.param(
        httpx.Response(403, json={"code": "FORBIDDEN", "message": "no access"}),
        CredentialsInvalid,
        r"HTTP 403 FORBIDDEN",
        id="forbidden-403",
    ),
]


@pytest.mark.parametrize(("answer", "error", "message"), COMMAND_ERRORS)
def test_a_failed_command_raises_the_protocol_error(
    answer: httpx.Response | Exception,
    error: type[HpsteerError],
    message: str,
    make_rig: Callable[[list[dict[str, Any]]], Rig],
) -> None:
    unit = load("altherma_schedule")[0]
    rig = make_rig([unit])
    payload = rig.adapter.translate_generic_command(GenericAction.SET_MODE_MAX, ref(unit))
    rig.fake.scripted.append(answer)

    with pytest.raises(error, match=message) as raised:
        rig.adapter.send_command(GenericAction.SET_MODE_MAX, payload, ref(unit))
    assert raised.value.__cause__ is None
    assert raised.value.__suppress_context__ is True or raised.value.__context__ is None


@pytest.mark.parametrize(
    ("answer", "retry_after_s"),
    [
        pytest.param(RATE_LIMITED_MINUTE, 42, id="retry-after"),
        pytest.param(RATE_LIMITED_DAY, 3600, id="ratelimit-reset"),
        pytest.param(
            httpx.Response(429, headers={"X-RateLimit-Remaining-minute": "0"}),
            60,
            id="minute-spent",
        ),
        pytest.param(httpx.Response(429), None, id="no-headers"),
    ],
)
def test_a_rate_limit_names_when_to_retry_from_the_headers(
    answer: httpx.Response,
    retry_after_s: int | None,
    make_rig: Callable[[list[dict[str, Any]]], Rig],
) -> None:
    unit = load("altherma_schedule")[0]
    rig = make_rig([unit])
    rig.fake.scripted.append(answer)
    with pytest.raises(OemRateLimited) as raised:
        rig.adapter.get_device_state(ref(unit))
    expected = NOW + timedelta(seconds=retry_after_s) if retry_after_s is not None else None
    assert raised.value.retry_at == expected


@pytest.mark.parametrize(
    ("answer", "error"),
    [
        pytest.param(httpx.Response(500, json={}), OemUnavailable, id="error-500"),
        pytest.param(html_502(), OemUnavailable, id="html-502"),
        pytest.param(
            httpx.Response(200, text="<html>maintenance</html>"), OemUnavailable, id="html-200"
        ),
        pytest.param(httpx.Response(200, json={"id": "x"}), OemUnavailable, id="wrong-shape"),
        pytest.param(
            httpx.Response(404, json={"code": "NOT_FOUND", "message": "no such device"}),
            UnknownDevice,
            id="unknown-device",
        ),
        pytest.param(httpx.ReadTimeout("slow"), OemUnavailable, id="read-timeout"),
    ],
)
def test_a_failed_read_raises_the_protocol_error(
    answer: httpx.Response | Exception,
    error: type[HpsteerError],
    make_rig: Callable[[list[dict[str, Any]]], Rig],
) -> None:
    unit = load("altherma_schedule")[0]
    rig = make_rig([unit])
    rig.fake.scripted.append(answer)
    with pytest.raises(error):
        rig.adapter.get_device_state(ref(unit))


def test_discovery_refuses_an_answer_that_is_not_a_list(
    make_rig: Callable[[list[dict[str, Any]]], Rig],
) -> None:
    rig = make_rig(load("altherma"))
    rig.fake.scripted.append(httpx.Response(200, json={"devices": []}))
    with pytest.raises(OemUnavailable, match=r"not a list of devices"):
        rig.adapter.discover(ACCOUNT)


# -- secrets never leak -------------------------------------------------------------------------


def test_no_credential_appears_in_any_log_record_error_or_repr(
    make_rig: Callable[[list[dict[str, Any]]], Rig], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    unit = load("altherma_schedule")[0]
    rig = make_rig([unit])
    device = ref(unit)
    shown: list[str] = [repr(rig.adapter), str(rig.adapter), repr(rig.vault.secrets)]

    def attempt(call: Callable[[], object]) -> None:
        try:
            shown.append(repr(call()))
        except HpsteerError as err:
            shown.extend([str(err), repr(err), repr(err.__cause__), repr(err.__context__)])

    failures: list[httpx.Response | Exception] = [
        RATE_LIMITED_MINUTE,
        html_502(),
        httpx.ConnectTimeout("timed out"),
        httpx.Response(400, json={"code": "READ_ONLY_CHARACTERISTIC", "message": "x"}),
        httpx.Response(401),
        httpx.Response(401),
    ]
    for action in GenericAction:
        attempt(lambda: rig.adapter.discover(ACCOUNT))
        attempt(lambda: rig.adapter.capabilities(device))
        payload = rig.adapter.translate_generic_command(action, device)
        shown.append(repr(payload))
        attempt(lambda: rig.adapter.validate_command(action, payload, device))  # noqa: B023  # called at once
        attempt(lambda: rig.adapter.send_command(action, payload, device))  # noqa: B023  # called at once
        attempt(lambda: rig.adapter.get_device_state(device))
        rig.clock.advance(timedelta(hours=1))  # forces refreshes that rotate the refresh token
    for failure in failures:
        rig.fake.scripted.append(failure)
        attempt(lambda: rig.adapter.get_device_state(device))
    rig.fake.token_answers.append(httpx.Response(400, json={"error": "invalid_grant"}))
    rig.clock.advance(timedelta(hours=1))
    attempt(lambda: rig.adapter.get_device_state(device))
    shown += [repr(client) for client in rig.adapter._clients.values()]
    shown += [repr(rig.vault.instance().require("daikin_onecta", ACCOUNT))]
    shown += [repr(rig.adapter._credentials)]

    assert len(rig.fake.token_requests()) >= 4  # the cycle really refreshed and rotated
    assert any("Authorization" in r.headers for r in rig.fake.api_requests())
    records = [record.getMessage() for record in caplog.records]
    records += [json.dumps(record.__dict__, default=str) for record in caplog.records]
    assert records, "the adapter logs at DEBUG"
    stored = rig.vault.stored_text()
    key = rig.vault.key_bytes().decode()
    for secret in (CLIENT_ID, CLIENT_SECRET, REFRESH_TOKEN, ACCESS_TOKEN, key):
        assert not [line for line in records if secret in line]
        assert not [text for text in shown if secret in text]
        assert secret not in stored
