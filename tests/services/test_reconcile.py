"""Reconciliation against the simulated fleet: each scenario of the issue, one test.

A home is steered to ``max`` from 07:00 by a plan (its command goes through the real dispatch
path and is verified); then something happens to it, and reconciliation runs every 10 minutes
as Cloud Scheduler would.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from hpsteer.adapters.gateway import READ_ATTEMPTS, device_ref
from hpsteer.domain.actions import GenericAction, Mode
from hpsteer.domain.commands import CommandState
from hpsteer.domain.messages import ReconcileRequest, Topic
from hpsteer.errors import DeviceOffline, OemRateLimited, OemUnavailable
from hpsteer.ports.store import DocumentStore
from hpsteer.runtime.local_fleet import LocalFleet
from hpsteer.services.command_log import load_command
from hpsteer.services.ingest_telemetry import TELEMETRY_HISTORY
from hpsteer.services.outbox import command_id_for, release_plan
from hpsteer.services.plans_store import make_current
from hpsteer.services.reconcile import (
    RECONCILIATION_SUCCESS_TOTAL,
    STATE_DRIFT_DETECTED_TOTAL,
    USER_OVERRIDES_TOTAL,
    DeviceOutcome,
    intended_now,
    reconcile_context,
    reconcile_page,
)
from hpsteer.sim.faults import FaultSpec
from hpsteer.sim.fleet import Home

T0 = datetime(2025, 1, 15, 6, tzinfo=UTC)
SLOT = T0 + timedelta(hours=1)
PLAN_END = T0 + timedelta(hours=12)
INTERVAL = timedelta(minutes=10)


class Rig:
    def __init__(self, local: LocalFleet) -> None:
        self.local = local
        self.store = local.deps.store

    @property
    def now(self) -> datetime:
        return self.local.clock.now()

    def home(self, manufacturer: str) -> Home:
        return next(h for h in self.local.fleet if h.manufacturer == manufacturer)

    def steer(self, home: Home, mode: Mode = Mode.MAX, at: datetime = SLOT) -> str:
        """A current plan: mid until ``at``, then ``mode`` until the plan ends."""
        plan_id = "p1"
        schedule = [(T0, Mode.MID), (at, mode)]
        outbox = [{"at": at.isoformat(), "action": mode.action.value, "slot_index": 4}]
        document: dict[str, Any] = {
            "plan_id": plan_id,
            "device_id": home.home_id,
            "end_at": PLAN_END,
            "outbox": [{**e, "status": "pending"} for e in outbox],
        }
        self.store.set(f"devices/{home.home_id}/plans/{plan_id}", document)
        make_current(self.store, home.home_id, plan_id, T0, T0, schedule, PLAN_END)
        device = self.store.get(f"devices/{home.home_id}")
        assert device is not None
        release_plan(self.local.deps, home.home_id, device.data, document)
        return command_id_for(plan_id, 4)

    def replan(self, home: Home, plan_id: str, switch: datetime, mode: Mode) -> None:
        """A newer current plan made now: ``mode`` from ``switch`` until the plan ends, its one
        change released."""
        outbox = {"at": switch.isoformat(), "action": mode.action.value, "slot_index": 8}
        document: dict[str, Any] = {
            "plan_id": plan_id,
            "device_id": home.home_id,
            "end_at": PLAN_END,
            "outbox": [{**outbox, "status": "pending"}],
        }
        self.store.set(f"devices/{home.home_id}/plans/{plan_id}", document)
        schedule = [(switch, mode)]
        make_current(self.store, home.home_id, plan_id, switch, self.now, schedule, PLAN_END)
        release_plan(self.local.deps, home.home_id, self.device(home), document)

    def reconcile(self) -> dict[str, DeviceOutcome]:
        request = ReconcileRequest(scheduled_at=self.now, shard_size=100)
        outcomes = reconcile_page(
            request, self.local.deps, gateway=self.local.gateway, counters=self.local.metrics
        )
        return {o.device_id: o for o in outcomes}

    def run(self, until: datetime) -> list[dict[str, DeviceOutcome]]:
        """Deliver tasks and reconcile every 10 minutes (on the :x0 marks) until ``until``."""
        runs = []
        while True:
            next_tick = (
                self.now
                - timedelta(minutes=self.now.minute % 10, seconds=self.now.second)
                + INTERVAL
            )
            if next_tick > until:
                self.local.run_until(until)
                return runs
            self.local.run_until(next_tick)
            runs.append(self.reconcile())

    def device(self, home: Home) -> dict[str, Any]:
        found = self.store.get(f"devices/{home.home_id}")
        assert found is not None
        return found.data

    def alerts(self) -> list[dict[str, Any]]:
        return [d.data for d in self.store.query("alerts").documents]

    def commands(self, home: Home) -> list[dict[str, Any]]:
        return [d.data for d in self.store.query(f"devices/{home.home_id}/commands").documents]


@pytest.fixture
def rig(document_store: DocumentStore) -> Callable[..., Rig]:
    """Reconciliation on the local store, and on Firestore (its emulator) in its place."""

    def make(homes: int = 3, seed: int = 21) -> Rig:
        local = LocalFleet.build(
            start=T0, homes=homes, seed=seed, wrap_store=lambda _local: document_store
        )
        local.register_devices()
        return Rig(local)

    return make


def actions(runs: list[dict[str, DeviceOutcome]], home: Home) -> list[tuple[str, ...]]:
    return [run[home.home_id].actions for run in runs if home.home_id in run]


# -- in sync ----------------------------------------------------------------------------------


def test_a_steered_home_that_does_what_was_planned_is_in_sync_and_costs_no_write(
    rig: Callable[..., Rig],
) -> None:
    r = rig()
    home = r.home("viessmann")
    command_id = r.steer(home)
    r.run(SLOT + timedelta(minutes=15))
    assert load_command(r.store, home.home_id, command_id).state is CommandState.COMPLETED  # type: ignore[union-attr]
    r.run(SLOT + timedelta(minutes=35))  # the first poll in max is stored: the mode changed
    before = r.store.get(f"devices/{home.home_id}")
    runs = r.run(SLOT + timedelta(hours=1))
    assert actions(runs, home) == [("InSync",)] * 3
    after = r.store.get(f"devices/{home.home_id}")
    assert before is not None
    assert after is not None
    assert after.update_time == before.update_time  # steady state writes nothing
    assert r.local.metrics.counter(RECONCILIATION_SUCCESS_TOTAL, oem="viessmann") >= 3


def test_the_intended_mode_changing_moments_ago_is_left_to_the_command_path(
    rig: Callable[..., Rig],
) -> None:
    r = rig()
    home = r.home("nibe_myuplink")
    r.steer(home)
    runs = r.run(SLOT + timedelta(minutes=15))
    assert actions(runs, home)[-1] == ("Skip",)
    assert r.local.metrics.counter(STATE_DRIFT_DETECTED_TOTAL) == 0


# -- drift ------------------------------------------------------------------------------------


def test_a_command_accepted_but_never_applied_is_remediated_by_reconciliation(
    rig: Callable[..., Rig],
) -> None:
    r = rig()
    home = r.home("daikin_onecta")
    command_id = r.steer(home)
    r.local.fleet.faults.set_device(home.home_id, FaultSpec(not_applied_rate=1.0))
    runs = r.run(SLOT + timedelta(minutes=25))  # failed its verification twice: failed
    assert load_command(r.store, home.home_id, command_id).state is CommandState.FAILED  # type: ignore[union-attr]
    assert ("Remediate",) not in actions(runs, home)  # the command path's window
    r.local.fleet.faults.clear(home.home_id)
    runs = r.run(SLOT + timedelta(minutes=75))
    assert actions(runs, home)[0] == ("Remediate",)
    assert home.target_c == pytest.approx(home.room_setpoint_c + 2.0)
    judged = [a for a in actions(runs, home) if a != ("not_polled",)]
    assert judged[-1] == ("InSync",)
    assert r.device(home)["reconcile"]["remediations_in_a_row"] == 0


def onecta_command_not_applied(r: Rig) -> tuple[Home, datetime]:
    """An Onecta home whose plan's max at a slot from 07:00 was accepted and not applied (its
    verifications failed it), the slot chosen so that the first run after the command path's
    window (25 minutes) is not one of the device's polls (Onecta's read share pays a poll every
    third run)."""
    home = r.home("daikin_onecta")
    ref = device_ref(home.home_id, r.device(home))

    def polled_at(tick: datetime) -> bool:
        return reconcile_context(r.local.deps, tick, gateway=r.local.gateway).poll_due(ref)

    slot = next(
        SLOT + timedelta(minutes=m)
        for m in (0, 10, 20)
        if not polled_at(SLOT + timedelta(minutes=m + 30))
    )
    r.steer(home, Mode.MAX, at=slot)
    r.local.fleet.faults.set_device(home.home_id, FaultSpec(not_applied_rate=1.0))
    runs = r.run(slot + timedelta(minutes=25))
    assert ("Remediate",) not in actions(runs, home)  # the command path's window
    r.local.fleet.faults.clear(home.home_id)
    return home, slot


def test_where_polls_come_every_few_runs_the_first_run_after_a_commands_window_still_looks(
    rig: Callable[..., Rig],
) -> None:
    """A command accepted but never applied is still corrected at the first run after the
    command path's window, off the device's poll stride, its read paid from the command share."""
    r = rig()
    home, slot = onecta_command_not_applied(r)
    budget = r.local.gateway.budget(
        "daikin_onecta", device_ref(home.home_id, r.device(home)).account_id
    )
    reads_before = budget.usage("read")["86400s"]  # the day's reads
    runs = r.run(slot + timedelta(minutes=30))
    assert actions(runs, home) == [("Remediate",)]
    assert budget.usage("read")["86400s"] == reads_before  # the command share paid for the look
    r.local.run_until(r.now + timedelta(minutes=1))
    assert home.target_c == pytest.approx(home.room_setpoint_c + 2.0)


def test_a_post_command_check_that_could_not_read_is_owed_until_a_read_answers(
    rig: Callable[..., Rig], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The manufacturer's cloud is down from the check's run for 20 minutes (the command failed
    for that reason too): every run after it reads the device, off its stride, until one
    answers; then it is remediated, and the device is back on its stride."""
    r = rig()
    home, slot = onecta_command_not_applied(r)
    adapter = r.local.gateway.adapter("daikin_onecta")
    read = adapter.get_device_state
    back_at = slot + timedelta(minutes=50)
    calls: list[datetime] = []

    def down(device: Any) -> Any:
        calls.append(r.now)
        if r.now < back_at:
            raise OemUnavailable("daikin_onecta: 503 Service Unavailable")
        return read(device)

    monkeypatch.setattr(adapter, "get_device_state", down)
    runs = r.run(slot + timedelta(minutes=45))
    assert not any(a == ("Remediate",) for a in actions(runs, home))
    assert r.device(home)["reconcile"]["look_owed_for"] == slot
    assert {c.replace(second=0) for c in calls} >= {slot + timedelta(minutes=m) for m in (30, 40)}
    runs = r.run(back_at)
    assert actions(runs, home) == [("Remediate",)]
    assert r.device(home)["reconcile"]["look_owed_for"] is None
    runs = r.run(back_at + timedelta(minutes=30))
    assert ("not_polled",) in actions(runs, home)  # back on its stride


def test_an_owed_post_command_check_ends_when_the_manufacturer_says_the_device_is_offline(
    rig: Callable[..., Rig], monkeypatch: pytest.MonkeyPatch
) -> None:
    r = rig()
    home, slot = onecta_command_not_applied(r)
    adapter = r.local.gateway.adapter("daikin_onecta")
    cloud_back = {"yes": False}

    def down(device: Any) -> Any:
        if not cloud_back["yes"]:
            raise OemUnavailable("daikin_onecta: 503 Service Unavailable")
        raise DeviceOffline("daikin_onecta: the device's gateway does not answer")

    monkeypatch.setattr(adapter, "get_device_state", down)
    r.run(slot + timedelta(minutes=35))
    assert r.device(home)["reconcile"]["look_owed_for"] == slot
    cloud_back["yes"] = True
    runs = r.run(slot + timedelta(minutes=45))
    assert actions(runs, home) == [("MarkUnreachable",)]
    assert r.device(home)["reconcile"]["look_owed_for"] is None  # no read every run meanwhile


def test_applied_then_reverted_by_a_reboot_is_corrected_within_one_interval(
    rig: Callable[..., Rig],
) -> None:
    r = rig()
    home = r.home("viessmann")
    r.steer(home)
    r.run(SLOT + timedelta(minutes=40))
    assert home.target_c == pytest.approx(home.room_setpoint_c + 2.0)
    r.local.fleet.reboot(home.home_id)
    assert home.target_c == pytest.approx(home.room_setpoint_c)  # back to the household's own
    rebooted_at = r.now
    runs = r.run(rebooted_at + INTERVAL)
    assert actions(runs, home) == [("Remediate",)]
    r.local.run_until(r.now + timedelta(minutes=1))
    assert home.target_c == pytest.approx(home.room_setpoint_c + 2.0)
    assert r.local.metrics.counter(STATE_DRIFT_DETECTED_TOTAL, oem="viessmann") == 1
    runs = r.run(r.now + timedelta(minutes=40))
    assert actions(runs, home)[-1] == ("InSync",)
    remedy = [c for c in r.commands(home) if c["command_id"].startswith("remedy-")]
    assert [c["state"] for c in remedy] == ["completed"]


@pytest.mark.parametrize("commanded", [False, True])
def test_a_replan_that_keeps_the_mode_without_a_command_does_not_blind_reconciliation(
    rig: Callable[..., Rig], commanded: bool
) -> None:
    """Plan p2 at 08:00 keeps the max p1 set at 07:00. Sending no command for it (the device is
    in max), it leaves the command path's window where the max began: a reboot at 08:01 is
    corrected at 08:10. A p2 that does command its max has that command in flight: left alone."""
    r = rig()
    home = r.home("viessmann")
    r.steer(home)
    replan_at = SLOT + timedelta(hours=1)
    r.run(replan_at)
    schedule = [(replan_at, Mode.MAX)]
    make_current(
        r.store,
        home.home_id,
        "p2",
        replan_at,
        replan_at,
        schedule,
        PLAN_END,
        first_run_commanded=commanded,
    )
    assert intended_now(r.device(home), r.now)[0].since == (replan_at if commanded else SLOT)
    r.local.run_until(replan_at + timedelta(minutes=1))
    r.local.fleet.reboot(home.home_id)
    runs = r.run(replan_at + INTERVAL)
    assert actions(runs, home) == [("Skip",) if commanded else ("Remediate",)]


def test_a_read_that_failed_on_the_manufacturers_5xx_is_tried_again_in_the_same_run(
    rig: Callable[..., Rig], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its three attempts failed; the page looks once more after its other devices, so the
    drift is still corrected within the interval, and that second read is paid on its own."""
    r = rig()
    home = r.home("viessmann")
    r.steer(home)
    r.run(SLOT + timedelta(minutes=40))
    r.local.fleet.reboot(home.home_id)
    adapter = r.local.gateway.adapter("viessmann")
    read = adapter.get_device_state
    failures = {"left": READ_ATTEMPTS}

    def flaky(device: Any) -> Any:
        if device.device_id == home.home_id and failures["left"]:
            failures["left"] -= 1
            raise OemUnavailable("viessmann: 503 Service Unavailable")
        return read(device)

    monkeypatch.setattr(adapter, "get_device_state", flaky)
    runs = r.run(r.now + INTERVAL)
    assert failures["left"] == 0
    assert actions(runs, home) == [("Remediate",)]
    r.local.run_until(r.now + timedelta(minutes=1))
    assert home.target_c == pytest.approx(home.room_setpoint_c + 2.0)


def test_a_read_refused_for_a_429_is_not_looked_at_again_by_the_same_page(
    rig: Callable[..., Rig], monkeypatch: pytest.MonkeyPatch
) -> None:
    r = rig()
    home = r.home("viessmann")
    r.steer(home)
    r.run(SLOT + timedelta(minutes=40))
    adapter = r.local.gateway.adapter("viessmann")
    read = adapter.get_device_state
    calls = {"n": 0}

    def limited(device: Any) -> Any:
        if device.device_id == home.home_id:
            calls["n"] += 1
            raise OemRateLimited("viessmann: 429", retry_at=r.now + timedelta(minutes=1))
        return read(device)

    monkeypatch.setattr(adapter, "get_device_state", limited)
    runs = r.run(r.now + INTERVAL)
    assert actions(runs, home) == [("OemRateLimited",)]
    assert calls["n"] == 1


def test_drift_that_stays_is_alerted_after_three_remediations_and_resolves_when_in_sync(
    rig: Callable[..., Rig],
) -> None:
    r = rig()
    home = r.home("nibe_myuplink")
    r.steer(home)
    r.run(SLOT + timedelta(minutes=30))
    r.local.fleet.faults.set_device(home.home_id, FaultSpec(not_applied_rate=1.0))
    r.local.fleet.reboot(home.home_id)
    runs = r.run(SLOT + timedelta(hours=3))
    taken = [a for a in actions(runs, home) if a != ("Skip",)]
    assert taken[:3] == [("Remediate",)] * 3
    assert ("RaiseAlert",) in taken
    assert taken.count(("Remediate",)) == 3  # no more after the alert
    [alert] = [a for a in r.alerts() if a["kind"] == "persistent_drift"]
    assert alert.get("resolved_at") is None
    r.local.fleet.faults.clear(home.home_id)
    # A person fixes the heat pump: it follows the plan again.
    adapter = r.local.gateway.adapter("nibe_myuplink")
    payload = adapter.translate_generic_command(GenericAction.SET_MODE_MAX, home.ref())
    adapter.send_command(GenericAction.SET_MODE_MAX, payload, home.ref())
    runs = r.run(r.now + INTERVAL)
    assert actions(runs, home)[-1] == ("InSync", "ResolveAlert")
    [alert] = [a for a in r.alerts() if a["kind"] == "persistent_drift"]
    assert alert["resolved_at"] is not None


def test_a_manufacturer_whose_read_share_cannot_pay_a_poll_every_run_is_polled_in_turn(
    rig: Callable[..., Rig],
) -> None:
    r = rig(homes=6)
    for home in r.local.fleet:
        r.steer(home)
    runs = r.run(SLOT + timedelta(hours=3))[-9:]  # after the command path's window
    for home in r.local.fleet:
        polled = [run[home.home_id].read for run in runs]
        if home.manufacturer == "daikin_onecta":  # 200 a day, 60 for reads: every third run
            assert polled.count(True) == 3, polled
        else:
            assert all(polled), polled


# -- the household ----------------------------------------------------------------------------


def test_a_user_raising_the_setpoint_in_the_app_pauses_steering_and_asks_for_a_new_plan(
    rig: Callable[..., Rig],
) -> None:
    r = rig()
    home = r.home("daikin_onecta")
    r.steer(home)
    r.run(SLOT + timedelta(minutes=30))
    r.local.fleet.user_changes_setpoint(home.home_id, home.room_setpoint_c + 1.0)
    received = home.commands_received
    runs = r.run(SLOT + timedelta(hours=3))
    assert ("Override",) in actions(runs, home)
    assert home.commands_received == received  # never fought
    device = r.device(home)
    assert device["override_until"] == datetime(2025, 1, 15, 23, tzinfo=UTC)  # end of SE3's day
    assert device["reconcile"]["last_override"]["observed_mode"] is None
    replans = r.local.deps.bus.published(Topic.REPLAN_REQUESTS.value)  # type: ignore[attr-defined]
    assert len(replans) == 1
    assert r.local.metrics.counter(USER_OVERRIDES_TOTAL) == 1
    assert actions(runs, home)[-1] == ("Skip",)  # paused, not re-judged
    assert r.alerts() == []


def test_after_an_override_mid_means_the_households_new_setting_not_the_one_learnt_before(
    rig: Callable[..., Rig],
) -> None:
    r = rig()
    home = r.home("viessmann")
    r.steer(home, Mode.MAX)
    r.run(SLOT + timedelta(minutes=30))
    assert home.applied_lever == home.household_lever + 2.0  # max: two kelvin up
    r.local.fleet.user_changes_setpoint(home.home_id, home.household_lever + 1.0)
    chosen = home.household_lever
    runs = r.run(SLOT + timedelta(hours=1))
    assert ("Override",) in actions(runs, home)
    end = datetime(2025, 1, 15, 23, tzinfo=UTC)  # the pause ends with SE3's day
    r.local.run_until(end)
    payload, _ = r.local.gateway.prepare(home.ref(), GenericAction.SET_MODE_MID)
    r.local.gateway.send(home.ref(), GenericAction.SET_MODE_MID, payload)
    assert home.applied_lever == chosen  # the household's choice, not the old setpoint


def held_in_max_with_every_command_failing(r: Rig) -> Home:
    """A myUplink home that plan p1 put in max, whose cloud now refuses every command (reads
    still answer)."""
    home = r.home("nibe_myuplink")
    r.steer(home, Mode.MAX)
    r.run(SLOT + timedelta(minutes=30))
    assert home.applied_lever != home.household_lever  # held in max by plan p1
    r.local.fleet.faults.set_device(
        home.home_id, FaultSpec(server_error_rate=1.0, wire_faults_on_writes_only=True)
    )
    return home


def test_a_device_left_in_the_previous_plans_mode_by_a_failed_command_is_remediated_not_paused(
    rig: Callable[..., Rig],
) -> None:
    r = rig()
    home = held_in_max_with_every_command_failing(r)
    switch = SLOT + timedelta(hours=1)
    r.replan(home, "p2", switch, Mode.MID)
    runs = r.run(switch + timedelta(minutes=45))
    seen = actions(runs, home)
    assert ("Override",) not in seen  # max was ours: the household did nothing
    assert any("Remediate" in names for names in seen)
    assert r.device(home).get("override_until") is None


def test_a_device_left_where_an_older_plan_put_it_by_failed_commands_is_remediated_not_paused(
    rig: Callable[..., Rig],
) -> None:
    """Two plans replace each other while every command fails: the device stays in the max of
    the plan before both, a mode neither current plan names. Our last accepted command put it
    there, so it is drift, not the household's choice."""
    r = rig()
    home = held_in_max_with_every_command_failing(r)
    for plan_id, switch in (("p2", SLOT + timedelta(hours=1)), ("p3", SLOT + timedelta(hours=2))):
        r.replan(home, plan_id, switch, Mode.MID)
        r.run(switch + timedelta(minutes=5))
    assert r.device(home)["previous_plan_mode"] == "mid"  # p2's: max is in neither plan
    runs = r.run(SLOT + timedelta(hours=2, minutes=45))  # the writes still fail
    seen = actions(runs, home)
    assert ("Override",) not in seen
    assert any("Remediate" in names for names in seen)
    assert r.device(home).get("override_until") is None


def test_min_or_max_that_no_command_of_ours_set_last_is_the_households_choice(
    rig: Callable[..., Rig],
) -> None:
    r = rig()
    home = r.home("viessmann")
    r.steer(home, Mode.MAX)
    r.run(SLOT + timedelta(minutes=30))
    received = home.commands_received
    # The app: two kelvin below the setting learnt, which is what our min would set.
    r.local.fleet.user_changes_setpoint(home.home_id, home.household_lever - 2.0)
    runs = r.run(SLOT + timedelta(hours=1))
    assert ("Override",) in actions(runs, home)
    assert home.commands_received == received  # never fought
    assert r.device(home)["reconcile"]["last_override"]["observed_mode"] == "min"


# -- unreachable and stale --------------------------------------------------------------------


def test_a_gateway_offline_for_two_hours_is_alerted_and_resolved_when_it_is_back(
    rig: Callable[..., Rig],
) -> None:
    r = rig()
    home = r.home("viessmann")
    r.steer(home)
    r.run(SLOT + timedelta(minutes=30))
    r.local.fleet.faults.set_device(home.home_id, FaultSpec(gateway_offline=True))
    offline_at = r.now
    runs = r.run(offline_at + timedelta(hours=2))
    taken = [a for a in actions(runs, home) if a]
    assert taken[0] == ("MarkUnreachable",)
    assert ("RaiseAlert",) in taken
    [alert] = r.alerts()
    assert alert["kind"] == "device_unreachable"
    r.local.fleet.faults.clear(home.home_id)
    runs = r.run(r.now + INTERVAL)
    assert actions(runs, home)[-1] == ("MarkReachable", "InSync", "ResolveAlert")
    [alert] = r.alerts()
    assert alert["resolved_at"] is not None


def test_stale_telemetry_is_not_trusted_the_device_is_read_instead(
    rig: Callable[..., Rig],
) -> None:
    r = rig()
    home = r.home("nibe_myuplink")
    r.steer(home)
    r.run(SLOT + timedelta(minutes=40))
    r.local.run_until(r.now + timedelta(minutes=1))
    stale = {"observed_at": r.now - timedelta(hours=2), "observed_mode": "min", "online": True}
    r.store.update(f"devices/{home.home_id}", {"last_telemetry": stale})
    outcome = r.reconcile()[home.home_id]
    assert outcome.read is True  # too old to judge by: asked the manufacturer
    assert outcome.actions == ("InSync",)  # not an override, not a drift


def test_fresh_telemetry_in_sync_costs_no_manufacturer_read_and_no_write(
    rig: Callable[..., Rig],
) -> None:
    r = rig()
    home = r.home("daikin_onecta")
    r.steer(home)
    r.run(SLOT + timedelta(minutes=40))
    r.local.run_until(r.now + timedelta(minutes=1))
    fresh = {
        "observed_at": r.now - timedelta(minutes=2),
        "observed_mode": "max",
        "setpoint_offset_k": 2.0,
        "online": True,
    }
    r.store.update(f"devices/{home.home_id}", {"last_telemetry": fresh})
    before = r.store.get(f"devices/{home.home_id}")
    published = len(r.local.deps.bus.published(Topic.DEVICE_TELEMETRY))

    outcome = r.reconcile()[home.home_id]

    assert (outcome.read, outcome.actions) == (False, ("InSync",))
    after = r.store.get(f"devices/{home.home_id}")
    assert before is not None
    assert after is not None
    assert after.update_time == before.update_time
    assert len(r.local.deps.bus.published(Topic.DEVICE_TELEMETRY)) == published


def test_a_poll_worth_storing_is_stored_by_reconciliation_and_every_poll_goes_to_the_history(
    rig: Callable[..., Rig],
) -> None:
    """The history keeps every polled state, appended by reconciliation itself. One that changes
    nothing decided by within an hour of the stored one is only recorded (no write); one that
    differs from what is stored is stored as ``last_telemetry`` by reconciliation, with the
    device document it read (on Firestore too: the write is conditional on that read). Nothing
    goes on ``device-telemetry`` for ingestion."""
    r = rig()
    home = r.home("viessmann")
    r.steer(home)
    r.run(SLOT + timedelta(minutes=40))
    path = f"devices/{home.home_id}"

    def recorded() -> list[str]:
        r.local.deps.analytics.ensure_table(TELEMETRY_HISTORY)
        rows = r.local.deps.analytics.query(
            "SELECT sample_id FROM `telemetry_history` WHERE device_id = @device",
            {"device": home.home_id},
        )
        return [row["sample_id"] for row in rows]

    stored = r.device(home)["last_telemetry"]
    assert stored["observed_mode"] == "max"  # the poll that first saw the plan's mode
    assert stored["sample_id"] in recorded()
    before = r.store.get(path)
    r.run(r.now + INTERVAL)
    after = r.store.get(path)
    assert before is not None
    assert after is not None
    assert after.update_time == before.update_time  # unchanged: recorded only
    latest = f"{home.home_id}@{r.now.strftime('%Y-%m-%dT%H:%M:%SZ')}"
    assert latest in recorded()

    r.store.update(path, {"last_telemetry.observed_mode": "min"})
    r.local.run_until(r.now + INTERVAL)
    assert r.reconcile()[home.home_id].actions == ("InSync",)  # judged by the poll, not by "min"
    stored = r.device(home)["last_telemetry"]
    assert stored["observed_mode"] == "max"  # differs from what was stored: stored
    assert stored["observed_at"] == r.now
    assert stored["sample_id"] in recorded()
    assert r.local.deps.bus.published(Topic.DEVICE_TELEMETRY) == []  # type: ignore[attr-defined]


# -- redelivery -------------------------------------------------------------------------------


def test_a_page_delivered_twice_is_reconciled_once(rig: Callable[..., Rig]) -> None:
    r = rig()
    home = r.home("viessmann")
    r.steer(home)
    r.run(SLOT + timedelta(minutes=40))
    r.local.fleet.reboot(home.home_id)
    r.local.run_until(r.now + timedelta(minutes=1))  # between the scheduler's ticks
    request = ReconcileRequest(scheduled_at=r.now, shard_size=100)
    first = reconcile_page(request, r.local.deps, gateway=r.local.gateway, counters=r.local.metrics)
    again = reconcile_page(request, r.local.deps, gateway=r.local.gateway, counters=r.local.metrics)
    assert [o.actions for o in first if o.device_id == home.home_id] == [("Remediate",)]
    assert again == []
    remedy = [c for c in r.commands(home) if c["command_id"].startswith("remedy-")]
    assert len(remedy) == 1


def test_devices_are_reconciled_in_pages_each_publishing_the_next(rig: Callable[..., Rig]) -> None:
    r = rig(homes=5)
    for home in r.local.fleet:
        r.steer(home)
    r.run(SLOT + timedelta(minutes=40))
    r.local.run_until(r.now + timedelta(minutes=1))
    bus = r.local.deps.bus
    already = len(bus.published(Topic.RECONCILE_REQUESTS.value))  # type: ignore[attr-defined]
    requests = [ReconcileRequest(scheduled_at=r.now, shard_size=2)]
    seen: list[str] = []
    for request in requests:  # grows as each page publishes the next
        page = reconcile_page(
            request, r.local.deps, gateway=r.local.gateway, counters=r.local.metrics
        )
        seen += [o.device_id for o in page]
        published = bus.published(Topic.RECONCILE_REQUESTS.value)  # type: ignore[attr-defined]
        requests += [ReconcileRequest.parse_json(m.data) for m in published[already:]]
        already = len(published)
        assert len(requests) <= 3  # 5 devices, 2 per page
    assert sorted(seen) == sorted(h.home_id for h in r.local.fleet)


def test_a_device_with_an_unknown_manufacturer_is_reported_not_crashed_on(
    rig: Callable[..., Rig],
) -> None:
    r = rig()
    home = r.home("viessmann")
    r.steer(home)
    r.run(SLOT + timedelta(minutes=40))
    r.store.update(f"devices/{home.home_id}", {"manufacturer": "acme_heat"})
    r.local.run_until(r.now + timedelta(minutes=1))
    outcomes = r.reconcile()
    assert outcomes[home.home_id].error == "InvalidInput"
    assert all(o.error is None for d, o in outcomes.items() if d != home.home_id)


def test_cloud_schedulers_fixed_body_is_reconciled_once_per_tick(rig: Callable[..., Rig]) -> None:
    """A Pub/Sub target publishes the same body at every tick: the publish minute is the tick, so
    the scheduler's duplicate within it is a redelivery, and the next tick is a new pass."""
    from hpsteer.messaging.envelope import PubSubMessage
    from hpsteer.services.reconcile import handle_reconcile_request

    r = rig()
    r.steer(r.home("viessmann"))
    r.local.run_until(SLOT + timedelta(minutes=30))

    def tick(message_id: str, at: datetime) -> None:
        message = PubSubMessage(
            message_id=message_id, data=b'{"schema_version": 1}', attributes={}, publish_time=at
        )
        handle_reconcile_request(message, r.local.deps)

    at = r.now
    tick("1", at)
    tick("2", at + timedelta(seconds=20))  # the scheduler's duplicate of the same tick
    tick("3", at + timedelta(minutes=10))
    markers = [d.id for d in r.store.query("reconcile_runs").documents]
    assert len(markers) == 2
