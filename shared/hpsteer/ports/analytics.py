"""The analytics port: append-only tables of history (BigQuery in the cloud, SQLite locally).

Tables are declared with a :class:`TableSchema` (time partitioning and clustering are honoured by
BigQuery and ignored where they mean nothing). Rows are appended with an insert id each; a row
whose insert id was already appended to that table is ignored, so a redelivered message that
appends again adds nothing.

Queries are SQL written in the common subset of BigQuery and SQLite: tables named bare in
backticks (`` `telemetry_history` ``: the BigQuery backend qualifies them with its project and
dataset), parameters as ``@name``. Rows come back as dicts; ``TIMESTAMP`` columns as aware UTC
datetimes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol, runtime_checkable

__all__ = ["Analytics", "Column", "ColumnType", "TableSchema"]

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
