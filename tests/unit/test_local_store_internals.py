"""The local document store's shortcuts keep its promises: versions share unchanged parts
internally but never with callers, and the compiled query filters agree with the definition."""

from __future__ import annotations

import itertools
import math
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from hpsteer.backends.local.store import LocalDocumentStore, _filter_test, _matches
from hpsteer.ports.store import Filter, Transaction

T0 = datetime(2025, 1, 15, 6, tzinfo=UTC)

VALUES: list[Any] = [
    None,
    True,
    False,
    0,
    1,
    1.0,
    -2.5,
    math.nan,
    "a",
    "b",
    "",
    T0,
    T0 + timedelta(hours=1),
    [1, "a"],
    [],
    {"k": 1},
]
OPS = ["==", "!=", "<", "<=", ">", ">=", "array-contains"]


def test_compiled_filters_agree_with_the_definition_for_every_value_and_operator() -> None:
    fields: list[tuple[str, ...]] = [("f",), ("m", "f")]
    for field, op, wanted, actual in itertools.product(fields, OPS, VALUES, VALUES):
        data: dict[str, Any] = {"f": actual, "m": {"f": actual}}
        assert _filter_test(field, op, wanted)(data) == _matches(data, field, op, wanted), (
            field,
            op,
            wanted,
            actual,
        )


def test_compiled_in_and_not_in_agree_with_the_definition() -> None:
    lists: list[list[Any]] = [["a", "b"], [1, "a", None], [T0, 1.0], [math.nan], [True, 0]]
    for op, wanted, actual in itertools.product(["in", "not-in"], lists, VALUES):
        data = {"f": actual}
        assert _filter_test(("f",), op, wanted)(data) == _matches(data, ("f",), op, wanted)


def test_a_missing_field_matches_no_compiled_filter() -> None:
    for op in [*OPS, "in", "not-in"]:
        wanted: Any = ["a"] if op in ("in", "not-in") else "a"
        assert not _filter_test(("f",), op, wanted)({"g": "a"})
        assert not _filter_test(("m", "f"), op, wanted)({"m": "not a map"})


def test_an_update_leaves_earlier_reads_and_the_store_apart() -> None:
    store = LocalDocumentStore()
    store.create("devices/d1", {"a": {"x": 1, "deep": {"y": [1, 2]}}, "b": {"z": [3]}})
    before = store.get("devices/d1")
    store.update("devices/d1", {"a.x": 2})
    after = store.get("devices/d1")
    assert before is not None
    assert after is not None
    before.data["b"]["z"].append(4)
    before.data["a"]["deep"]["y"].append(5)
    after.data["b"]["z"].append(6)
    after.data["a"]["deep"]["y"].append(7)
    current = store.get("devices/d1")
    assert current is not None
    assert current.data == {"a": {"x": 2, "deep": {"y": [1, 2]}}, "b": {"z": [3]}}


def test_values_given_to_an_update_or_a_merge_stay_the_callers() -> None:
    store = LocalDocumentStore()
    store.create("devices/d1", {"a": {"x": 1}, "keep": {"k": [0]}})
    value = {"inner": [1]}
    store.update("devices/d1", {"a.v": value, "a.new.deeper": 3})
    merged: dict[str, Any] = {"a": {"w": [9]}, "n": {"m": 1}}
    store.set("devices/d1", merged, merge=True)
    value["inner"].append(2)
    merged["a"]["w"].append(10)
    merged["n"]["m"] = 2
    current = store.get("devices/d1")
    assert current is not None
    assert current.data == {
        "a": {"x": 1, "v": {"inner": [1]}, "new": {"deeper": 3}, "w": [9]},
        "keep": {"k": [0]},
        "n": {"m": 1},
    }


def test_writes_to_one_document_in_one_transaction_build_on_each_other_apart() -> None:
    store = LocalDocumentStore()
    store.create("devices/d1", {"a": {"x": 1}, "l": [1]})
    data: dict[str, Any] = {"a": {"x": 5, "y": [1]}, "l": [2]}

    def write(tx: Transaction) -> None:
        tx.get("devices/d1")
        tx.set("devices/d1", data)
        tx.update("devices/d1", {"a.x": 6})
        tx.set("devices/d1", {"a": {"z": 1}}, merge=True)

    store.run_transaction(write)
    data["a"]["y"].append(2)
    current = store.get("devices/d1")
    assert current is not None
    assert current.data == {"a": {"x": 6, "y": [1], "z": 1}, "l": [2]}


def test_query_results_are_the_callers_own() -> None:
    store = LocalDocumentStore()
    store.create("devices/d1", {"state": "open", "m": {"l": [1]}})
    page = store.query("devices", [Filter("state", "in", ["open", "closed"])])
    page.documents[0].data["m"]["l"].append(2)
    again = store.query("devices", [Filter("state", "==", "open")])
    assert [d.data for d in again.documents] == [{"state": "open", "m": {"l": [1]}}]


@pytest.mark.parametrize(
    ("first", "second", "kept"),
    [
        ({"n": 1}, {"n": 1}, True),
        ({"n": 1}, {"n": 1.0}, False),
        ({"n": [1, {"b": True}]}, {"n": [1, {"b": 1}]}, False),
        ({"n": math.nan}, {"n": math.nan}, False),
        ({"n": {"m": "x"}}, {"n": {"m": "y"}}, False),
    ],
)
def test_a_rewrite_keeps_update_time_only_when_values_and_types_are_the_same(
    first: dict[str, Any], second: dict[str, Any], kept: bool
) -> None:
    store = LocalDocumentStore()
    written = store.set("devices/d1", first)
    rewritten = store.set("devices/d1", second)
    assert (rewritten == written) is kept
