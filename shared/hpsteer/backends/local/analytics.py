"""Analytics on SQLite (stdlib ``sqlite3``): the local stand-in for BigQuery.

Promises, beyond the port's:

* :func:`check_schema`, :func:`check_rows` and :func:`check_params` are the validation both
  backends run before anything is written or sent: an append with one bad row (unknown column,
  missing required value, wrong type, naive datetime, non-finite float) raises
  :class:`~hpsteer.errors.InvalidInput` naming the table, row and column, and stores nothing.
* Storage: ``TIMESTAMP`` as fixed-width ISO text in UTC (``2024-01-15T23:00:00.000000Z``, so text
  order is time order), ``DATE`` as ISO text, ``JSON`` as JSON text, ``BOOL`` as 0/1. Each table
  has a hidden ``_hpsteer_insert_id`` column with a UNIQUE constraint; a row whose insert id is
  already there is skipped (``ON CONFLICT DO NOTHING``), and the column never appears in results.
* Column types are declared as ``HPSTEER_<TYPE> <affinity>``, so converters registered under
  those namespaced names turn values back into Python types when a query selects a column
  directly; expressions without a declared type (``MIN(recorded_at)``) that yield the canonical
  timestamp text are converted too. Rows come back as dicts with ``TIMESTAMP`` as aware UTC
  datetimes, ``DATE`` as dates, ``BOOL`` as bools and ``JSON`` parsed, like the BigQuery client.
* ``ensure_table`` is idempotent and lets a schema grow by nullable columns (``ALTER TABLE ADD
  COLUMN``); it refuses changed types, new required columns and dropped columns.
* One connection guarded by a lock: safe to share between threads.
"""

from __future__ import annotations

import json
import math
import re
import sqlite3
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from hpsteer.domain.instants import ensure_utc
from hpsteer.errors import AnalyticsUnavailable, InvalidInput, NotFound
from hpsteer.ports.analytics import Column, ColumnType, TableSchema

__all__ = [
    "INSERT_ID_COLUMN",
    "SqliteAnalytics",
    "check_params",
    "check_rows",
    "check_schema",
    "format_timestamp",
    "grown_columns",
]

INSERT_ID_COLUMN = "_hpsteer_insert_id"

_TABLE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,1023}")
_COLUMN_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,299}")
_RESERVED_PREFIXES = ("_table_", "_file_", "_row_timestamp", "_partition", "_hpsteer_")
_MAX_CLUSTER_COLUMNS = 4  # BigQuery's limit
_CANONICAL_TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z")

_DECLARED: dict[ColumnType, str] = {
    "STRING": "HPSTEER_STRING TEXT",
    "INT64": "HPSTEER_INT64 INTEGER",
    "FLOAT64": "HPSTEER_FLOAT64 REAL",
    "BOOL": "HPSTEER_BOOL INTEGER",
    "TIMESTAMP": "HPSTEER_TIMESTAMP TEXT",
    "DATE": "HPSTEER_DATE TEXT",
    "JSON": "HPSTEER_JSON TEXT",
}
_TYPE_OF_DECLARED = {declared.split()[0]: kind for kind, declared in _DECLARED.items()}


def format_timestamp(value: datetime) -> str:
    """Fixed-width ISO text in UTC with microseconds: text order equals time order."""
    return ensure_utc(value).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse_timestamp(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)


# Converters are process-wide in sqlite3; the HPSTEER_ prefix keeps them out of anyone's way.
sqlite3.register_converter("HPSTEER_TIMESTAMP", lambda raw: _parse_timestamp(raw.decode()))
sqlite3.register_converter("HPSTEER_DATE", lambda raw: date.fromisoformat(raw.decode()))
sqlite3.register_converter("HPSTEER_BOOL", lambda raw: bool(int(raw)))
sqlite3.register_converter("HPSTEER_JSON", lambda raw: json.loads(raw))


# -- validation shared with the BigQuery backend ---------------------------------------------


def check_schema(schema: TableSchema) -> None:
    """Raise InvalidInput unless the schema is one both BigQuery and SQLite can hold."""
    if not _TABLE_NAME.fullmatch(schema.name):
        raise InvalidInput(f"table name {schema.name!r} must match [A-Za-z_][A-Za-z0-9_]*")
    if not schema.columns:
        raise InvalidInput(f"table {schema.name} has no columns")
    seen: set[str] = set()
    for column in schema.columns:
        if not _COLUMN_NAME.fullmatch(column.name):
            raise InvalidInput(
                f"table {schema.name}: column name {column.name!r} must match "
                "[A-Za-z_][A-Za-z0-9_]* (at most 300 characters)"
            )
        if column.name.lower().startswith(_RESERVED_PREFIXES):
            raise InvalidInput(f"table {schema.name}: column name {column.name!r} is reserved")
        if column.name.lower() in seen:
            raise InvalidInput(f"table {schema.name}: column {column.name!r} declared twice")
        if column.type not in _DECLARED:
            raise InvalidInput(f"table {schema.name}: column {column.name} has unknown type")
        seen.add(column.name.lower())
    if schema.partition_by is not None:
        if schema.partition_by not in {c.name for c in schema.columns}:
            raise InvalidInput(f"table {schema.name}: partition column {schema.partition_by!r}")
        if schema.column(schema.partition_by).type not in ("TIMESTAMP", "DATE"):
            raise InvalidInput(
                f"table {schema.name}: partition column {schema.partition_by} must be "
                "TIMESTAMP or DATE"
            )
    if len(schema.cluster_by) > _MAX_CLUSTER_COLUMNS:
        raise InvalidInput(f"table {schema.name}: at most 4 clustering columns")
    for name in schema.cluster_by:
        if name not in {c.name for c in schema.columns}:
            raise InvalidInput(f"table {schema.name}: clustering column {name!r} is not declared")


def grown_columns(existing: TableSchema, wanted: TableSchema) -> tuple[Column, ...]:
    """The columns ``wanted`` adds to ``existing``; InvalidInput if it changes anything else."""
    have = {column.name: column for column in existing.columns}
    for column in existing.columns:
        if column.name not in {c.name for c in wanted.columns}:
            raise InvalidInput(
                f"table {wanted.name}: the schema drops column {column.name}; "
                "columns can only be added"
            )
    added: list[Column] = []
    for column in wanted.columns:
        old = have.get(column.name)
        if old is None:
            if column.required:
                raise InvalidInput(
                    f"table {wanted.name}: new column {column.name} must be nullable "
                    "(existing rows have no value for it)"
                )
            added.append(column)
        elif old.type != column.type or old.required != column.required:
            raise InvalidInput(
                f"table {wanted.name}: column {column.name} is {_describe(old)} in the table, "
                f"the schema says {_describe(column)}"
            )
    return tuple(added)


def _describe(column: Column) -> str:
    return f"{'REQUIRED' if column.required else 'NULLABLE'} {column.type}"


def check_rows(
    schema: TableSchema, rows: Sequence[Mapping[str, Any]], insert_ids: Sequence[str]
) -> list[dict[str, Any]]:
    """Validate every row; return them normalised (UTC datetimes, floats, every column present).

    Raises InvalidInput (NaiveDatetime for naive datetimes) for the first bad value, naming the
    table, the row index and the column.
    """
    if isinstance(insert_ids, str) or len(rows) != len(insert_ids):
        raise InvalidInput(
            f"table {schema.name}: {len(rows)} rows need as many insert ids, got "
            f"{'a string' if isinstance(insert_ids, str) else len(insert_ids)}"
        )
    for index, insert_id in enumerate(insert_ids):
        if not isinstance(insert_id, str) or not insert_id:
            raise InvalidInput(f"table {schema.name}: row {index} has an empty insert id")
    known = {column.name for column in schema.columns}
    normalised: list[dict[str, Any]] = []
    for index, row in enumerate(rows):
        if not isinstance(row, Mapping):
            raise InvalidInput(f"table {schema.name}: row {index} is not a mapping")
        for name in row:
            if name not in known:
                raise InvalidInput(f"table {schema.name}: row {index} has unknown column {name!r}")
        normalised.append(
            {
                column.name: _check_value(schema.name, index, column, row.get(column.name))
                for column in schema.columns
            }
        )
    return normalised


def _check_value(table: str, index: int, column: Column, value: Any) -> Any:
    where = f"table {table}: row {index} column {column.name}"
    if value is None:
        if column.required:
            raise InvalidInput(f"{where} is required and missing")
        return None
    kind = column.type
    if kind == "STRING" and isinstance(value, str):
        return value
    if kind == "INT64" and isinstance(value, int) and not isinstance(value, bool):
        if not -(2**63) <= value < 2**63:
            raise InvalidInput(f"{where}: {value} does not fit INT64")
        return value
    if kind == "FLOAT64" and isinstance(value, int | float) and not isinstance(value, bool):
        number = float(value)
        if not math.isfinite(number):
            raise InvalidInput(f"{where}: {value} is not a finite number")
        return number
    if kind == "BOOL" and isinstance(value, bool):
        return value
    if kind == "TIMESTAMP" and isinstance(value, datetime):
        return ensure_utc(value, field=where)
    if kind == "DATE" and isinstance(value, date) and not isinstance(value, datetime):
        return value
    if kind == "JSON":
        try:
            json.dumps(value, allow_nan=False)
        except (TypeError, ValueError) as err:
            raise InvalidInput(f"{where}: value is not JSON ({err})") from None
        return value
    raise InvalidInput(f"{where} must be {kind}, got {type(value).__name__}")


def check_params(params: Mapping[str, Any] | None) -> dict[str, Any]:
    """Query parameters both backends can bind: str, bool, int, float, aware datetime, date."""
    checked: dict[str, Any] = {}
    for name, value in (params or {}).items():
        if not _COLUMN_NAME.fullmatch(name):
            raise InvalidInput(f"query parameter name {name!r} must match [A-Za-z_][A-Za-z0-9_]*")
        if isinstance(value, datetime):
            checked[name] = ensure_utc(value, field=f"query parameter {name}")
        elif isinstance(value, str | bool | int | float | date):
            checked[name] = value
        else:
            raise InvalidInput(
                f"query parameter {name} has unsupported type {type(value).__name__} "
                "(str, bool, int, float, aware datetime, date)"
            )
    return checked


# -- the SQLite backend ----------------------------------------------------------------------


class SqliteAnalytics:
    """Append-only tables in one SQLite database (a file, or memory when ``path`` is None)."""

    def __init__(self, path: Path | None = None) -> None:
        self._path = path
        target = ":memory:" if path is None else str(path)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(
            target,
            detect_types=sqlite3.PARSE_DECLTYPES,
            check_same_thread=False,  # every use holds self._lock
            isolation_level=None,  # transactions are explicit (BEGIN IMMEDIATE)
            timeout=5.0,
        )
        self._schemas: dict[str, TableSchema] = {}
        # Schemas ensure_table checked and applied (each equal to its _schemas entry).
        self._ensured: dict[str, TableSchema] = {}
        self._insert_sql: dict[str, tuple[TableSchema, str]] = {}

    def __repr__(self) -> str:
        return f"SqliteAnalytics(path={str(self._path) if self._path else ':memory:'!r})"

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def ensure_table(self, schema: TableSchema) -> None:
        with self._lock:
            if self._ensured.get(schema.name) == schema:
                return  # checked and ensured by this instance: callers may ensure before appends
        check_schema(schema)
        with self._lock:
            if self._schemas.get(schema.name) == schema:
                self._ensured[schema.name] = schema
                return  # ensured by this instance already (a table it read)
        with self._lock, self._transaction():
            existing = self._schema_from_database(schema.name)
            if existing is None:
                self._create(schema)
            else:
                for column in grown_columns(existing, schema):
                    self._db.execute(
                        f"ALTER TABLE {_q(schema.name)} ADD COLUMN {_column_ddl(column)}"
                    )
            self._schemas[schema.name] = schema
            self._ensured[schema.name] = schema

    def append(
        self, table: str, rows: Sequence[Mapping[str, Any]], insert_ids: Sequence[str]
    ) -> None:
        with self._lock:
            schema = self._schema(table)
            checked = check_rows(schema, rows, insert_ids)
            if not checked:
                return
            sql = self._insert(table, schema)
            values = [
                [*(_to_sqlite(row[c.name], c.type) for c in schema.columns), insert_id]
                for row, insert_id in zip(checked, insert_ids, strict=True)
            ]
            with self._transaction():
                self._db.executemany(sql, values)

    def query(self, sql: str, params: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        bound = {name: _param_to_sqlite(value) for name, value in check_params(params).items()}
        with self._lock:
            try:
                cursor = self._db.execute(sql, bound)
                names = [d[0] for d in cursor.description or ()]
                fetched = cursor.fetchall()
            except sqlite3.Error as err:
                raise _translate(err, "query") from err
        return [
            {
                name: _from_expression(value)
                for name, value in zip(names, row, strict=True)
                if name != INSERT_ID_COLUMN
            }
            for row in fetched
        ]

    # -- helpers (callers hold self._lock) --

    def _insert(self, table: str, schema: TableSchema) -> str:
        """The INSERT statement of ``table`` as ``schema`` has it (kept per schema)."""
        kept = self._insert_sql.get(table)
        if kept is not None and kept[0] is schema:
            return kept[1]
        names = [column.name for column in schema.columns]
        sql = (
            f"INSERT INTO {_q(table)} ({', '.join(_q(n) for n in [*names, INSERT_ID_COLUMN])})"
            f" VALUES ({', '.join('?' for _ in range(len(names) + 1))})"
            f" ON CONFLICT ({_q(INSERT_ID_COLUMN)}) DO NOTHING"
        )
        self._insert_sql[table] = (schema, sql)
        return sql

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        try:
            self._db.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as err:
            raise _translate(err, "begin") from err
        try:
            yield
        except sqlite3.Error as err:
            self._db.execute("ROLLBACK")
            raise _translate(err, "write") from err
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def _create(self, schema: TableSchema) -> None:
        columns = [_column_ddl(column) for column in schema.columns]
        columns.append(f"{_q(INSERT_ID_COLUMN)} TEXT NOT NULL UNIQUE")
        self._db.execute(f"CREATE TABLE {_q(schema.name)} ({', '.join(columns)})")
        indexed = ([schema.partition_by] if schema.partition_by else []) + list(schema.cluster_by)
        if indexed:
            self._db.execute(
                f"CREATE INDEX {_q(schema.name + '__partition_cluster')} ON {_q(schema.name)} "
                f"({', '.join(_q(name) for name in dict.fromkeys(indexed))})"
            )

    def _schema(self, table: str) -> TableSchema:
        schema = self._schemas.get(table)
        if schema is None:
            if not _TABLE_NAME.fullmatch(table):
                raise InvalidInput(f"table name {table!r} must match [A-Za-z_][A-Za-z0-9_]*")
            try:
                schema = self._schema_from_database(table)
            except sqlite3.Error as err:
                raise _translate(err, f"read schema of {table}") from err
            if schema is None:
                raise NotFound(f"analytics table {table} does not exist (call ensure_table)")
            self._schemas[table] = schema
        return schema

    def _schema_from_database(self, table: str) -> TableSchema | None:
        info = self._db.execute(f"PRAGMA table_info({_q(table)})").fetchall()
        if not info:
            return None
        columns: list[Column] = []
        for _, name, declared, notnull, _, _ in info:
            if name == INSERT_ID_COLUMN:
                continue
            kind = _TYPE_OF_DECLARED.get(str(declared).split(" ")[0])
            if kind is None:
                raise InvalidInput(f"table {table} was not created by SqliteAnalytics")
            columns.append(Column(name=name, type=kind, required=bool(notnull)))
        return TableSchema(name=table, columns=tuple(columns))


def _q(identifier: str) -> str:
    """Quote an identifier (names are validated against [A-Za-z0-9_] before they get here)."""
    return '"' + identifier.replace('"', '""') + '"'


def _column_ddl(column: Column) -> str:
    return f"{_q(column.name)} {_DECLARED[column.type]}{' NOT NULL' if column.required else ''}"


def _to_sqlite(value: Any, kind: ColumnType) -> Any:
    if value is None:
        return None
    if kind == "TIMESTAMP":
        return format_timestamp(value)
    if kind == "DATE":
        return value.isoformat()
    if kind == "BOOL":
        return int(value)
    if kind == "JSON":
        return json.dumps(value, allow_nan=False, separators=(",", ":"))
    return value


def _param_to_sqlite(value: Any) -> Any:
    if isinstance(value, datetime):
        return format_timestamp(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, bool):
        return int(value)
    return value


def _from_expression(value: Any) -> Any:
    """Canonical timestamp text from an expression without a declared type becomes a datetime."""
    if isinstance(value, str) and _CANONICAL_TIMESTAMP.fullmatch(value):
        return _parse_timestamp(value)
    return value


_CALLER_ERRORS = (sqlite3.OperationalError, sqlite3.ProgrammingError, sqlite3.IntegrityError)
"""SQL the caller got wrong: syntax, unknown column, missing parameter."""


def _translate(err: sqlite3.Error, doing: str) -> Exception:
    message = str(err)
    if isinstance(err, sqlite3.OperationalError):
        if message.startswith("no such table"):
            return NotFound(f"analytics {doing}: {message}")
        if "locked" in message or "busy" in message:
            return AnalyticsUnavailable(f"analytics {doing}: {message}")
    if isinstance(err, _CALLER_ERRORS):
        return InvalidInput(f"analytics {doing}: {message}")
    return AnalyticsUnavailable(f"analytics {doing}: {message}")
