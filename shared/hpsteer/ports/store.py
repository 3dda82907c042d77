"""The document store port: Firestore's model, kept to what hpsteer needs.

Documents live at slash-separated paths of alternating collection and document ids
(``devices/d1/commands/c1``). Values are JSON-like: ``None``, ``bool``, ``int``, ``float``,
``str``, timezone-aware ``datetime`` (returned in UTC), lists and string-keyed maps of these.
Naive datetimes are refused with :class:`~hpsteer.errors.NaiveDatetime`.

Promises every backend keeps (checked by ``tests/contract/test_store_contract.py``):

- ``get`` of a missing document returns ``None``; ``create`` of an existing one raises
  :class:`~hpsteer.errors.DocumentAlreadyExists` and writes nothing.
- ``set`` replaces (or with ``merge=True`` deep-merges maps into) a document.
- ``update`` changes the named fields (dotted paths reach into maps) of an existing document,
  raises :class:`~hpsteer.errors.DocumentNotFound` if it is missing, and
  :class:`~hpsteer.errors.PreconditionFailed` if ``if_update_time`` is given and the document
  was written since.
- ``create`` returns the document it made; ``set`` and ``update`` return only the document's
  ``update_time`` after the write (UTC; what a following ``get`` reports, so it serves as the
  next ``if_update_time``): knowing the whole document would cost Firestore a read after the
  write. Whoever needs the data reads it.
- Every write that changes a document moves ``update_time`` forward; ``create_time`` stays.
  A write that leaves the document exactly as it was keeps its ``update_time`` (Firestore does).
- ``run_transaction(fn)`` runs ``fn(tx)`` so that its reads and writes are atomic: all writes
  commit together or none do; if a document read in it changed before commit, ``fn`` runs again
  (so ``fn`` must have no side effects outside ``tx``). Reads come before writes, as in Firestore.
- ``query`` over one collection and ``collection_group`` over every collection with that id
  filter by fields, order (ties broken by document path) and page with an opaque cursor.
  As in Firestore: a document missing a filtered or ordered field does not match; fields under
  an inequality filter that are not ordered explicitly are ordered after the explicit orders
  (by field path), and the document path breaks ties last, all in the last order's direction
  (ascending when there is none); a read after a write in a transaction raises
  :class:`~hpsteer.errors.InvalidInput`.

Values are checked (and copied, datetimes converted to UTC) by :func:`normalize_data` before any
backend writes them, so bad input fails the same way everywhere and nothing is written partly.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, Protocol, TypeVar, runtime_checkable

from hpsteer.domain.instants import ensure_utc
from hpsteer.errors import DocumentNotFound, InvalidDocumentPath, InvalidInput, PreconditionFailed

__all__ = [
    "Direction",
    "Document",
    "DocumentStore",
    "Filter",
    "FilterOp",
    "Order",
    "Page",
    "Transaction",
    "every_page",
    "normalize_data",
    "normalize_value",
    "split_document_path",
    "split_field_path",
    "validate_collection_path",
    "validate_document_path",
]

T = TypeVar("T")
FilterOp = Literal["==", "!=", "<", "<=", ">", ">=", "in", "not-in", "array-contains"]
Direction = Literal["asc", "desc"]


@dataclass(frozen=True, slots=True)
class Filter:
    """``field op value``; ``field`` may be a dotted path into maps."""

    field: str
    op: FilterOp
    value: Any


@dataclass(frozen=True, slots=True)
class Order:
    field: str
    direction: Direction = "asc"


@dataclass(frozen=True, slots=True)
class Document:
    path: str
    data: dict[str, Any]
    create_time: datetime
    update_time: datetime

    @property
    def id(self) -> str:
        return self.path.rsplit("/", 1)[-1]


@dataclass(frozen=True, slots=True)
class Page:
    documents: list[Document]
    next_cursor: str | None = field(default=None)
    """Pass to the same query's ``cursor`` for the next page; ``None`` when there is no more."""


@runtime_checkable
class Transaction(Protocol):
    def get(self, path: str) -> Document | None: ...
    def create(self, path: str, data: Mapping[str, Any]) -> None: ...
    def set(self, path: str, data: Mapping[str, Any], *, merge: bool = False) -> None: ...
    def update(self, path: str, changes: Mapping[str, Any]) -> None: ...
    def delete(self, path: str) -> None: ...


@runtime_checkable
class DocumentStore(Protocol):
    def get(self, path: str) -> Document | None: ...

    def create(self, path: str, data: Mapping[str, Any]) -> Document: ...

    def set(self, path: str, data: Mapping[str, Any], *, merge: bool = False) -> datetime:
        """Write the document; return its ``update_time`` after the write."""
        ...

    def update(
        self,
        path: str,
        changes: Mapping[str, Any],
        *,
        if_update_time: datetime | None = None,
    ) -> datetime:
        """Change the named fields; return the document's ``update_time`` after the write."""
        ...

    def delete(self, path: str) -> None:
        """Delete if present; deleting a missing document is not an error (as in Firestore)."""
        ...

    def run_transaction(self, fn: Callable[[Transaction], T], *, max_attempts: int = 5) -> T: ...

    def query(
        self,
        collection: str,
        filters: Sequence[Filter] = (),
        order_by: Sequence[Order] = (),
        limit: int | None = None,
        cursor: str | None = None,
    ) -> Page: ...

    def collection_group(
        self,
        collection_id: str,
        filters: Sequence[Filter] = (),
        order_by: Sequence[Order] = (),
        limit: int | None = None,
        cursor: str | None = None,
    ) -> Page: ...


def every_page(fetch: Callable[[str | None], Page]) -> Iterator[Document]:
    """The documents of every page of a query, fetched one page at a time: ``fetch(cursor)``
    runs the query from ``cursor`` (``None``: from the start)."""
    cursor: str | None = None
    while True:
        page = fetch(cursor)
        yield from page.documents
        if page.next_cursor is None:
            return
        cursor = page.next_cursor


def update_as_decided(
    store: DocumentStore,
    path: str,
    decide: Callable[[Mapping[str, Any]], tuple[Mapping[str, Any], T] | None],
    *,
    read: tuple[Mapping[str, Any], datetime] | None = None,
) -> T | None:
    """Update the document at ``path`` with what ``decide`` makes of its data, (changes, what
    to return), or leave it when ``decide`` returns None; return what it decided (None: nothing
    written).

    ``read``: the document's data and ``update_time`` as the caller has just read it. Then the
    decision is made on it and written by one update on the condition that the document is still
    as read: no transaction and no read. Only when it was written since does a transaction read
    it again and decide anew. A decision of ``read`` to leave it stands without a read: use this
    only where a later state could not decide otherwise (state that only moves forward). Without
    ``read``, the transaction. A missing document raises
    :class:`~hpsteer.errors.DocumentNotFound`."""
    if read is not None:
        data, update_time = read
        decided = decide(data)
        if decided is None:
            return None
        try:
            store.update(path, decided[0], if_update_time=update_time)
            return decided[1]
        except PreconditionFailed:
            pass  # written since: decide again on the document as it is now

    def run(tx: Transaction) -> T | None:
        document = tx.get(path)
        if document is None:
            raise DocumentNotFound(f"no document {path}")
        decided = decide(document.data)
        if decided is None:
            return None
        tx.update(path, decided[0])
        return decided[1]

    return store.run_transaction(run)


def _check_segments(path: str, kind: str) -> list[str]:
    if not isinstance(path, str) or not path:
        raise InvalidDocumentPath(f"{kind} path must be a non-empty string, got {path!r}")
    segments = path.split("/")
    for segment in segments:
        if not segment:
            raise InvalidDocumentPath(f"{kind} path {path!r} has an empty segment")
        if segment in {".", ".."} or (segment.startswith("__") and segment.endswith("__")):
            raise InvalidDocumentPath(f"{kind} path {path!r} has a reserved segment {segment!r}")
        if len(segment.encode()) > 1500:
            raise InvalidDocumentPath(f"{kind} path {path!r} has a segment over 1500 bytes")
    return segments


def validate_document_path(path: str) -> str:
    """Return ``path`` if it names a document (an even number of segments), else raise."""
    segments = _check_segments(path, "document")
    if len(segments) % 2:
        raise InvalidDocumentPath(
            f"document path {path!r} has {len(segments)} segments; "
            "a document path has an even number"
        )
    return path


def validate_collection_path(path: str) -> str:
    """Return ``path`` if it names a collection (an odd number of segments), else raise."""
    segments = _check_segments(path, "collection")
    if not len(segments) % 2:
        raise InvalidDocumentPath(
            f"collection path {path!r} has {len(segments)} segments; "
            "a collection path has an odd number"
        )
    return path


def split_document_path(path: str) -> tuple[str, str]:
    """``'a/b/c/d'`` → ``('a/b/c', 'd')``: the parent collection and the document id."""
    validate_document_path(path)
    parent, _, doc_id = path.rpartition("/")
    return parent, doc_id


_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


def _check_key(key: object, where: str) -> str:
    if not isinstance(key, str):
        raise InvalidInput(f"{where}: map keys must be strings, got {key!r}")
    if not key or "." in key or "`" in key or (key.startswith("__") and key.endswith("__")):
        raise InvalidInput(
            f"{where}: map key {key!r} is empty, contains '.' or '`', or is reserved (__x__)"
        )
    return key


def normalize_value(value: Any, where: str = "value", *, in_array: bool = False) -> Any:
    """A deep copy of a document value, datetimes in UTC; anything else raises ``InvalidInput``.

    Arrays may not hold arrays (as in Firestore); ints must fit in 64 bits.
    """
    if value is None or isinstance(value, bool | float | str):
        return value
    if isinstance(value, int):
        if not _INT64_MIN <= value <= _INT64_MAX:
            raise InvalidInput(f"{where}: integer {value} does not fit in 64 bits")
        return value
    if isinstance(value, datetime):
        return ensure_utc(value, field=where)
    if isinstance(value, list):
        if in_array:
            raise InvalidInput(f"{where}: an array cannot hold another array")
        return [
            v if type(v) in _PLAIN else normalize_value(v, f"{where}[{i}]", in_array=True)
            for i, v in enumerate(value)
        ]
    if isinstance(value, dict):
        return {
            _check_key(k, where): v if type(v) in _PLAIN else normalize_value(v, f"{where}.{k}")
            for k, v in value.items()
        }
    raise InvalidInput(f"{where}: unsupported value type {type(value).__name__}")


_PLAIN = frozenset({type(None), bool, float, str})
"""Values that are their own copy, taken as they are inside arrays and maps without building the
path an error would name (most of a document; the local runtime copies every one it writes)."""


def normalize_data(data: Mapping[str, Any], where: str = "data") -> dict[str, Any]:
    """A deep, checked copy of a document's fields (see :func:`normalize_value`)."""
    if not isinstance(data, Mapping):
        raise InvalidInput(f"{where} must be a mapping of field names, got {type(data).__name__}")
    return {
        _check_key(k, where): v if type(v) in _PLAIN else normalize_value(v, f"{where}.{k}")
        for k, v in data.items()
    }


def split_field_path(path: str) -> tuple[str, ...]:
    """``'a.b.c'`` → ``('a', 'b', 'c')``: a path into maps; bad paths raise ``InvalidInput``."""
    if not isinstance(path, str) or not path:
        raise InvalidInput(f"field path must be a non-empty string, got {path!r}")
    segments = tuple(path.split("."))
    for segment in segments:
        _check_key(segment, f"field path {path!r}")
    return segments
