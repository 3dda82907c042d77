"""The analytics port: append-only tables of history (BigQuery in the cloud, SQLite locally).

Tables are declared with a :class:`TableSchema` (time partitioning and clustering are honoured by
BigQuery and ignored where they mean nothing). Rows are appended with an insert id each; a row
whose insert id was already appended to that table is ignored, so a redelivered message that
appends again adds nothing.

Queries are SQL written in the common subset of BigQuery and SQLite: tables named bare in
backticks (`` `telemetry_history` ``: the BigQuery backend qualifies them with its project and
dataset), parameters as ``@name``. Rows come back as dicts; ``TIMESTAMP`` columns as aware UTC
datetimes.

:class:`BufferedAnalytics` stands in for the port where one request's rows should go out
together: it keeps what is appended and sends it with :meth:`BufferedAnalytics.flush`, one append
per table (and per :data:`MAX_ROWS_PER_APPEND` rows), the tables at once if given threads, insert
ids unchanged.
"""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any, Literal, Protocol, runtime_checkable

from hpsteer.errors import PermanentError, TransientError

__all__ = [
    "MAX_ROWS_PER_APPEND",
    "Analytics",
    "BufferedAnalytics",
    "Column",
    "ColumnType",
    "TableSchema",
]

ColumnType = Literal["STRING", "INT64", "FLOAT64", "BOOL", "TIMESTAMP", "DATE", "JSON"]


@dataclass(frozen=True, slots=True)
class Column:
    name: str
    type: ColumnType
    required: bool = False
    description: str = ""


@dataclass(frozen=True, slots=True)
class TableSchema:
    name: str
    columns: tuple[Column, ...]
    partition_by: str | None = None
    """A TIMESTAMP or DATE column to partition by day."""
    cluster_by: tuple[str, ...] = ()
    description: str = ""

    def column(self, name: str) -> Column:
        for column in self.columns:
            if column.name == name:
                return column
        raise KeyError(f"table {self.name} has no column {name!r}")


@runtime_checkable
class Analytics(Protocol):
    def ensure_table(self, schema: TableSchema) -> None:
        """Create the table, or grow it by new nullable columns. An instance that ensured the
        same schema before returns at once (callers ensure before appending: no API call per
        row); a table dropped behind its back is recreated by the next instance."""
        ...

    def append(
        self, table: str, rows: Sequence[Mapping[str, Any]], insert_ids: Sequence[str]
    ) -> None:
        """Append rows; a row whose insert id the table has seen is ignored."""
        ...

    def query(self, sql: str, params: Mapping[str, Any] | None = None) -> list[dict[str, Any]]: ...


MAX_ROWS_PER_APPEND = 500
"""Rows per append a :class:`BufferedAnalytics` sends at most: BigQuery advises at most 500 rows
per streaming insert request (it accepts 50,000 and 10 MB)."""


class BufferedAnalytics:
    """The analytics port, but ``append`` only keeps the rows (and ``ensure_table`` the schema)
    until :meth:`flush` sends them: each table ensured, then its rows in one append per
    ``max_rows``, in the order they came, with their insert ids (a row whose insert id this buffer
    holds already is kept once, the first). ``query`` goes to the port and does not see the rows
    not flushed yet.

    ``target`` builds (or returns) the port; it is called only when there is something to send,
    so a buffer nothing was appended to never builds one. Thread-safe.
    """

    def __init__(
        self, target: Callable[[], Analytics], *, max_rows: int = MAX_ROWS_PER_APPEND
    ) -> None:
        if max_rows < 1:
            raise ValueError("max_rows must be >= 1")
        self._target = target
        self._max_rows = max_rows
        self._lock = threading.Lock()
        self._schemas: dict[str, TableSchema] = {}
        self._rows: dict[str, dict[str, Mapping[str, Any]]] = {}

    def ensure_table(self, schema: TableSchema) -> None:
        with self._lock:
            self._schemas[schema.name] = schema

    def append(
        self, table: str, rows: Sequence[Mapping[str, Any]], insert_ids: Sequence[str]
    ) -> None:
        if len(rows) != len(insert_ids):
            raise ValueError(f"{len(rows)} rows but {len(insert_ids)} insert ids for {table}")
        with self._lock:
            kept = self._rows.setdefault(table, {})
            for row, insert_id in zip(rows, insert_ids, strict=True):
                kept.setdefault(insert_id, dict(row))

    def query(self, sql: str, params: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        analytics = self._target()
        return analytics.query(sql, params)

    @property
    def pending_rows(self) -> int:
        """Rows appended and not sent yet."""
        with self._lock:
            return sum(map(len, self._rows.values()))

    def flush(self, executor: Executor | None = None) -> None:
        """Send what is kept: per table, ensure it, then append its rows in chunks; rows are
        forgotten once their append returned. With ``executor`` the tables are sent at once,
        each on its own thread (in a copy of the caller's context), else one after another (in
        the order first appended to).

        Every table is tried. One whose append fails transiently
        (:class:`~hpsteer.errors.TransientError`) keeps its rows not sent (a second flush sends
        them); one whose rows are refused (:class:`~hpsteer.errors.PermanentError`) drops them,
        since sending them again would be refused again. Then the first transient error is
        raised, else the first refusal."""
        with self._lock:
            tables = [t for t, rows in self._rows.items() if rows]
        if not tables:
            return
        analytics = self._target()
        if executor is None or len(tables) == 1:
            errors = [self._send(analytics, table) for table in tables]
        else:
            futures = [
                executor.submit(contextvars.copy_context().run, self._send, analytics, table)
                for table in tables
            ]
            errors = [future.result() for future in futures]
        failed = [e for e in errors if e is not None]
        transient = [e for e in failed if not isinstance(e, PermanentError)]
        if transient or failed:
            raise (transient or failed)[0]

    def _send(self, analytics: Analytics, table: str) -> Exception | None:
        """Send one table's rows; the error that stopped it, if any (refused rows dropped)."""
        with self._lock:
            schema = self._schemas.get(table)
            rows = list(self._rows[table].items())
        try:
            if schema is not None:
                analytics.ensure_table(schema)
            for first in range(0, len(rows), self._max_rows):
                chunk = rows[first : first + self._max_rows]
                analytics.append(table, [row for _, row in chunk], [i for i, _ in chunk])
                with self._lock:
                    for insert_id, _ in chunk:
                        self._rows[table].pop(insert_id, None)
        except PermanentError as err:
            with self._lock:
                self._rows[table].clear()
            return err
        except TransientError as err:
            return err
        return None
