"""Dispatch and verification: every mode change ends verified, or failed with an alert, or
superseded, and the manufacturer hears each attempt once.

The rig is the local command path (:class:`hpsteer.runtime.local_fleet.LocalFleet`): local
backends on a simulated clock, the real adapters, breakers and budgets, the simulated fleet behind
the manufacturers' emulated APIs, and a task queue whose deliveries call the handlers.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from hpsteer.config import Settings
from hpsteer.domain.actions import GenericAction, Mode
from hpsteer.domain.commands import Command, CommandState
from hpsteer.domain.messages import CommandTask, Topic
from hpsteer.errors import OemRateLimited
from hpsteer.observability.metrics import (
    COMMAND_DURATION_SECONDS,
    COMMAND_RETRY_TOTAL,
    COMMANDS_FAILURE_TOTAL,
    COMMANDS_SENT_TOTAL,
    COMMANDS_SUCCESS_TOTAL,
)
from hpsteer.ports.store import DocumentStore
from hpsteer.runtime.local_fleet import LocalFleet
from hpsteer.services.command_log import history, load_command
from hpsteer.services.command_tasks import DISPATCH_RETRY, dispatch_queue
from hpsteer.services.dispatch import TaskDelivery, handle_dispatch
from hpsteer.services.outbox import (
    command_id_for,
    release_plan,
    supersede_older,
    sweep,
)
from hpsteer.services.outbox_markers import RELEASE_DUE_AT, new_release
from hpsteer.sim.faults import FaultPlan, FaultSpec
from hpsteer.sim.fleet import Home

T0 = datetime(2025, 1, 15, 6, tzinfo=UTC)
# These specs are about what a release does with a plan's changes: every change is within its
# reach (how far ahead changes are released has its own specs, tests/services/test_outbox_reach.py).
WHOLE_PLAN = Settings(backend="local", release_ahead_minutes=2880)
SLOT = T0 + timedelta(hours=1)
S = CommandState


class Crash(Exception):
    """A simulated crash of the handler between two of its steps."""


@pytest.fixture
def make_local(document_store: DocumentStore) -> Callable[..., LocalFleet]:
    """The command path on the local store, and on Firestore (its emulator) in its place."""

    def make(homes: int = 3, seed: int = 11, faults: FaultPlan | None = None) -> LocalFleet:
        local = LocalFleet.build(
            start=T0,
            homes=homes,
            seed=seed,
            faults=faults,
            settings=WHOLE_PLAN,
            wrap_store=lambda _local: document_store,
        )
        local.register_devices()
        return local

    return make


def home_of(local: LocalFleet, manufacturer: str) -> Home:
    return next(h for h in local.fleet if h.manufacturer == manufacturer)


def publish_plan(
    local: LocalFleet,
    device_id: str,
    plan_id: str,
    changes: list[tuple[datetime, GenericAction]],
    *,
    slots: list[tuple[datetime, datetime, Mode]] | None = None,
) -> list[str]:
    """Write a plan document with its outbox and release fields, make it current, release it."""
    store = local.deps.store
    end_at = changes[-1][0] + timedelta(hours=2)
    document: dict[str, Any] = {
        "plan_id": plan_id,
        "device_id": device_id,
        "end_at": end_at,
        "slots": [
            {
                "start_at": s.isoformat().replace("+00:00", "Z"),
                "end_at": e.isoformat().replace("+00:00", "Z"),
                "mode": m.value,
            }
            for s, e, m in (slots or [])
        ],
        "outbox": [
            {"at": at.isoformat(), "action": action.value, "slot_index": i * 4, "status": "pending"}
            for i, (at, action) in enumerate(changes)
        ],
        **new_release(local.clock.now()),
    }
    store.set(f"devices/{device_id}/plans/{plan_id}", document)
    store.update(f"devices/{device_id}", {"current_plan_id": plan_id})
    device = store.get(f"devices/{device_id}")
    assert device is not None
    return release_plan(local.deps, device_id, device.data, document).queued


def command(local: LocalFleet, device_id: str, command_id: str) -> Command:
    found = load_command(local.deps.store, device_id, command_id)
    assert found is not None
    return found


def states(local: LocalFleet, device_id: str, command_id: str) -> list[str]:
    return [e.type.value for e in history(local.deps.store, device_id, command_id)]


def alerts(local: LocalFleet) -> list[dict[str, Any]]:
    return [d.data for d in local.deps.store.query("alerts").documents]


# -- the happy path ---------------------------------------------------------------------------


@pytest.mark.parametrize("manufacturer", ["viessmann", "nibe_myuplink", "daikin_onecta"])
def test_a_planned_mode_change_is_sent_at_its_slot_verified_and_completed(
    make_local: Callable[..., LocalFleet], manufacturer: str
) -> None:
    local = make_local()
    home = home_of(local, manufacturer)
    [command_id] = publish_plan(local, home.home_id, "p1", [(SLOT, GenericAction.SET_MODE_MAX)])
    assert command(local, home.home_id, command_id).state is S.PENDING

    local.run_until(SLOT - timedelta(seconds=1))
    assert home.commands_received == 0  # nothing before the slot starts

    local.run_until(SLOT + timedelta(seconds=1))
    sent = command(local, home.home_id, command_id)
    assert sent.state is S.ACKNOWLEDGED
    assert sent.sent_at == SLOT
    assert sent.attempt == 1
    assert sent.manufacturer_payload  # the adapter's translation is on the command
    assert home.commands_received == 1
    assert home.target_c == pytest.approx(home.room_setpoint_c + 2.0)

    local.run_until(SLOT + timedelta(minutes=11))
    done = command(local, home.home_id, command_id)
    assert done.state is S.COMPLETED
    assert done.verified_at == SLOT + timedelta(minutes=10)  # verify_delay_seconds = 600
    assert states(local, home.home_id, command_id) == [
        "created",
        "sent",
        "acknowledged",
        "verified",
        "completed",
    ]
    labels = {"oem": manufacturer, "action": "set_mode_max"}
    assert local.metrics.counter(COMMANDS_SENT_TOTAL, **labels) == 1
    assert local.metrics.counter(COMMANDS_SUCCESS_TOTAL, **labels) == 1
    duration = local.metrics.histogram(COMMAND_DURATION_SECONDS, oem=manufacturer)
    assert duration is not None
    assert duration.total == pytest.approx(600.0)
    rows = local.deps.analytics.query(
        "SELECT seq, type, state FROM `command_events` WHERE command_id = @c ORDER BY seq",
        {"c": command_id},
    )
    assert [(r["type"], r["state"]) for r in rows] == [
        ("created", "pending"),
        ("sent", "sent"),
        ("acknowledged", "acknowledged"),
        ("verified", "verified"),
        ("completed", "completed"),
    ]


def test_a_redelivered_task_after_completion_sends_nothing(
    make_local: Callable[..., LocalFleet],
) -> None:
    local = make_local()
    home = home_of(local, "viessmann")
    [command_id] = publish_plan(local, home.home_id, "p1", [(SLOT, GenericAction.SET_MODE_MIN)])
    local.run_until(SLOT + timedelta(minutes=11))
    assert command(local, home.home_id, command_id).state is S.COMPLETED
    task = TaskDelivery(
        body=CommandTask(device_id=home.home_id, command_id=command_id, purpose="send")
        .model_dump_json()
        .encode(),
        task_name="again",
        queue_name=dispatch_queue("viessmann").name,
    )
    for _ in range(3):
        reply = handle_dispatch(task, local.deps, gateway=local.gateway)
        assert (reply.status, reply.outcome) == (200, "already_completed")
    assert home.commands_received == 1
    assert len(history(local.deps.store, home.home_id, command_id)) == 5


def test_a_released_outbox_released_again_creates_nothing_new(
    make_local: Callable[..., LocalFleet],
) -> None:
    local = make_local()
    home = home_of(local, "viessmann")
    changes = [
        (SLOT, GenericAction.SET_MODE_MAX),
        (SLOT + timedelta(hours=2), GenericAction.SET_MODE_MID),
    ]
    first = publish_plan(local, home.home_id, "p1", changes)
    again = publish_plan(local, home.home_id, "p1", changes)  # the plan rewritten as pending
    assert first == again == [command_id_for("p1", 0), command_id_for("p1", 4)]
    assert len(local.tasks.pending_tasks(dispatch_queue("viessmann").name)) == 2
    assert all(len(history(local.deps.store, home.home_id, c)) == 1 for c in first)


# -- manufacturer failures --------------------------------------------------------------------


def test_manufacturer_5xx_are_retried_with_the_queues_backoff_until_accepted(
    make_local: Callable[..., LocalFleet],
) -> None:
    local = make_local()
    home = home_of(local, "nibe_myuplink")
    [command_id] = publish_plan(local, home.home_id, "p1", [(SLOT, GenericAction.SET_MODE_MAX)])
    local.fleet.faults.set_manufacturer(
        "nibe_myuplink", FaultSpec(server_error_rate=1.0, wire_faults_on_writes_only=True)
    )
    local.run_until(SLOT + timedelta(seconds=35))  # attempts at +0, +10 s, +30 s
    retrying = command(local, home.home_id, command_id)
    assert retrying.state is S.RETRYING
    assert retrying.retry_count == 3
    local.fleet.faults.clear()
    local.fleet.faults.set_manufacturer("nibe_myuplink", FaultSpec())
    local.run_until(SLOT + timedelta(minutes=20))
    done = command(local, home.home_id, command_id)
    assert done.state is S.COMPLETED
    assert done.attempt == 4
    assert states(local, home.home_id, command_id)[:7] == [
        "created",
        "sent",
        "retry_scheduled",
        "sent",
        "retry_scheduled",
        "sent",
        "retry_scheduled",
    ]
    assert (
        local.metrics.counter(COMMAND_RETRY_TOTAL, oem="nibe_myuplink", reason="OemUnavailable")
        == 3
    )


def test_a_manufacturer_that_never_answers_fails_the_command_on_the_last_attempt_with_an_alert(
    make_local: Callable[..., LocalFleet],
) -> None:
    local = make_local()
    home = home_of(local, "daikin_onecta")
    [command_id] = publish_plan(local, home.home_id, "p1", [(SLOT, GenericAction.SET_MODE_MIN)])
    local.fleet.faults.set_manufacturer(
        "daikin_onecta", FaultSpec(timeout_rate=1.0, wire_faults_on_writes_only=True)
    )
    local.run_until(SLOT + timedelta(hours=1))
    failed = command(local, home.home_id, command_id)
    assert failed.state is S.FAILED
    # The breaker opened along the way: attempts it refused are not sends.
    sends = [
        e for e in history(local.deps.store, home.home_id, command_id) if e.type.value == "sent"
    ]
    assert 1 <= len(sends) <= DISPATCH_RETRY.max_attempts
    [alert] = alerts(local)
    assert alert["kind"] == "command_failed"
    assert alert["command_id"] == command_id
    assert alert["published"] is True
    bus = local.deps.bus
    assert len(bus.published(Topic.ALERTS.value)) == 1  # type: ignore[attr-defined]
    assert local.metrics.counter(COMMANDS_FAILURE_TOTAL) == 1
    assert local.tasks.failed_tasks() == []  # the handler ended it: 200, not a dropped task


def test_a_spent_budget_answers_429_with_retry_after_and_records_nothing(
    make_local: Callable[..., LocalFleet],
) -> None:
    local = make_local()
    home = home_of(local, "viessmann")
    [command_id] = publish_plan(local, home.home_id, "p1", [(SLOT, GenericAction.SET_MODE_MAX)])
    local.clock.advance_to(SLOT) if hasattr(local.clock, "advance_to") else local.fleet.advance(
        SLOT
    )
    budget = local.gateway.budget("viessmann", home.account_id)
    budget.block_until(SLOT + timedelta(minutes=30), reason="test")
    delivery = TaskDelivery(
        body=CommandTask(device_id=home.home_id, command_id=command_id, purpose="send")
        .model_dump_json()
        .encode(),
        task_name="t1",
        queue_name=dispatch_queue("viessmann").name,
    )
    reply = handle_dispatch(delivery, local.deps, gateway=local.gateway)
    assert reply.status == 429
    assert reply.headers() == {"Retry-After": "1800"}
    assert states(local, home.home_id, command_id) == ["created"]
    assert home.commands_received == 0
    with pytest.raises(OemRateLimited):
        budget.acquire("command")


def test_an_open_breaker_answers_503_with_retry_after_and_records_nothing(
    make_local: Callable[..., LocalFleet],
) -> None:
    local = make_local()
    home = home_of(local, "viessmann")
    [command_id] = publish_plan(local, home.home_id, "p1", [(SLOT, GenericAction.SET_MODE_MAX)])
    local.fleet.advance(SLOT)
    breaker = local.gateway.breaker("viessmann")
    from hpsteer.errors import OemUnavailable

    for _ in range(10):
        breaker.record_failure(OemUnavailable("boom"))
    assert breaker.state() == "open"
    delivery = TaskDelivery(
        body=CommandTask(device_id=home.home_id, command_id=command_id, purpose="send")
        .model_dump_json()
        .encode(),
        task_name="t1",
        queue_name=dispatch_queue("viessmann").name,
    )
    reply = handle_dispatch(delivery, local.deps, gateway=local.gateway)
    assert (reply.status, reply.outcome) == (503, "circuit_open")
    assert int(reply.headers()["Retry-After"]) > 0
    assert states(local, home.home_id, command_id) == ["created"]


# -- crashes ----------------------------------------------------------------------------------


def test_a_crash_after_the_manufacturer_accepted_is_settled_by_reading_the_device(
    make_local: Callable[..., LocalFleet],
) -> None:
    local = make_local()
    home = home_of(local, "viessmann")
    [command_id] = publish_plan(local, home.home_id, "p1", [(SLOT, GenericAction.SET_MODE_MAX)])
    crashed: list[str] = []

    def crash_once(step: str) -> None:
        if step == "manufacturer_accepted" and not crashed:
            crashed.append(step)
            raise Crash(step)

    local.checkpoint = crash_once
    local.run_until(SLOT + timedelta(minutes=11))
    done = command(local, home.home_id, command_id)
    assert crashed
    assert done.state is S.COMPLETED
    assert home.commands_received == 1  # never sent twice
    events = history(local.deps.store, home.home_id, command_id)
    assert [e.type.value for e in events] == [
        "created",
        "sent",
        "acknowledged",
        "verified",
        "completed",
    ]
    assert events[2].detail.get("found_applied") is True


# -- superseding ------------------------------------------------------------------------------


def test_a_newer_plan_supersedes_the_older_plans_unsent_commands(
    make_local: Callable[..., LocalFleet],
) -> None:
    local = make_local()
    home = home_of(local, "viessmann")
    old = publish_plan(
        local,
        home.home_id,
        "p1",
        [
            (SLOT, GenericAction.SET_MODE_MAX),
            (SLOT + timedelta(hours=2), GenericAction.SET_MODE_MID),
        ],
    )
    new = publish_plan(
        local, home.home_id, "p2", [(SLOT + timedelta(hours=1), GenericAction.SET_MODE_MIN)]
    )
    assert [command(local, home.home_id, c).state for c in old] == [S.SUPERSEDED, S.SUPERSEDED]
    assert (
        len(local.tasks.pending_tasks(dispatch_queue("viessmann").name)) == 1
    )  # old tasks deleted
    local.run_until(SLOT + timedelta(hours=3))
    assert command(local, home.home_id, new[0]).state is S.COMPLETED
    assert home.commands_received == 1


def test_a_command_whose_slot_has_passed_is_superseded_not_sent(
    make_local: Callable[..., LocalFleet],
) -> None:
    local = make_local()
    home = home_of(local, "viessmann")
    [first, _] = publish_plan(
        local,
        home.home_id,
        "p1",
        [
            (SLOT, GenericAction.SET_MODE_MAX),
            (SLOT + timedelta(hours=1), GenericAction.SET_MODE_MID),
        ],
    )
    local.fleet.faults.set_manufacturer("viessmann", FaultSpec(server_error_rate=1.0))
    local.fleet.faults.set_device(home.home_id, FaultSpec(server_error_rate=1.0))
    # The first change's retries outlive its hour only if the queue retried that long; force it:
    local.fleet.advance(SLOT + timedelta(hours=1, minutes=1))
    delivery = TaskDelivery(
        body=CommandTask(device_id=home.home_id, command_id=first, purpose="send")
        .model_dump_json()
        .encode(),
        task_name="late",
        queue_name=dispatch_queue("viessmann").name,
    )
    reply = handle_dispatch(delivery, local.deps, gateway=local.gateway)
    assert (reply.status, reply.outcome) == (200, "superseded")
    assert command(local, home.home_id, first).state is S.SUPERSEDED
    assert home.commands_received == 0


# -- verification -----------------------------------------------------------------------------


def test_a_command_the_device_never_applies_is_remediated_once_then_failed_with_an_alert(
    make_local: Callable[..., LocalFleet],
) -> None:
    local = make_local()
    home = home_of(local, "nibe_myuplink")
    [command_id] = publish_plan(local, home.home_id, "p1", [(SLOT, GenericAction.SET_MODE_MAX)])
    local.fleet.faults.set_device(home.home_id, FaultSpec(not_applied_rate=1.0))
    local.run_until(SLOT + timedelta(minutes=25))
    failed = command(local, home.home_id, command_id)
    assert failed.state is S.FAILED
    assert failed.remediations == 1
    assert failed.attempt == 2
    assert home.commands_received == 2
    assert states(local, home.home_id, command_id) == [
        "created",
        "sent",
        "acknowledged",
        "retry_scheduled",
        "sent",
        "acknowledged",
        "failed",
    ]
    [alert] = alerts(local)
    assert "verification found mode" in alert["message"]


def test_a_command_applied_late_is_completed_by_its_remediation(
    make_local: Callable[..., LocalFleet],
) -> None:
    local = make_local()
    home = home_of(local, "daikin_onecta")
    [command_id] = publish_plan(local, home.home_id, "p1", [(SLOT, GenericAction.SET_MODE_MIN)])
    local.fleet.faults.set_device(
        home.home_id, FaultSpec(applied_late_rate=1.0, apply_delay=timedelta(minutes=15))
    )
    local.run_until(SLOT + timedelta(minutes=11))
    local.fleet.faults.set_device(home.home_id, FaultSpec())
    local.run_until(SLOT + timedelta(minutes=30))
    done = command(local, home.home_id, command_id)
    assert done.state is S.COMPLETED
    assert done.remediations == 1


def test_a_household_change_seen_at_verification_is_an_override_not_a_failure(
    make_local: Callable[..., LocalFleet],
) -> None:
    local = make_local()
    home = home_of(local, "viessmann")
    [command_id] = publish_plan(local, home.home_id, "p1", [(SLOT, GenericAction.SET_MODE_MAX)])
    local.run_until(SLOT + timedelta(minutes=5))
    local.fleet.user_changes_setpoint(home.home_id, home.room_setpoint_c - 1.0)
    local.run_until(SLOT + timedelta(minutes=11))
    superseded = command(local, home.home_id, command_id)
    assert superseded.state is S.SUPERSEDED
    assert alerts(local) == []
    device = local.deps.store.get(f"devices/{home.home_id}")
    assert device is not None
    assert device.data["override_seen"]["command_id"] == command_id
    assert home.commands_received == 1  # never fought back


# -- the sweep --------------------------------------------------------------------------------


def test_the_sweep_releases_an_outbox_a_crash_left_behind(
    make_local: Callable[..., LocalFleet],
) -> None:
    local = make_local()
    home = home_of(local, "viessmann")
    store = local.deps.store
    document = {
        "plan_id": "p1",
        "device_id": home.home_id,
        "end_at": SLOT + timedelta(hours=2),
        "outbox": [
            {"at": SLOT.isoformat(), "action": "set_mode_max", "slot_index": 0, "status": "pending"}
        ],
        **new_release(T0),
    }
    store.set(f"devices/{home.home_id}/plans/p1", document)
    store.update(f"devices/{home.home_id}", {"current_plan_id": "p1"})
    # ...and the process died before releasing it.
    local.fleet.advance(T0 + timedelta(minutes=5))
    outcome = sweep(local.deps)
    assert outcome.released_plans == 1
    released = store.get(f"devices/{home.home_id}/plans/p1")
    assert released is not None
    assert released.data[RELEASE_DUE_AT] is None  # concluded
    local.run_until(SLOT + timedelta(minutes=11))
    assert command(local, home.home_id, command_id_for("p1", 0)).state is S.COMPLETED


def test_the_sweep_re_enqueues_a_command_whose_task_was_lost(
    make_local: Callable[..., LocalFleet],
) -> None:
    local = make_local()
    home = home_of(local, "viessmann")
    [command_id] = publish_plan(local, home.home_id, "p1", [(SLOT, GenericAction.SET_MODE_MAX)])
    queue = dispatch_queue("viessmann").name
    cmd = command(local, home.home_id, command_id)
    assert cmd.task_name is not None
    assert local.tasks.delete_task(queue, cmd.task_name)  # lost
    local.run_until(SLOT + timedelta(minutes=30))
    assert command(local, home.home_id, command_id).state is S.PENDING
    assert sweep(local.deps).requeued_commands == 0  # not stuck for an hour yet
    local.run_until(SLOT + timedelta(minutes=61))
    assert sweep(local.deps).requeued_commands == 1
    local.run_until(SLOT + timedelta(minutes=62))
    # Its slot lasts until the plan's end (2 h): still worth sending, and it is.
    assert command(local, home.home_id, command_id).state is S.ACKNOWLEDGED


def test_a_command_kept_from_its_slot_by_errors_fails_with_an_alert_when_the_slot_passes(
    make_local: Callable[..., LocalFleet],
) -> None:
    local = make_local()
    home = home_of(local, "viessmann")
    [first, _] = publish_plan(
        local,
        home.home_id,
        "p1",
        [
            (SLOT, GenericAction.SET_MODE_MAX),
            (SLOT + timedelta(hours=1), GenericAction.SET_MODE_MID),
        ],
    )
    local.fleet.faults.set_manufacturer(
        "viessmann", FaultSpec(server_error_rate=1.0, wire_faults_on_writes_only=True)
    )
    local.run_until(SLOT + timedelta(seconds=35))  # three attempts, each refused with a 500
    assert command(local, home.home_id, first).state is S.RETRYING
    local.fleet.advance(SLOT + timedelta(hours=1, minutes=1))  # its hour is over
    delivery = TaskDelivery(
        body=CommandTask(device_id=home.home_id, command_id=first, purpose="send")
        .model_dump_json()
        .encode(),
        task_name="late",
        queue_name=dispatch_queue("viessmann").name,
    )
    reply = handle_dispatch(delivery, local.deps, gateway=local.gateway)
    assert (reply.status, reply.outcome) == (200, "failed")
    failed = command(local, home.home_id, first)
    assert failed.state is S.FAILED
    assert failed.last_error is not None
    assert "slot passed" in failed.last_error
    [alert] = alerts(local)
    assert alert["command_id"] == first


def test_superseding_stops_the_moment_the_plan_is_no_longer_current(
    make_local: Callable[..., LocalFleet],
) -> None:
    local = make_local()
    home = home_of(local, "viessmann")
    old = publish_plan(local, home.home_id, "p1", [(SLOT, GenericAction.SET_MODE_MAX)])
    # p2 is released late: by then p3 is current, and p1's command must stay as p3 left it.
    local.deps.store.update(f"devices/{home.home_id}", {"current_plan_id": "p3"})
    assert supersede_older(local.deps, home.home_id, "p2") == []
    assert command(local, home.home_id, old[0]).state is S.PENDING


def test_fresh_telemetry_showing_the_households_own_setting_stops_the_send(
    make_local: Callable[..., LocalFleet],
) -> None:
    local = make_local()
    home = home_of(local, "nibe_myuplink")
    [command_id] = publish_plan(local, home.home_id, "p1", [(SLOT, GenericAction.SET_MODE_MAX)])
    seen_at = SLOT - timedelta(minutes=5)
    local.deps.store.update(
        f"devices/{home.home_id}",
        {
            "last_telemetry": {
                "observed_at": seen_at,
                "observed_mode": None,  # the setting is none of our modes
                "setpoint_offset_k": -1.0,
                "online": True,
            }
        },
    )
    local.run_until(SLOT + timedelta(minutes=1))
    superseded = command(local, home.home_id, command_id)
    assert superseded.state is S.SUPERSEDED
    assert home.commands_received == 0  # never fought
    device = local.deps.store.get(f"devices/{home.home_id}")
    assert device is not None
    assert device.data["override_seen"]["at"] == seen_at


@pytest.mark.parametrize("manufacturer", ["viessmann", "nibe_myuplink", "daikin_onecta"])
def test_a_device_the_household_set_to_none_of_our_modes_is_not_sent_to_before_any_poll_saw_it(
    make_local: Callable[..., LocalFleet], manufacturer: str
) -> None:
    local = make_local()
    home = home_of(local, manufacturer)
    later = SLOT + timedelta(hours=1)
    [first, second] = publish_plan(
        local,
        home.home_id,
        "p1",
        [(SLOT, GenericAction.SET_MODE_MAX), (later, GenericAction.SET_MODE_MIN)],
    )
    local.run_until(SLOT + timedelta(minutes=30))
    assert command(local, home.home_id, first).state is S.COMPLETED
    # The household turns it up by one step in the app; no poll sees it before the next change.
    local.fleet.user_changes_setpoint(home.home_id, home.shown_lever + 1.0)

    local.run_until(later + timedelta(minutes=1))

    superseded = command(local, home.home_id, second)
    assert superseded.state is S.SUPERSEDED
    assert [e.detail.get("reason") for e in history(local.deps.store, home.home_id, second)][
        -1
    ] == "household_change"
    assert home.commands_received == 1  # the first command only: the household is not fought
    device = local.deps.store.get(f"devices/{home.home_id}")
    assert device is not None
    assert device.data["override_seen"]["command_id"] == second


def test_telemetry_older_than_the_command_does_not_stop_it(
    make_local: Callable[..., LocalFleet],
) -> None:
    local = make_local()
    home = home_of(local, "nibe_myuplink")
    stale = {"observed_at": T0 - timedelta(minutes=5), "setpoint_offset_k": -1.0}
    local.deps.store.update(f"devices/{home.home_id}", {"last_telemetry": stale})
    [command_id] = publish_plan(local, home.home_id, "p1", [(SLOT, GenericAction.SET_MODE_MAX)])
    local.run_until(SLOT + timedelta(minutes=11))
    assert command(local, home.home_id, command_id).state is S.COMPLETED
