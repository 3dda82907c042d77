"""A shard's analytics rows go out together at its end, one insert per table, and a shard that
ends early (a crash, analytics unavailable) is delivered again without losing or doubling a row
or a task.

Same fixtures as :mod:`tests.services.test_optimize` (real SE3 prices, the bundled forecast).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import date, timedelta
from typing import Any

import pytest

from hpsteer.errors import AnalyticsUnavailable
from hpsteer.ports.analytics import Analytics, TableSchema
from hpsteer.ports.clock import SimulatedClock
from hpsteer.runtime import bootstrap
from hpsteer.runtime.bootstrap import Dependencies
from hpsteer.services.command_log import history
from hpsteer.services.command_tasks import dispatch_queue
from hpsteer.services.optimize import plan_shard
from hpsteer.services.outbox import ReleaseBatch
from tests.services.test_optimize import NOW, register, shard, store_forecast, store_prices
from tests.support.outboxes import outbox_concluded

DEVICES = ("d1", "d2", "d3")


class CountingAnalytics:
    """The local analytics port, counting appends per table and queries; ``down`` makes appends
    fail."""

    def __init__(self, inner: Analytics) -> None:
        self.inner = inner
        self.appends: Counter[str] = Counter()
        self.queries = 0
        self.down = False

    def ensure_table(self, schema: TableSchema) -> None:
        self.inner.ensure_table(schema)

    def append(
        self, table: str, rows: Sequence[Mapping[str, Any]], insert_ids: Sequence[str]
    ) -> None:
        if self.down:
            raise AnalyticsUnavailable("induced outage")
        self.appends[table] += 1
        self.inner.append(table, rows, insert_ids)

    def query(self, sql: str, params: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        self.queries += 1
        return self.inner.query(sql, params)


class Crash(Exception):
    """The instance dies."""


@pytest.fixture
def counting() -> CountingAnalytics:
    from hpsteer.backends.local.analytics import SqliteAnalytics

    return CountingAnalytics(SqliteAnalytics())


def counted(counting: CountingAnalytics) -> Dependencies:
    """The local backends at :data:`NOW`, with ``counting`` as their analytics."""
    local = bootstrap.local(clock=SimulatedClock(NOW))
    return Dependencies(
        local.settings,
        local.clock,
        store=lambda: local.store,
        bus=lambda: local.bus,
        tasks=lambda: local.tasks,
        analytics=lambda: counting,
        secrets=lambda: local.secrets,
    )


@pytest.fixture
def ready(counting: CountingAnalytics) -> Dependencies:
    deps = counted(counting)
    store_prices(deps, date(2023, 1, 15), date(2023, 1, 16))
    store_forecast(deps)
    for device_id in DEVICES:
        register(deps, device_id)
    counting.appends.clear()
    return deps


def rows(deps: Dependencies, table: str, *columns: str) -> list[tuple[Any, ...]]:
    found = deps.analytics.query(f"SELECT {', '.join(columns)} FROM `{table}`")
    return sorted(tuple(r[c] for c in columns) for r in found)


def commands(deps: Dependencies) -> dict[str, list[str]]:
    return {
        d: [doc.id for doc in deps.store.query(f"devices/{d}/commands").documents] for d in DEVICES
    }


def expected_event_rows(deps: Dependencies) -> list[tuple[Any, ...]]:
    """Every stored event of every command, as (command_id, seq, type)."""
    return sorted(
        (c, e.seq, e.type.value)
        for d, ids in commands(deps).items()
        for c in ids
        for e in history(deps.store, d, c)
    )


def task_names(deps: Dependencies) -> list[str]:
    pending = deps.tasks.pending_tasks(dispatch_queue("viessmann").name)  # type: ignore[attr-defined]
    return sorted(t.name for t in pending)


def test_a_shard_sends_its_rows_in_one_insert_per_table(
    ready: Dependencies, counting: CountingAnalytics
) -> None:
    outcomes = plan_shard(shard(*DEVICES), ready)

    assert [o.status for o in outcomes] == ["planned"] * 3
    assert counting.appends == {"plans": 1, "cost_savings": 1, "command_events": 1}
    assert len(rows(ready, "plans", "plan_id")) == 3
    assert len(rows(ready, "cost_savings", "plan_id", "market_date")) == 6
    assert rows(ready, "command_events", "command_id", "seq", "type") == expected_event_rows(ready)
    assert all(
        outbox_concluded(ready.store, ready.settings, o.device_id, str(o.plan_id)) for o in outcomes
    )


def test_a_shard_that_dies_before_its_end_loses_and_doubles_nothing_when_delivered_again(
    ready: Dependencies, counting: CountingAnalytics, monkeypatch: pytest.MonkeyPatch
) -> None:
    plan_shard(shard(*DEVICES), ready)
    # A re-plan with other inputs, later in the hour, supersedes the first plans' commands, and
    # dies at its end.
    ready.clock.advance(timedelta(minutes=10))  # type: ignore[attr-defined]
    for device_id in DEVICES:
        ready.store.update(f"devices/{device_id}", {"comfort.setpoint_c": 21.5})
    finish = ReleaseBatch.finish

    def crash(self: ReleaseBatch) -> None:
        raise Crash("the instance died before the shard's end")

    monkeypatch.setattr(ReleaseBatch, "finish", crash)
    with pytest.raises(Crash):
        plan_shard(shard(*DEVICES), ready)
    monkeypatch.setattr(ReleaseBatch, "finish", finish)
    tasks_before = task_names(ready)
    plans_before = rows(ready, "plans", "plan_id")
    assert len(plans_before) == 3  # the second shard's rows never went out

    again = plan_shard(shard(*DEVICES), ready)

    assert [o.status for o in again] == ["unchanged"] * 3  # found, not solved again
    assert len(rows(ready, "plans", "plan_id")) == 6
    assert len(rows(ready, "cost_savings", "plan_id", "market_date")) == 12
    events = rows(ready, "command_events", "command_id", "seq", "type")
    assert events == expected_event_rows(ready)  # created and superseded, each once
    assert any(t == "superseded" for _, _, t in events)
    assert task_names(ready) == tasks_before  # no task twice, none of the superseded back
    for outcome in again:
        assert outbox_concluded(
            ready.store, ready.settings, outcome.device_id, str(outcome.plan_id)
        )


def test_analytics_unavailable_fails_the_shard_for_redelivery_which_sends_every_row(
    ready: Dependencies, counting: CountingAnalytics
) -> None:
    counting.down = True
    with pytest.raises(AnalyticsUnavailable, match="the shard's rows"):
        plan_shard(shard(*DEVICES), ready)
    # Planned and released all the same: the commands go on; the outboxes wait for the rows.
    made = commands(ready)
    assert all(made.values())
    assert len(task_names(ready)) == sum(map(len, made.values()))

    counting.down = False
    again = plan_shard(shard(*DEVICES), ready)

    assert [o.status for o in again] == ["unchanged"] * 3
    assert counting.appends == {"plans": 1, "cost_savings": 1, "command_events": 1}
    assert len(rows(ready, "plans", "plan_id")) == 3
    assert rows(ready, "command_events", "command_id", "seq", "type") == expected_event_rows(ready)
    for outcome in again:
        assert outbox_concluded(
            ready.store, ready.settings, outcome.device_id, str(outcome.plan_id)
        )
