"""The operator's use cases (hpsteer.services.operator) on the local command path and on
Firestore (its emulator): registration is idempotent on the manufacturer device, steering off
hands the heat pump back exactly once, every change is audited, an import reports each row.

The rig is :class:`~hpsteer.runtime.local_fleet.LocalFleet` (local backends on a simulated clock,
the simulated fleet, its accounts' credentials onboarded into the store), with the document
store swapped for the ``document_store`` fixture's. A plan goes the way optimize sends a solved
one (:func:`store_plan`: ``plans_store.write_plan``, ``make_current``, ``outbox.release_plan``),
so the commands a disable supersedes are the ones optimize would have left.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest

from hpsteer.domain.actions import GenericAction, Mode
from hpsteer.domain.commands import CommandState
from hpsteer.domain.hand_back import is_hand_back
from hpsteer.domain.market import PriceArea
from hpsteer.domain.messages import Alert, AlertSeverity, ReplanRequest
from hpsteer.domain.operator_requests import (
    AlertListQuery,
    DeviceListQuery,
    DeviceRegistration,
    DeviceUpdate,
)
from hpsteer.domain.plans import Plan, PlanSlot
from hpsteer.domain.roles import Role
from hpsteer.ports.store import DocumentStore
from hpsteer.runtime.local_fleet import LocalFleet
from hpsteer.services.alerts import raise_alert
from hpsteer.services.command_log import history, load_command
from hpsteer.services.command_tasks import dispatch_queue
from hpsteer.services.operator import alerts, devices, status
from hpsteer.services.operator.audit import AUDIT_EVENTS, Actor, audit_path
from hpsteer.services.operator.device_import import import_devices
from hpsteer.services.operator.errors import Conflict, Refused, UnknownTarget
from hpsteer.services.operator.replan import replan_area, replan_device
from hpsteer.services.outbox import release_plan
from hpsteer.services.plans_store import make_current, plan_document, write_plan
from tests.services.test_dispatch import SLOT, T0, home_of

ALICE = Actor("alice@example.com", Role.OPERATOR)
ADMIN = Actor("root@example.com", Role.ADMIN)
COMFORT = {"min_indoor_temp_c": 20.0, "setpoint_c": 21.0, "max_indoor_temp_c": 23.0}


@pytest.fixture
def make_local(document_store: DocumentStore) -> Callable[..., LocalFleet]:
    def make(homes: int = 3, seed: int = 11) -> LocalFleet:
        local = LocalFleet.build(
            start=T0, homes=homes, seed=seed, wrap_store=lambda _local: document_store
        )
        local.register_devices()
        return local

    return make


@pytest.fixture
def local(make_local: Callable[..., LocalFleet]) -> LocalFleet:
    return make_local()


def account_of(local: LocalFleet, manufacturer: str) -> str:
    return home_of(local, manufacturer).account_id


def registration(local: LocalFleet, **changes: Any) -> DeviceRegistration:
    body: dict[str, Any] = {
        "manufacturer": "viessmann",
        "external_id": "vitocal-0001",
        "account_id": account_of(local, "viessmann"),
        "price_area": "SE3",
        "location": {"latitude": 59.33, "longitude": 18.07},
        "archetype": "renovated_radiators",
        "comfort": COMFORT,
        **changes,
    }
    return DeviceRegistration.model_validate(body)


def commands(local: LocalFleet, device_id: str) -> dict[str, CommandState]:
    found = local.deps.store.query(f"devices/{device_id}/commands").documents
    return {d.id: CommandState(d.data["state"]) for d in found}


def audit_rows(local: LocalFleet) -> list[dict[str, Any]]:
    local.deps.analytics.ensure_table(AUDIT_EVENTS)  # none appended yet: an empty table
    return local.deps.analytics.query(
        "SELECT audit_id, operation, actor, actor_role, target_id, before, after, context "
        "FROM `audit_events` ORDER BY occurred_at, audit_id"
    )


def store_plan(local: LocalFleet, device_id: str, modes: list[Mode]) -> tuple[Plan, list[str]]:
    """An hourly plan from ``SLOT`` written, made current and released as optimize does; its
    command ids."""
    slots = tuple(
        PlanSlot(
            start_at=SLOT + timedelta(hours=i),
            end_at=SLOT + timedelta(hours=i + 1),
            mode=mode,
            price_eur_per_mwh=50.0 + 10 * i,
            expected_power_kw=1.5,
            predicted_indoor_temp_c=21.0 + 0.2 * i,
        )
        for i, mode in enumerate(modes)
    )
    plan = Plan(
        plan_id="p1",
        device_id=device_id,
        price_area=PriceArea.SE3,
        resolution=60,
        created_at=local.clock.now(),
        slots=slots,
        expected_cost_eur=0.42,
        baseline_cost_eur=0.51,
        solver="test",
    )
    store = local.deps.store
    document, _ = write_plan(store, plan, plan_document(plan, None, {}))
    make_current(
        store,
        device_id,
        plan.plan_id,
        plan.start_at,
        plan.created_at,
        plan.mode_runs(),
        plan.end_at,
    )
    device = store.get(f"devices/{device_id}")
    assert device is not None
    return plan, release_plan(local.deps, device_id, device.data, document).queued


def replans(local: LocalFleet) -> list[ReplanRequest]:
    published = local.deps.bus.published("replan-requests")  # type: ignore[attr-defined]
    return [ReplanRequest.parse_json(m.data) for m in published]


# -- registration -----------------------------------------------------------------------------


def test_a_registration_stores_the_device_its_key_and_an_audit_event(local: LocalFleet) -> None:
    registered = devices.register_device(local.deps, ALICE, registration(local))

    assert registered.created
    device = registered.device
    assert device.device_id == devices.derived_device_id("viessmann", "vitocal-0001")
    assert device.revision == 1
    assert device.thermal.archetype == "renovated_radiators"
    stored = local.deps.store.get(f"devices/{device.device_id}")
    assert stored is not None
    assert stored.data["steering_enabled"] is True
    assert stored.data["registered_by"] == ALICE.email
    key = local.deps.store.get(devices.device_key_path("viessmann", "vitocal-0001"))
    assert key is not None
    assert key.data["device_id"] == device.device_id
    audit = local.deps.store.get(audit_path(f"device-{device.device_id}-r000001"))
    assert audit is not None
    assert audit.data["operation"] == "register_device"
    assert audit.data["actor"] == ALICE.email
    assert audit.data["before"] is None
    assert audit.data["after"]["comfort"] == COMFORT


def test_registering_the_same_device_again_answers_the_stored_one_and_writes_nothing(
    local: LocalFleet,
) -> None:
    first = devices.register_device(local.deps, ALICE, registration(local))
    again = devices.register_device(local.deps, ALICE, registration(local))

    assert not again.created
    assert again.device == first.device
    assert [r["operation"] for r in audit_rows(local)] == ["register_device"]


def test_a_different_registration_of_the_same_manufacturer_device_conflicts(
    local: LocalFleet,
) -> None:
    devices.register_device(local.deps, ALICE, registration(local))
    other_band = {**COMFORT, "min_indoor_temp_c": 19.0}

    with pytest.raises(Conflict) as refused:
        devices.register_device(local.deps, ALICE, registration(local, comfort=other_band))
    assert refused.value.code == "registration_conflict"
    with pytest.raises(Conflict):
        devices.register_device(local.deps, ALICE, registration(local, device_id="my-own-id"))
    assert len(audit_rows(local)) == 1


def test_a_device_id_taken_by_another_heat_pump_is_refused(local: LocalFleet) -> None:
    taken = home_of(local, "nibe_myuplink").home_id

    with pytest.raises(Conflict) as refused:
        devices.register_device(local.deps, ALICE, registration(local, device_id=taken))
    assert (refused.value.code, refused.value.field) == ("device_id_taken", "device_id")


def test_a_device_registered_before_the_api_is_found_by_its_manufacturer_id(
    local: LocalFleet,
) -> None:
    home = home_of(local, "viessmann")
    stored = devices.get_device(local.deps, home.home_id)
    same = registration(
        local,
        external_id=home.external_id,
        location={"latitude": stored.location.latitude, "longitude": stored.location.longitude},
        archetype=None,
        thermal=stored.thermal.model_dump(),
        comfort=stored.comfort.model_dump(),
    )

    again = devices.register_device(local.deps, ALICE, same)

    assert not again.created
    assert again.device.device_id == home.home_id
    with pytest.raises(Conflict):
        devices.register_device(
            local.deps, ALICE, registration(local, external_id=home.external_id)
        )


def test_an_account_whose_credentials_are_not_stored_is_refused_naming_the_field(
    local: LocalFleet,
) -> None:
    with pytest.raises(Refused) as refused:
        devices.register_device(local.deps, ALICE, registration(local, account_id="stranger"))

    assert (refused.value.code, refused.value.field) == ("unknown_account", "account_id")
    assert local.deps.store.get(devices.device_key_path("viessmann", "vitocal-0001")) is None


# -- reading ------------------------------------------------------------------------------------


def test_devices_are_listed_in_pages_and_filtered_by_area_manufacturer_and_steering(
    make_local: Callable[..., LocalFleet],
) -> None:
    local = make_local(homes=6)
    ids = sorted(h.home_id for h in local.fleet)
    devices.set_steering(local.deps, ALICE, ids[0], False)

    first = devices.list_devices(local.deps, DeviceListQuery(page_size=4))
    rest = devices.list_devices(
        local.deps, DeviceListQuery(page_size=4, page_token=first.next_page_token)
    )
    assert [d.device_id for d in first.devices + rest.devices] == ids
    assert rest.next_page_token is None

    viessmann = devices.list_devices(local.deps, DeviceListQuery(manufacturer="viessmann"))
    assert {d.manufacturer for d in viessmann.devices} == {"viessmann"}
    off = devices.list_devices(local.deps, DeviceListQuery(steering_enabled=False))
    assert [d.device_id for d in off.devices] == [ids[0]]
    elsewhere = devices.list_devices(local.deps, DeviceListQuery(price_area=PriceArea.DK1))
    assert elsewhere.devices == []


def test_a_page_token_of_another_query_is_refused(local: LocalFleet) -> None:
    first = devices.list_devices(local.deps, DeviceListQuery(page_size=1))
    assert first.next_page_token is not None

    with pytest.raises(Refused) as refused:
        devices.list_devices(
            local.deps, DeviceListQuery(page_size=1, manufacturer="viessmann", page_token="x")
        )
    assert refused.value.field == "page_token"


def test_an_unknown_device_is_not_found(local: LocalFleet) -> None:
    with pytest.raises(UnknownTarget):
        devices.get_device(local.deps, "no-such-device")
    with pytest.raises(UnknownTarget):
        status.device_status(local.deps, "no-such-device")


# -- changes ------------------------------------------------------------------------------------


def test_a_new_comfort_band_is_audited_with_before_and_after_and_re_plans(
    local: LocalFleet,
) -> None:
    device_id = home_of(local, "viessmann").home_id
    band = {"min_indoor_temp_c": 19.0, "setpoint_c": 20.5, "max_indoor_temp_c": 22.0}

    changed = devices.update_device(
        local.deps, ALICE, device_id, DeviceUpdate.model_validate({"comfort": band})
    )
    again = devices.update_device(
        local.deps, ALICE, device_id, DeviceUpdate.model_validate({"comfort": band})
    )

    assert changed.comfort.model_dump() == band
    assert again.revision == changed.revision == 1
    [row] = audit_rows(local)
    assert row["operation"] == "update_device"
    assert row["before"]["comfort"] != band
    assert row["after"]["comfort"] == band
    assert [r.device_id for r in replans(local)] == [device_id]


def test_a_new_tariff_re_plans_a_steered_device_once(local: LocalFleet) -> None:
    device_id = home_of(local, "viessmann").home_id
    tariff = "se3-vattenfall-t4"

    changed = devices.update_device(
        local.deps, ALICE, device_id, DeviceUpdate.model_validate({"tariff_id": tariff})
    )
    devices.update_device(
        local.deps, ALICE, device_id, DeviceUpdate.model_validate({"tariff_id": tariff})
    )

    assert changed.tariff_id == tariff
    assert [r.device_id for r in replans(local)] == [device_id]


def test_a_new_tariff_of_a_device_not_steered_asks_for_no_plan(local: LocalFleet) -> None:
    device_id = home_of(local, "viessmann").home_id
    devices.set_steering(local.deps, ALICE, device_id, False)
    before = len(replans(local))

    devices.update_device(
        local.deps,
        ALICE,
        device_id,
        DeviceUpdate.model_validate({"tariff_id": "se3-vattenfall-t4"}),
    )

    assert len(replans(local)) == before


def test_disabling_steering_mid_plan_supersedes_the_plan_and_hands_back_once(
    local: LocalFleet,
) -> None:
    home = home_of(local, "viessmann")
    _, planned = store_plan(local, home.home_id, [Mode.MAX, Mode.MIN])  # both within reach
    queue = dispatch_queue("viessmann").name
    assert len(local.tasks.pending_tasks(queue)) == 2

    devices.set_steering(local.deps, ALICE, home.home_id, False)
    devices.set_steering(local.deps, ALICE, home.home_id, False)  # a repeat: no second hand-back

    states = commands(local, home.home_id)
    hand_backs = [c for c in states if is_hand_back(c)]
    assert len(hand_backs) == 1
    assert {states[c] for c in planned} == {CommandState.SUPERSEDED}
    assert [c for c, s in states.items() if s is CommandState.PENDING] == hand_backs
    hand_back = load_command(local.deps.store, home.home_id, hand_backs[0])
    assert hand_back is not None
    assert hand_back.generic_action is GenericAction.SET_MODE_MID
    assert hand_back.plan_id is None
    assert hand_back.valid_until is None
    assert [t.name for t in local.tasks.pending_tasks(queue)] == [hand_back.task_name]
    assert [r["operation"] for r in audit_rows(local)] == ["disable_steering"]
    rows = local.deps.analytics.query(
        "SELECT command_id, type FROM `command_events` WHERE type = 'superseded'"
    )
    assert {r["command_id"] for r in rows} == set(planned)


def test_re_enabling_re_plans_and_supersedes_a_hand_back_not_yet_sent(
    local: LocalFleet,
) -> None:
    home = home_of(local, "viessmann")
    store_plan(local, home.home_id, [Mode.MAX])
    off = devices.set_steering(local.deps, ALICE, home.home_id, False)

    on = devices.set_steering(local.deps, ALICE, home.home_id, True)

    assert on.steering_enabled
    assert on.revision == off.revision + 1
    assert off.hand_back_command_id is not None
    assert commands(local, home.home_id)[off.hand_back_command_id] is CommandState.SUPERSEDED
    assert [(r.device_id, r.area) for r in replans(local)] == [(home.home_id, None)]
    assert [r["operation"] for r in audit_rows(local)] == ["disable_steering", "enable_steering"]


def test_disabling_again_after_a_re_enable_hands_back_anew(local: LocalFleet) -> None:
    device_id = home_of(local, "viessmann").home_id

    first = devices.set_steering(local.deps, ALICE, device_id, False).hand_back_command_id
    devices.set_steering(local.deps, ALICE, device_id, True)
    second = devices.set_steering(local.deps, ALICE, device_id, False).hand_back_command_id

    assert first is not None
    assert second not in (None, first)
    states = commands(local, device_id)
    assert (states[first], states[second]) == (CommandState.SUPERSEDED, CommandState.PENDING)


def test_the_hand_back_reaches_the_heat_pump_through_dispatch(local: LocalFleet) -> None:
    home = home_of(local, "viessmann")
    store_plan(local, home.home_id, [Mode.MAX])
    command_id = devices.set_steering(local.deps, ALICE, home.home_id, False).hand_back_command_id
    assert command_id is not None

    local.run_until(T0 + timedelta(minutes=15))

    assert home.commands_received == 1
    assert commands(local, home.home_id)[command_id] is CommandState.COMPLETED


def test_deleting_hands_back_keeps_the_history_and_hides_the_device(local: LocalFleet) -> None:
    home = home_of(local, "daikin_onecta")
    _, [planned] = store_plan(local, home.home_id, [Mode.MAX])

    deleted = devices.delete_device(local.deps, ADMIN, home.home_id)
    again = devices.delete_device(local.deps, ADMIN, home.home_id)

    assert again == deleted
    assert deleted.hand_back_command_id is not None
    states = commands(local, home.home_id)
    assert states == {
        planned: CommandState.SUPERSEDED,
        deleted.hand_back_command_id: CommandState.PENDING,
    }
    assert [e.type.value for e in history(local.deps.store, home.home_id, planned)] == [
        "created",
        "superseded",
    ]
    with pytest.raises(UnknownTarget):
        devices.get_device(local.deps, home.home_id)
    listed = devices.list_devices(local.deps, DeviceListQuery())
    assert home.home_id not in {d.device_id for d in listed.devices}
    [row] = audit_rows(local)
    assert (row["operation"], row["actor"], row["after"]) == ("delete_device", ADMIN.email, None)
    assert row["before"]["device_id"] == home.home_id


def test_a_deleted_device_is_registered_afresh_under_its_id(local: LocalFleet) -> None:
    first = devices.register_device(local.deps, ALICE, registration(local)).device
    devices.delete_device(local.deps, ADMIN, first.device_id)

    again = devices.register_device(local.deps, ALICE, registration(local))

    assert again.created
    assert again.device.device_id == first.device_id
    assert again.device.revision == 3  # registered, deleted, registered


def test_changing_an_unknown_or_deleted_device_is_not_found(local: LocalFleet) -> None:
    device_id = home_of(local, "viessmann").home_id
    devices.delete_device(local.deps, ADMIN, device_id)

    for change in (
        lambda: devices.set_steering(local.deps, ALICE, device_id, True),
        lambda: devices.update_device(
            local.deps, ALICE, device_id, DeviceUpdate.model_validate({"tariff_id": None})
        ),
        lambda: replan_device(local.deps, ALICE, device_id, None),
        lambda: devices.delete_device(local.deps, ADMIN, "never-registered"),
    ):
        with pytest.raises(UnknownTarget):
            change()


# -- re-plans -------------------------------------------------------------------------------------


def test_a_re_plan_of_a_device_or_an_area_is_published_and_audited(local: LocalFleet) -> None:
    device_id = home_of(local, "viessmann").home_id

    one = replan_device(local.deps, ALICE, device_id, "new tariff")
    local.clock.advance(timedelta(seconds=1))
    area = replan_area(local.deps, ALICE, PriceArea.SE3, None)

    assert [(r.device_id, r.area, r.reason) for r in replans(local)] == [
        (device_id, None, "new tariff"),
        (None, PriceArea.SE3, f"re-plan of SE3 asked by {ALICE.email}"),
    ]
    assert (one.device_id, area.price_area) == (device_id, PriceArea.SE3)
    assert [(r["operation"], r["target_id"]) for r in audit_rows(local)] == [
        ("replan", device_id),
        ("replan", "SE3"),
    ]


def test_a_device_whose_steering_is_off_is_not_re_planned(local: LocalFleet) -> None:
    device_id = home_of(local, "viessmann").home_id
    devices.set_steering(local.deps, ALICE, device_id, False)

    with pytest.raises(Conflict) as refused:
        replan_device(local.deps, ALICE, device_id, None)
    assert refused.value.code == "steering_disabled"


# -- alerts ---------------------------------------------------------------------------------------


def raise_one(
    local: LocalFleet, alert_id: str, device_id: str, kind: str = "command_failed"
) -> None:
    raise_alert(
        local.deps.store,
        local.deps.bus,
        Alert(
            alert_id=alert_id,
            severity=AlertSeverity.CRITICAL,
            kind=kind,
            message=f"{kind} on {device_id}",
            raised_at=local.clock.now(),
            device_id=device_id,
            manufacturer="viessmann",
        ),
    )


def test_alerts_are_filtered_acknowledged_once_and_the_acknowledgement_audited(
    local: LocalFleet,
) -> None:
    device_id = home_of(local, "viessmann").home_id
    raise_one(local, "a-1", device_id)
    raise_one(local, "a-2", device_id, kind="device_unreachable")
    raise_one(local, "a-3", "another-device")

    acknowledged = alerts.acknowledge_alert(local.deps, ALICE, "a-1", "on it")
    again = alerts.acknowledge_alert(local.deps, ADMIN, "a-1", None)

    assert again == acknowledged
    assert (acknowledged.state, acknowledged.acknowledged_by) == ("acknowledged", ALICE.email)
    [row] = audit_rows(local)
    assert (row["operation"], row["target_id"], row["context"]) == (
        "acknowledge_alert",
        "a-1",
        {"note": "on it"},
    )
    assert (row["before"]["state"], row["after"]["state"]) == ("open", "acknowledged")

    def listed(**query: Any) -> list[str]:
        page = alerts.list_alerts(local.deps, AlertListQuery.model_validate(query))
        return [a.alert_id for a in page.alerts]

    assert listed() == ["a-1", "a-2", "a-3"]
    assert listed(state="open") == ["a-2", "a-3"]
    assert listed(state="acknowledged") == ["a-1"]
    assert listed(device_id=device_id, kind="device_unreachable") == ["a-2"]
    assert listed(severity="info") == []
    with pytest.raises(UnknownTarget):
        alerts.acknowledge_alert(local.deps, ALICE, "no-such-alert", None)


# -- status ---------------------------------------------------------------------------------------


def test_the_status_shows_plan_intended_and_actual_mode_commands_alerts_and_override(
    local: LocalFleet,
) -> None:
    home = home_of(local, "viessmann")
    store = local.deps.store
    plan, [first, second] = store_plan(local, home.home_id, [Mode.MAX, Mode.MIN])
    store.update(
        f"devices/{home.home_id}",
        {
            "last_telemetry": {
                "observed_at": SLOT + timedelta(minutes=5),
                "source": "webhook",
                "indoor_temp_c": 21.4,
                "observed_mode": "mid",
                "online": True,
            },
            "override_until": SLOT + timedelta(hours=1),
        },
    )
    raise_one(local, "a-1", home.home_id)
    raise_one(local, "a-2", home.home_id)
    store.update("alerts/a-2", {"resolved_at": SLOT})
    local.clock.advance_to(SLOT + timedelta(minutes=10))

    seen = status.device_status(local.deps, home.home_id)

    assert seen.device.device_id == home.home_id
    assert seen.as_of == SLOT + timedelta(minutes=10)
    assert seen.last_telemetry is not None
    assert seen.last_telemetry.indoor_temp_c == 21.4
    mode = seen.mode
    assert (mode.intended_mode, mode.actual_mode, mode.in_sync) == (Mode.MAX, Mode.MID, False)
    assert (mode.plan_id, mode.intended_until) == (plan.plan_id, SLOT + timedelta(hours=1))
    shown = seen.current_plan
    assert shown is not None
    assert (shown.expected_cost_eur, shown.baseline_cost_eur) == (0.42, 0.51)
    assert [s.predicted_indoor_temp_c for s in shown.slots] == [21.0, 21.2]
    assert [s.mode for s in shown.slots] == [Mode.MAX, Mode.MIN]
    assert {c.command_id for c in seen.recent_commands} == {first, second}
    assert all([e.type.value for e in c.events] == ["created"] for c in seen.recent_commands)
    assert [a.alert_id for a in seen.open_alerts] == ["a-1"]
    assert seen.override.in_force


def test_the_status_shows_the_bill_beside_spot_when_a_plan_was_made_on_a_tariff(
    local: LocalFleet,
) -> None:
    home = home_of(local, "viessmann")
    plan, _ = store_plan(local, home.home_id, [Mode.MAX, Mode.MIN])
    untariffed = status.device_status(local.deps, home.home_id).current_plan
    local.deps.store.update(
        f"devices/{home.home_id}/plans/{plan.plan_id}",
        {"tariff_id": "se3-vattenfall-t4", "expected_bill_eur": 1.37, "baseline_bill_eur": 1.52},
    )

    shown = status.device_status(local.deps, home.home_id).current_plan

    assert untariffed is not None
    assert (untariffed.tariff_id, untariffed.expected_bill_eur) == (None, None)
    assert shown is not None
    assert (shown.tariff_id, shown.expected_bill_eur, shown.baseline_bill_eur) == (
        "se3-vattenfall-t4",
        1.37,
        1.52,
    )
    assert (shown.expected_cost_eur, shown.baseline_cost_eur) == (0.42, 0.51)


# -- bulk import ----------------------------------------------------------------------------------


def test_an_import_registers_the_good_rows_and_reports_each_bad_one_with_its_line(
    local: LocalFleet,
) -> None:
    account = account_of(local, "viessmann")
    text = (
        "manufacturer,external_id,account_id,price_area,latitude,longitude,archetype,"
        "min_indoor_temp_c,setpoint_c,max_indoor_temp_c\n"
        f"viessmann,good-1,{account},SE3,59.3,18.1,old_radiators,20,21,23\n"
        f"viessmann,off-globe,{account},SE3,91,18.1,old_radiators,20,21,23\n"
        "\n"
        f'viessmann,"good,2",{account},SE3,59.3,18.1,new_floor_heating,20,21,23\n'
        f"viessmann,narrow,{account},SE3,59.3,18.1,old_radiators,20.5,21,21\n"
        "viessmann,stranger,nobody,SE3,59.3,18.1,old_radiators,20,21,23\n"
        f"viessmann,good-1,{account},SE3,59.3,18.1,old_radiators,20,21,23\n"
        f"viessmann,short,{account}\n"
    )

    report = import_devices(local.deps, ADMIN, text)

    assert (report.imported, report.existing, report.refused) == (2, 1, 4)
    by_line = {row.line: row for row in report.rows}
    assert sorted(by_line) == [2, 3, 5, 6, 7, 8, 9]
    assert (by_line[2].status, by_line[5].status, by_line[8].status) == (
        "imported",
        "imported",
        "existing",
    )
    assert (by_line[3].code, by_line[3].field) == ("invalid", "latitude")
    assert (by_line[6].code, by_line[6].field) == ("invalid", "comfort")
    assert "at least 1 K" in str(by_line[6].message)
    assert (by_line[7].code, by_line[7].field) == ("unknown_account", "account_id")
    assert by_line[9].code == "wrong_cell_count"
    # Nothing of a refused row is written: no device, no key, no audit event.
    for external_id in ("off-globe", "narrow", "stranger", "short"):
        assert local.deps.store.get(devices.device_key_path("viessmann", external_id)) is None
    rows = audit_rows(local)
    assert [(r["operation"], r["context"]["line"]) for r in rows] == [
        ("register_device", 2),
        ("register_device", 5),
    ]
    assert devices.get_device(local.deps, by_line[5].device_id or "").external_id == "good,2"


@pytest.mark.parametrize(
    ("header", "code", "field"),
    [
        ("manufacturer,external_id,colour", "unknown_column", "colour"),
        ("manufacturer,manufacturer", "repeated_column", "manufacturer"),
        ("manufacturer,external_id", "missing_column", "account_id"),
        ("", "empty_file", None),
    ],
)
def test_a_file_whose_header_is_wrong_is_refused_whole(
    local: LocalFleet, header: str, code: str, field: str | None
) -> None:
    text = f"{header}\nviessmann,x\n" if header else ""

    with pytest.raises(Refused) as refused:
        import_devices(local.deps, ADMIN, text)
    assert (refused.value.code, refused.value.field) == (code, field)
    assert audit_rows(local) == []


def test_a_file_with_thermal_columns_instead_of_an_archetype_imports(local: LocalFleet) -> None:
    account = account_of(local, "viessmann")
    text = (
        "manufacturer,external_id,account_id,price_area,latitude,longitude,heat_loss_w_per_k,"
        "air_capacity_kwh_per_k,hp_max_heat_kw,floor_heating,min_indoor_temp_c,setpoint_c,"
        "max_indoor_temp_c,steering_enabled\n"
        f"viessmann,measured,{account},SE4,55.6,13.0,150,2.5,6,true,19,20,22,false\n"
    )

    report = import_devices(local.deps, ADMIN, text)

    [row] = report.rows
    assert row.status == "imported"
    device = devices.get_device(local.deps, row.device_id or "")
    assert (device.thermal.heat_loss_w_per_k, device.thermal.floor_heating) == (150.0, True)
    assert device.price_area is PriceArea.SE4
    assert device.steering_enabled is False
