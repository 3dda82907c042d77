"""A plan's changes become commands only as they come within ``release_ahead_minutes`` (2 h).

Re-plans come every few hours and move the far changes; a change released hours ahead would mostly
be superseded (a command, its events, its task and its rows for nothing). So a release makes
commands of the changes due within reach and leaves the later ones in the plan's outbox; the plan's
release comes due (``release_due_at``) at the next change's instant minus the reach, and the sweep
(every 30 minutes) releases them as they come within reach. A plan replaced meanwhile never makes
its later changes commands: the sweep drops its release.

The rig is the local command path (:class:`hpsteer.runtime.local_fleet.LocalFleet` with the
default settings, its sweep as Cloud Scheduler runs it), plans written and made current as
optimize does, on the local store and on Firestore (its emulator).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest

from hpsteer.domain.actions import Mode
from hpsteer.domain.commands import CommandState
from hpsteer.errors import StoreUnavailable
from hpsteer.ports.store import DocumentStore
from hpsteer.runtime.bootstrap import Dependencies
from hpsteer.runtime.local_fleet import LocalFleet
from hpsteer.services.command_log import load_command
from hpsteer.services.command_tasks import dispatch_queue, send_task_name
from hpsteer.services.outbox import (
    ReleaseBatch,
    command_id_for,
    sweep,
)
from hpsteer.sim.fleet import Home
from tests.support.outboxes import PLAN_START, publish, release_due_at

T0 = PLAN_START
HOUR = timedelta(hours=1)
SWEEP_EVERY = timedelta(minutes=30)
MAX, MID, MIN = Mode.MAX, Mode.MID, Mode.MIN


@pytest.fixture
def local(document_store: DocumentStore) -> LocalFleet:
    fleet = LocalFleet.build(start=T0, homes=1, seed=11, wrap_store=lambda _local: document_store)
    fleet.register_devices()
    return fleet


@pytest.fixture
def home(local: LocalFleet) -> Home:
    return next(iter(local.fleet))


@pytest.fixture
def device_id(home: Home) -> str:
    return home.home_id


def statuses(local: LocalFleet, device_id: str, plan_id: str) -> list[str]:
    stored = local.deps.store.get(f"devices/{device_id}/plans/{plan_id}")
    assert stored is not None
    return [str(entry["status"]) for entry in stored.data["outbox"]]


def due(local: LocalFleet, device_id: str, plan_id: str) -> datetime | None:
    """When the plan's release comes due for the sweep (None: concluded or dropped)."""
    return release_due_at(local.deps.store, device_id, plan_id)


def state(local: LocalFleet, device_id: str, plan_id: str, hour: int) -> CommandState | None:
    command = load_command(local.deps.store, device_id, command_id_for(plan_id, hour))
    return None if command is None else command.state


def every_command(local: LocalFleet, device_id: str) -> dict[str, str]:
    page = local.deps.store.query(f"devices/{device_id}/commands", limit=100)
    return {doc.path.rsplit("/", 1)[1]: str(doc.data["state"]) for doc in page.documents}


def test_a_release_makes_commands_only_of_the_changes_within_reach(
    local: LocalFleet, device_id: str
) -> None:
    outcome = publish(local, device_id, "p1", [(1, MAX), (3, MIN), (5, MID)])

    assert outcome.queued == [command_id_for("p1", 1)]
    assert outcome.later == 2
    queue = dispatch_queue(next(iter(local.fleet)).manufacturer).name
    assert [t.name for t in local.tasks.pending_tasks(queue)] == [
        send_task_name(device_id, "p1", 1)
    ]
    assert statuses(local, device_id, "p1") == ["queued", "pending", "pending"]
    assert state(local, device_id, "p1", 3) is None
    # The outbox is not concluded: its release comes due when the next change is within reach.
    assert due(local, device_id, "p1") == T0 + 3 * HOUR - timedelta(minutes=120)


def recorded_writes(monkeypatch: pytest.MonkeyPatch, store: DocumentStore) -> list[tuple[str, str]]:
    """The (operation, path) of every write made on ``store`` outside a transaction from now on."""
    writes: list[tuple[str, str]] = []
    for name in ("create", "set", "update", "delete"):
        real = getattr(store, name)

        def record(path: str, *args: Any, _real: Any = real, _name: str = name, **kw: Any) -> Any:
            writes.append((_name, path))
            return _real(path, *args, **kw)

        monkeypatch.setattr(store, name, record)
    return writes


def test_a_plans_release_moves_and_then_clears_its_due_time_in_the_update_marking_its_entries(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    local = LocalFleet.build(start=T0, homes=1, seed=11)
    local.register_devices()
    device_id = next(iter(local.fleet)).home_id
    plan = f"devices/{device_id}/plans/p1"
    batch = ReleaseBatch(local.deps)
    publish(local, device_id, "p1", [(1, MAX), (3, MIN)], batch=batch)
    writes = recorded_writes(monkeypatch, local.deps.store)

    batch.finish()  # the release's conclusion: changes left for later

    assert writes == [("update", plan)]  # the plan alone, once
    assert statuses(local, device_id, "p1") == ["queued", "pending"]
    assert due(local, device_id, "p1") == T0 + 3 * HOUR - timedelta(minutes=120)

    writes.clear()
    local.move_to(T0 + HOUR)
    assert sweep(local.deps).released_plans == 1  # the last change came within reach

    # Its command (one create, no transaction), then the plan once.
    assert writes == [("create", f"devices/{device_id}/commands/p1-s003"), ("update", plan)]
    assert statuses(local, device_id, "p1") == ["queued", "queued"]
    assert due(local, device_id, "p1") is None  # concluded: the sweep's query no longer finds it
    assert sweep(local.deps).released_plans == 0


def recorded_queries(monkeypatch: pytest.MonkeyPatch, store: DocumentStore) -> list[str]:
    """The collection of every query made on ``store`` from now on."""
    queried: list[str] = []
    real = store.query

    def record(collection: str, *args: Any, **kw: Any) -> Any:
        queried.append(collection)
        return real(collection, *args, **kw)

    monkeypatch.setattr(store, "query", record)
    return queried


def test_a_plans_later_release_queries_no_commands_since_its_first_release_settled_the_older(
    monkeypatch: pytest.MonkeyPatch, local: LocalFleet, device_id: str
) -> None:
    publish(local, device_id, "p1", [(1, MAX), (2, MIN)])
    publish(local, device_id, "p2", [(1, MAX), (2, MID), (4, MIN)])  # adopts p1's 1 h command
    assert state(local, device_id, "p1", 2) is CommandState.SUPERSEDED
    queried = recorded_queries(monkeypatch, local.deps.store)

    local.move_to(T0 + 2 * HOUR)
    assert sweep(local.deps).released_plans == 1  # the 4 h change came within reach

    assert f"devices/{device_id}/commands" not in queried
    assert statuses(local, device_id, "p2") == ["queued", "queued", "queued"]
    assert state(local, device_id, "p2", 4) is CommandState.PENDING
    assert state(local, device_id, "p2", 1) is None  # adopted, never made again
    assert state(local, device_id, "p1", 1) is CommandState.PENDING


def test_the_sweep_releases_each_change_as_it_comes_within_reach_and_all_are_carried_out(
    local: LocalFleet, home: Home, device_id: str
) -> None:
    publish(local, device_id, "p1", [(1, MAX), (3, MIN), (5, MID)])

    local.run_until(T0 + 50 * timedelta(minutes=1), sweep_every=SWEEP_EVERY)
    assert statuses(local, device_id, "p1") == ["queued", "pending", "pending"]

    local.run_until(T0 + HOUR, sweep_every=SWEEP_EVERY)  # 3 h change within reach
    assert statuses(local, device_id, "p1") == ["queued", "queued", "pending"]
    assert state(local, device_id, "p1", 3) is CommandState.PENDING

    local.run_until(T0 + 3 * HOUR, sweep_every=SWEEP_EVERY)  # the last one: concluded
    assert statuses(local, device_id, "p1") == ["queued", "queued", "queued"]
    assert due(local, device_id, "p1") is None

    local.run_until(T0 + 6 * HOUR, sweep_every=SWEEP_EVERY)
    assert every_command(local, device_id) == {
        command_id_for("p1", h): "completed" for h in (1, 3, 5)
    }
    assert home.commands_received == 3


def test_a_plan_replaced_before_its_later_changes_came_within_reach_never_makes_them_commands(
    local: LocalFleet, device_id: str
) -> None:
    publish(local, device_id, "p1", [(1, MAX), (4, MIN), (6, MID)])
    local.run_until(T0 + 30 * timedelta(minutes=1), sweep_every=SWEEP_EVERY)

    # A re-plan keeps the first change and moves the later ones.
    second = publish(local, device_id, "p2", [(1, MAX), (5, MIN), (7, MID)])
    assert second.adopted == [command_id_for("p1", 1)]
    assert second.superseded == []

    local.run_until(T0 + 8 * HOUR, sweep_every=SWEEP_EVERY)
    # Nothing was superseded: p1's later changes never became commands, and its release was
    # dropped.
    assert every_command(local, device_id) == {
        command_id_for("p1", 1): "completed",
        command_id_for("p2", 5): "completed",
        command_id_for("p2", 7): "completed",
    }
    assert due(local, device_id, "p1") is None
    assert due(local, device_id, "p2") is None
    assert statuses(local, device_id, "p1") == ["queued", "pending", "pending"]


def test_a_device_whose_steering_was_switched_off_has_its_later_changes_dropped_not_released(
    local: LocalFleet, device_id: str
) -> None:
    publish(local, device_id, "p1", [(1, MAX), (4, MIN)])
    # Switched off (the hand-back itself is the operator service's: not needed here).
    local.deps.store.update(f"devices/{device_id}", {"steering_enabled": False})

    local.run_until(T0 + 5 * HOUR, sweep_every=SWEEP_EVERY)

    assert state(local, device_id, "p1", 4) is None
    assert due(local, device_id, "p1") is None
    assert statuses(local, device_id, "p1") == ["queued", "pending"]


# -- the sweep's workers ----------------------------------------------------------------------


def sweep_rig() -> LocalFleet:
    """Six homes, each with a plan whose second change is due for the sweep."""
    local = LocalFleet.build(start=T0, homes=6, seed=11)
    local.register_devices()
    for home in local.fleet:
        publish(local, home.home_id, "p1", [(1, MAX), (4, MIN)])
    local.move_to(T0 + 2 * HOUR)
    return local


def with_workers(deps: Dependencies, workers: int) -> Dependencies:
    """``deps`` with ``sweep_workers`` set (the local fleet keeps 1)."""
    return Dependencies(
        deps.settings.model_copy(update={"sweep_workers": workers}),
        deps.clock,
        store=lambda: deps.store,
        bus=lambda: deps.bus,
        tasks=lambda: deps.tasks,
        analytics=lambda: deps.analytics,
        secrets=lambda: deps.secrets,
    )


def stored_documents(local: LocalFleet) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for home in local.fleet:
        for doc in local.deps.store.query(f"devices/{home.home_id}/commands").documents:
            found[doc.path] = doc.data
        plan = local.deps.store.get(f"devices/{home.home_id}/plans/p1")
        assert plan is not None
        found[plan.path] = plan.data
    return found


def test_the_sweep_settles_its_due_plans_on_its_workers_as_it_does_in_turn() -> None:
    in_turn, at_once = sweep_rig(), sweep_rig()

    swept = [sweep(in_turn.deps), sweep(with_workers(at_once.deps, 4))]

    assert swept[0] == swept[1]
    assert swept[1].released_plans == 6
    assert stored_documents(at_once) == stored_documents(in_turn)
    assert all(state(at_once, h.home_id, "p1", 4) is CommandState.PENDING for h in at_once.fleet)


def test_a_plan_the_sweep_cannot_settle_keeps_no_other_back_and_the_sweep_fails_for_a_retry(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    local = sweep_rig()
    unlucky = next(iter(local.fleet)).home_id
    store = local.deps.store
    real_get = store.get

    def get(path: str) -> Any:
        if path == f"devices/{unlucky}":  # the sweep reads its device (the plan came with it)
            raise StoreUnavailable("induced outage")
        return real_get(path)

    with monkeypatch.context() as patched:
        patched.setattr(store, "get", get)
        with pytest.raises(StoreUnavailable):
            sweep(with_workers(local.deps, 4))

    others = [h.home_id for h in local.fleet if h.home_id != unlucky]
    assert all(state(local, d, "p1", 4) is CommandState.PENDING for d in others)
    assert state(local, unlucky, "p1", 4) is None
    assert sweep(local.deps).released_plans == 1  # the redelivered sweep settles it
    assert state(local, unlucky, "p1", 4) is CommandState.PENDING
