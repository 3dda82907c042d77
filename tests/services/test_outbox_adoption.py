"""A newer plan that makes the same change as an older plan's unsent command adopts it.

The newer plan's release keeps the command (and its Cloud Task) instead of superseding it and
creating an identical one; only the changes it no longer makes are superseded. Dispatch judges a
command by the device's current plan (``current_plan_*`` on the device document): its own, or an
older plan's that makes the same change (the same mode from the same instant), until that run of
the current plan ends. Adopting writes nothing on the command; its next event names the plan.

The rig is the local command path (:class:`hpsteer.runtime.local_fleet.LocalFleet`), plans made
current as optimize makes them (with their mode runs and end), on the local store and on
Firestore (its emulator).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from hpsteer.config import Settings
from hpsteer.domain.actions import Mode
from hpsteer.domain.commands import Command, CommandEventType, CommandState
from hpsteer.domain.messages import CommandTask
from hpsteer.ports.store import DocumentStore
from hpsteer.runtime.bootstrap import Dependencies
from hpsteer.runtime.local_fleet import LocalFleet
from hpsteer.services.command_log import history, load_command, record_event
from hpsteer.services.command_tasks import dispatch_queue
from hpsteer.services.dispatch import TaskDelivery, handle_dispatch
from hpsteer.services.outbox import (
    ReleaseBatch,
    command_id_for,
    release_plan,
    sweep,
)
from hpsteer.services.plans_store import make_current
from hpsteer.sim.fleet import Home
from tests.support.outboxes import PLAN_START, plan_document, publish, release_due_at

T0 = PLAN_START
# These specs are about what a release does with a plan's changes: every change is within its
# reach (how far ahead changes are released has its own specs, tests/services/test_outbox_reach.py).
WHOLE_PLAN = Settings(backend="local", release_ahead_minutes=2880)
HOUR = timedelta(hours=1)
S = CommandState
MAX, MID, MIN = Mode.MAX, Mode.MID, Mode.MIN
QUEUE = dispatch_queue("viessmann").name


@pytest.fixture
def local(document_store: DocumentStore) -> LocalFleet:
    fleet = LocalFleet.build(
        start=T0, homes=3, seed=11, settings=WHOLE_PLAN, wrap_store=lambda _local: document_store
    )
    fleet.register_devices()
    return fleet


@pytest.fixture
def home(local: LocalFleet) -> Home:
    return next(h for h in local.fleet if h.manufacturer == "viessmann")


def command(local: LocalFleet, device_id: str, command_id: str) -> Command:
    found = load_command(local.deps.store, device_id, command_id)
    assert found is not None
    return found


def event_types(local: LocalFleet, device_id: str, command_id: str) -> list[str]:
    return [e.type.value for e in history(local.deps.store, device_id, command_id)]


def task_names(local: LocalFleet) -> set[str]:
    return {t.name for t in local.tasks.pending_tasks(QUEUE)}


def outbox(local: LocalFleet, device_id: str, plan_id: str) -> list[dict[str, Any]]:
    stored = local.deps.store.get(f"devices/{device_id}/plans/{plan_id}")
    assert stored is not None
    return list(stored.data["outbox"])


def deliver(local: LocalFleet, device_id: str, command_id: str) -> str:
    task = TaskDelivery(
        body=CommandTask(device_id=device_id, command_id=command_id, purpose="send")
        .model_dump_json()
        .encode(),
        task_name="by-hand",
        queue_name=QUEUE,
    )
    return handle_dispatch(task, local.deps, gateway=local.gateway).outcome


def test_a_newer_plan_adopts_the_older_plans_commands_for_the_changes_it_makes_again(
    local: LocalFleet, home: Home
) -> None:
    d = home.home_id
    first = publish(local, d, "p1", [(1, MAX), (3, MIN), (5, MID)])
    tasks = task_names(local)

    second = publish(local, d, "p2", [(1, MAX), (4, MIN), (5, MID)])

    kept, moved, also_kept = (command_id_for("p1", h) for h in (1, 3, 5))
    assert first.queued == [kept, moved, also_kept]
    assert second.adopted == [kept, also_kept]
    assert second.superseded == [moved]
    assert second.queued == [command_id_for("p2", 4)]  # the one change p1 did not make
    # Adopting wrote nothing on the kept commands, and their tasks stay.
    assert event_types(local, d, kept) == event_types(local, d, also_kept) == ["created"]
    assert command(local, d, moved).state is S.SUPERSEDED
    moved_task = command(local, d, moved).task_name
    assert task_names(local) == tasks - {moved_task} | {
        command(local, d, second.queued[0]).task_name
    }
    # The new plan's outbox names the command that carries each of its changes.
    assert [(e["command_id"], e.get("adopted_from_plan_id")) for e in outbox(local, d, "p2")] == [
        (kept, "p1"),
        (command_id_for("p2", 4), None),
        (also_kept, "p1"),
    ]
    assert {e["status"] for e in outbox(local, d, "p2")} == {"queued"}


def test_an_adopted_command_goes_out_for_the_newer_plan_and_its_history_names_it(
    local: LocalFleet, home: Home
) -> None:
    d = home.home_id
    publish(local, d, "p1", [(1, MAX), (3, MIN)])
    publish(local, d, "p2", [(1, MAX), (2, MID)])  # MAX now holds until 2, not 3

    local.run_until(T0 + HOUR + timedelta(minutes=11))

    adopted = command(local, d, command_id_for("p1", 1))
    assert adopted.state is S.COMPLETED
    assert adopted.plan_id == "p1"
    assert adopted.adopted_by == ("p2",)
    assert adopted.valid_until == T0 + 2 * HOUR  # as p2 has it
    sent = history(local.deps.store, d, adopted.command_id)[1]
    assert sent.type is CommandEventType.SENT
    assert sent.detail["adopted_by"] == "p2"
    assert home.commands_received == 1


def test_an_adopted_command_is_wanted_until_the_newer_plans_next_change_not_the_olders(
    local: LocalFleet, home: Home
) -> None:
    d = home.home_id
    publish(local, d, "p1", [(1, MAX), (3, MIN)])
    publish(local, d, "p2", [(1, MAX), (2, MID)])  # MAX until 2 now, not 3
    local.fleet.advance(T0 + 2 * HOUR + timedelta(minutes=1))  # p2's next change is due

    assert deliver(local, d, command_id_for("p1", 1)) == "superseded"
    assert home.commands_received == 0

    publish(local, d, "p3", [(1, MAX), (3, MIN), (4, MID)])
    publish(local, d, "p4", [(3, MIN), (6, MAX)])  # MIN until 6 now, not 4
    local.fleet.advance(T0 + 4 * HOUR + timedelta(minutes=1))

    longer = command_id_for("p3", 3)
    assert deliver(local, d, longer) == "acknowledged"
    assert command(local, d, longer).valid_until == T0 + 6 * HOUR
    assert command(local, d, longer).adopted_by == ("p4",)


def test_before_the_newer_plans_release_dispatch_already_judges_by_its_changes(
    local: LocalFleet, home: Home
) -> None:
    d = home.home_id
    publish(local, d, "p1", [(1, MAX), (3, MIN)])
    store = local.deps.store
    local.fleet.advance(T0 + HOUR)
    # p2 became current, and its release was lost (the sweep would release it later).
    assert make_current(
        store, d, "p2", T0, local.clock.now(), [(T0 + HOUR, MID), (T0 + 3 * HOUR, MIN)]
    )

    assert deliver(local, d, command_id_for("p1", 1)) == "superseded"  # MID now, not MAX
    local.fleet.advance(T0 + 3 * HOUR)
    assert deliver(local, d, command_id_for("p1", 3)) == "acknowledged"  # p2 makes it too
    assert home.commands_received == 1


def test_an_older_command_already_sent_is_adopted_and_not_sent_again(
    local: LocalFleet, home: Home
) -> None:
    d = home.home_id
    publish(local, d, "p1", [(1, MAX), (3, MIN)])
    local.run_until(T0 + HOUR + timedelta(minutes=1))
    sent = command_id_for("p1", 1)
    assert command(local, d, sent).state is S.ACKNOWLEDGED

    again = publish(local, d, "p2", [(1, MAX), (4, MIN)])

    assert again.adopted == [sent]
    assert again.queued == [command_id_for("p2", 4)]
    local.run_until(T0 + HOUR + timedelta(minutes=12))
    assert command(local, d, sent).state is S.COMPLETED  # verified for p2
    assert home.commands_received == 1


def test_a_command_younger_than_the_current_plan_is_not_its_change(
    local: LocalFleet, home: Home
) -> None:
    """A command created after the current plan (a release that raced it) is never adopted:
    the current plan's release did not see it and made its own."""
    d = home.home_id
    publish(local, d, "p1", [(1, MAX)])
    store = local.deps.store
    created = command(local, d, command_id_for("p1", 1)).created_at
    store.update(f"devices/{d}", {"current_plan_id": "p2", "current_plan_created_at": created})
    local.fleet.advance(T0 + HOUR)

    assert deliver(local, d, command_id_for("p1", 1)) == "superseded"


def test_a_release_overtaken_by_a_newer_plan_creates_and_supersedes_nothing(
    local: LocalFleet, home: Home
) -> None:
    d = home.home_id
    publish(local, d, "p1", [(1, MAX), (3, MIN)])
    store = local.deps.store
    p2 = plan_document(local, d, "p2", [(2, MID), (3, MIN)], 12)
    store.set(f"devices/{d}/plans/p2", p2)
    store.update(f"devices/{d}", {"current_plan_id": "p3"})  # p3 became current meanwhile

    # optimize had seen p2 current (current=True): the release finds out in its transaction.
    outcome = release_plan(local.deps, d, {"manufacturer": "viessmann"}, p2, current=True)

    assert (outcome.queued, outcome.adopted, outcome.superseded) == ([], [], [])
    assert load_command(store, d, command_id_for("p2", 2)) is None
    assert command(local, d, command_id_for("p1", 1)).state is S.PENDING
    assert release_due_at(store, d, "p2") is None  # dropped


class Died(Exception):
    """The instance died (here: in its first Cloud Tasks call)."""


class DyingTasks:
    def create_task(self, task: Any) -> Any:
        raise Died(task.name)


def without_tasks(deps: Dependencies) -> Dependencies:
    """``deps`` whose Cloud Tasks calls kill the instance."""
    return Dependencies(
        deps.settings,
        deps.clock,
        store=lambda: deps.store,
        bus=lambda: deps.bus,
        tasks=lambda: DyingTasks(),  # type: ignore[arg-type,return-value]
        analytics=lambda: deps.analytics,
        secrets=lambda: deps.secrets,
    )


def test_a_dropped_release_enqueues_the_task_of_a_command_a_newer_plan_adopted(
    local: LocalFleet, home: Home
) -> None:
    """p1's release created its commands and died before their tasks; p2 adopted one of them.
    The sweep drops p1's release and makes sure the adopted command's task exists."""
    d = home.home_id
    store = local.deps.store
    p1 = plan_document(local, d, "p1", [(1, MAX), (3, MIN)], 12)
    store.set(f"devices/{d}/plans/p1", p1)
    assert make_current(store, d, "p1", T0, T0, [(T0 + HOUR, MAX), (T0 + 3 * HOUR, MIN)])
    device = store.get(f"devices/{d}")
    assert device is not None
    dying = without_tasks(local.deps)
    with pytest.raises(Died):
        release_plan(dying, d, device.data, p1, batch=ReleaseBatch(dying), fresh=True)
    assert task_names(local) == set()
    second = publish(local, d, "p2", [(1, MAX), (2, MID)])
    adopted = command_id_for("p1", 1)
    assert second.adopted == [adopted]
    assert command(local, d, adopted).task_name not in task_names(local)

    local.fleet.advance(T0 + timedelta(minutes=5))
    assert sweep(local.deps).dropped_plans == 1

    assert command(local, d, adopted).task_name in task_names(local)
    local.run_until(T0 + HOUR + timedelta(minutes=11))
    assert command(local, d, adopted).state is S.COMPLETED


def test_released_again_the_newer_plan_adopts_the_same_commands_and_creates_nothing_new(
    local: LocalFleet, home: Home
) -> None:
    d = home.home_id
    publish(local, d, "p1", [(1, MAX), (3, MIN)])
    crashed = ReleaseBatch(local.deps)
    first = publish(local, d, "p2", [(1, MAX), (4, MIN)], batch=crashed)
    del crashed  # the instance died before concluding the outbox
    tasks = task_names(local)
    stored = local.deps.store.get(f"devices/{d}/plans/p2")
    assert stored is not None

    again = release_plan(local.deps, d, {"manufacturer": "viessmann"}, stored.data, current=True)

    assert (again.adopted, again.queued) == (first.adopted, first.queued)
    assert again.superseded == []  # superseded already, by the release that died
    assert task_names(local) == tasks
    assert release_due_at(local.deps.store, d, "p2") is None


def test_an_older_command_sent_meanwhile_is_left_to_dispatch(local: LocalFleet, home: Home) -> None:
    d = home.home_id
    publish(local, d, "p1", [(1, MAX), (3, MIN)])
    moving = command_id_for("p1", 3)
    record_event(local.deps.store, d, moving, CommandEventType.SENT, local.clock.now(), attempt=1)

    outcome = publish(local, d, "p2", [(1, MAX), (4, MIN)])

    assert outcome.superseded == []  # a sent command is the dispatcher's to settle
    assert command(local, d, moving).state is S.SENT


def adoption_cases() -> list[tuple[str, list[tuple[int, Mode]], list[str]]]:
    return [
        ("same change", [(1, MAX), (3, MIN)], ["p1-s001", "p1-s003"]),
        ("another mode at the instant", [(1, MID), (3, MIN)], ["p1-s003"]),
        ("the same mode an hour later", [(2, MAX), (3, MIN)], ["p1-s003"]),
    ]


@pytest.mark.parametrize(("case", "runs", "adopted"), adoption_cases())
def test_only_the_same_mode_from_the_same_instant_is_adopted(
    local: LocalFleet,
    home: Home,
    case: str,
    runs: list[tuple[int, Mode]],
    adopted: list[str],
) -> None:
    publish(local, home.home_id, "p1", [(1, MAX), (3, MIN)])
    assert publish(local, home.home_id, "p2", runs).adopted == adopted, case


def test_a_concluded_plan_released_again_keeps_the_commands_it_adopted(
    local: LocalFleet, home: Home
) -> None:
    """optimize releases a plan again when it plans the same one (the same inputs): its
    entries already name the older commands it adopted, which stay wanted."""
    d = home.home_id
    publish(local, d, "p1", [(1, MAX), (3, MIN)])
    first = publish(local, d, "p2", [(1, MAX), (4, MIN)])
    stored = local.deps.store.get(f"devices/{d}/plans/p2")
    assert stored is not None
    assert stored.data["outbox_released_at"] is not None  # concluded
    assert release_due_at(local.deps.store, d, "p2") is None

    again = release_plan(local.deps, d, {"manufacturer": "viessmann"}, stored.data, current=True)

    assert (again.adopted, again.queued, again.superseded) == ([], [], [])
    assert [command(local, d, c).state for c in first.adopted] == [S.PENDING]
    local.run_until(T0 + HOUR + timedelta(minutes=11))
    assert command(local, d, first.adopted[0]).state is S.COMPLETED
