"""Analytics on BigQuery (google-cloud-bigquery): the production backend of the analytics port.

Promises, beyond the port's:

* ``ensure_table`` creates the dataset (in ``location``) and the table with DAY time partitioning
  on ``partition_by`` and clustering on ``cluster_by``; for an existing table it adds the new
  nullable columns (``tables.patch`` of the schema) and refuses any other change.
* ``append`` validates every row against the schema first, with the same checks as the SQLite
  backend (:func:`hpsteer.backends.local.analytics.check_rows`), then sends ONE streaming insert
  (``tabledata.insertAll``) with ``insertId`` = the insert id. Without ``skipInvalidRows``
  BigQuery rejects the whole request if any row is invalid; its per-row errors are raised as
  :class:`~hpsteer.errors.InvalidInput`, never dropped. Deduplication by ``insertId`` is
  BEST-EFFORT in BigQuery (a window of about a minute, not guaranteed): queries that must not
  double count should still group by a natural key.
* ``query`` qualifies backticked bare table names after ``FROM``/``JOIN`` with the project and
  dataset, binds ``@name`` parameters with types inferred from the Python values, and returns
  dicts (``TIMESTAMP`` as aware UTC datetimes).
* Every API call carries an explicit, short retry deadline and per-request timeout (the client's
  default retries a 500 for 600 s). Errors are translated: 5xx, 429, rate limits, timeouts and
  exhausted retries → :class:`~hpsteer.errors.AnalyticsUnavailable`; 400 →
  :class:`~hpsteer.errors.InvalidInput`; 404 → :class:`~hpsteer.errors.NotFound`.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any, TypeVar

from hpsteer.backends.local.analytics import (
    check_params,
    check_rows,
    check_schema,
    grown_columns,
)
from hpsteer.errors import (
    AnalyticsUnavailable,
    HpsteerError,
    InvalidInput,
    NotFound,
    PermanentError,
)
from hpsteer.ports.analytics import Column, ColumnType, TableSchema

if TYPE_CHECKING:
    from hpsteer.config import Settings

__all__ = ["BigQueryAnalytics", "emulator_client", "qualify_tables"]

T = TypeVar("T")

_BARE_TABLE = re.compile(r"\b(FROM|JOIN)(\s+)`([A-Za-z_][A-Za-z0-9_]*)`", re.IGNORECASE)
_LEGACY_TYPES: dict[str, ColumnType] = {
    "INTEGER": "INT64",
    "INT64": "INT64",
    "FLOAT": "FLOAT64",
    "FLOAT64": "FLOAT64",
    "BOOLEAN": "BOOL",
    "BOOL": "BOOL",
    "STRING": "STRING",
    "TIMESTAMP": "TIMESTAMP",
    "DATE": "DATE",
    "JSON": "JSON",
}
_TRANSIENT_REASONS = {"rateLimitExceeded", "backendError", "internalError"}


def qualify_tables(sql: str, project: str, dataset: str) -> str:
    """Rewrite ``FROM `t``` / ``JOIN `t``` to ``FROM `project.dataset.t```."""
    return _BARE_TABLE.sub(lambda m: f"{m[1]}{m[2]}`{project}.{dataset}.{m[3]}`", sql)


class BigQueryAnalytics:
    """Tables in one BigQuery dataset."""

    def __init__(
        self,
        project: str,
        dataset: str,
        client: Any = None,
        location: str = "EU",
        *,
        deadline_s: float = 30.0,
        request_timeout_s: float = 10.0,
        query_timeout_s: float = 120.0,
    ) -> None:
        from google.cloud import bigquery
        from google.cloud.bigquery.retry import DEFAULT_JOB_RETRY, DEFAULT_RETRY

        self._project = project
        self._dataset = dataset
        self._location = location
        self._client = client if client is not None else bigquery.Client(project=project)
        self._retry = DEFAULT_RETRY.with_timeout(deadline_s)
        self._job_retry = DEFAULT_JOB_RETRY.with_timeout(deadline_s)
        self._timeout = request_timeout_s
        self._query_timeout = query_timeout_s
        self._schemas: dict[str, TableSchema] = {}
        self._lock = threading.Lock()

    @classmethod
    def for_settings(cls, settings: Settings) -> BigQueryAnalytics:
        """The dataset ``settings.bigquery_dataset`` in ``settings.project``; through
        ``HPSTEER_BIGQUERY_EMULATOR_HOST`` when that is set (tests, local stand-ins)."""
        host = settings.bigquery_emulator_host
        return cls(
            settings.project,
            settings.bigquery_dataset,
            emulator_client(host, settings.project) if host else None,
            settings.bigquery_location,
        )

    def __repr__(self) -> str:
        return f"BigQueryAnalytics(dataset={self._project}.{self._dataset!s})"

    def ensure_table(self, schema: TableSchema) -> None:
        from google.api_core.exceptions import NotFound as ApiNotFound
        from google.cloud import bigquery

        check_schema(schema)
        with self._lock:
            if self._schemas.get(schema.name) == schema:
                return  # ensured by this instance: no API calls before every append
        client = self._client
        ref = self._table_id(schema.name)

        def ensure() -> None:
            dataset = bigquery.Dataset(f"{self._project}.{self._dataset}")
            dataset.location = self._location
            # In the cloud terraform owns the dataset and the functions hold dataEditor on it
            # only (no bigquery.datasets.create on the project): look before creating, so that
            # creating is needed only where nobody provisioned it (emulator, a fresh dev project).
            try:
                client.get_dataset(dataset.reference, retry=self._retry, timeout=self._timeout)
            except ApiNotFound:
                client.create_dataset(
                    dataset, exists_ok=True, retry=self._retry, timeout=self._timeout
                )
            try:
                table = client.get_table(ref, retry=self._retry, timeout=self._timeout)
            except ApiNotFound:
                client.create_table(
                    _table(schema, ref), exists_ok=True, retry=self._retry, timeout=self._timeout
                )
                return
            added = grown_columns(_schema_of(schema.name, table), schema)
            if added:
                table.schema = [*table.schema, *(_field(column) for column in added)]
                client.update_table(table, ["schema"], retry=self._retry, timeout=self._timeout)

        self._call(f"ensure table {ref}", ensure)
        with self._lock:
            self._schemas[schema.name] = schema

    def append(
        self, table: str, rows: Sequence[Mapping[str, Any]], insert_ids: Sequence[str]
    ) -> None:
        schema = self._schema(table)
        checked = check_rows(schema, rows, insert_ids)
        if not checked:
            return
        types = {column.name: column.type for column in schema.columns}
        json_rows = [
            {name: _to_json(value, types[name]) for name, value in row.items() if value is not None}
            for row in checked
        ]
        ref = self._table_id(table)
        errors = self._call(
            f"append to {ref}",
            lambda: self._client.insert_rows_json(
                ref,
                json_rows,
                row_ids=list(insert_ids),
                skip_invalid_rows=False,
                ignore_unknown_values=False,
                retry=self._retry,
                timeout=self._timeout,
            ),
        )
        if errors:
            raise InvalidInput(f"BigQuery refused the append to {ref}: {_summarise(errors)}")

    def query(self, sql: str, params: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        from google.cloud import bigquery

        config = bigquery.QueryJobConfig(
            query_parameters=[
                _parameter(name, value) for name, value in check_params(params).items()
            ]
        )
        qualified = qualify_tables(sql, self._project, self._dataset)

        def run() -> list[dict[str, Any]]:
            job = self._client.query(
                qualified,
                job_config=config,
                location=self._location,
                retry=self._retry,
                timeout=self._timeout,
                job_retry=self._job_retry,
            )
            rows = job.result(
                retry=self._retry, timeout=self._query_timeout, job_retry=self._job_retry
            )
            return [{key: _from_bigquery(value) for key, value in row.items()} for row in rows]

        return self._call("query", run)

    # -- helpers --

    def _table_id(self, table: str) -> str:
        return f"{self._project}.{self._dataset}.{table}"

    def _schema(self, table: str) -> TableSchema:
        with self._lock:
            schema = self._schemas.get(table)
        if schema is not None:
            return schema
        ref = self._table_id(table)
        fetched = self._call(
            f"read schema of {ref}",
            lambda: self._client.get_table(ref, retry=self._retry, timeout=self._timeout),
        )
        schema = _schema_of(table, fetched)
        with self._lock:
            self._schemas[table] = schema
        return schema

    def _call(self, doing: str, call: Callable[[], T]) -> T:
        from concurrent.futures import TimeoutError as FutureTimeout

        from google.api_core import exceptions as api

        try:
            return call()
        except HpsteerError:
            raise
        except (api.ServerError, api.TooManyRequests, api.RetryError, FutureTimeout) as err:
            raise AnalyticsUnavailable(f"BigQuery did not answer ({doing}): {err}") from err
        except api.BadRequest as err:
            raise InvalidInput(f"BigQuery refused {doing}: {err.message}") from err
        except api.NotFound as err:
            raise NotFound(f"BigQuery: not found ({doing}): {err.message}") from err
        except api.Forbidden as err:
            if _reasons(err) & _TRANSIENT_REASONS:
                raise AnalyticsUnavailable(f"BigQuery rate limit ({doing}): {err}") from err
            raise PermanentError(f"BigQuery denied {doing}: {err.message}") from err
        except api.GoogleAPICallError as err:
            raise PermanentError(f"BigQuery failed ({doing}): {err}") from err
        except (ConnectionError, OSError) as err:
            raise AnalyticsUnavailable(f"BigQuery unreachable ({doing}): {err}") from err


def emulator_client(host: str, project: str) -> Any:
    """A BigQuery client without credentials for an emulator at ``host`` (``127.0.0.1:PORT``)."""
    from google.api_core.client_options import ClientOptions
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import bigquery

    endpoint = host if "://" in host else f"http://{host}"
    return bigquery.Client(
        project=project,
        client_options=ClientOptions(api_endpoint=endpoint),
        credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]  # google-auth is untyped here
    )


def _reasons(err: Any) -> set[str]:
    return {str(e.get("reason")) for e in (err.errors or []) if isinstance(e, dict)}


def _field(column: Column) -> Any:
    from google.cloud import bigquery

    mode = "REQUIRED" if column.required else "NULLABLE"
    if column.description:
        return bigquery.SchemaField(column.name, column.type, mode, description=column.description)
    return bigquery.SchemaField(column.name, column.type, mode)


def _table(schema: TableSchema, ref: str) -> Any:
    from google.cloud import bigquery

    table = bigquery.Table(ref, schema=[_field(column) for column in schema.columns])
    if schema.partition_by is not None:
        table.time_partitioning = bigquery.TimePartitioning(
            type_=bigquery.TimePartitioningType.DAY, field=schema.partition_by
        )
    if schema.cluster_by:
        table.clustering_fields = list(schema.cluster_by)
    if schema.description:
        table.description = schema.description
    return table


def _schema_of(name: str, table: Any) -> TableSchema:
    columns: list[Column] = []
    for field in table.schema:
        kind = _LEGACY_TYPES.get(str(field.field_type).upper())
        if kind is None or field.mode == "REPEATED":
            raise InvalidInput(
                f"table {name}: column {field.name} has type {field.mode} {field.field_type}, "
                "which the analytics port does not support"
            )
        columns.append(Column(name=field.name, type=kind, required=field.mode == "REQUIRED"))
    return TableSchema(name=name, columns=tuple(columns))


def _to_json(value: Any, kind: ColumnType) -> Any:
    if kind == "TIMESTAMP":
        return value.astimezone(UTC).isoformat()
    if kind == "DATE":
        return value.isoformat()
    if kind == "JSON":
        return json.dumps(value, allow_nan=False, separators=(",", ":"))
    return value


def _parameter(name: str, value: Any) -> Any:
    from google.cloud import bigquery

    if isinstance(value, bool):
        kind = "BOOL"
    elif isinstance(value, int):
        kind = "INT64"
    elif isinstance(value, float):
        kind = "FLOAT64"
    elif isinstance(value, datetime):
        kind = "TIMESTAMP"
    elif isinstance(value, date):
        kind = "DATE"
    else:
        kind = "STRING"
    return bigquery.ScalarQueryParameter(name, kind, value)


def _from_bigquery(value: Any) -> Any:
    if isinstance(value, datetime) and value.tzinfo is not None:
        return value.astimezone(UTC)
    return value


def _summarise(errors: Sequence[Mapping[str, Any]], limit: int = 5) -> str:
    parts = []
    for entry in errors[:limit]:
        messages = "; ".join(
            f"{e.get('reason', '?')} at {e.get('location', '?')}: {e.get('message', '')}"
            for e in entry.get("errors", [])
        )
        parts.append(f"row {entry.get('index', '?')}: {messages}")
    more = f" (and {len(errors) - limit} more rows)" if len(errors) > limit else ""
    return "; ".join(parts) + more
