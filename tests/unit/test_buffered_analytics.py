"""BufferedAnalytics: rows kept until flushed, then one append per table (per chunk), insert ids
unchanged; what a failed flush keeps and what it drops."""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from hpsteer.backends.local.analytics import SqliteAnalytics
from hpsteer.errors import AnalyticsUnavailable, InvalidInput
from hpsteer.ports.analytics import Analytics, BufferedAnalytics, Column, TableSchema

EVENTS = TableSchema("events", (Column("id", "STRING", required=True), Column("n", "INT64")))
PLANS = TableSchema("plans", (Column("id", "STRING", required=True),))


class Recording:
    """An analytics port that records each call, and may fail the appends to some tables."""

    def __init__(self, inner: Analytics) -> None:
        self.inner = inner
        self.appends: list[tuple[str, list[str]]] = []
        self.failing: dict[str, Exception] = {}

    def ensure_table(self, schema: TableSchema) -> None:
        self.inner.ensure_table(schema)

    def append(
        self, table: str, rows: Sequence[Mapping[str, Any]], insert_ids: Sequence[str]
    ) -> None:
        if table in self.failing:
            raise self.failing[table]
        self.appends.append((table, list(insert_ids)))
        self.inner.append(table, rows, insert_ids)

    def query(self, sql: str, params: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        return self.inner.query(sql, params)


@pytest.fixture
def target() -> Recording:
    return Recording(SqliteAnalytics())


def rows_of(analytics: Analytics, table: str) -> list[str]:
    return [r["id"] for r in analytics.query(f"SELECT id FROM `{table}` ORDER BY id")]


def fill(buffer: BufferedAnalytics) -> None:
    buffer.ensure_table(EVENTS)
    buffer.ensure_table(PLANS)
    for device in ("a", "b", "c"):
        buffer.append(
            "events",
            [{"id": f"{device}1", "n": 1}, {"id": f"{device}2", "n": 2}],
            [f"{device}/1", f"{device}/2"],
        )
        buffer.append("plans", [{"id": device}], [device])


def test_rows_wait_for_the_flush_then_go_out_in_one_append_per_table(target: Recording) -> None:
    buffer = BufferedAnalytics(lambda: target)
    fill(buffer)
    assert target.appends == []
    assert buffer.pending_rows == 9

    buffer.flush()

    assert target.appends == [
        ("events", ["a/1", "a/2", "b/1", "b/2", "c/1", "c/2"]),
        ("plans", ["a", "b", "c"]),
    ]
    assert rows_of(target, "events") == ["a1", "a2", "b1", "b2", "c1", "c2"]
    assert buffer.pending_rows == 0
    buffer.flush()  # nothing left: no call
    assert len(target.appends) == 2


def test_more_rows_than_a_chunk_go_out_in_chunks(target: Recording) -> None:
    buffer = BufferedAnalytics(lambda: target, max_rows=4)
    fill(buffer)
    buffer.flush()
    assert [(t, len(ids)) for t, ids in target.appends] == [
        ("events", 4),
        ("events", 2),
        ("plans", 3),
    ]


def test_an_insert_id_appended_twice_is_sent_once_with_its_first_row(target: Recording) -> None:
    buffer = BufferedAnalytics(lambda: target)
    buffer.ensure_table(PLANS)
    buffer.append("plans", [{"id": "first"}], ["x"])
    buffer.append("plans", [{"id": "second"}], ["x"])
    buffer.flush()
    assert target.appends == [("plans", ["x"])]
    assert rows_of(target, "plans") == ["first"]


def test_a_buffer_nothing_was_appended_to_never_builds_the_port() -> None:
    def no_port() -> Analytics:
        raise AssertionError("the port was built")

    buffer = BufferedAnalytics(no_port)
    buffer.ensure_table(PLANS)
    buffer.flush()


def test_analytics_unavailable_keeps_the_rows_not_sent_for_the_next_flush(
    target: Recording,
) -> None:
    buffer = BufferedAnalytics(lambda: target)
    fill(buffer)
    target.failing["plans"] = AnalyticsUnavailable("down")

    with pytest.raises(AnalyticsUnavailable):
        buffer.flush()
    assert buffer.pending_rows == 3  # the events went out, the plans wait

    del target.failing["plans"]
    buffer.flush()
    assert rows_of(target, "plans") == ["a", "b", "c"]
    assert [t for t, _ in target.appends] == ["events", "plans"]


def test_refused_rows_are_dropped_and_the_other_tables_still_sent(target: Recording) -> None:
    buffer = BufferedAnalytics(lambda: target)
    fill(buffer)
    target.failing["events"] = InvalidInput("refused")

    with pytest.raises(InvalidInput):
        buffer.flush()

    assert buffer.pending_rows == 0
    assert rows_of(target, "plans") == ["a", "b", "c"]
    assert rows_of(target, "events") == []


def test_with_threads_the_tables_are_sent_at_once(target: Recording) -> None:
    barrier = threading.Barrier(2, timeout=30)  # one table waiting for the other breaks it
    append = target.append

    def together(table: str, rows: Sequence[Mapping[str, Any]], ids: Sequence[str]) -> None:
        barrier.wait()
        append(table, rows, ids)

    target.append = together  # type: ignore[method-assign]
    buffer = BufferedAnalytics(lambda: target)
    fill(buffer)
    with ThreadPoolExecutor(max_workers=2) as pool:
        buffer.flush(pool)
    assert sorted(t for t, _ in target.appends) == ["events", "plans"]
    assert buffer.pending_rows == 0


def test_with_threads_a_failed_table_keeps_its_rows_and_the_other_is_sent(
    target: Recording,
) -> None:
    buffer = BufferedAnalytics(lambda: target)
    fill(buffer)
    target.failing["events"] = AnalyticsUnavailable("down")
    with ThreadPoolExecutor(max_workers=2) as pool, pytest.raises(AnalyticsUnavailable):
        buffer.flush(pool)
    assert buffer.pending_rows == 6
    assert rows_of(target, "plans") == ["a", "b", "c"]
