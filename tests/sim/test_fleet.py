"""The simulated fleet, driven by the real adapters: each manufacturer's paths, payload shapes and
OAuth endpoints in-process (SimTransport), faults per manufacturer and device, the physics behind
the commands, and one round trip through the real server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from hpsteer.adapters.credentials import CredentialStore
from hpsteer.adapters.protocol import FOUND_MODE, AdapterContext, ManufacturerAdapter
from hpsteer.adapters.registry import default_registry
from hpsteer.backends.local.secrets import FileSecretStore
from hpsteer.backends.local.store import LocalDocumentStore
from hpsteer.domain.actions import GenericAction, Mode
from hpsteer.errors import DeviceOffline, OemRateLimited, OemUnavailable
from hpsteer.ports.clock import SimulatedClock
from hpsteer.runtime.cli import main as cli_main
from hpsteer.sim import MANUFACTURERS, FaultPlan, FaultSpec, Fleet, Home, SimApp, SimTransport
from hpsteer.sim.serve import SimServer

T0 = datetime(2025, 1, 15, 6, 0, tzinfo=UTC)
BASE = "http://fleet.sim"
MODE_ACTIONS = (GenericAction.SET_MODE_MIN, GenericAction.SET_MODE_MID, GenericAction.SET_MODE_MAX)


@dataclass
class Rig:
    clock: SimulatedClock
    fleet: Fleet
    app: SimApp
    transport: SimTransport
    secrets: FileSecretStore
    credentials: CredentialStore
    """Another instance's view of the credentials the adapters use."""
    adapters: dict[str, ManufacturerAdapter]

    def home(self, manufacturer: str) -> Home:
        return next(h for h in self.fleet if h.manufacturer == manufacturer)

    def adapter(self, manufacturer: str) -> ManufacturerAdapter:
        return self.adapters[manufacturer]

    def send(self, manufacturer: str, action: GenericAction) -> None:
        adapter, ref = self.adapter(manufacturer), self.home(manufacturer).ref()
        payload = adapter.translate_generic_command(action, ref)
        assert adapter.validate_command(action, payload, ref).valid
        adapter.send_command(action, payload, ref)

    def fault(self, manufacturer: str, spec: FaultSpec) -> None:
        self.fleet.faults.set_manufacturer(manufacturer, spec)


@pytest.fixture
def make_rig(tmp_path: Path) -> Callable[..., Rig]:
    made = 0

    def make(seed: int = 7, homes: int = 3) -> Rig:
        nonlocal made
        made += 1
        clock = SimulatedClock(T0)
        fleet = Fleet(clock, homes=homes, seed=seed, faults=FaultPlan(seed=seed))
        app = SimApp(fleet)
        transport = SimTransport(app)
        secrets = FileSecretStore(tmp_path / f"secrets-{made}")
        store = LocalDocumentStore(clock=clock)
        credentials = fleet.seed_credentials(secrets, store)
        context = AdapterContext(
            secrets=secrets,
            clock=clock,
            base_urls=dict.fromkeys(MANUFACTURERS, BASE),
            transport=transport,
            store=store,
        )
        registry = default_registry()
        adapters = {m: registry.build(m, context) for m in MANUFACTURERS}
        return Rig(clock, fleet, app, transport, secrets, credentials, adapters)

    return make


manufacturers = pytest.mark.parametrize("manufacturer", MANUFACTURERS)


# -- reading and commanding -------------------------------------------------------------------


@manufacturers
def test_each_adapter_reads_its_home_as_the_physics_has_it(
    make_rig: Callable[..., Rig], manufacturer: str
) -> None:
    rig = make_rig()
    home = rig.home(manufacturer)
    state = rig.adapter(manufacturer).get_device_state(home.ref())
    assert state.online is True
    assert state.indoor_temp_c == pytest.approx(home.air_temp_c, abs=0.06)
    assert state.outdoor_temp_c == pytest.approx(home.reported.outdoor_temp_c, abs=0.51)
    assert state.supply_temp_c is not None
    assert state.supply_temp_c > home.air_temp_c
    assert state.dhw_temp_c is not None
    assert 35.0 < state.dhw_temp_c < 60.0


@manufacturers
def test_each_adapter_discovers_the_home_of_its_account(
    make_rig: Callable[..., Rig], manufacturer: str
) -> None:
    rig = make_rig()
    home = rig.home(manufacturer)
    adapter = rig.adapter(manufacturer)
    found = adapter.discover(home.account_id)  # type: ignore[attr-defined]  # not in the protocol
    assert [ref.external_id for ref in found] == [home.external_id]


@manufacturers
@pytest.mark.parametrize("action", MODE_ACTIONS)
def test_each_mode_action_moves_the_controller_target_and_the_room_follows(
    make_rig: Callable[..., Rig], manufacturer: str, action: GenericAction
) -> None:
    # Twin fleets from one seed: identical homes, one steered by the action, one left at mid.
    rig, twin = make_rig(), make_rig()
    home, twin_home = rig.home(manufacturer), twin.home(manufacturer)
    assert action.mode is not None
    before_c = home.target_c
    rig.send(manufacturer, action)
    twin.send(manufacturer, GenericAction.SET_MODE_MID)
    assert home.target_c == pytest.approx(before_c + action.mode.setpoint_offset_k)
    state = rig.adapter(manufacturer).get_device_state(home.ref())
    assert state.mode is action.mode
    assert state.setpoint_offset_k == pytest.approx(action.mode.setpoint_offset_k)
    for fleet in (rig.fleet, twin.fleet):
        fleet.advance(T0 + timedelta(hours=3))
    moved = home.air_temp_c - twin_home.air_temp_c
    if action.mode is Mode.MID:
        assert moved == pytest.approx(0.0, abs=1e-9)
    else:
        assert moved * action.mode.setpoint_offset_k > 0.15  # the right way, by a real amount
    read = rig.adapter(manufacturer).get_device_state(home.ref())
    assert read.indoor_temp_c == pytest.approx(home.air_temp_c, abs=0.06)


@manufacturers
def test_boost_dhw_charges_the_hot_water_tank(
    make_rig: Callable[..., Rig], manufacturer: str
) -> None:
    rig = make_rig()
    home = rig.home(manufacturer)
    before_c = home.dhw_temp_c
    rig.send(manufacturer, GenericAction.BOOST_DHW)
    assert home.dhw_boost is True
    rig.fleet.advance(T0 + timedelta(minutes=30))
    state = rig.adapter(manufacturer).get_device_state(home.ref())
    assert state.dhw_temp_c is not None
    assert state.dhw_temp_c > before_c + 3.0


# -- wire faults ------------------------------------------------------------------------------


@manufacturers
def test_a_5xx_is_oem_unavailable(make_rig: Callable[..., Rig], manufacturer: str) -> None:
    rig = make_rig()
    rig.fault(manufacturer, FaultSpec(server_error_rate=1.0, server_error_status=503))
    with pytest.raises(OemUnavailable, match="HTTP 503"):
        rig.adapter(manufacturer).get_device_state(rig.home(manufacturer).ref())


@manufacturers
def test_a_429_is_oem_rate_limited_with_retry_at(
    make_rig: Callable[..., Rig], manufacturer: str
) -> None:
    rig = make_rig()
    rig.fault(manufacturer, FaultSpec(rate_limit_rate=1.0, retry_after_s=90))
    with pytest.raises(OemRateLimited) as caught:
        rig.adapter(manufacturer).get_device_state(rig.home(manufacturer).ref())
    assert caught.value.retry_at == T0 + timedelta(seconds=90)


@manufacturers
def test_a_timeout_is_oem_unavailable(make_rig: Callable[..., Rig], manufacturer: str) -> None:
    rig = make_rig()
    rig.fault(manufacturer, FaultSpec(timeout_rate=1.0))
    with pytest.raises(OemUnavailable, match="timed out"):
        rig.adapter(manufacturer).get_device_state(rig.home(manufacturer).ref())


def test_latency_is_reported_and_slept_only_when_asked(make_rig: Callable[..., Rig]) -> None:
    rig = make_rig()
    rig.fault("viessmann", FaultSpec(latency_s=0.02))
    rig.adapter("viessmann").get_device_state(rig.home("viessmann").ref())
    assert rig.transport.latency_s == pytest.approx(0.02)  # the token endpoint has no latency


@manufacturers
def test_a_translation_tells_which_of_our_modes_it_found_the_device_in(
    make_rig: Callable[..., Rig], manufacturer: str
) -> None:
    rig = make_rig()
    home, adapter = rig.home(manufacturer), rig.adapter(manufacturer)
    first = adapter.translate_generic_command(GenericAction.SET_MODE_MAX, home.ref())
    assert first[FOUND_MODE] == Mode.MID.value  # the household's setting, learnt as the baseline
    rig.send(manufacturer, GenericAction.SET_MODE_MAX)
    rig.fleet.advance(T0 + timedelta(minutes=10))  # applied, and every read kept is too old
    found = adapter.translate_generic_command(GenericAction.SET_MODE_MIN, home.ref())
    assert found[FOUND_MODE] == Mode.MAX.value
    rig.fleet.user_changes_setpoint(home.home_id, home.shown_lever + 1.0)  # none of ours
    rig.fleet.advance(T0 + timedelta(minutes=20))
    found = adapter.translate_generic_command(GenericAction.SET_MODE_MIN, home.ref())
    assert found[FOUND_MODE] is None


def test_the_transport_adds_up_the_time_the_simulated_manufacturers_took_to_answer(
    make_rig: Callable[..., Rig],
) -> None:
    rig = make_rig()
    assert rig.transport.served_s == 0.0
    rig.adapter("viessmann").get_device_state(rig.home("viessmann").ref())
    after_one = rig.transport.served_s
    assert after_one > 0.0
    rig.fault("viessmann", FaultSpec(timeout_rate=1.0))
    with pytest.raises(OemUnavailable):  # a dropped answer was still the simulator's time
        rig.adapter("viessmann").get_device_state(rig.home("viessmann").ref())
    assert rig.transport.served_s > after_one


def test_faults_per_device_override_the_manufacturer_and_other_homes_stay_healthy(
    make_rig: Callable[..., Rig],
) -> None:
    rig = make_rig(homes=6)
    first, second = [h for h in rig.fleet if h.manufacturer == "viessmann"]
    rig.fleet.faults.set_device(first.home_id, FaultSpec(server_error_rate=1.0))
    adapter = rig.adapter("viessmann")
    with pytest.raises(OemUnavailable):
        adapter.get_device_state(first.ref())
    assert adapter.get_device_state(second.ref()).online is True


def test_random_faults_follow_the_seed(make_rig: Callable[..., Rig]) -> None:
    def outcomes(rig: Rig) -> list[str]:
        rig.fault("viessmann", FaultSpec(server_error_rate=0.5))
        seen = []
        for _ in range(20):
            try:
                rig.adapter("viessmann").get_device_state(rig.home("viessmann").ref())
                seen.append("ok")
            except OemUnavailable:
                seen.append("5xx")
        return seen

    first, again = outcomes(make_rig(seed=3)), outcomes(make_rig(seed=3))
    assert first == again
    assert {"ok", "5xx"} == set(first)


# -- device faults ----------------------------------------------------------------------------


@manufacturers
def test_accepted_but_not_applied_shows_the_old_mode_on_a_later_read(
    make_rig: Callable[..., Rig], manufacturer: str
) -> None:
    rig = make_rig()
    home = rig.home(manufacturer)
    rig.send(manufacturer, GenericAction.SET_MODE_MID)
    rig.fault(manufacturer, FaultSpec(not_applied_rate=1.0))
    rig.send(manufacturer, GenericAction.SET_MODE_MAX)  # accepted: no error
    rig.fleet.advance(T0 + timedelta(minutes=15))
    assert rig.adapter(manufacturer).get_device_state(home.ref()).mode is Mode.MID


@manufacturers
def test_a_command_applied_late_shows_only_after_the_delay(
    make_rig: Callable[..., Rig], manufacturer: str
) -> None:
    rig = make_rig()
    home = rig.home(manufacturer)
    rig.send(manufacturer, GenericAction.SET_MODE_MID)
    rig.fault(manufacturer, FaultSpec(applied_late_rate=1.0, apply_delay=timedelta(minutes=20)))
    rig.send(manufacturer, GenericAction.SET_MODE_MAX)
    adapter = rig.adapter(manufacturer)
    rig.fleet.advance(T0 + timedelta(minutes=10))
    assert adapter.get_device_state(home.ref()).mode is Mode.MID
    rig.fleet.advance(T0 + timedelta(minutes=25))
    assert adapter.get_device_state(home.ref()).mode is Mode.MAX


@manufacturers
def test_a_reboot_reverts_to_the_household_setting(
    make_rig: Callable[..., Rig], manufacturer: str
) -> None:
    rig = make_rig()
    home = rig.home(manufacturer)
    rig.send(manufacturer, GenericAction.SET_MODE_MAX)
    rig.fleet.reboot(home.home_id)
    assert rig.adapter(manufacturer).get_device_state(home.ref()).mode is Mode.MID


def test_reboots_drawn_from_the_plan_revert_steering(make_rig: Callable[..., Rig]) -> None:
    rig = make_rig()
    home = rig.home("daikin_onecta")
    rig.send("daikin_onecta", GenericAction.SET_MODE_MIN)
    rig.fault("daikin_onecta", FaultSpec(reboot_rate_per_day=1000.0))
    rig.fleet.advance(T0 + timedelta(hours=1))
    assert home.reboots >= 1
    assert rig.adapter("daikin_onecta").get_device_state(home.ref()).mode is Mode.MID


@manufacturers
def test_a_user_change_in_the_app_is_visible_in_the_device_state(
    make_rig: Callable[..., Rig], manufacturer: str
) -> None:
    rig = make_rig()
    home = rig.home(manufacturer)
    rig.send(manufacturer, GenericAction.SET_MODE_MID)
    rig.fleet.user_changes_setpoint(home.home_id, home.shown_lever + 1.0)
    state = rig.adapter(manufacturer).get_device_state(home.ref())
    assert state.mode is None
    assert state.setpoint_offset_k == pytest.approx(1.0)
    assert home.changed_by == "user"


@manufacturers
def test_gateway_offline_reads_offline_and_commands_raise_device_offline(
    make_rig: Callable[..., Rig], manufacturer: str
) -> None:
    rig = make_rig()
    home = rig.home(manufacturer)
    adapter = rig.adapter(manufacturer)
    payload = adapter.translate_generic_command(GenericAction.SET_MODE_MAX, home.ref())
    rig.fault(manufacturer, FaultSpec(gateway_offline=True))
    assert adapter.get_device_state(home.ref()).online is False
    with pytest.raises(DeviceOffline):
        adapter.send_command(GenericAction.SET_MODE_MAX, payload, home.ref())
    assert home.commands_received == 0


@manufacturers
def test_stale_telemetry_freezes_readings_and_their_timestamps(
    make_rig: Callable[..., Rig], manufacturer: str
) -> None:
    rig = make_rig()
    home = rig.home(manufacturer)
    adapter = rig.adapter(manufacturer)
    rig.send(manufacturer, GenericAction.SET_MODE_MAX)
    first = adapter.get_device_state(home.ref())
    rig.fault(manufacturer, FaultSpec(stale_telemetry=True))
    rig.fleet.advance(T0 + timedelta(hours=3))
    later = adapter.get_device_state(home.ref())
    assert later.indoor_temp_c == first.indoor_temp_c
    assert abs(home.air_temp_c - (first.indoor_temp_c or 0.0)) > 0.1  # the house moved on
    assert home.reported.at == T0  # what every payload's timestamps show
    assert later.observed_at == T0 + timedelta(hours=3)


def test_stale_vicare_features_carry_old_timestamps_on_the_wire(
    make_rig: Callable[..., Rig],
) -> None:
    rig = make_rig()
    home = rig.home("viessmann")
    rig.fault("viessmann", FaultSpec(stale_telemetry=True))
    rig.fleet.advance(T0 + timedelta(hours=2))
    token = rig.app.issue_access("viessmann", home.account_id)
    inst, serial, dev = home.external_id.split("/")
    with httpx.Client(transport=rig.transport) as client:
        answer = client.get(
            f"{BASE}/iot/v2/features/installations/{inst}/gateways/{serial}/devices/{dev}/features",
            headers={"Authorization": f"Bearer {token}"},
        )
    room = next(
        f for f in answer.json()["data"] if f["feature"].endswith("sensors.temperature.room")
    )
    assert room["timestamp"] == "2025-01-15T06:00:00.000Z"


# -- OAuth ------------------------------------------------------------------------------------


@manufacturers
def test_every_refresh_rotates_the_refresh_token_and_the_old_one_stops_working(
    make_rig: Callable[..., Rig], manufacturer: str
) -> None:
    rig = make_rig()
    home = rig.home(manufacturer)
    seeded = rig.credentials.require(manufacturer, home.account_id)
    original = seeded.refresh_token
    assert original is not None
    rig.adapter(manufacturer).get_device_state(home.ref())
    rotated = rig.credentials.require(manufacturer, home.account_id)
    assert rotated.generation == seeded.generation + 1
    assert rotated.refresh_token not in (None, original)
    token_path = {
        "viessmann": "/idp/v3/token",
        "nibe_myuplink": "/oauth/token",
        "daikin_onecta": "/v1/oidc/token",
    }
    creds = rig.fleet.credentials(manufacturer, home.account_id)
    assert creds is not None
    with httpx.Client(transport=rig.transport) as client:
        answer = client.post(
            BASE + token_path[manufacturer],
            data={
                "grant_type": "refresh_token",
                "client_id": creds.client_id,
                "client_secret": creds.client_secret,
                "refresh_token": original,
            },
        )
    assert answer.status_code == 400
    assert answer.json() == {"error": "invalid_grant"}
    rig.clock.advance(timedelta(hours=2))  # the access token expired: a refresh with the new one
    assert rig.adapter(manufacturer).get_device_state(home.ref()).online is True
    assert rig.credentials.require(manufacturer, home.account_id).generation == (
        seeded.generation + 2
    )


# -- the ways in ------------------------------------------------------------------------------


def test_the_same_app_answers_as_an_asgi_application(make_rig: Callable[..., Rig]) -> None:
    rig = make_rig()
    home = rig.home("daikin_onecta")
    token = rig.app.issue_access("daikin_onecta", home.account_id)

    async def fetch() -> httpx.Response:
        transport = httpx.ASGITransport(app=rig.app)
        async with httpx.AsyncClient(transport=transport, base_url=BASE) as client:
            return await client.get(
                f"/v1/gateway-devices/{home.external_id}",
                headers={"Authorization": f"Bearer {token}"},
            )

    answer = asyncio.run(fetch())
    assert answer.status_code == 200
    assert answer.json()["id"] == home.external_id


def test_an_adapter_reads_through_the_real_server_on_localhost(tmp_path: Path) -> None:
    clock = SimulatedClock(T0)
    fleet = Fleet(clock, homes=1, seed=1)
    secrets = FileSecretStore(tmp_path)
    store = LocalDocumentStore(clock=clock)
    fleet.seed_credentials(secrets, store)
    with SimServer(SimApp(fleet), port=0) as server, httpx.HTTPTransport() as transport:
        assert server.url.startswith("http://127.0.0.1:")
        context = AdapterContext(
            secrets=secrets,
            clock=clock,
            base_urls={"viessmann": server.url},
            transport=transport,  # a real socket transport, closed when the test ends
            store=store,
        )
        adapter = default_registry().build("viessmann", context)
        state = adapter.get_device_state(fleet.home("home-0000").ref())
    assert state.online is True
    assert state.indoor_temp_c is not None


def test_the_cli_offers_sim_serve(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        cli_main(["sim", "serve", "--help"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    assert "--port" in out
    assert "--homes" in out
    assert "--seed" in out


def test_the_same_seed_builds_the_same_fleet() -> None:
    def describe(seed: int) -> str:
        fleet = Fleet(SimulatedClock(T0), homes=4, seed=seed)
        return json.dumps(
            [(h.external_id, h.archetype, h.room_setpoint_c, h.air_temp_c) for h in fleet]
        )

    assert describe(5) == describe(5)
    assert describe(5) != describe(6)
