"""Releasing an outbox: rows sent before the outbox is concluded, derived again by a release that
follows one which ended early, older commands superseded in one transaction, Cloud Tasks calls
made together and still once per name.

Local backends on a simulated clock; plans are written as optimize writes them
(:func:`~hpsteer.services.plans_store.write_plan`, the device pointed at the plan).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from hpsteer.config import Settings
from hpsteer.domain.actions import Mode
from hpsteer.domain.commands import CommandEventType, CommandState
from hpsteer.domain.market import PriceArea
from hpsteer.domain.plans import Plan, PlanSlot
from hpsteer.errors import AnalyticsUnavailable
from hpsteer.ports.analytics import Analytics, TableSchema
from hpsteer.ports.clock import SimulatedClock
from hpsteer.ports.store import DocumentStore, Transaction
from hpsteer.ports.tasks import TaskRef, TaskRequest
from hpsteer.runtime import bootstrap
from hpsteer.runtime.bootstrap import Dependencies
from hpsteer.services import plans_store
from hpsteer.services.command_log import history, load_command, record_event
from hpsteer.services.command_tasks import dispatch_queue
from hpsteer.services.outbox import (
    ReleaseBatch,
    command_id_for,
    release_plan,
    sweep,
)
from hpsteer.services.outbox_markers import RELEASE_DUE_AT, RELEASE_GRACE, new_release
from tests.support.outboxes import release_due_at

T0 = datetime(2025, 1, 15, 6, tzinfo=UTC)
# These specs are about what a release does with a plan's changes: every change is within its
# reach (how far ahead changes are released has its own specs, tests/services/test_outbox_reach.py).
WHOLE_PLAN = Settings(backend="local", release_ahead_minutes=2880)
QUEUE = dispatch_queue("viessmann").name


class CountingAnalytics:
    """The local analytics port, counting appends per table; ``down`` makes appends fail."""

    def __init__(self, inner: Analytics) -> None:
        self.inner = inner
        self.appends: list[str] = []
        self.down = False

    def ensure_table(self, schema: TableSchema) -> None:
        self.inner.ensure_table(schema)

    def append(
        self, table: str, rows: Sequence[Mapping[str, Any]], insert_ids: Sequence[str]
    ) -> None:
        if self.down:
            raise AnalyticsUnavailable("induced outage")
        self.appends.append(table)
        self.inner.append(table, rows, insert_ids)

    def query(self, sql: str, params: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        return self.inner.query(sql, params)


def view(
    deps: Dependencies,
    *,
    analytics: Analytics | None = None,
    tasks: Any = None,
    store: Any = None,
) -> Dependencies:
    """``deps``' ports, some of them replaced by wrappers around them."""
    return Dependencies(
        deps.settings,
        deps.clock,
        store=lambda: store if store is not None else deps.store,
        bus=lambda: deps.bus,
        tasks=lambda: tasks if tasks is not None else deps.tasks,
        analytics=lambda: analytics if analytics is not None else deps.analytics,
        secrets=lambda: deps.secrets,
    )


@pytest.fixture
def base() -> Dependencies:
    return bootstrap.local(WHOLE_PLAN, clock=SimulatedClock(T0))


@pytest.fixture
def counting(base: Dependencies) -> CountingAnalytics:
    return CountingAnalytics(base.analytics)


@pytest.fixture
def deps(base: Dependencies, counting: CountingAnalytics) -> Dependencies:
    return view(base, analytics=counting)


def add_device(deps: Dependencies, device_id: str) -> None:
    deps.store.set(f"devices/{device_id}", {"device_id": device_id, "manufacturer": "viessmann"})


def write_plan(
    deps: Dependencies, device_id: str, plan_id: str, hours: Sequence[int]
) -> dict[str, Any]:
    """A plan with a mode change at each of ``hours`` after T0, with its release fields, and the
    device pointed at it (what optimize does before releasing)."""
    start = T0 + timedelta(hours=1)
    document: dict[str, Any] = {
        "plan_id": plan_id,
        "device_id": device_id,
        "created_at": deps.clock.now(),
        **new_release(deps.clock.now()),
        "end_at": T0 + timedelta(hours=max(hours) + 2),
        "outbox": [
            {
                "at": (T0 + timedelta(hours=h)).isoformat(),
                "action": "set_mode_max" if i % 2 == 0 else "set_mode_min",
                "slot_index": h,
                "status": "pending",
            }
            for i, h in enumerate(hours)
        ],
    }
    deps.store.set(f"devices/{device_id}/plans/{plan_id}", document)
    deps.store.update(
        f"devices/{device_id}", {"current_plan_id": plan_id, "current_plan_start_at": start}
    )
    return document


def stored_plan(deps: Dependencies, device_id: str, plan_id: str) -> dict[str, Any]:
    snapshot = deps.store.get(f"devices/{device_id}/plans/{plan_id}")
    assert snapshot is not None
    return snapshot.data


def device(deps: Dependencies, device_id: str) -> dict[str, Any]:
    snapshot = deps.store.get(f"devices/{device_id}")
    assert snapshot is not None
    return snapshot.data


def event_rows(deps: Dependencies) -> list[tuple[str, int, str]]:
    rows = deps.analytics.query(
        "SELECT command_id, seq, type FROM `command_events` ORDER BY command_id, seq"
    )
    return [(r["command_id"], r["seq"], r["type"]) for r in rows]


def stored_events(
    deps: Dependencies, device_id: str, *command_ids: str
) -> list[tuple[str, int, str]]:
    return sorted(
        (c, e.seq, e.type.value) for c in command_ids for e in history(deps.store, device_id, c)
    )


def hourly_plan(plan_id: str, modes: Sequence[Mode], created_at: datetime) -> Plan:
    return Plan(
        plan_id=plan_id,
        device_id="d1",
        price_area=PriceArea.SE3,
        resolution=60,
        created_at=created_at,
        slots=tuple(
            PlanSlot(
                start_at=T0 + timedelta(hours=i),
                end_at=T0 + timedelta(hours=i + 1),
                mode=mode,
                price_eur_per_mwh=50.0,
                expected_power_kw=1.5,
                predicted_indoor_temp_c=21.0,
            )
            for i, mode in enumerate(modes)
        ),
        expected_cost_eur=0.42,
        baseline_cost_eur=0.51,
        solver="test",
    )


def test_a_plan_with_mode_changes_is_written_with_its_release_due_a_grace_after_it_was_made(
    deps: Dependencies,
) -> None:
    add_device(deps, "d1")
    changing = hourly_plan("p1", [Mode.MAX, Mode.MIN], deps.clock.now())
    steady = hourly_plan("p2", [Mode.MID, Mode.MID], deps.clock.now())

    written, created = plans_store.write_plan(
        deps.store, changing, plans_store.plan_document(changing, None, {})
    )
    plans_store.write_plan(deps.store, steady, plans_store.plan_document(steady, Mode.MID, {}))

    assert created
    assert written[RELEASE_DUE_AT] == release_due_at(deps.store, "d1", "p1") == T0 + RELEASE_GRACE
    assert stored_plan(deps, "d1", "p2")["outbox"] == []
    assert RELEASE_DUE_AT not in stored_plan(deps, "d1", "p2")  # nothing to release
    deps.clock.advance(RELEASE_GRACE)  # type: ignore[attr-defined]
    deps.store.update("devices/d1", {"current_plan_id": "p1"})
    assert sweep(deps).released_plans == 1  # a release a crash kept back is taken over
    assert release_due_at(deps.store, "d1", "p1") is None


def test_a_batch_sends_its_releases_rows_in_one_append_and_concludes_only_after(
    deps: Dependencies, counting: CountingAnalytics
) -> None:
    batch = ReleaseBatch(deps)
    queued: list[str] = []
    for device_id in ("d1", "d2", "d3"):
        add_device(deps, device_id)
        plan = write_plan(deps, device_id, f"p-{device_id}", [1, 3])
        queued += release_plan(deps, device_id, device(deps, device_id), plan, batch=batch).queued

    # Commands and tasks exist; rows and conclusions wait for the batch's end.
    assert len(deps.tasks.pending_tasks(QUEUE)) == len(queued) == 6  # type: ignore[attr-defined]
    assert counting.appends == []
    assert release_due_at(deps.store, "d1", "p-d1") is not None
    assert {e["status"] for e in stored_plan(deps, "d1", "p-d1")["outbox"]} == {"pending"}

    batch.finish()

    assert counting.appends == ["command_events"]
    assert [(c, s, t) for c, s, t in event_rows(deps)] == sorted((c, 1, "created") for c in queued)
    for device_id in ("d1", "d2", "d3"):
        assert release_due_at(deps.store, device_id, f"p-{device_id}") is None
        outbox = stored_plan(deps, device_id, f"p-{device_id}")["outbox"]
        assert {e["status"] for e in outbox} == {"queued"}


def test_a_release_that_ended_before_its_rows_were_sent_is_released_again_with_every_row(
    deps: Dependencies,
) -> None:
    add_device(deps, "d1")
    older = write_plan(deps, "d1", "p1", [1, 3])
    release_plan(deps, "d1", device(deps, "d1"), older)
    older_commands = [command_id_for("p1", 1), command_id_for("p1", 3)]
    deps.clock.advance(timedelta(minutes=10))  # type: ignore[attr-defined]
    newer = write_plan(deps, "d1", "p2", [2, 4])
    crashed = ReleaseBatch(deps)
    release_plan(deps, "d1", device(deps, "d1"), newer, batch=crashed, fresh=True)
    # ...the instance died here: the batch never finished.
    del crashed
    newer_commands = [command_id_for("p2", 2), command_id_for("p2", 4)]
    assert [r[0] for r in event_rows(deps)] == older_commands  # only the first release's rows
    tasks_before = {t.name for t in deps.tasks.pending_tasks(QUEUE)}  # type: ignore[attr-defined]

    # The redelivery reads the plan again and releases it again.
    again = release_plan(deps, "d1", device(deps, "d1"), stored_plan(deps, "d1", "p2"))

    assert again.queued == newer_commands
    assert again.superseded == []  # superseded already, by the release that died
    assert event_rows(deps) == stored_events(deps, "d1", *older_commands, *newer_commands)
    assert ("p1-s001", 2, "superseded") in event_rows(deps)
    # Every task once, by its name: the new plan's, none of the superseded ones.
    tasks_after = {t.name for t in deps.tasks.pending_tasks(QUEUE)}  # type: ignore[attr-defined]
    assert tasks_after == tasks_before
    assert len(tasks_after) == 2
    assert release_due_at(deps.store, "d1", "p2") is None


def test_analytics_unavailable_leaves_the_outbox_to_the_sweep_which_sends_the_rows_later(
    deps: Dependencies, counting: CountingAnalytics
) -> None:
    add_device(deps, "d1")
    plan = write_plan(deps, "d1", "p1", [1, 3])
    counting.down = True

    outcome = release_plan(deps, "d1", device(deps, "d1"), plan)

    # The commands go on without analytics; the outbox is left for a later release.
    assert len(outcome.queued) == 2
    assert len(deps.tasks.pending_tasks(QUEUE)) == 2  # type: ignore[attr-defined]
    assert release_due_at(deps.store, "d1", "p1") is not None

    counting.down = False
    deps.clock.advance(timedelta(minutes=5))  # type: ignore[attr-defined]
    assert sweep(deps).released_plans == 1

    assert event_rows(deps) == [(c, 1, "created") for c in outcome.queued]
    assert release_due_at(deps.store, "d1", "p1") is None
    assert {e["status"] for e in stored_plan(deps, "d1", "p1")["outbox"]} == {"queued"}
    assert len(deps.tasks.pending_tasks(QUEUE)) == 2  # type: ignore[attr-defined]


def test_a_plan_replaced_before_its_release_finished_has_its_rows_sent_when_it_is_dropped(
    deps: Dependencies,
) -> None:
    add_device(deps, "d1")
    first = write_plan(deps, "d1", "p1", [1, 3])
    crashed = ReleaseBatch(deps)
    release_plan(deps, "d1", device(deps, "d1"), first, batch=crashed, fresh=True)
    del crashed  # died before the end of its shard
    deps.clock.advance(timedelta(minutes=10))  # type: ignore[attr-defined]
    second = write_plan(deps, "d1", "p2", [2])
    release_plan(deps, "d1", device(deps, "d1"), second, fresh=True)  # supersedes p1's

    assert sweep(deps).dropped_plans == 1

    first_commands = [command_id_for("p1", 1), command_id_for("p1", 3)]
    assert event_rows(deps) == stored_events(deps, "d1", *first_commands, command_id_for("p2", 2))
    assert release_due_at(deps.store, "d1", "p1") is None


def test_a_release_of_a_plan_that_is_no_longer_current_releases_nothing(
    deps: Dependencies,
) -> None:
    add_device(deps, "d1")
    stale = write_plan(deps, "d1", "p1", [1])
    write_plan(deps, "d1", "p2", [2])

    outcome = release_plan(deps, "d1", device(deps, "d1"), stale)

    assert (outcome.queued, outcome.superseded) == ([], [])
    assert load_command(deps.store, "d1", command_id_for("p1", 1)) is None
    assert release_due_at(deps.store, "d1", "p1") is None  # dropped


class CountingTransactions:
    """The store, counting transactions."""

    def __init__(self, inner: DocumentStore) -> None:
        self.inner = inner
        self.transactions = 0

    def run_transaction(self, fn: Callable[[Transaction], Any], *, max_attempts: int = 5) -> Any:
        self.transactions += 1
        return self.inner.run_transaction(fn, max_attempts=max_attempts)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def test_superseding_and_creating_are_one_transaction_that_leaves_out_a_command_sent_meanwhile(
    deps: Dependencies,
) -> None:
    add_device(deps, "d1")
    older = write_plan(deps, "d1", "p1", [1, 2, 3])
    release_plan(deps, "d1", device(deps, "d1"), older)
    sent = command_id_for("p1", 2)
    record_event(deps.store, "d1", sent, CommandEventType.SENT, deps.clock.now(), attempt=1)
    newer = write_plan(deps, "d1", "p2", [4])
    transactions = CountingTransactions(deps.store)
    counted = view(deps, store=transactions)

    outcome = release_plan(counted, "d1", device(deps, "d1"), newer, fresh=True)

    assert outcome.superseded == [command_id_for("p1", 1), command_id_for("p1", 3)]
    assert transactions.transactions == 1  # supersession and p2's one command, while current
    states = {
        c: load_command(deps.store, "d1", c).state  # type: ignore[union-attr]
        for c in (command_id_for("p1", 1), sent, command_id_for("p1", 3))
    }
    assert states == {
        command_id_for("p1", 1): CommandState.SUPERSEDED,
        sent: CommandState.SENT,  # the dispatcher decides
        command_id_for("p1", 3): CommandState.SUPERSEDED,
    }
    pending = {t.name for t in deps.tasks.pending_tasks(QUEUE)}  # type: ignore[attr-defined]
    assert len(pending) == 2  # p1's sent command's task, and p2's


class BarrierTasks:
    """The task queue, holding each create and delete until ``parties`` calls are in at once:
    calls made one after another break the barrier (its timeout) and fail."""

    def __init__(self, inner: Any, parties: int) -> None:
        self.inner = inner
        self.barrier = threading.Barrier(parties, timeout=30)
        self.threads: set[int] = set()

    def create_task(self, task: TaskRequest) -> TaskRef:
        self.threads.add(threading.get_ident())
        self.barrier.wait()
        return self.inner.create_task(task)  # type: ignore[no-any-return]

    def delete_task(self, queue: str, name: str) -> bool:
        self.threads.add(threading.get_ident())
        self.barrier.wait()
        return self.inner.delete_task(queue, name)  # type: ignore[no-any-return]

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def test_a_releases_task_calls_go_out_together_and_each_name_only_once(
    deps: Dependencies,
) -> None:
    add_device(deps, "d1")
    older = write_plan(deps, "d1", "p1", [1, 2])
    release_plan(deps, "d1", device(deps, "d1"), older)
    newer = write_plan(deps, "d1", "p2", [3, 4, 5])
    real: Any = deps.tasks
    together = BarrierTasks(real, parties=5)  # 2 deletions and 3 new tasks

    outcome = release_plan(view(deps, tasks=together), "d1", device(deps, "d1"), newer, fresh=True)

    assert len(together.threads) == 5
    pending = sorted(t.name for t in real.pending_tasks(QUEUE))
    assert len(pending) == len(outcome.queued) == 3
    # Released again (as if its outbox had not been concluded): every name exists, none new.
    again = release_plan(deps, "d1", device(deps, "d1"), newer)
    assert again.queued == outcome.queued
    assert sorted(t.name for t in real.pending_tasks(QUEUE)) == pending
