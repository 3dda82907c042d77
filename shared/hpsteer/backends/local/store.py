"""An in-process document store that keeps the document store port's promises exactly.

:class:`LocalDocumentStore` holds documents in memory, commits writes behind one lock, copies
values in and out (callers never share state with the store), runs transactions optimistically
(versions read are checked at commit; ``fn`` runs again on a conflict) and orders, filters and
pages queries the way Firestore does. A stored version is never changed in place: a write makes
a new one, copying only the maps on the paths it changes and sharing the rest with the version
before (so a read needs no lock, and an update copies what it changes, not the whole document).
With ``path=`` every committed change is also written to a SQLite file (table ``documents``),
which is loaded on open, so a local run can be inspected afterwards:
``LocalDocumentStore.open_readonly(path)`` reads such a file without writing to it.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import json
import math
import operator
import sqlite3
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Literal, TypeVar, cast

from hpsteer.backends.value_codec import decode_value, encode_value
from hpsteer.domain.instants import ensure_utc, format_instant, parse_instant
from hpsteer.errors import (
    ConcurrencyConflict,
    DocumentAlreadyExists,
    DocumentNotFound,
    InvalidDocumentPath,
    InvalidInput,
    PreconditionFailed,
    StoreUnavailable,
)
from hpsteer.ports.clock import Clock, SystemClock
from hpsteer.ports.store import (
    Document,
    Filter,
    Order,
    Page,
    Transaction,
    normalize_data,
    normalize_value,
    split_field_path,
    validate_collection_path,
    validate_document_path,
)

__all__ = ["LocalDocumentStore"]

T = TypeVar("T")
_TICK = timedelta(microseconds=1)
_INEQUALITY_OPS = frozenset({"<", "<=", ">", ">=", "!=", "not-in"})
_ALL_OPS = _INEQUALITY_OPS | {"==", "in", "array-contains"}
_MAX_IN = 30
_MAX_NOT_IN = 10


class _Missing:
    """The value of a field a document does not have."""


_MISSING = _Missing()


# -- values: encoding for SQLite and cursors, Firestore's ordering -------------------------------


def _type_rank(value: Any) -> int:
    if value is None:
        return 0
    if isinstance(value, bool):
        return 1
    if isinstance(value, int | float):
        return 2
    if isinstance(value, datetime):
        return 3
    if isinstance(value, str):
        return 4
    if isinstance(value, list):
        return 8
    return 9


def _compare(a: Any, b: Any) -> int:
    """Firestore's total order of values: by type first, then within the type."""
    rank_a, rank_b = _type_rank(a), _type_rank(b)
    if rank_a != rank_b:
        return -1 if rank_a < rank_b else 1
    if rank_a == 2:
        nan_a, nan_b = math.isnan(a), math.isnan(b)
        if nan_a or nan_b:
            return 0 if nan_a and nan_b else (-1 if nan_a else 1)
    if rank_a == 8:
        for x, y in zip(a, b, strict=False):
            result = _compare(x, y)
            if result:
                return result
        return (len(a) > len(b)) - (len(a) < len(b))
    if rank_a == 9:
        for (key_a, val_a), (key_b, val_b) in zip(
            sorted(a.items()), sorted(b.items()), strict=False
        ):
            if key_a != key_b:
                return -1 if key_a < key_b else 1
            result = _compare(val_a, val_b)
            if result:
                return result
        return (len(a) > len(b)) - (len(a) < len(b))
    if rank_a == 0:
        return 0
    return int((a > b) - (a < b))


def _same(a: Any, b: Any) -> bool:
    """Equal including types (``1``, ``1.0`` and ``True`` differ), as Firestore sees a change."""
    if a != b:  # unequal values are never the same: most writes are rejected here, in C
        return False
    return _same_types(a, b)


def _same_types(a: Any, b: Any) -> bool:
    if type(a) is not type(b):
        return False
    if isinstance(a, list):
        return len(a) == len(b) and all(_same_types(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same_types(a[k], b[k]) for k in a)
    return bool(a == b)


def _lookup(data: Mapping[str, Any], segments: Sequence[str]) -> Any:
    value: Any = data
    for segment in segments:
        if not isinstance(value, dict) or segment not in value:
            return _MISSING
        value = value[segment]
    return value


def _path_key(path: str) -> tuple[str, ...]:
    """Firestore orders ``__name__`` segment by segment, not as one string."""
    return tuple(path.split("/"))


# -- writes ---------------------------------------------------------------------------------------

_V = TypeVar("_V")


def _clone(value: _V) -> _V:
    """A deep copy of a stored value (maps, lists and immutable leaves: what the store keeps after
    ``normalize_value``), several times faster than ``copy.deepcopy``, which a query or a read
    would otherwise spend most of its time in: each map or list is copied in C and only its
    nested maps and lists are copied again (the store holds plain ``dict`` and ``list`` only)."""
    given: Any = value
    if type(given) is dict:
        out: Any = given.copy()
        for key, item in out.items():
            kind = type(item)
            if kind is dict or kind is list:
                out[key] = _clone(item)
        return cast(_V, out)
    if type(given) is list:
        out = given.copy()
        for index, item in enumerate(out):
            kind = type(item)
            if kind is dict or kind is list:
                out[index] = _clone(item)
        return cast(_V, out)
    return value  # str, int, float, bool, None, datetime, bytes: immutable


@dataclass(frozen=True, slots=True)
class _Stored:
    data: dict[str, Any]
    create_time: datetime
    update_time: datetime

    def to_document(self, path: str) -> Document:
        return Document(path, _clone(self.data), self.create_time, self.update_time)


@dataclass(frozen=True, slots=True)
class _Write:
    kind: Literal["create", "set", "update", "delete"]
    path: str
    data: dict[str, Any] | None = None
    merge: bool = False
    changes: tuple[tuple[tuple[str, ...], Any], ...] = ()
    if_update_time: datetime | None = None


def _deep_merge(base: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``extra`` merged into it; ``extra`` must be the store's own (a write's
    normalised data), it is not copied. ``base`` is not changed: maps on the way are copied."""
    merged = dict(base)
    for key, value in extra.items():
        current = merged.get(key)
        if isinstance(value, dict) and value and isinstance(current, dict):
            merged[key] = _deep_merge(current, value)
        else:
            merged[key] = value
    return merged


def _apply_changes(
    data: dict[str, Any], changes: Iterable[tuple[tuple[str, ...], Any]]
) -> dict[str, Any]:
    """``data`` with the field changes applied. ``data`` is not changed: only the maps on the
    changed paths are copied (stored values are never changed in place, so the rest is shared);
    the values in ``changes`` must be the store's own (normalised for this write)."""
    result = dict(data)
    copied: set[int] = {id(result)}
    for segments, value in changes:
        target = result
        for segment in segments[:-1]:
            child = target.get(segment)
            if not isinstance(child, dict):
                child = {}
                copied.add(id(child))
            elif id(child) not in copied:
                child = dict(child)
                copied.add(id(child))
            target[segment] = child
            target = child
        target[segments[-1]] = value
    return result


def _update_write(
    path: str, changes: Mapping[str, Any], if_update_time: datetime | None = None
) -> _Write:
    validate_document_path(path)
    if not isinstance(changes, Mapping) or not changes:
        raise InvalidInput(f"update of {path!r} needs a non-empty mapping of field paths")
    parsed: list[tuple[tuple[str, ...], Any]] = []
    for field_path, value in changes.items():
        segments = split_field_path(field_path)
        parsed.append((segments, normalize_value(value, f"{path}:{field_path}")))
    # Two field paths overlap when one is a prefix of the other (the keys are distinct): look
    # each path's proper prefixes up among the paths (linear in the fields, not quadratic).
    named = {p for p, _ in parsed}
    for segments, _ in parsed:
        for end in range(1, len(segments)):
            if segments[:end] in named:
                raise InvalidInput(
                    f"update of {path!r} names overlapping fields {segments[:end]} and {segments}"
                )
    when = None if if_update_time is None else ensure_utc(if_update_time, field="if_update_time")
    return _Write("update", path, changes=tuple(parsed), if_update_time=when)


def _new_data(
    write: _Write, current: dict[str, Any] | None, version: datetime | None
) -> dict[str, Any] | None:
    """The document's data after ``write``; ``None`` if deleted. Raises if the write may not run."""
    if write.kind == "delete":
        return None
    if write.kind == "create":
        if current is not None:
            raise DocumentAlreadyExists(f"document {write.path!r} already exists")
        return write.data or {}  # the write's normalised copy: the store's own
    if write.kind == "set":
        data = write.data or {}
        if write.merge and current is not None:
            return _deep_merge(current, data)
        return data
    if current is None:
        raise DocumentNotFound(f"cannot update missing document {write.path!r}")
    if write.if_update_time is not None and write.if_update_time != version:
        written = "never" if version is None else format_instant(version)
        raise PreconditionFailed(
            f"document {write.path!r} was written at {written}, "
            f"not at {format_instant(write.if_update_time)}"
        )
    return _apply_changes(current, write.changes)


# -- queries --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Query:
    scope: tuple[Literal["collection", "group"], str]
    filters: tuple[tuple[tuple[str, ...], str, Any], ...]
    orders: tuple[tuple[tuple[str, ...], bool], ...]  # (field, descending), __name__ excluded
    name_descending: bool
    limit: int | None

    def fingerprint(self) -> str:
        text = json.dumps(
            [self.scope, [[f, op, encode_value(v)] for f, op, v in self.filters], self.orders],
            sort_keys=True,
        )
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def _check_filter_value(flt: Filter) -> Any:
    where = f"filter {flt.field} {flt.op}"
    if flt.op in ("in", "not-in"):
        if not isinstance(flt.value, list) or not flt.value:
            raise InvalidInput(f"{where} needs a non-empty list")
        most = _MAX_IN if flt.op == "in" else _MAX_NOT_IN
        if len(flt.value) > most:
            raise InvalidInput(f"{where} takes at most {most} values")
        return [normalize_value(v, where) for v in flt.value]
    value = normalize_value(flt.value, where)
    if value is None and flt.op not in ("==", "!="):
        raise InvalidInput(f"{where}: null only supports == and !=")
    return value


def _build_query(
    scope: tuple[Literal["collection", "group"], str],
    filters: Sequence[Filter],
    order_by: Sequence[Order],
    limit: int | None,
) -> _Query:
    parsed_filters = []
    for flt in filters:
        if not isinstance(flt, Filter) or flt.op not in _ALL_OPS:
            raise InvalidInput(f"not a supported filter: {flt!r}")
        parsed_filters.append((split_field_path(flt.field), flt.op, _check_filter_value(flt)))
    orders: list[tuple[tuple[str, ...], bool]] = []
    for order in order_by:
        if not isinstance(order, Order) or order.direction not in ("asc", "desc"):
            raise InvalidInput(f"not a supported order: {order!r}")
        segments = split_field_path(order.field)
        if any(segments == f for f, _ in orders):
            raise InvalidInput(f"field {order.field!r} is ordered twice")
        orders.append((segments, order.direction == "desc"))
    descending = orders[-1][1] if orders else False
    implicit = sorted(
        {f for f, op, _ in parsed_filters if op in _INEQUALITY_OPS} - {f for f, _ in orders},
        key=".".join,
    )
    orders.extend((f, descending) for f in implicit)
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise InvalidInput(f"limit must be a positive integer, got {limit!r}")
    return _Query(scope, tuple(parsed_filters), tuple(orders), descending, limit)


def _matches(data: Mapping[str, Any], field: Sequence[str], op: str, value: Any) -> bool:
    """Whether ``data`` passes the filter ``field op value``: the definition, which the compiled
    tests of :func:`_filter_test` (what queries run) must agree with."""
    actual = _lookup(data, field)
    if actual is _MISSING:
        return False
    if op == "==":
        return _type_rank(actual) == _type_rank(value) and _compare(actual, value) == 0
    if op == "!=":
        return actual is not None and (value is None or not _matches(data, field, "==", value))
    if op == "in":
        return any(_matches(data, field, "==", v) for v in value)
    if op == "not-in":
        return actual is not None and not _matches(data, field, "in", value)
    if op == "array-contains":
        return isinstance(actual, list) and any(
            _type_rank(item) == _type_rank(value) and _compare(item, value) == 0 for item in actual
        )
    if _type_rank(actual) != _type_rank(value):
        return False
    result = _compare(actual, value)
    return {"<": result < 0, "<=": result <= 0, ">": result > 0, ">=": result >= 0}[op]


_Test = Callable[[Any], bool]
"""A filter's test of a field's value (never called with a missing field)."""


def _equals(value: Any) -> _Test:
    """The test of ``actual == value`` as :func:`_matches` makes it (same type rank, compares
    equal), with a fast path for the leaf types filters use."""
    if isinstance(value, str):
        return lambda actual: isinstance(actual, str) and actual == value
    if isinstance(value, bool):
        return lambda actual: isinstance(actual, bool) and actual == value
    if isinstance(value, datetime):
        return lambda actual: isinstance(actual, datetime) and actual == value
    if value is None:
        return lambda actual: actual is None
    rank = _type_rank(value)
    return lambda actual: _type_rank(actual) == rank and _compare(actual, value) == 0


def _field_test(op: str, value: Any) -> _Test:
    """The test ``_matches(data, field, op, value)`` applies to the field's value once found."""
    if op == "==":
        return _equals(value)
    if op == "!=":
        if value is None:
            return lambda actual: actual is not None
        equal = _equals(value)
        return lambda actual: actual is not None and not equal(actual)
    if op in ("in", "not-in"):
        tests = [_equals(v) for v in value]
        strings = frozenset(v for v in value if isinstance(v, str))
        others = [t for v, t in zip(value, tests, strict=True) if not isinstance(v, str)]

        def is_in(actual: Any) -> bool:
            if isinstance(actual, str):
                return actual in strings
            return any(test(actual) for test in others)

        if op == "in":
            return is_in
        return lambda actual: actual is not None and not is_in(actual)
    if op == "array-contains":
        equal = _equals(value)
        return lambda actual: isinstance(actual, list) and any(equal(item) for item in actual)
    if isinstance(value, datetime):  # the type rank of timestamps holds datetimes only
        compare = _DATETIME_INEQUALITIES[op]
        return lambda actual: isinstance(actual, datetime) and compare(actual, value)
    rank = _type_rank(value)
    wanted = {"<": (-1,), "<=": (-1, 0), ">": (1,), ">=": (1, 0)}[op]
    return lambda actual: _type_rank(actual) == rank and _sign(_compare(actual, value)) in wanted


_DATETIME_INEQUALITIES: dict[str, Callable[[datetime, datetime], bool]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}
"""An inequality of two timestamps: what ``_compare`` (chronological order) makes of it."""


def _sign(result: int) -> int:
    return (result > 0) - (result < 0)


def _filter_test(
    field: tuple[str, ...], op: str, value: Any
) -> Callable[[Mapping[str, Any]], bool]:
    """``_matches(data, field, op, value)`` as one compiled test of a document's data."""
    test = _field_test(op, value)
    if len(field) == 1:
        (name,) = field

        def top_level(data: Mapping[str, Any]) -> bool:
            actual = data.get(name, _MISSING)
            return actual is not _MISSING and test(actual)

        return top_level

    def nested(data: Mapping[str, Any]) -> bool:
        actual = _lookup(data, field)
        return actual is not _MISSING and test(actual)

    return nested


def _sort_key_values(query: _Query, path: str, data: Mapping[str, Any]) -> list[Any] | None:
    values = [_lookup(data, field) for field, _ in query.orders]
    if any(v is _MISSING for v in values):
        return None
    return [*values, path]


def _compare_keys(query: _Query, a: Sequence[Any], b: Sequence[Any]) -> int:
    for (_, descending), x, y in zip(query.orders, a, b, strict=False):
        result = _compare(x, y)
        if result:
            return -result if descending else result
    result = (_path_key(a[-1]) > _path_key(b[-1])) - (_path_key(a[-1]) < _path_key(b[-1]))
    return -result if query.name_descending else result


def _encode_cursor(query: _Query, key: Sequence[Any]) -> str:
    payload = {"q": query.fingerprint(), "k": encode_value(list(key))}
    return base64.urlsafe_b64encode(json.dumps(payload).encode()).decode()


def _decode_cursor(query: _Query, cursor: str) -> list[Any]:
    try:
        payload = json.loads(base64.urlsafe_b64decode(cursor.encode()))
        key = decode_value(payload["k"])
        fingerprint = payload["q"]
    except (binascii.Error, ValueError, KeyError, TypeError, AttributeError) as err:
        raise InvalidInput(f"not a cursor of this store: {cursor!r}") from err
    if fingerprint != query.fingerprint() or not isinstance(key, list):
        raise InvalidInput("the cursor belongs to a different query")
    if len(key) != len(query.orders) + 1:
        raise InvalidInput("the cursor belongs to a different query")
    return key


# -- the store ------------------------------------------------------------------------------------


class _Retry(Exception):
    """A document read in a transaction changed before it committed."""


class LocalTransaction:
    """Reads go to the store and are remembered; writes wait in a buffer until commit."""

    def __init__(self, store: LocalDocumentStore) -> None:
        self._store = store
        self.reads: dict[str, datetime | None] = {}
        self.writes: list[_Write] = []

    def get(self, path: str) -> Document | None:
        validate_document_path(path)
        if self.writes:
            raise InvalidInput(
                f"read of {path!r} after a write in the same transaction: "
                "Firestore transactions must do all reads before any write"
            )
        document = self._store._get(path)
        if path not in self.reads:
            self.reads[path] = None if document is None else document.update_time
        return document

    def create(self, path: str, data: Mapping[str, Any]) -> None:
        validate_document_path(path)
        self.writes.append(_Write("create", path, normalize_data(data)))

    def set(self, path: str, data: Mapping[str, Any], *, merge: bool = False) -> None:
        validate_document_path(path)
        self.writes.append(_Write("set", path, normalize_data(data), merge=merge))

    def update(self, path: str, changes: Mapping[str, Any]) -> None:
        self.writes.append(_update_write(path, changes))

    def delete(self, path: str) -> None:
        validate_document_path(path)
        self.writes.append(_Write("delete", path))


class LocalDocumentStore:
    """The document store port in memory, optionally mirrored to a SQLite file."""

    def __init__(
        self, *, clock: Clock | None = None, path: Path | None = None, readonly: bool = False
    ) -> None:
        self._clock: Clock = clock or SystemClock()
        self._lock = threading.RLock()
        self._docs: dict[str, _Stored] = {}
        # Paths by parent collection, and by collection id (for collection groups): a query
        # looks only at its own collection's documents, not at the whole store.
        self._by_parent: dict[str, set[str]] = {}
        self._by_group: dict[str, set[str]] = {}
        self._last_time: datetime | None = None
        self._readonly = readonly
        self._db: sqlite3.Connection | None = None
        if path is not None:
            self._open(Path(path))

    @classmethod
    def open_readonly(cls, path: Path) -> LocalDocumentStore:
        """The documents of a SQLite file written by a store; writes raise ``InvalidInput``."""
        if not Path(path).exists():
            raise InvalidInput(f"no store file at {path}")
        return cls(path=path, readonly=True)

    # -- persistence ---------------------------------------------------------------------------

    def _open(self, path: Path) -> None:
        try:
            if self._readonly:
                self._db = sqlite3.connect(
                    f"{path.resolve().as_uri()}?mode=ro", uri=True, check_same_thread=False
                )
            else:
                self._db = sqlite3.connect(path, check_same_thread=False)
                # The file mirrors the store for inspection: write-ahead logging with syncs only
                # at checkpoints keeps every commit atomic at a tenth of the cost of a full sync.
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute("PRAGMA synchronous=NORMAL")
                with self._db:
                    self._db.execute(
                        "CREATE TABLE IF NOT EXISTS documents (path TEXT PRIMARY KEY, "
                        "data JSON NOT NULL, create_time TEXT NOT NULL, update_time TEXT NOT NULL)"
                    )
            rows = self._db.execute(
                "SELECT path, data, create_time, update_time FROM documents"
            ).fetchall()
        except sqlite3.Error as err:
            raise StoreUnavailable(f"cannot open store file {path}: {err}") from err
        for doc_path, data, created, updated in rows:
            stored = _Stored(_json_decode(data), parse_instant(created), parse_instant(updated))
            self._put(doc_path, stored)
            if self._last_time is None or stored.update_time > self._last_time:
                self._last_time = stored.update_time

    def save_to(self, path: Path) -> None:
        """Write every document into a new SQLite file at ``path`` (replaced if it exists), in
        the format :meth:`open_readonly` reads: a store kept in memory while it is busy (the
        simulator) is inspected afterwards from its snapshot."""
        target = Path(path)
        target.unlink(missing_ok=True)
        with self._lock:
            snapshot = dict(self._docs)
        try:
            db = sqlite3.connect(target)
            try:
                with db:
                    db.execute(
                        "CREATE TABLE documents (path TEXT PRIMARY KEY, data JSON NOT NULL, "
                        "create_time TEXT NOT NULL, update_time TEXT NOT NULL)"
                    )
                    db.executemany(
                        "INSERT INTO documents VALUES (?, ?, ?, ?)",
                        (
                            (
                                doc_path,
                                json.dumps(encode_value(stored.data)),
                                format_instant(stored.create_time),
                                format_instant(stored.update_time),
                            )
                            for doc_path, stored in sorted(snapshot.items())
                        ),
                    )
            finally:
                db.close()
        except sqlite3.Error as err:
            raise StoreUnavailable(f"cannot write the store file {target}: {err}") from err

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None

    def _persist(self, changed: Mapping[str, _Stored | None]) -> None:
        if self._db is None:
            return
        try:
            with self._db:
                for path, stored in changed.items():
                    if stored is None:
                        self._db.execute("DELETE FROM documents WHERE path = ?", (path,))
                    else:
                        self._db.execute(
                            "INSERT OR REPLACE INTO documents VALUES (?, ?, ?, ?)",
                            (
                                path,
                                json.dumps(encode_value(stored.data)),
                                format_instant(stored.create_time),
                                format_instant(stored.update_time),
                            ),
                        )
        except sqlite3.Error as err:
            raise StoreUnavailable(f"cannot write the store file: {err}") from err

    # -- commit --------------------------------------------------------------------------------

    def _next_time(self) -> datetime:
        now = ensure_utc(self._clock.now(), field="clock.now()")
        if self._last_time is not None and now <= self._last_time:
            now = self._last_time + _TICK
        self._last_time = now
        return now

    def _commit(
        self, writes: Sequence[_Write], reads: Mapping[str, datetime | None] | None = None
    ) -> dict[str, _Stored | None]:
        if self._readonly:
            raise InvalidInput("this store was opened read-only")
        with self._lock:
            for path, version in (reads or {}).items():
                seen = self._docs.get(path)
                if (None if seen is None else seen.update_time) != version:
                    raise _Retry(path)
            if not writes:
                return {}
            # path -> (data or None if deleted, create_time or None if created in this commit)
            staged: dict[str, tuple[dict[str, Any] | None, datetime | None]] = {}
            current: tuple[dict[str, Any], datetime | None] | None
            for write in writes:
                version = None
                if write.path in staged:
                    data, created = staged[write.path]
                    current = None if data is None else (data, created)
                else:
                    stored = self._docs.get(write.path)
                    current = None if stored is None else (stored.data, stored.create_time)
                    version = None if stored is None else stored.update_time
                new_data = _new_data(write, None if current is None else current[0], version)
                keep_created = current[1] if current is not None and new_data is not None else None
                staged[write.path] = (new_data, keep_created)
            for path, (data, _) in list(staged.items()):
                before = self._docs.get(path)
                if (before is None and data is None) or (
                    before is not None and data is not None and _same(before.data, data)
                ):
                    del staged[path]  # unchanged: keeps its update_time, as in Firestore
            result: dict[str, _Stored | None] = {}
            if staged:
                when = self._next_time()
                result = {
                    path: None if data is None else _Stored(data, created or when, when)
                    for path, (data, created) in staged.items()
                }
            self._persist(result)
            for path, new in result.items():
                if new is None:
                    self._drop(path)
                else:
                    self._put(path, new)
            return result

    def _put(self, path: str, stored: _Stored) -> None:
        if path not in self._docs:
            parent = path.rsplit("/", 1)[0]
            self._by_parent.setdefault(parent, set()).add(path)
            self._by_group.setdefault(parent.rsplit("/", 1)[-1], set()).add(path)
        self._docs[path] = stored

    def _drop(self, path: str) -> None:
        if self._docs.pop(path, None) is not None:
            parent = path.rsplit("/", 1)[0]
            self._by_parent[parent].discard(path)
            self._by_group[parent.rsplit("/", 1)[-1]].discard(path)

    def _write_one(self, write: _Write) -> _Stored:
        """Commit one write (not a delete); the document's version after it."""
        with self._lock:
            changed = self._commit([write])
            stored = changed[write.path] if write.path in changed else self._docs[write.path]
        assert stored is not None  # only deletes store None
        return stored

    # -- the port ------------------------------------------------------------------------------

    def get(self, path: str) -> Document | None:
        validate_document_path(path)
        return self._get(path)

    def _get(self, path: str) -> Document | None:
        """:meth:`get` of a path already validated."""
        stored = self._docs.get(path)  # one dict lookup: atomic, and _Stored is immutable
        return None if stored is None else stored.to_document(path)

    def create(self, path: str, data: Mapping[str, Any]) -> Document:
        validate_document_path(path)
        return self._write_one(_Write("create", path, normalize_data(data))).to_document(path)

    def set(self, path: str, data: Mapping[str, Any], *, merge: bool = False) -> datetime:
        validate_document_path(path)
        return self._write_one(_Write("set", path, normalize_data(data), merge=merge)).update_time

    def update(
        self,
        path: str,
        changes: Mapping[str, Any],
        *,
        if_update_time: datetime | None = None,
    ) -> datetime:
        return self._write_one(_update_write(path, changes, if_update_time)).update_time

    def delete(self, path: str) -> None:
        validate_document_path(path)
        self._commit([_Write("delete", path)])

    def run_transaction(self, fn: Callable[[Transaction], T], *, max_attempts: int = 5) -> T:
        if isinstance(max_attempts, bool) or not isinstance(max_attempts, int) or max_attempts < 1:
            raise InvalidInput(f"max_attempts must be a positive integer, got {max_attempts!r}")
        changed = ""
        for _ in range(max_attempts):
            tx = LocalTransaction(self)
            result = fn(tx)
            try:
                self._commit(tx.writes, tx.reads)
            except _Retry as retry:
                changed = str(retry)
                continue
            return result
        raise ConcurrencyConflict(
            f"transaction gave up after {max_attempts} attempts: {changed!r} kept changing"
        )

    def query(
        self,
        collection: str,
        filters: Sequence[Filter] = (),
        order_by: Sequence[Order] = (),
        limit: int | None = None,
        cursor: str | None = None,
    ) -> Page:
        validate_collection_path(collection)
        return self._run(_build_query(("collection", collection), filters, order_by, limit), cursor)

    def collection_group(
        self,
        collection_id: str,
        filters: Sequence[Filter] = (),
        order_by: Sequence[Order] = (),
        limit: int | None = None,
        cursor: str | None = None,
    ) -> Page:
        if not isinstance(collection_id, str) or "/" in collection_id:
            raise InvalidDocumentPath(f"a collection id has no '/', got {collection_id!r}")
        validate_collection_path(collection_id)
        query = _build_query(("group", collection_id), filters, order_by, limit)
        return self._run(query, cursor)

    def _run(self, query: _Query, cursor: str | None) -> Page:
        after = None if cursor is None else _decode_cursor(query, cursor)
        kind, name = query.scope
        index = self._by_parent if kind == "collection" else self._by_group
        with self._lock:
            snapshot = [(path, self._docs[path]) for path in index.get(name, ())]
        tests = [_filter_test(f, op, v) for f, op, v in query.filters]
        hits: list[tuple[list[Any], str, _Stored]] = []
        for path, stored in snapshot:
            data = stored.data
            for test in tests:  # a loop, not all(…): no generator per document of the scan
                if not test(data):
                    break
            else:
                key = _sort_key_values(query, path, data)
                if key is None:
                    continue
                if after is not None and _compare_keys(query, key, after) <= 0:
                    continue
                hits.append((key, path, stored))

        def by_key(a: tuple[list[Any], str, _Stored], b: tuple[list[Any], str, _Stored]) -> int:
            return _compare_keys(query, a[0], b[0])

        if query.orders:
            hits.sort(key=functools.cmp_to_key(by_key))
        else:  # ordered by name alone (paths are unique): the same order, compared in C
            hits.sort(key=lambda hit: _path_key(hit[1]), reverse=query.name_descending)
        next_cursor = None
        if query.limit is not None and len(hits) > query.limit:
            hits = hits[: query.limit]
            next_cursor = _encode_cursor(query, hits[-1][0])
        return Page([stored.to_document(path) for _, path, stored in hits], next_cursor)


def _json_decode(text: str) -> dict[str, Any]:
    data = decode_value(json.loads(text))
    if not isinstance(data, dict):
        raise StoreUnavailable("a stored document is not a map")
    return data
