"""The NIBE myUplink adapter, against the recorded F730 bodies (systems, device, points) served
through httpx.MockTransport.

Bodies built here rather than recorded (each says so): token-endpoint answers, PATCH answers
(shape from jaroschek/home-assistant-myuplink issue 222), the smart-home-mode answer, 401/403/429/
5xx answers, an HTML gateway page, a Disconnected device (the recorded device with its
``connectionState`` changed).
"""

from __future__ import annotations

import base64
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
from hpsteer.adapters.nibe_myuplink import (
    NibeMyUplinkAdapter,
    client_id_secret_name,
    client_secret_secret_name,
)
from hpsteer.adapters.nibe_myuplink.adapter import CONNECTION_STATE_MAX_AGE
from hpsteer.adapters.nibe_myuplink.params import Point, PointSet, family_of
from hpsteer.adapters.protocol import AdapterContext, DeviceRef, ManufacturerAdapter, RateWindow
from hpsteer.adapters.registry import default_registry
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

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "oem" / "nibe_myuplink"
API = "https://api.myuplink.com"
TOKEN_URL = "https://api.myuplink.com/oauth/token"
ACCOUNT = "acct-1"
SYSTEM_ID = "123456-7890-1234"
DEVICE_ID = "batman-r-1234-20240201-123456-aa-bb-cc-dd-ee-ff"
DEVICE = DeviceRef("nibe_myuplink", f"{SYSTEM_ID}/{DEVICE_ID}", ACCOUNT, device_id="hp-1")
DEVICE_PATH = f"/v2/devices/{DEVICE_ID}"
POINTS_PATH = f"{DEVICE_PATH}/points"
NOW = datetime(2025, 1, 15, 12, 0, tzinfo=UTC)

CLIENT_ID = "fake-client-id-7f3a9c"
CLIENT_SECRET = "fake-client-secret-c81e07"
REFRESH_TOKEN = "fake-refresh-token-0b9c44"
OWN_CLIENT_ID = "fake-own-app-id-3d9e21"
"""A household's own myUplink app (client credentials): per account, sealed with it."""
OWN_CLIENT_SECRET = "fake-own-app-secret-77a0c4"
ACCESS_TOKEN = "fake-access-token-51d2e8"
MODES = [GenericAction.SET_MODE_MIN, GenericAction.SET_MODE_MID, GenericAction.SET_MODE_MAX]


def load(name: str) -> Any:
    return json.loads((FIXTURES / name).read_bytes())


def point(points: list[dict[str, Any]], parameter_id: str) -> dict[str, Any]:
    found: dict[str, Any] = next(p for p in points if p["parameterId"] == parameter_id)
    return found


@dataclass
class FakeMyUplink:
    """myUplink's API and token endpoint for one account, recording every request."""

    device: dict[str, Any] = field(default_factory=lambda: load("device.json"))
    points: list[dict[str, Any]] = field(
        default_factory=lambda: load("device_points_nibe_f730.json")
    )
    requests: list[httpx.Request] = field(default_factory=list)
    scripted: list[httpx.Response | Exception] = field(default_factory=list)
    """Answers to the next API requests (after the token check), in order."""
    scripted_patch: list[httpx.Response] = field(default_factory=list)
    token_answers: list[httpx.Response] = field(default_factory=list)
    issued: int = 0
    valid_tokens: set[str] = field(default_factory=set)
    token_forms: list[dict[str, str]] = field(default_factory=list)
    before_token: list[Callable[[], None]] = field(default_factory=list)
    client: tuple[str, str] = (CLIENT_ID, CLIENT_SECRET)
    """The OAuth client the token endpoint expects."""

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
            return httpx.Response(401, json={"error": "invalid_token"})  # built
        path = request.url.path
        if request.method == "GET" and path == "/v2/systems/me":
            return httpx.Response(200, content=(FIXTURES / "systems.json").read_bytes())
        if request.method == "GET" and path == DEVICE_PATH:
            return httpx.Response(200, json=self.device)
        if request.method == "GET" and path == POINTS_PATH:
            wanted = request.url.params.get("parameters")
            chosen = self.points
            if wanted:
                chosen = [p for p in self.points if p["parameterId"] in wanted.split(",")]
            return httpx.Response(200, json=chosen)
        if request.method == "PATCH" and path == POINTS_PATH:
            if self.scripted_patch:
                return self.scripted_patch.pop(0)
            body = json.loads(request.content)
            # Built: the accepted answer of jaroschek/home-assistant-myuplink issue 222.
            return httpx.Response(200, json=dict.fromkeys(body, "modified"))
        if request.method == "PUT" and path == f"/v2/systems/{SYSTEM_ID}/smart-home-mode":
            return httpx.Response(200, json={"payload": {"state": "ok"}})  # built (reference §2.4)
        return httpx.Response(404, json={"title": "Not Found"})

    def _token(self, request: httpx.Request) -> httpx.Response:
        form = {k: v[0] for k, v in parse_qs(request.content.decode()).items()}
        self.token_forms.append(form)
        client_id, client_secret = self.client
        if form["grant_type"] == "refresh_token":
            assert form["client_id"] == client_id
            assert form["client_secret"] == client_secret
        else:
            basic = base64.b64encode(f"{client_id}:{client_secret}".encode()).decode()
            assert request.headers["Authorization"] == f"Basic {basic}"
        while self.before_token:
            self.before_token.pop(0)()
        if self.token_answers:
            return self.token_answers.pop(0)
        self.issued += 1
        access = f"{ACCESS_TOKEN}-{self.issued}"
        self.valid_tokens.add(access)
        answer: dict[str, Any] = {
            "access_token": access,
            "token_type": "Bearer",
            "expires_in": 3600,
        }
        if form["grant_type"] == "refresh_token":
            answer["refresh_token"] = f"{REFRESH_TOKEN}-r{self.issued}"
        return httpx.Response(200, json=answer)

    def api_requests(self) -> list[httpx.Request]:
        return [r for r in self.requests if str(r.url) != TOKEN_URL]

    def token_requests(self) -> list[httpx.Request]:
        return [r for r in self.requests if str(r.url) == TOKEN_URL]

    def patches(self) -> list[dict[str, Any]]:
        return [json.loads(r.content) for r in self.api_requests() if r.method == "PATCH"]


@dataclass
class Rig:
    fake: FakeMyUplink
    adapter: NibeMyUplinkAdapter
    vault: Vault
    clock: SimulatedClock

    def stored_refresh_token(self) -> str | None:
        """What another instance reads from the account's credentials document."""
        return self.vault.instance().require("nibe_myuplink", ACCOUNT).refresh_token

    def generation(self) -> int:
        return self.vault.instance().require("nibe_myuplink", ACCOUNT).generation


APP = {client_id_secret_name(): CLIENT_ID, client_secret_secret_name(): CLIENT_SECRET}
"""hpsteer's myUplink app, as secrets."""


def myuplink_vault(directory: Path, clock: SimulatedClock, *, refresh_token: bool = True) -> Vault:
    """The app's secrets and the data key; the account onboarded with a refresh token, or
    (``refresh_token=False``) with its own app's client id and secret."""
    vault = Vault.create(directory, clock, APP)
    if refresh_token:
        vault.instance().onboard("nibe_myuplink", ACCOUNT, refresh_token=REFRESH_TOKEN)
    else:
        vault.instance().onboard(
            "nibe_myuplink", ACCOUNT, client_id=OWN_CLIENT_ID, client_secret=OWN_CLIENT_SECRET
        )
    return vault


@pytest.fixture
def make_rig(tmp_path: Path) -> Iterator[Callable[..., Rig]]:
    clients: list[httpx.Client] = []

    def make(*, refresh_token: bool = True) -> Rig:
        clock = SimulatedClock(NOW)
        vault = myuplink_vault(
            tmp_path / f"vault-{len(clients)}", clock, refresh_token=refresh_token
        )
        fake = FakeMyUplink()
        if not refresh_token:
            fake.client = (OWN_CLIENT_ID, OWN_CLIENT_SECRET)
        http = httpx.Client(transport=httpx.MockTransport(fake))
        clients.append(http)
        return Rig(fake, NibeMyUplinkAdapter(vault.instance(), clock, http=http), vault, clock)

    yield make
    for client in clients:
        client.close()


@pytest.fixture
def rig(make_rig: Callable[..., Rig]) -> Rig:
    return make_rig()


# -- the protocol and its constants -----------------------------------------------------------


def test_the_adapter_implements_the_manufacturer_protocol_with_myuplink_limits(rig: Rig) -> None:
    assert isinstance(rig.adapter, ManufacturerAdapter)
    assert rig.adapter.name == "nibe_myuplink"
    assert rig.adapter.rate_limits.windows == (RateWindow(25, timedelta(minutes=1)),)
    assert rig.adapter.rate_limits.read_share == 0.3


def test_the_default_registry_builds_it_from_the_context_transport_and_base_url(
    tmp_path: Path,
) -> None:
    vault = myuplink_vault(tmp_path, SimulatedClock(NOW))
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(f"{request.method} {request.url}")
        if request.url.path == "/oauth/token":
            return httpx.Response(200, json={"access_token": "a", "expires_in": 3600})
        if request.url.path == POINTS_PATH:
            return httpx.Response(200, json=load("device_points_nibe_f730.json"))
        return httpx.Response(200, json=load("device.json"))

    context = AdapterContext(
        secrets=vault.secrets,
        clock=SimulatedClock(NOW),
        base_urls={"nibe_myuplink": "http://fleet.test"},
        transport=httpx.MockTransport(handler),
        store=vault.store,
    )
    adapter = default_registry().build("nibe_myuplink", context)
    assert isinstance(adapter, NibeMyUplinkAdapter)
    adapter.capabilities(DEVICE)
    assert seen == [
        "POST http://fleet.test/oauth/token",
        f"GET http://fleet.test{DEVICE_PATH}",
        f"GET http://fleet.test{POINTS_PATH}",
    ]


def test_discovery_lists_the_recorded_system_devices_as_system_slash_device(rig: Rig) -> None:
    assert rig.adapter.discover(ACCOUNT) == (
        DeviceRef("nibe_myuplink", DEVICE.external_id, ACCOUNT),
    )
    (request,) = rig.fake.api_requests()
    assert request.url.params["itemsPerPage"] == "99"


# -- capabilities and payloads -----------------------------------------------------------------


def test_capabilities_come_from_the_writable_points_and_available_features(rig: Rig) -> None:
    capabilities = rig.adapter.capabilities(DEVICE)

    assert capabilities.model == "NIBE F730 CU 3x400V"
    assert capabilities.actions == frozenset(GenericAction)
    # 47011 is at 1 step, its range -10…10, one step per room K (unconfirmed mapping).
    assert capabilities.setpoint_offset_range_k == (-11.0, 9.0)
    assert "point 47011 (Heating offset climate system 1)" in capabilities.notes
    assert "point 50004 (Temporary lux)" in capabilities.notes
    assert "family F-series" in capabilities.notes


def test_without_the_boost_hot_water_feature_there_is_no_boost(rig: Rig) -> None:
    rig.fake.device["availableFeatures"]["boostHotWater"] = False
    capabilities = rig.adapter.capabilities(DEVICE)
    assert GenericAction.BOOST_DHW not in capabilities.actions
    with pytest.raises(CommandRejected, match=r"no writable hot-water boost point"):
        rig.adapter.translate_generic_command(GenericAction.BOOST_DHW, DEVICE)


def test_the_family_id_wins_among_points_sharing_the_offset_category(rig: Rig) -> None:
    # The recorded body tags both 47011 and HA's test entry 47007 "Excluded" sh-indoorSpOffsHeat.
    rig.fake.points = [p for p in rig.fake.points if p["parameterId"] != "47011"] + [
        point(rig.fake.points, "47011")
    ]
    payload = rig.adapter.translate_generic_command(GenericAction.SET_MODE_MID, DEVICE)
    assert payload["parameter_id"] == "47011"


def test_an_unknown_family_finds_the_offset_by_category_alone(rig: Rig) -> None:
    rig.fake.device["product"]["name"] = "Z9000 prototype"
    rig.fake.points = [p for p in rig.fake.points if p["parameterId"] != "47007"]
    payload = rig.adapter.translate_generic_command(GenericAction.SET_MODE_MAX, DEVICE)
    assert payload["body"] == {"47011": "3"}
    assert rig.adapter.capabilities(DEVICE).notes.endswith(
        "family unknown; writes need an active 'manage' subscription"
    )


@pytest.mark.parametrize(
    ("action", "body", "steps"),
    [
        pytest.param(GenericAction.SET_MODE_MIN, {"47011": "-1"}, -2.0, id="min"),
        pytest.param(GenericAction.SET_MODE_MID, {"47011": "1"}, 0.0, id="mid"),
        pytest.param(GenericAction.SET_MODE_MAX, {"47011": "3"}, 2.0, id="max"),
    ],
)
def test_each_mode_patches_the_heating_offset_to_its_baseline_plus_the_mode_steps(
    rig: Rig, action: GenericAction, body: dict[str, str], steps: float
) -> None:
    assert point(rig.fake.points, "47011")["value"] == 1  # the recorded household setting
    assert action.mode is not None

    payload = rig.adapter.translate_generic_command(action, DEVICE)
    assert payload == {
        "action": action.value,
        "body": body,
        "parameter_id": "47011",
        "point": "heating_offset",
        "offset_k": action.mode.setpoint_offset_k,
        "offset_steps": steps,
        "baseline": 1.0,
        "found_mode": "mid",  # the household's own setting: the baseline, learnt just now
    }
    assert rig.adapter.validate_command(action, payload, DEVICE).valid
    result = rig.adapter.send_command(action, payload, DEVICE)

    assert rig.fake.patches() == [body]
    (patch,) = [r for r in rig.fake.api_requests() if r.method == "PATCH"]
    assert patch.url.path == POINTS_PATH
    assert patch.headers["Content-Type"] == "application/json-patch+json"
    assert result.accepted_at == rig.clock.now()
    assert result.response == {"47011": "modified"}
    # translate, validate and send share one read (send takes its connection state: it is
    # moments old).
    assert [r.url.path for r in rig.fake.api_requests() if r.method == "GET"] == [
        DEVICE_PATH,
        POINTS_PATH,
    ]


def test_boost_dhw_patches_temporary_lux_on(rig: Rig) -> None:
    payload = rig.adapter.translate_generic_command(GenericAction.BOOST_DHW, DEVICE)
    assert payload == {
        "action": "boost_dhw",
        "body": {"50004": "1"},
        "parameter_id": "50004",
        "point": "dhw_boost",
    }
    assert rig.adapter.validate_command(GenericAction.BOOST_DHW, payload, DEVICE).valid
    rig.adapter.send_command(GenericAction.BOOST_DHW, payload, DEVICE)
    assert rig.fake.patches() == [{"50004": "1"}]


def test_the_smart_home_mode_is_put_on_the_system(rig: Rig) -> None:
    client = rig.adapter._client(DEVICE)
    assert client.set_smart_home_mode(SYSTEM_ID, "Away") == {"payload": {"state": "ok"}}
    (request,) = rig.fake.api_requests()
    assert (request.method, request.url.path) == ("PUT", f"/v2/systems/{SYSTEM_ID}/smart-home-mode")
    assert json.loads(request.content) == {"smartHomeMode": "Away"}


def test_a_points_read_can_name_its_parameters(rig: Rig) -> None:
    points = rig.adapter._client(DEVICE).points(DEVICE_ID, ("40004", "40008"))
    assert [p["parameterId"] for p in points] == ["40004", "40008"]
    (request,) = rig.fake.api_requests()
    assert request.url.params["parameters"] == "40004,40008"


# -- validation ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("action", "body", "reason"),
    [
        pytest.param(
            GenericAction.SET_MODE_MAX,
            {"47011": "11"},
            "11 is above the maximum 10",
            id="above-max",
        ),
        pytest.param(
            GenericAction.SET_MODE_MIN,
            {"47011": "-11"},
            "-11 is below the minimum -10",
            id="below-min",
        ),
        pytest.param(
            GenericAction.SET_MODE_MAX,
            {"47011": "2.5"},
            "not on the step 1 from -10",
            id="off-step",
        ),
        pytest.param(
            GenericAction.SET_MODE_MAX, {"47011": "warm"}, "must be a number", id="not-a-number"
        ),
        pytest.param(
            GenericAction.SET_MODE_MAX,
            {"47011": 3},
            "must be a number as a string",
            id="not-a-string",
        ),
        pytest.param(GenericAction.SET_MODE_MAX, {"47011": "nan"}, "finite number", id="nan"),
        pytest.param(GenericAction.SET_MODE_MAX, {}, "exactly one point", id="empty-body"),
        pytest.param(
            GenericAction.SET_MODE_MAX,
            {"47011": "3", "50004": "1"},
            "exactly one point",
            id="two-points",
        ),
        pytest.param(
            GenericAction.SET_MODE_MAX,
            {"50004": "1"},
            "does not carry set_mode_max",
            id="wrong-point",
        ),
        pytest.param(
            GenericAction.BOOST_DHW, {"47011": "1"}, "does not carry boost_dhw", id="wrong-action"
        ),
        pytest.param(
            GenericAction.BOOST_DHW, {"50004": "2"}, "2 is not one of 0, 1", id="not-an-enum-value"
        ),
    ],
)
def test_validation_refuses_what_the_device_would_refuse(
    rig: Rig, action: GenericAction, body: dict[str, Any], reason: str
) -> None:
    verdict = rig.adapter.validate_command(action, {"action": action.value, "body": body}, DEVICE)
    assert not verdict.valid
    assert verdict.reason is not None
    assert reason in verdict.reason


def test_scaled_limits_are_display_values(rig: Rig) -> None:
    setpoint = Point.parse(point(rig.fake.points, "47398"))
    assert setpoint is not None
    assert (setpoint.min_value, setpoint.max_value, setpoint.step_value) == (5.0, 35.0, 0.5)
    assert setpoint.check(21.5) is None
    assert setpoint.check(21.3) == "point 47398: 21.3 is not on the step 0.5 from 5"
    assert setpoint.check(36) == "point 47398: 36 is above the maximum 35"


def test_a_mode_beyond_the_offset_range_is_refused_by_validation(rig: Rig) -> None:
    point(rig.fake.points, "47011")["value"] = 9
    payload = rig.adapter.translate_generic_command(GenericAction.SET_MODE_MAX, DEVICE)
    assert payload["body"] == {"47011": "11"}
    verdict = rig.adapter.validate_command(GenericAction.SET_MODE_MAX, payload, DEVICE)
    assert verdict.reason == "point 47011: 11 is above the maximum 10"


# -- state and baseline -------------------------------------------------------------------------


def test_state_maps_the_recorded_readings(rig: Rig) -> None:
    state = rig.adapter.get_device_state(DEVICE)

    assert state.online is True
    assert state.observed_at == NOW
    assert state.outdoor_temp_c == -9.3  # 40004
    assert state.supply_temp_c == 39.7  # 40008
    assert state.indoor_temp_c == 21.2  # 40033
    assert state.dhw_temp_c == 46.0  # 40013, hot water top
    assert state.room_setpoint_c == 14.5  # 47398 as recorded
    assert state.power_kw is None  # the F730 reports no electric power
    assert state.mode is None  # not steered yet: no baseline known
    assert state.setpoint_offset_k is None
    assert state.changed_by_user is None


def test_an_absent_sensor_reads_as_none(rig: Rig) -> None:
    point(rig.fake.points, "40033")["value"] = -32768
    assert rig.adapter.get_device_state(DEVICE).indoor_temp_c is None


def test_state_reports_the_mode_relative_to_the_stored_baseline(rig: Rig) -> None:
    payload = rig.adapter.translate_generic_command(GenericAction.SET_MODE_MAX, DEVICE)
    rig.adapter.send_command(GenericAction.SET_MODE_MAX, payload, DEVICE)
    point(rig.fake.points, "47011")["value"] = 3  # the device applied it

    state = rig.adapter.get_device_state(DEVICE)
    assert state.mode is Mode.MAX
    assert state.setpoint_offset_k == 2.0

    # The next command is relative to the stored baseline, not to the steered value.
    payload = rig.adapter.translate_generic_command(GenericAction.SET_MODE_MIN, DEVICE)
    assert payload["body"] == {"47011": "-1"}

    rig.adapter.forget_baseline(DEVICE)
    rig.clock.advance(timedelta(minutes=6))
    payload = rig.adapter.translate_generic_command(GenericAction.SET_MODE_MID, DEVICE)
    assert payload["body"] == {"47011": "3"}


def test_a_disconnected_device_reads_as_offline_with_one_request(rig: Rig) -> None:
    rig.fake.device["connectionState"] = "Disconnected"
    state = rig.adapter.get_device_state(DEVICE)
    assert state.online is False
    assert state.outdoor_temp_c is None
    assert [r.url.path for r in rig.fake.api_requests()] == [DEVICE_PATH]


def test_a_command_to_a_disconnected_device_is_device_offline_and_writes_nothing(
    rig: Rig,
) -> None:
    payload = rig.adapter.translate_generic_command(GenericAction.SET_MODE_MAX, DEVICE)
    rig.fake.device["connectionState"] = "Disconnected"
    rig.clock.advance(CONNECTION_STATE_MAX_AGE + timedelta(seconds=1))  # the read is too old
    with pytest.raises(DeviceOffline, match=r"connectionState Disconnected, nothing written"):
        rig.adapter.send_command(GenericAction.SET_MODE_MAX, payload, DEVICE)
    assert rig.fake.patches() == []
    assert [r.url.path for r in rig.fake.api_requests()][-1] == DEVICE_PATH


def test_a_device_read_disconnected_after_the_translation_is_not_sent_to(rig: Rig) -> None:
    payload = rig.adapter.translate_generic_command(GenericAction.SET_MODE_MAX, DEVICE)
    rig.fake.device["connectionState"] = "Disconnected"
    assert rig.adapter.get_device_state(DEVICE).online is False  # newer than the translation's
    with pytest.raises(DeviceOffline, match=r"connectionState Disconnected, nothing written"):
        rig.adapter.send_command(GenericAction.SET_MODE_MAX, payload, DEVICE)
    assert rig.fake.patches() == []


def test_a_command_sent_moments_after_its_translation_takes_that_reads_connection_state(
    rig: Rig,
) -> None:
    payload = rig.adapter.translate_generic_command(GenericAction.SET_MODE_MAX, DEVICE)
    rig.fake.device["connectionState"] = "Disconnected"  # after the read: not seen
    rig.clock.advance(CONNECTION_STATE_MAX_AGE)
    rig.adapter.send_command(GenericAction.SET_MODE_MAX, payload, DEVICE)
    assert len(rig.fake.patches()) == 1
    assert [r.url.path for r in rig.fake.api_requests() if r.method == "GET"] == [
        DEVICE_PATH,
        POINTS_PATH,
    ]


# -- tokens -------------------------------------------------------------------------------------


def test_a_refresh_stores_the_rotated_refresh_token_and_uses_it_next_time(rig: Rig) -> None:
    rig.adapter.get_device_state(DEVICE)
    rig.adapter.get_device_state(DEVICE)
    assert len(rig.fake.token_requests()) == 1  # the access token is kept until near expiry
    assert rig.stored_refresh_token() == f"{REFRESH_TOKEN}-r1"

    rig.clock.advance(timedelta(seconds=3600 - 30))  # inside the 60 s margin
    rig.adapter.get_device_state(DEVICE)
    assert [f["refresh_token"] for f in rig.fake.token_forms] == [
        REFRESH_TOKEN,
        f"{REFRESH_TOKEN}-r1",
    ]
    assert rig.stored_refresh_token() == f"{REFRESH_TOKEN}-r2"
    assert rig.generation() == 3


def test_the_app_credentials_and_the_data_key_are_read_once_per_instance(rig: Rig) -> None:
    rig.vault.reads.clear()  # onboarding's own reads
    for _ in range(3):
        rig.adapter.get_device_state(DEVICE)
        rig.clock.advance(timedelta(hours=1))  # every read refreshes and rotates
    assert len(rig.fake.token_requests()) == 3
    read_once = [KEY_SECRET, client_id_secret_name(), client_secret_secret_name()]
    assert sorted(rig.vault.reads) == sorted(f"{name}/latest" for name in read_once)


def test_an_account_with_its_own_app_and_no_refresh_token_uses_client_credentials(
    make_rig: Callable[..., Rig],
) -> None:
    rig = make_rig(refresh_token=False)
    assert rig.adapter.get_device_state(DEVICE).online is True
    assert rig.fake.token_forms == [
        {"grant_type": "client_credentials", "scope": "READSYSTEM WRITESYSTEM"}
    ]
    stored = rig.vault.stored_text()
    assert OWN_CLIENT_ID not in stored
    assert OWN_CLIENT_SECRET not in stored


def test_an_expired_access_token_is_refreshed_and_the_request_retried_once(rig: Rig) -> None:
    rig.adapter.get_device_state(DEVICE)
    rig.fake.valid_tokens.clear()  # myUplink expired it early

    assert rig.adapter.get_device_state(DEVICE).online is True
    assert len(rig.fake.token_requests()) == 2
    assert [r.method for r in rig.fake.api_requests()] == ["GET"] * 5


def test_a_second_401_after_refreshing_means_invalid_credentials(rig: Rig) -> None:
    rig.fake.scripted += [httpx.Response(401)] * 2
    with pytest.raises(CredentialsInvalid, match=r"HTTP 401 after a token refresh"):
        rig.adapter.get_device_state(DEVICE)
    assert len(rig.fake.api_requests()) == 2


def test_a_refused_refresh_means_invalid_credentials(rig: Rig) -> None:
    # Built: an OAuth2 error body (RFC 6749 §5.2).
    rig.fake.token_answers.append(httpx.Response(400, json={"error": "invalid_grant"}))
    with pytest.raises(
        CredentialsInvalid, match=r"refused the refresh_token grant .* HTTP 400 invalid_grant"
    ):
        rig.adapter.capabilities(DEVICE)


def test_a_refused_refresh_is_retried_with_a_refresh_token_another_instance_stored(
    rig: Rig,
) -> None:
    elsewhere = rig.vault.instance()
    read_by_elsewhere = elsewhere.require("nibe_myuplink", ACCOUNT)

    def rotate_elsewhere() -> None:
        assert elsewhere.store_refresh_token(read_by_elsewhere, "elsewhere") is not None

    rig.fake.before_token.append(rotate_elsewhere)
    rig.fake.token_answers.append(httpx.Response(400, json={"error": "invalid_grant"}))

    rig.adapter.capabilities(DEVICE)
    assert [f["refresh_token"] for f in rig.fake.token_forms] == [REFRESH_TOKEN, "elsewhere"]
    assert rig.stored_refresh_token() == f"{REFRESH_TOKEN}-r1"


def test_missing_app_credentials_are_invalid_credentials_naming_the_secret(
    tmp_path: Path,
) -> None:
    vault = Vault.create(tmp_path, SimulatedClock(NOW), {})
    vault.instance().onboard("nibe_myuplink", ACCOUNT, refresh_token=REFRESH_TOKEN)
    http = httpx.Client(transport=httpx.MockTransport(lambda r: httpx.Response(500)))
    adapter = NibeMyUplinkAdapter(vault.instance(), SimulatedClock(NOW), http=http)
    with pytest.raises(CredentialsInvalid, match=r"myuplink-client-id not found"):
        adapter.capabilities(DEVICE)
    http.close()


def test_an_account_never_onboarded_is_invalid_credentials(tmp_path: Path) -> None:
    vault = Vault.create(tmp_path, SimulatedClock(NOW), APP)
    http = httpx.Client(transport=httpx.MockTransport(lambda r: httpx.Response(500)))
    adapter = NibeMyUplinkAdapter(vault.instance(), SimulatedClock(NOW), http=http)
    with pytest.raises(CredentialsInvalid, match=r"nibe_myuplink account acct-1 has no stored"):
        adapter.capabilities(DEVICE)
    http.close()


# -- errors -------------------------------------------------------------------------------------


def html_502() -> httpx.Response:
    """Built: a non-JSON gateway page."""
    return httpx.Response(
        502,
        headers={"Content-Type": "text/html"},
        text="<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>",
    )


def rate_limited(headers: dict[str, str]) -> httpx.Response:
    """Built: a 429 with the headers jaroschek/home-assistant-myuplink reads."""
    return httpx.Response(
        429, headers={"RateLimit-Limit": "25", "RateLimit-Remaining": "0", **headers}
    )


COMMAND_ERRORS = [
    pytest.param(
        rate_limited({"RateLimit-Reset": "17"}),
        OemRateLimited,
        r"rate limited \(HTTP 429 with an empty body; limit 25\)",
        id="rate-limit-429",
    ),
    pytest.param(
        httpx.Response(500, json={"title": "Internal"}),
        OemUnavailable,
        r"HTTP 500 Internal",
        id="error-500",
    ),
    pytest.param(
        httpx.Response(503), OemUnavailable, r"HTTP 503 with an empty body", id="error-503"
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
        httpx.Response(403),  # built: no manage subscription (jaroschek issue 169); body unknown
        CommandRejected,
        r"HTTP 403 with an empty body; writes need the system's active 'manage' \(Premium\)",
        id="forbidden-no-premium",
    ),
    pytest.param(
        httpx.Response(
            400, json={"title": "Bad Request", "status": 400}
        ),  # built: body unconfirmed
        CommandRejected,
        r"HTTP 400 Bad Request",
        id="bad-request-400",
    ),
    pytest.param(
        httpx.Response(200, json={"47011": "error"}),
        CommandRejected,
        r"point 47011 answered error, not 'modified'",
        id="not-modified",
    ),
    pytest.param(
        httpx.Response(200, json={}),
        CommandRejected,
        r"point 47011 answered -, not 'modified'",
        id="point-missing-from-answer",
    ),
    pytest.param(
        httpx.Response(200, json=["modified"]),
        CommandRejected,
        r"answer is not an object of points",
        id="answer-not-an-object",
    ),
]


@pytest.mark.parametrize(("answer", "error", "message"), COMMAND_ERRORS)
def test_a_failed_command_raises_the_protocol_error(
    rig: Rig, answer: httpx.Response | Exception, error: type[HpsteerError], message: str
) -> None:
    payload = rig.adapter.translate_generic_command(GenericAction.SET_MODE_MAX, DEVICE)
    rig.fake.scripted.append(answer)  # the PATCH (the connection state is the translation's)

    with pytest.raises(error, match=message) as raised:
        rig.adapter.send_command(GenericAction.SET_MODE_MAX, payload, DEVICE)
    assert raised.value.__cause__ is None
    assert raised.value.__suppress_context__ is True or raised.value.__context__ is None


@pytest.mark.parametrize(
    ("headers", "retry_at"),
    [
        pytest.param({"RateLimit-Reset": "17"}, NOW + timedelta(seconds=17), id="ratelimit-reset"),
        pytest.param({"Retry-After": "40"}, NOW + timedelta(seconds=40), id="retry-after"),
        pytest.param(
            {"RateLimit-Reset": "1736942460"},
            datetime(2025, 1, 15, 12, 1, tzinfo=UTC),
            id="reset-as-epoch",
        ),
        pytest.param({}, None, id="no-header"),
    ],
)
def test_a_rate_limit_names_retry_at_from_the_headers(
    rig: Rig, headers: dict[str, str], retry_at: datetime | None
) -> None:
    rig.fake.scripted.append(rate_limited(headers))
    with pytest.raises(OemRateLimited) as raised:
        rig.adapter.get_device_state(DEVICE)
    assert raised.value.retry_at == retry_at


@pytest.mark.parametrize(
    ("answer", "error"),
    [
        pytest.param(httpx.Response(500), OemUnavailable, id="error-500"),
        pytest.param(html_502(), OemUnavailable, id="html-502"),
        pytest.param(
            httpx.Response(404, json={"title": "Not Found"}), UnknownDevice, id="unknown-device"
        ),
        pytest.param(httpx.Response(403), CredentialsInvalid, id="forbidden-read"),
        pytest.param(httpx.Response(200, json={"x": 1}), OemUnavailable, id="points-not-a-list"),
        pytest.param(httpx.ReadTimeout("slow"), OemUnavailable, id="read-timeout"),
    ],
)
def test_a_failed_read_raises_the_protocol_error(
    rig: Rig, answer: httpx.Response | Exception, error: type[HpsteerError]
) -> None:
    rig.fake.scripted.append(httpx.Response(200, json=rig.fake.device))
    rig.fake.scripted.append(answer)  # the points read
    with pytest.raises(error):
        rig.adapter.get_device_state(DEVICE)


def test_a_malformed_external_id_is_an_unknown_device(rig: Rig) -> None:
    with pytest.raises(UnknownDevice, match=r"not systemId/deviceId"):
        rig.adapter.capabilities(DeviceRef("nibe_myuplink", DEVICE_ID, ACCOUNT))


# -- secrets never leak -------------------------------------------------------------------------


def test_no_credential_appears_in_any_log_record_error_or_repr(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    shown: list[str] = [repr(rig.adapter), str(rig.adapter), repr(rig.vault.secrets)]

    def attempt(call: Callable[[], object]) -> None:
        try:
            shown.append(repr(call()))
        except HpsteerError as err:
            shown.extend([str(err), repr(err), repr(err.__cause__), repr(err.__context__)])

    failures: list[httpx.Response | Exception] = [
        rate_limited({"RateLimit-Reset": "5"}),
        html_502(),
        httpx.Response(403),
        httpx.ConnectTimeout("timed out"),
        httpx.Response(401),
        httpx.Response(401),
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
    shown += [repr(rig.vault.instance().require("nibe_myuplink", ACCOUNT))]
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


def test_the_recorded_points_parse_with_duplicates_and_odd_ids_handled() -> None:
    raw = load("device_points_nibe_f730.json")
    points = PointSet(copy.deepcopy(raw), family_of("F730 CU 3x400V"))
    assert len(raw) == 56
    assert len(points) == 55  # 40940 recorded twice
    odd = points.by_id("148072r")
    assert odd is not None
    assert odd.writable is False
    hello = points.by_id("99000")
    assert hello is not None
    assert hello.value is None
    assert (hello.min_value, hello.max_value) == (None, None)
