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
- Every write moves ``update_time`` forward; ``create_time`` stays.
- ``run_transaction(fn)`` runs ``fn(tx)`` so that its reads and writes are atomic: all writes
  commit together or none do; if a document read in it changed before commit, ``fn`` runs again
  (so ``fn`` must have no side effects outside ``tx``). Reads come before writes, as in Firestore.
- ``query`` over one collection and ``collection_group`` over every collection with that id
  filter by fields, order (ties broken by document path) and page with an opaque cursor.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, Protocol, TypeVar, runtime_checkable

from hpsteer.errors import InvalidDocumentPath

__all__ = [
    "Direction",
    "Document",
    "DocumentStore",
    "Filter",
    "FilterOp",
    "Order",
    "Page",
    "Transaction",
    "split_document_path",
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

    def set(self, path: str, data: Mapping[str, Any], *, merge: bool = False) -> Document: ...

    def update(
        self,
        path: str,
        changes: Mapping[str, Any],
        *,
        if_update_time: datetime | None = None,
    ) -> Document: ...

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
