"""The document store port on Cloud Firestore (google-cloud-firestore, sync client).

:class:`FirestoreDocumentStore` checks paths and values with the port's validators before calling
Firestore, returns plain timezone-aware UTC datetimes (never ``DatetimeWithNanoseconds``), and
translates ``google.api_core`` exceptions into :mod:`hpsteer.errors` at this boundary.
A write outside a transaction reads nothing back: ``set`` and ``update`` return the write result's
``update_time``, ``create`` builds its document from the data it wrote.
Transactions run in a retry loop with jittered backoff (the emulator resolves lock contention
only by timing transactions out, so two retries in lock step would collide forever); queries
name every order explicitly, ending with ``__name__``, so the opaque cursor (base64 JSON of the
last document's order values and path) maps back onto ``start_after``.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import json
import random
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

from google.api_core import exceptions as gexc
from google.cloud import firestore
from google.cloud.firestore_v1.base_query import FieldFilter

from hpsteer.backends.value_codec import decode_value, encode_value
from hpsteer.domain.instants import ensure_utc
from hpsteer.errors import (
    ConcurrencyConflict,
    DocumentAlreadyExists,
    DocumentNotFound,
    InvalidDocumentPath,
    InvalidInput,
    PreconditionFailed,
    StoreUnavailable,
)
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

__all__ = ["FirestoreDocumentStore", "FirestoreTransaction"]

T = TypeVar("T")
_INEQUALITY_OPS = frozenset({"<", "<=", ">", ">=", "!=", "not-in"})
_ALL_OPS = _INEQUALITY_OPS | {"==", "in", "array-contains"}
_CLIENT_OPS = {"array-contains": "array_contains"}  # the client's spelling of the operator
_UNAVAILABLE = (
    gexc.ServiceUnavailable,
    gexc.DeadlineExceeded,
    gexc.InternalServerError,
    gexc.RetryError,
)


@contextlib.contextmanager
def _translated(what: str, *, client_side: bool = True) -> Iterator[None]:
    """Turn the client library's exceptions into hpsteer's, keeping the original as cause.

    With ``client_side`` the client's own ``ValueError``/``TypeError`` (bad arguments) become
    ``InvalidInput`` too; around callers' code they must pass through unchanged.
    """
    client_errors: tuple[type[Exception], ...] = (ValueError, TypeError) if client_side else ()
    try:
        yield
    except gexc.AlreadyExists as err:
        raise DocumentAlreadyExists(f"{what}: already exists") from err
    except gexc.NotFound as err:
        raise DocumentNotFound(f"{what}: not found") from err
    except gexc.FailedPrecondition as err:
        raise PreconditionFailed(f"{what}: precondition failed ({err.message})") from err
    except (gexc.Aborted, gexc.Conflict) as err:
        raise ConcurrencyConflict(f"{what}: aborted by a concurrent write ({err.message})") from err
    except gexc.InvalidArgument as err:
        raise InvalidInput(f"{what}: rejected ({err.message})") from err
    except client_errors as err:
        raise InvalidInput(f"{what}: rejected ({err})") from err
    except _UNAVAILABLE as err:
        raise StoreUnavailable(f"{what}: Firestore did not answer ({err})") from err
    except gexc.GoogleAPICallError as err:
        raise StoreUnavailable(f"{what}: Firestore failed ({err})") from err


def _plain(value: Any) -> Any:
    """Firestore's values as the port's: ``DatetimeWithNanoseconds`` → plain UTC datetime."""
    if isinstance(value, datetime):
        utc = value.astimezone(UTC)
        return datetime(
            utc.year, utc.month, utc.day, utc.hour, utc.minute, utc.second, utc.microsecond, UTC
        )
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _document(snapshot: Any) -> Document | None:
    if not snapshot.exists:
        return None
    return Document(
        path=snapshot.reference.path,
        data=_plain(snapshot.to_dict() or {}),
        create_time=_plain(snapshot.create_time),
        update_time=_plain(snapshot.update_time),
    )


def _written_at(result: Any) -> datetime:
    """A ``WriteResult``'s ``update_time`` as the port's: the document's ``update_time`` after
    the write (the one before it when the write changed nothing), what a ``get`` then reports."""
    when: datetime = _plain(result.update_time)
    return when


def _update_changes(path: str, changes: Mapping[str, Any]) -> dict[str, Any]:
    validate_document_path(path)
    if not isinstance(changes, Mapping) or not changes:
        raise InvalidInput(f"update of {path!r} needs a non-empty mapping of field paths")
    checked = {}
    for field_path, value in changes.items():
        split_field_path(field_path)
        checked[field_path] = normalize_value(value, f"{path}:{field_path}")
    return checked


class _Aborted(ConcurrencyConflict):
    """A read inside a transaction was aborted by lock contention: the attempt is retried."""


class FirestoreTransaction:
    """The port's transaction over a ``google.cloud.firestore.Transaction``."""

    def __init__(self, client: Any, transaction: Any) -> None:
        self._client = client
        self._tx = transaction
        self._wrote = False

    def get(self, path: str) -> Document | None:
        validate_document_path(path)
        if self._wrote:
            raise InvalidInput(
                f"read of {path!r} after a write in the same transaction: "
                "Firestore transactions must do all reads before any write"
            )
        try:
            with _translated(f"transactional get {path}"):
                snapshot = self._client.document(path).get(transaction=self._tx)
        except ConcurrencyConflict as err:
            raise _Aborted(str(err)) from err
        return _document(snapshot)

    def create(self, path: str, data: Mapping[str, Any]) -> None:
        validate_document_path(path)
        self._tx.create(self._client.document(path), normalize_data(data))
        self._wrote = True

    def set(self, path: str, data: Mapping[str, Any], *, merge: bool = False) -> None:
        validate_document_path(path)
        self._tx.set(self._client.document(path), normalize_data(data), merge=merge)
        self._wrote = True

    def update(self, path: str, changes: Mapping[str, Any]) -> None:
        self._tx.update(self._client.document(path), _update_changes(path, changes))
        self._wrote = True

    def delete(self, path: str) -> None:
        validate_document_path(path)
        self._tx.delete(self._client.document(path))
        self._wrote = True


class FirestoreDocumentStore:
    """The document store port on a ``google.cloud.firestore.Client``."""

    def __init__(self, client: Any) -> None:
        self._client = client

    @property
    def client(self) -> Any:
        """The ``google.cloud.firestore.Client`` (an export lists every document with it)."""
        return self._client

    @classmethod
    def from_settings(cls, project: str, database: str = "(default)") -> FirestoreDocumentStore:
        """A store on ``database`` of ``project`` (honours ``FIRESTORE_EMULATOR_HOST``)."""
        return cls(firestore.Client(project=project, database=database))

    @classmethod
    def for_project(cls, project: str, database: str = "(default)") -> FirestoreDocumentStore:
        """The same as :meth:`from_settings` (the name the runtime's wiring uses)."""
        return cls.from_settings(project, database)

    # -- single documents ----------------------------------------------------------------------

    def get(self, path: str) -> Document | None:
        validate_document_path(path)
        with _translated(f"get {path}"):
            return _document(self._client.document(path).get())

    def create(self, path: str, data: Mapping[str, Any]) -> Document:
        validate_document_path(path)
        checked = normalize_data(data)
        with _translated(f"create {path}"):
            result = self._client.document(path).create(checked)
        when = _written_at(result)
        return Document(path, _plain(checked), when, when)

    def set(self, path: str, data: Mapping[str, Any], *, merge: bool = False) -> datetime:
        validate_document_path(path)
        checked = normalize_data(data)
        with _translated(f"set {path}"):
            result = self._client.document(path).set(checked, merge=merge)
        return _written_at(result)

    def update(
        self,
        path: str,
        changes: Mapping[str, Any],
        *,
        if_update_time: datetime | None = None,
    ) -> datetime:
        checked = _update_changes(path, changes)
        option = None
        if if_update_time is not None:
            when = ensure_utc(if_update_time, field="if_update_time")
            option = self._client.write_option(last_update_time=when)
        try:
            with _translated(f"update {path}"):
                result = self._client.document(path).update(checked, option=option)
        except PreconditionFailed as err:
            if self.get(path) is None:
                raise DocumentNotFound(f"update {path}: not found") from err
            raise
        return _written_at(result)

    def delete(self, path: str) -> None:
        validate_document_path(path)
        with _translated(f"delete {path}"):
            self._client.document(path).delete()

    # -- transactions --------------------------------------------------------------------------

    def run_transaction(self, fn: Callable[[Transaction], T], *, max_attempts: int = 5) -> T:
        if isinstance(max_attempts, bool) or not isinstance(max_attempts, int) or max_attempts < 1:
            raise InvalidInput(f"max_attempts must be a positive integer, got {max_attempts!r}")

        def attempt(fs_tx: Any) -> T:
            return fn(FirestoreTransaction(self._client, fs_tx))

        last: BaseException | None = None
        for number in range(max_attempts):
            if number:
                # Jitter, so that transactions that collided do not collide again in lock step.
                time.sleep(random.uniform(0.0, 0.05 * 2 ** min(number, 5)))
            try:
                with _translated("transaction", client_side=False):
                    try:
                        result: T = firestore.transactional(attempt)(
                            self._client.transaction(max_attempts=1)
                        )
                        return result
                    except ValueError as err:
                        if isinstance(err.__cause__, gexc.Aborted):
                            raise err.__cause__ from err
                        raise
            except _Aborted as err:
                last = err
            except ConcurrencyConflict as err:
                if isinstance(err, PreconditionFailed) or not isinstance(
                    err.__cause__, gexc.Aborted
                ):
                    raise
                last = err
        raise ConcurrencyConflict(
            f"transaction gave up after {max_attempts} attempts: {last}"
        ) from last

    # -- queries -------------------------------------------------------------------------------

    def query(
        self,
        collection: str,
        filters: Sequence[Filter] = (),
        order_by: Sequence[Order] = (),
        limit: int | None = None,
        cursor: str | None = None,
    ) -> Page:
        validate_collection_path(collection)
        base = self._client.collection(collection)
        return self._run(f"collection:{collection}", base, filters, order_by, limit, cursor)

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
        base = self._client.collection_group(collection_id)
        return self._run(f"group:{collection_id}", base, filters, order_by, limit, cursor)

    def _run(
        self,
        scope: str,
        base: Any,
        filters: Sequence[Filter],
        order_by: Sequence[Order],
        limit: int | None,
        cursor: str | None,
    ) -> Page:
        checked_filters = [_check_filter(flt) for flt in filters]
        orders = _effective_orders(checked_filters, order_by)
        if limit is not None and (
            isinstance(limit, bool) or not isinstance(limit, int) or limit < 1
        ):
            raise InvalidInput(f"limit must be a positive integer, got {limit!r}")
        fingerprint = _fingerprint(scope, checked_filters, orders)
        query = base
        for field, op, value in checked_filters:
            query = query.where(filter=FieldFilter(field, _CLIENT_OPS.get(op, op), value))
        descending = orders[-1][1] if orders else False
        for field, desc in orders:
            query = query.order_by(field, direction="DESCENDING" if desc else "ASCENDING")
        query = query.order_by("__name__", direction="DESCENDING" if descending else "ASCENDING")
        if cursor is not None:
            values, path = _decode_cursor(cursor, fingerprint, len(orders))
            query = query.start_after([*values, self._client.document(path)])
        if limit is not None:
            query = query.limit(limit + 1)
        with _translated(f"query {scope}"):
            documents = [d for d in (_document(s) for s in query.stream()) if d is not None]
        next_cursor = None
        if limit is not None and len(documents) > limit:
            documents = documents[:limit]
            last = documents[-1]
            values = [_lookup(last.data, field) for field, _ in orders]
            next_cursor = _encode_cursor(fingerprint, values, last.path)
        return Page(documents, next_cursor)


def _check_filter(flt: Filter) -> tuple[str, str, Any]:
    if not isinstance(flt, Filter) or flt.op not in _ALL_OPS:
        raise InvalidInput(f"not a supported filter: {flt!r}")
    split_field_path(flt.field)
    where = f"filter {flt.field} {flt.op}"
    if flt.op in ("in", "not-in"):
        most = 30 if flt.op == "in" else 10
        if not isinstance(flt.value, list) or not flt.value or len(flt.value) > most:
            raise InvalidInput(f"{where} needs a non-empty list of at most {most} values")
        return flt.field, flt.op, [normalize_value(v, where) for v in flt.value]
    value = normalize_value(flt.value, where)
    if value is None and flt.op not in ("==", "!="):
        raise InvalidInput(f"{where}: null only supports == and !=")
    return flt.field, flt.op, value


def _effective_orders(
    filters: Sequence[tuple[str, str, Any]], order_by: Sequence[Order]
) -> list[tuple[str, bool]]:
    """Explicit orders, then unordered inequality fields by path, as Firestore orders implicitly."""
    orders: list[tuple[str, bool]] = []
    for order in order_by:
        if not isinstance(order, Order) or order.direction not in ("asc", "desc"):
            raise InvalidInput(f"not a supported order: {order!r}")
        split_field_path(order.field)
        if any(order.field == f for f, _ in orders):
            raise InvalidInput(f"field {order.field!r} is ordered twice")
        orders.append((order.field, order.direction == "desc"))
    descending = orders[-1][1] if orders else False
    ordered = {f for f, _ in orders}
    implicit = sorted({f for f, op, _ in filters if op in _INEQUALITY_OPS} - ordered)
    orders.extend((f, descending) for f in implicit)
    return orders


def _lookup(data: Mapping[str, Any], field: str) -> Any:
    value: Any = data
    for segment in field.split("."):
        value = value[segment]
    return value


def _fingerprint(
    scope: str, filters: Sequence[tuple[str, str, Any]], orders: Sequence[tuple[str, bool]]
) -> str:
    text = json.dumps(
        [scope, [[f, op, encode_value(v)] for f, op, v in filters], orders], sort_keys=True
    )
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _encode_cursor(fingerprint: str, values: list[Any], path: str) -> str:
    payload = {"q": fingerprint, "v": encode_value(values), "p": path}
    return base64.urlsafe_b64encode(json.dumps(payload).encode()).decode()


def _decode_cursor(cursor: str, fingerprint: str, order_count: int) -> tuple[list[Any], str]:
    try:
        payload = json.loads(base64.urlsafe_b64decode(cursor.encode()))
        values, path, their_fingerprint = decode_value(payload["v"]), payload["p"], payload["q"]
    except (binascii.Error, ValueError, KeyError, TypeError, AttributeError) as err:
        raise InvalidInput(f"not a cursor of this store: {cursor!r}") from err
    if their_fingerprint != fingerprint or not isinstance(values, list):
        raise InvalidInput("the cursor belongs to a different query")
    if len(values) != order_count:
        raise InvalidInput("the cursor belongs to a different query")
    validate_document_path(path)
    return values, path
