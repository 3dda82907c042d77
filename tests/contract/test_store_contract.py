"""The document store port's promises, checked against every backend with the same tests.

Backends: the in-memory store, the same store mirrored to SQLite, and Firestore on its emulator.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from hpsteer.backends.local.store import LocalDocumentStore
from hpsteer.domain.instants import format_instant, parse_instant
from hpsteer.errors import (
    ConcurrencyConflict,
    DocumentAlreadyExists,
    DocumentNotFound,
    InvalidDocumentPath,
    InvalidInput,
    NaiveDatetime,
    PreconditionFailed,
)
from hpsteer.ports.clock import SimulatedClock
from hpsteer.ports.store import Document, DocumentStore, Filter, Order, Transaction
from tests.support.firestore import (  # noqa: F401 - pytest finds fixtures by name in the module
    PROJECT,
    firestore_emulator,
    reset_firestore,
)

T0 = datetime(2024, 1, 15, 23, 0, tzinfo=UTC)


@pytest.fixture(scope="session")
def firestore_client(request: pytest.FixtureRequest) -> Any:
    """One client for the session, pointed at the emulator (imported lazily: it is heavy)."""
    request.getfixturevalue("firestore_emulator")
    from google.cloud import firestore

    return firestore.Client(project=PROJECT)


@pytest.fixture(
    params=["local", "local-sqlite", pytest.param("firestore", marks=pytest.mark.emulator)]
)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[DocumentStore]:
    if request.param == "local":
        yield LocalDocumentStore()
    elif request.param == "local-sqlite":
        local = LocalDocumentStore(path=tmp_path / "run.sqlite")
        yield local
        local.close()
    else:
        from hpsteer.backends.gcp.firestore_store import FirestoreDocumentStore

        request.getfixturevalue("reset_firestore")
        yield FirestoreDocumentStore(request.getfixturevalue("firestore_client"))


# -- single documents ------------------------------------------------------------------------------


def test_get_of_a_missing_document_returns_none(store: DocumentStore) -> None:
    assert store.get("devices/nope") is None


def test_create_stores_the_data_and_get_returns_it(store: DocumentStore) -> None:
    created = store.create("devices/d1", {"name": "hp", "power": 1.5})
    fetched = store.get("devices/d1")
    assert fetched == created
    assert created.path == "devices/d1"
    assert created.id == "d1"
    assert created.data == {"name": "hp", "power": 1.5}
    assert created.create_time == created.update_time
    assert created.create_time.tzinfo is not None


def test_create_of_an_existing_document_raises_and_writes_nothing(store: DocumentStore) -> None:
    before = store.create("devices/d1", {"v": 1})
    with pytest.raises(DocumentAlreadyExists):
        store.create("devices/d1", {"v": 2})
    assert store.get("devices/d1") == before


def read(store: DocumentStore, path: str) -> Document:
    document = store.get(path)
    assert document is not None
    return document


def test_set_replaces_the_document_keeping_create_time(store: DocumentStore) -> None:
    store.set("devices/d1", {"a": 1, "b": {"c": 2}})
    first = read(store, "devices/d1")
    store.set("devices/d1", {"b": {"d": 3}})
    second = read(store, "devices/d1")
    assert second.data == {"b": {"d": 3}}
    assert second.create_time == first.create_time
    assert second.update_time > first.update_time


def test_set_with_merge_deep_merges_maps(store: DocumentStore) -> None:
    store.set("devices/d1", {"a": 1, "m": {"x": 1, "y": {"z": 1}}, "k": {"j": 1}})
    store.set("devices/d1", {"m": {"y": {"w": 2}}, "k": 5, "n": [1]}, merge=True)
    expected = {"a": 1, "m": {"x": 1, "y": {"z": 1, "w": 2}}, "k": 5, "n": [1]}
    assert read(store, "devices/d1").data == expected


def test_set_with_merge_creates_a_missing_document(store: DocumentStore) -> None:
    store.set("devices/d1", {"a": {"b": 1}}, merge=True)
    assert read(store, "devices/d1").data == {"a": {"b": 1}}


def test_update_changes_named_fields_through_dotted_paths(store: DocumentStore) -> None:
    first = store.create("devices/d1", {"a": 1, "m": {"x": 1, "y": 2}, "s": "keep"})
    store.update("devices/d1", {"a": 2, "m.y": 3, "m.new.deep": True, "s2": None})
    updated = read(store, "devices/d1")
    assert updated.data == {
        "a": 2,
        "m": {"x": 1, "y": 3, "new": {"deep": True}},
        "s": "keep",
        "s2": None,
    }
    assert updated.create_time == first.create_time
    assert updated.update_time > first.update_time


def test_update_with_a_map_value_replaces_that_map(store: DocumentStore) -> None:
    store.create("devices/d1", {"m": {"x": 1, "y": 2}})
    store.update("devices/d1", {"m": {"z": 3}})
    assert read(store, "devices/d1").data == {"m": {"z": 3}}


def test_update_of_a_missing_document_raises_and_creates_nothing(store: DocumentStore) -> None:
    with pytest.raises(DocumentNotFound):
        store.update("devices/d1", {"a": 1})
    with pytest.raises(DocumentNotFound):
        store.update("devices/d1", {"a": 1}, if_update_time=T0)
    assert store.get("devices/d1") is None


def test_update_with_the_current_update_time_succeeds(store: DocumentStore) -> None:
    first = store.create("devices/d1", {"a": 1})
    store.update("devices/d1", {"a": 2}, if_update_time=first.update_time)
    assert read(store, "devices/d1").data == {"a": 2}


def test_update_with_a_stale_update_time_raises_and_writes_nothing(store: DocumentStore) -> None:
    first = store.create("devices/d1", {"a": 1})
    store.update("devices/d1", {"a": 2})
    second = read(store, "devices/d1")
    with pytest.raises(PreconditionFailed):
        store.update("devices/d1", {"a": 3}, if_update_time=first.update_time)
    assert store.get("devices/d1") == second


def test_set_and_update_return_the_update_time_a_following_get_reports(
    store: DocumentStore,
) -> None:
    created = store.create("devices/d1", {"a": 1})
    set_at = store.set("devices/d1", {"a": 2, "m": {"x": 1}})
    assert read(store, "devices/d1").update_time == set_at
    merged_at = store.set("devices/d1", {"m": {"y": 2}}, merge=True)
    assert read(store, "devices/d1").update_time == merged_at
    updated_at = store.update("devices/d1", {"m.x": 3})
    assert read(store, "devices/d1").update_time == updated_at
    assert created.update_time < set_at < merged_at < updated_at
    made_at = store.set("devices/d2", {"a": 1})  # a set that creates the document
    made = read(store, "devices/d2")
    assert made.update_time == made.create_time == made_at
    for when in (set_at, merged_at, updated_at, made_at):
        assert type(when) is datetime
        assert when.tzinfo == UTC


def test_the_time_a_write_returns_is_the_precondition_of_the_next_update(
    store: DocumentStore,
) -> None:
    set_at = store.set("devices/d1", {"a": 1})
    updated_at = store.update("devices/d1", {"a": 2}, if_update_time=set_at)
    store.update("devices/d1", {"a": 3}, if_update_time=updated_at)
    with pytest.raises(PreconditionFailed):
        store.update("devices/d1", {"a": 4}, if_update_time=updated_at)
    with pytest.raises(PreconditionFailed):
        store.update("devices/d1", {"a": 4}, if_update_time=set_at)
    assert read(store, "devices/d1").data == {"a": 3}


def test_a_write_time_carried_as_text_elsewhere_is_still_the_precondition_of_the_next_update(
    store: DocumentStore,
) -> None:
    """A task body may carry the version of the document it was made from (its ISO text)."""
    created = store.create("devices/d1", {"a": 1}).update_time
    assert created is not None
    carried = parse_instant(format_instant(created))
    updated_at = store.update("devices/d1", {"a": 2}, if_update_time=carried)
    store.update("devices/d1", {"a": 3}, if_update_time=parse_instant(format_instant(updated_at)))
    with pytest.raises(PreconditionFailed):
        store.update("devices/d1", {"a": 4}, if_update_time=carried)
    assert read(store, "devices/d1").data == {"a": 3}


def test_precondition_failed_is_a_concurrency_conflict() -> None:
    assert issubclass(PreconditionFailed, ConcurrencyConflict)


def test_every_write_that_changes_a_document_moves_update_time_forward(
    store: DocumentStore,
) -> None:
    times = [store.create("devices/d1", {"n": 0}).update_time]
    for n in range(1, 6):
        times.append(store.update("devices/d1", {"n": n}))
        times.append(store.set("devices/d1", {"n": -n}, merge=True))
        times.append(store.set("devices/d1", {"n": float(-n)}))
    assert times == sorted(times)
    assert len(set(times)) == len(times)


def test_a_write_that_changes_nothing_keeps_update_time(store: DocumentStore) -> None:
    first = store.create("devices/d1", {"n": 1, "m": {"a": [1]}})
    assert store.set("devices/d1", {"n": 1, "m": {"a": [1]}}) == first.update_time
    assert store.get("devices/d1") == first
    assert store.update("devices/d1", {"m.a": [1]}) == first.update_time
    assert store.get("devices/d1") == first
    assert store.set("devices/d1", {"m": {}}, merge=True) > first.update_time
    assert store.get("devices/d1") != first


def test_delete_removes_and_deleting_a_missing_document_is_fine(store: DocumentStore) -> None:
    store.create("devices/d1", {"a": 1})
    store.delete("devices/d1")
    store.delete("devices/d1")
    assert store.get("devices/d1") is None
    assert store.create("devices/d1", {"a": 2}).data == {"a": 2}


def test_every_supported_value_round_trips(store: DocumentStore) -> None:
    cet = timezone(timedelta(hours=1))
    data = {
        "none": None,
        "yes": True,
        "int": 7,
        "big": 2**63 - 1,
        "float": 1.0,
        "text": "hello ✓",
        "when": datetime(2024, 1, 16, 0, 0, 0, 123456, tzinfo=cet),
        "list": [1, "a", None, {"m": T0}],
        "map": {"nested": {"deeper": [False, 2.5]}},
        "empty": {},
        "nothing": [],
    }
    stored = store.create("devices/d1", data)
    fetched = store.get("devices/d1")
    assert fetched == stored
    assert fetched.data == data
    when = fetched.data["when"]
    assert when.tzinfo == UTC
    assert type(when) is datetime
    assert when == datetime(2024, 1, 15, 23, 0, 0, 123456, tzinfo=UTC)
    assert type(fetched.data["int"]) is int
    assert type(fetched.data["float"]) is float
    assert type(fetched.update_time) is datetime
    assert fetched.update_time.tzinfo == UTC


def test_callers_cannot_change_stored_state_through_their_objects(store: DocumentStore) -> None:
    data: dict[str, Any] = {"m": {"x": 1}, "l": [1]}
    returned = store.create("devices/d1", data)
    data["m"]["x"] = 99
    data["l"].append(2)
    returned.data["m"]["x"] = 98
    fetched = store.get("devices/d1")
    assert fetched is not None
    fetched.data["l"].append(3)
    again = store.get("devices/d1")
    assert again is not None
    assert again.data == {"m": {"x": 1}, "l": [1]}


# -- bad input -------------------------------------------------------------------------------------

BAD_DOCUMENT_PATHS = ["devices", "a//b", "a/b/c", "", "/a/b", "a/b/", "__x__/y", "a/.."]


@pytest.mark.parametrize("path", BAD_DOCUMENT_PATHS)
def test_invalid_document_paths_are_refused_everywhere(store: DocumentStore, path: str) -> None:
    with pytest.raises(InvalidDocumentPath):
        store.get(path)
    with pytest.raises(InvalidDocumentPath):
        store.create(path, {"a": 1})
    with pytest.raises(InvalidDocumentPath):
        store.set(path, {"a": 1})
    with pytest.raises(InvalidDocumentPath):
        store.update(path, {"a": 1})
    with pytest.raises(InvalidDocumentPath):
        store.delete(path)


@pytest.mark.parametrize("path", ["devices/d1", "a//b", "", "a/b/c/"])
def test_invalid_collection_paths_are_refused_by_query(store: DocumentStore, path: str) -> None:
    with pytest.raises(InvalidDocumentPath):
        store.query(path)


def test_collection_group_needs_a_single_collection_id(store: DocumentStore) -> None:
    with pytest.raises(InvalidDocumentPath):
        store.collection_group("devices/d1/commands")


def test_naive_datetimes_are_refused_and_nothing_is_written(store: DocumentStore) -> None:
    naive = datetime(2024, 1, 1, 12, 0)  # noqa: DTZ001 - the naive value is the point
    with pytest.raises(NaiveDatetime):
        store.create("devices/d1", {"ok": 1, "when": naive})
    with pytest.raises(NaiveDatetime):
        store.set("devices/d1", {"deep": {"list": [naive]}})
    assert store.get("devices/d1") is None
    store.create("devices/d1", {"ok": 1})
    with pytest.raises(NaiveDatetime):
        store.update("devices/d1", {"ok": 2, "when": naive})
    with pytest.raises(NaiveDatetime):
        store.update("devices/d1", {"ok": 2}, if_update_time=naive)
    assert store.get("devices/d1").data == {"ok": 1}  # type: ignore[union-attr] # exists


@pytest.mark.parametrize(
    "value",
    [
        {1, 2},
        object(),
        b"bytes",
        (1, 2),
        Decimal("1.5"),
        [[1], [2]],
        {1: "non-string key"},
        {"": "empty key"},
        {"a.b": "dotted key"},
        2**63,
    ],
    ids=[
        "set",
        "object",
        "bytes",
        "tuple",
        "decimal",
        "nested-array",
        "int-key",
        "empty-key",
        "dotted-key",
        "int-too-big",
    ],
)
def test_unsupported_values_are_refused_and_nothing_is_written(
    store: DocumentStore, value: Any
) -> None:
    with pytest.raises(InvalidInput):
        store.create("devices/d1", {"ok": 1, "bad": value})
    assert store.get("devices/d1") is None


def test_a_refused_value_is_named_by_its_path_into_the_document(store: DocumentStore) -> None:
    deep = {"ok": "fine", "slots": [1.5, "x", None, {"mode": "mid", "at": object()}]}
    with pytest.raises(InvalidInput, match=r"data\.slots\[3\]\.at: unsupported value type"):
        store.create("devices/d1", deep)
    assert store.get("devices/d1") is None


def test_update_refuses_bad_field_paths(store: DocumentStore) -> None:
    store.create("devices/d1", {"a": 1})
    for changes in ({}, {"a..b": 1}, {"": 1}, {".a": 1}):
        with pytest.raises(InvalidInput):
            store.update("devices/d1", changes)
    assert store.get("devices/d1").data == {"a": 1}  # type: ignore[union-attr] # exists


def test_update_refuses_a_field_path_inside_another_it_names(store: DocumentStore) -> None:
    store.create("devices/d1", {"m": {"x": 1}})
    with pytest.raises(InvalidInput):
        store.update("devices/d1", {"m": {"x": 2}, "m.x": 3})
    assert store.get("devices/d1").data == {"m": {"x": 1}}  # type: ignore[union-attr] # exists


def test_update_adds_map_entries_whose_keys_are_digits(store: DocumentStore) -> None:
    """A command's history is a map keyed by zero-padded sequence numbers."""
    store.create("devices/d1", {"events": {"00000001": {"type": "created"}}})
    store.update("devices/d1", {"events.00000002": {"type": "sent"}, "state": "sent"})
    assert store.get("devices/d1").data == {  # type: ignore[union-attr] # exists
        "events": {"00000001": {"type": "created"}, "00000002": {"type": "sent"}},
        "state": "sent",
    }


# -- transactions ----------------------------------------------------------------------------------


def test_a_transaction_commits_reads_and_writes_together(store: DocumentStore) -> None:
    store.create("counters/c", {"n": 1})

    def move(tx: Transaction) -> int:
        current = tx.get("counters/c")
        assert current is not None
        n: int = current.data["n"]
        tx.update("counters/c", {"n": n + 1})
        tx.create("log/1", {"from": n})
        tx.set("log/2", {"to": n + 1})
        return n

    assert store.run_transaction(move) == 1
    assert store.get("counters/c").data == {"n": 2}  # type: ignore[union-attr] # exists
    assert store.get("log/1").data == {"from": 1}  # type: ignore[union-attr] # exists
    assert store.get("log/2").data == {"to": 2}  # type: ignore[union-attr] # exists


def test_a_transaction_can_delete_and_sees_missing_documents_as_none(store: DocumentStore) -> None:
    store.create("a/1", {"v": 1})

    def swap(tx: Transaction) -> None:
        assert tx.get("a/2") is None
        tx.delete("a/1")
        tx.create("a/2", {"v": 2})

    store.run_transaction(swap)
    assert store.get("a/1") is None
    assert store.get("a/2").data == {"v": 2}  # type: ignore[union-attr] # exists


def test_a_transaction_that_raises_writes_nothing(store: DocumentStore) -> None:
    store.create("a/1", {"v": 1})

    class Boom(Exception):
        pass

    def fail(tx: Transaction) -> None:
        tx.get("a/1")
        tx.set("a/1", {"v": 2})
        tx.create("a/2", {"v": 2})
        raise Boom

    with pytest.raises(Boom):
        store.run_transaction(fail)
    assert store.get("a/1").data == {"v": 1}  # type: ignore[union-attr] # exists
    assert store.get("a/2") is None


def test_a_failing_create_in_a_transaction_writes_nothing(store: DocumentStore) -> None:
    store.create("a/1", {"v": 1})

    def clash(tx: Transaction) -> None:
        tx.set("a/2", {"v": 2})
        tx.create("a/1", {"v": 9})
        tx.set("a/3", {"v": 3})

    with pytest.raises(DocumentAlreadyExists):
        store.run_transaction(clash)
    assert store.get("a/1").data == {"v": 1}  # type: ignore[union-attr] # exists
    assert store.get("a/2") is None
    assert store.get("a/3") is None


def test_an_update_of_a_missing_document_in_a_transaction_writes_nothing(
    store: DocumentStore,
) -> None:
    def clash(tx: Transaction) -> None:
        tx.set("a/2", {"v": 2})
        tx.update("a/1", {"v": 9})

    with pytest.raises(DocumentNotFound):
        store.run_transaction(clash)
    assert store.get("a/2") is None


def test_bad_input_inside_a_transaction_writes_nothing(store: DocumentStore) -> None:
    naive = datetime(2024, 1, 1)  # noqa: DTZ001 - the naive value is the point

    def bad(tx: Transaction) -> None:
        tx.set("a/1", {"v": 1})
        tx.set("a/2", {"when": naive})

    with pytest.raises(NaiveDatetime):
        store.run_transaction(bad)
    with pytest.raises(InvalidDocumentPath):
        store.run_transaction(lambda tx: tx.set("a", {"v": 1}))
    assert store.get("a/1") is None


def test_a_read_after_a_write_in_a_transaction_is_refused(store: DocumentStore) -> None:
    def misordered(tx: Transaction) -> None:
        tx.set("a/1", {"v": 1})
        tx.get("a/2")

    with pytest.raises(InvalidInput, match="after a write"):
        store.run_transaction(misordered)
    assert store.get("a/1") is None


def test_concurrent_transactions_on_one_counter_apply_both_increments(
    store: DocumentStore,
) -> None:
    store.create("counters/c", {"n": 0})
    both_read = threading.Barrier(2, timeout=10)
    errors: list[BaseException] = []

    def increment() -> None:
        first_attempt = [True]

        def fn(tx: Transaction) -> None:
            current = tx.get("counters/c")
            assert current is not None
            if first_attempt[0]:
                first_attempt[0] = False
                both_read.wait()  # both transactions have read n == 0 before either commits
            tx.update("counters/c", {"n": current.data["n"] + 1})

        try:
            store.run_transaction(fn, max_attempts=10)
        except BaseException as err:  # noqa: BLE001 - reported to the main thread below
            errors.append(err)

    threads = [threading.Thread(target=increment) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    assert store.get("counters/c").data == {"n": 2}  # type: ignore[union-attr] # exists


def test_max_attempts_must_be_positive(store: DocumentStore) -> None:
    with pytest.raises(InvalidInput):
        store.run_transaction(lambda tx: None, max_attempts=0)


# -- queries ---------------------------------------------------------------------------------------


def _ids(documents: Any) -> list[str]:
    return [d.id for d in documents]


@pytest.fixture
def zoo(store: DocumentStore) -> DocumentStore:
    docs: dict[str, dict[str, Any]] = {
        "d1": {"a": 1, "b": "x", "tags": ["red", "big"], "m": {"k": 3}},
        "d2": {"a": None, "b": "y", "tags": ["blue"], "m": {"k": 1}},
        "d3": {"b": "z", "m": {"j": 1}},
        "d4": {"a": True, "b": "w", "tags": []},
        "d5": {"a": 2.5, "b": "v", "m": {"k": 2}},
        "d6": {"a": "s", "b": "u", "when": T0},
        "d7": {"a": 1, "b": "x", "when": T0 + timedelta(hours=1)},
    }
    for doc_id, data in docs.items():
        store.create(f"zoo/{doc_id}", data)
    store.create("zoo/d1/zoo/inner", {"a": 1})
    store.create("other/o1", {"a": 1})
    return store


@pytest.mark.parametrize(
    ("flt", "expected"),
    [
        (Filter("a", "==", 1), ["d1", "d7"]),
        (Filter("a", "==", 1.0), ["d1", "d7"]),
        (Filter("a", "==", True), ["d4"]),
        (Filter("a", "==", None), ["d2"]),
        (Filter("a", "!=", 1), ["d4", "d5", "d6"]),
        (Filter("a", "!=", None), ["d4", "d1", "d7", "d5", "d6"]),
        (Filter("a", "<", 2), ["d1", "d7"]),
        (Filter("a", "<=", 2.5), ["d1", "d7", "d5"]),
        (Filter("a", ">", 1), ["d5"]),
        (Filter("a", ">=", 1), ["d1", "d7", "d5"]),
        (Filter("b", ">", "w"), ["d1", "d7", "d2", "d3"]),
        (Filter("a", "in", [1, "s"]), ["d1", "d6", "d7"]),
        (Filter("a", "not-in", [1, "s"]), ["d4", "d5"]),
        (Filter("tags", "array-contains", "red"), ["d1"]),
        (Filter("m.k", ">=", 2), ["d5", "d1"]),
        (Filter("m.k", "==", 1), ["d2"]),
        (Filter("when", ">", T0), ["d7"]),
        (Filter("missing", "==", None), []),
    ],
    ids=lambda v: repr(v) if not isinstance(v, list) else "",
)
def test_query_filters_like_firestore(zoo: DocumentStore, flt: Filter, expected: list[str]) -> None:
    # Inequalities order by their field implicitly, equalities by document path.
    assert _ids(zoo.query("zoo", [flt]).documents) == expected


def test_query_combines_filters_with_and(zoo: DocumentStore) -> None:
    page = zoo.query("zoo", [Filter("a", "==", 1), Filter("b", "==", "x"), Filter("when", ">", T0)])
    assert _ids(page.documents) == ["d7"]


def test_query_orders_ties_by_path_and_skips_documents_without_the_field(
    zoo: DocumentStore,
) -> None:
    assert _ids(zoo.query("zoo", order_by=[Order("b")]).documents) == [
        "d6",
        "d5",
        "d4",
        "d1",
        "d7",
        "d2",
        "d3",
    ]
    # Firestore's type order: null < bool < number < timestamp < string; ties by path.
    assert _ids(zoo.query("zoo", order_by=[Order("a")]).documents) == [
        "d2",
        "d4",
        "d1",
        "d7",
        "d5",
        "d6",
    ]
    # Descending: ties broken by path descending too, as Firestore's implicit __name__ order.
    assert _ids(zoo.query("zoo", order_by=[Order("b", "desc")]).documents) == [
        "d3",
        "d2",
        "d7",
        "d1",
        "d4",
        "d5",
        "d6",
    ]
    by_two = zoo.query("zoo", order_by=[Order("a", "desc"), Order("b")])
    assert _ids(by_two.documents) == ["d6", "d5", "d1", "d7", "d4", "d2"]


def test_query_without_order_returns_documents_by_path(zoo: DocumentStore) -> None:
    assert _ids(zoo.query("zoo").documents) == ["d1", "d2", "d3", "d4", "d5", "d6", "d7"]


def test_query_limit_returns_the_first_documents(zoo: DocumentStore) -> None:
    page = zoo.query("zoo", order_by=[Order("b")], limit=2)
    assert _ids(page.documents) == ["d6", "d5"]
    assert page.next_cursor is not None
    assert zoo.query("zoo", limit=7).next_cursor is None


def test_collection_group_spans_every_collection_with_that_id(zoo: DocumentStore) -> None:
    page = zoo.collection_group("zoo", [Filter("a", "==", 1)])
    assert [d.path for d in page.documents] == ["zoo/d1", "zoo/d1/zoo/inner", "zoo/d7"]
    assert _ids(zoo.collection_group("other").documents) == ["o1"]
    assert zoo.collection_group("nothing").documents == []


def test_a_range_on_a_timestamp_never_matches_a_field_cleared_to_null(
    store: DocumentStore,
) -> None:
    # Firestore orders values by type first and a range filter matches its own type only: a
    # field set to null (or missing) is never "before" a timestamp, in a collection-group query
    # too (the command sweep clears a plan's release_due_at to null once its release concluded).
    store.create("devices/a/plans/due", {"due": T0 - timedelta(minutes=1)})
    store.create("devices/a/plans/now", {"due": T0})
    store.create("devices/a/plans/later", {"due": T0 + timedelta(minutes=1)})
    store.create("devices/a/plans/cleared", {"due": T0 - timedelta(minutes=1)})
    store.update("devices/a/plans/cleared", {"due": None})
    store.create("devices/b/plans/never", {"other": 1})
    store.create("devices/b/plans/null", {"due": None})

    group = store.collection_group("plans", [Filter("due", "<=", T0)])
    assert [d.path for d in group.documents] == ["devices/a/plans/due", "devices/a/plans/now"]
    one = store.query("devices/b/plans", [Filter("due", "<", T0 + timedelta(days=1))])
    assert one.documents == []
    assert _ids(store.query("devices/a/plans", [Filter("due", "==", None)]).documents) == [
        "cleared"
    ]


def test_query_of_a_subcollection_sees_only_that_collection(zoo: DocumentStore) -> None:
    assert [d.path for d in zoo.query("zoo/d1/zoo").documents] == ["zoo/d1/zoo/inner"]


def test_paging_through_25_documents_with_a_filter_and_descending_order(
    store: DocumentStore,
) -> None:
    for i in range(30):
        store.create(
            f"prices/p{i:02d}", {"slot": i, "price": i % 7, "zone": "SE3" if i < 25 else "X"}
        )
    filters = [Filter("zone", "==", "SE3")]
    order = [Order("price", "desc")]
    seen: list[str] = []
    sizes: list[int] = []
    cursor = None
    for _ in range(5):
        page = store.query("prices", filters, order, limit=10, cursor=cursor)
        seen.extend(d.id for d in page.documents)
        sizes.append(len(page.documents))
        cursor = page.next_cursor
        if cursor is None:
            break
    expected = [f"p{i:02d}" for i in sorted(range(25), key=lambda i: (i % 7, i), reverse=True)]
    assert sizes == [10, 10, 5]
    assert seen == expected
    assert seen == _ids(store.query("prices", filters, order).documents)


def test_a_cursor_of_another_query_or_garbage_is_refused(store: DocumentStore) -> None:
    for i in range(3):
        store.create(f"c/{i}", {"n": i})
    cursor = store.query("c", order_by=[Order("n")], limit=1).next_cursor
    assert cursor is not None
    with pytest.raises(InvalidInput):
        store.query("c", order_by=[Order("n", "desc")], limit=1, cursor=cursor)
    with pytest.raises(InvalidInput):
        store.query("c", cursor="not a cursor")


@pytest.mark.parametrize(
    "bad",
    [
        {"filters": [Filter("a", "like", 1)]},  # type: ignore[arg-type] # the bad op is the point
        {"filters": [Filter("a", "in", [])]},
        {"filters": [Filter("a", "in", 1)]},
        {"filters": [Filter("a", "<", None)]},
        {"filters": [Filter("a..b", "==", 1)]},
        {"filters": [Filter("a", "==", datetime(2024, 1, 1))]},  # noqa: DTZ001 - naive on purpose
        {"order_by": [Order("a", "up")]},  # type: ignore[arg-type] # the bad direction is the point
        {"limit": 0},
    ],
)
def test_bad_queries_are_refused(store: DocumentStore, bad: dict[str, Any]) -> None:
    with pytest.raises(InvalidInput):
        store.query("c", **bad)


# -- local only: the clock and the SQLite file -----------------------------------------------------


def test_local_update_times_increase_even_when_the_clock_stands_still() -> None:
    local = LocalDocumentStore(clock=SimulatedClock(T0))
    first = local.create("a/1", {"n": 1})
    updated_at = local.update("a/1", {"n": 2})
    second = local.get("a/1")
    assert second is not None
    assert first.create_time == T0
    assert updated_at == second.update_time > first.update_time
    assert second.create_time == T0


def test_a_reopened_sqlite_store_sees_the_same_documents(tmp_path: Path) -> None:
    path = tmp_path / "run.sqlite"
    local = LocalDocumentStore(path=path)
    local.create("devices/d1", {"when": T0, "$odd": {"$dt": "not a date"}, "n": [1.0, 2]})
    local.create("devices/d1/commands/c1", {"state": "sent"})
    local.create("devices/d2", {"x": 1})
    local.delete("devices/d2")
    with pytest.raises(DocumentAlreadyExists):
        local.run_transaction(lambda tx: tx.create("devices/d1", {}))
    local.close()

    expected = {p: local.get(p) for p in ("devices/d1", "devices/d1/commands/c1", "devices/d2")}
    assert expected["devices/d1"].data["$odd"] == {"$dt": "not a date"}  # type: ignore[union-attr]

    for reopened in (LocalDocumentStore(path=path), LocalDocumentStore.open_readonly(path)):
        assert {p: reopened.get(p) for p in expected} == expected
        assert _ids(reopened.collection_group("commands").documents) == ["c1"]
        reopened.close()


def test_a_readonly_store_refuses_writes(tmp_path: Path) -> None:
    path = tmp_path / "run.sqlite"
    LocalDocumentStore(path=path).create("a/1", {"v": 1})
    readonly = LocalDocumentStore.open_readonly(path)
    assert readonly.get("a/1").data == {"v": 1}  # type: ignore[union-attr] # exists
    with pytest.raises(InvalidInput):
        readonly.set("a/1", {"v": 2})
    with pytest.raises(InvalidInput):
        LocalDocumentStore.open_readonly(tmp_path / "missing.sqlite")
