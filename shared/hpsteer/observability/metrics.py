"""The architecture's metrics: declared once, counted in this process, written as log records.

Each metric is declared here (:data:`METRICS`: name, kind, labels, unit, buckets). Services
count through the process-wide registry (``metrics.inc(COMMANDS_SENT_TOTAL, oem=…, action=…)``,
``metrics.observe(…)``, ``metrics.set(…)`` for a gauge), which

- keeps the values in memory (tests and the local runtime read them back; a simulated run
  writes :meth:`Metrics.snapshot` into its ``metrics.json``), and
- writes one log record per observation (:mod:`.metric_records`), from which Cloud Logging's
  log-based metrics (``terraform/monitoring.tf``) build the Cloud Monitoring series: a counter
  increment, a histogram observation, a gauge change (and, while a gauge is being set, its value
  again at least every :data:`GAUGE_HEARTBEAT_S`, so that an alert can tell "still open" from
  "no news").

Labels are low-cardinality by rule, enforced: an observation must carry exactly the labels its
metric declares, each value a short token (at most 64 letters, digits or ``_.:+-``: an error
message, a token or a URL is refused), and no metric may declare a label for an id (``*_id``)
or one whose name suggests a secret. A per-device label would cost one Cloud Monitoring time
series per device; per-device figures live in Firestore (``devices/{id}``) and BigQuery
(``telemetry_history``, ``command_events``, ``plans``, ``cost_savings``): see
``docs/operations.md``.

Why hand-written rather than the OpenTelemetry metrics SDK: see :mod:`.metric_records` (log
records export better than a per-instance push for short-lived function instances); this
registry is a dictionary behind a lock.
"""

from __future__ import annotations

import bisect
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Final, Literal

from hpsteer.observability.metric_records import write_record

__all__ = [
    "ALERTS_RAISED_TOTAL",
    "CIRCUIT_BREAKER_STATE",
    "COMMANDS_FAILURE_TOTAL",
    "COMMANDS_SENT_TOTAL",
    "COMMANDS_SUCCESS_TOTAL",
    "COMMAND_DURATION_SECONDS",
    "COMMAND_RETRY_TOTAL",
    "DURATION_BUCKETS_S",
    "ENERGY_CONSUMPTION_KWH",
    "ESTIMATED_COST_SAVINGS_EUR",
    "GAUGE_HEARTBEAT_S",
    "METRICS",
    "OEM_API_ERRORS_TOTAL",
    "OEM_API_LATENCY_SECONDS",
    "PRICES_MISSING_TOTAL",
    "RECONCILIATION_FAILURE_TOTAL",
    "RECONCILIATION_SKIPPED_TOTAL",
    "RECONCILIATION_SUCCESS_TOTAL",
    "STATE_DRIFT_DETECTED_TOTAL",
    "USER_OVERRIDES_TOTAL",
    "Histogram",
    "MetricKind",
    "MetricSpec",
    "Metrics",
    "RecordWriter",
    "metrics",
]

MetricKind = Literal["counter", "histogram", "gauge"]
RecordWriter = Callable[[str, str, float, Mapping[str, str]], None]
"""Writes one metric record: ``(name, kind, value, labels)``."""

_LABEL_NAME = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
_LABEL_VALUE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:+-]{0,63}$")
_SECRET_HINTS = ("secret", "token", "password", "authorization", "credential", "key")


@dataclass(frozen=True, slots=True)
class MetricSpec:
    """One declared metric: what it counts, its labels and (histogram, gauge) its buckets.

    ``buckets`` are explicit bucket bounds in Cloud Monitoring's sense: bucket ``i`` holds
    values in ``[bounds[i-1], bounds[i])``, plus an underflow and an overflow bucket.
    """

    name: str
    kind: MetricKind
    labels: tuple[str, ...]
    description: str
    unit: str = "1"
    buckets: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        for label in self.labels:
            if not _LABEL_NAME.match(label) or label.endswith("_id") or label == "id":
                raise ValueError(f"{self.name}: label {label!r} is not allowed (ids never are)")
            if any(hint in label for hint in _SECRET_HINTS):
                raise ValueError(f"{self.name}: label {label!r} names a secret")
        if (self.kind == "counter") == bool(self.buckets):
            raise ValueError(f"{self.name}: a {self.kind} has buckets exactly when not a counter")
        if list(self.buckets) != sorted(set(self.buckets)):
            raise ValueError(f"{self.name}: bucket bounds must increase")


DURATION_BUCKETS_S: Final = (1.0, 5.0, 30.0, 60.0, 300.0, 600.0, 900.0, 1800.0, 3600.0, 7200.0)
API_LATENCY_BUCKETS_S: Final = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
ENERGY_BUCKETS_KWH: Final = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0)
SAVINGS_BUCKETS_EUR: Final = (-1.0, -0.25, -0.05, 0.0, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0)
BREAKER_BUCKETS: Final = (0.5, 1.5)
"""closed (0) below 0.5, half-open (1) below 1.5, open (2) above."""

GAUGE_HEARTBEAT_S: Final = 60.0
"""A gauge set to an unchanged value is written again once this long has passed."""

COMMANDS_SENT_TOTAL: Final = "commands_sent_total"
COMMANDS_SUCCESS_TOTAL: Final = "commands_success_total"
COMMANDS_FAILURE_TOTAL: Final = "commands_failure_total"
COMMAND_RETRY_TOTAL: Final = "command_retry_total"
COMMAND_DURATION_SECONDS: Final = "command_duration_seconds"
STATE_DRIFT_DETECTED_TOTAL: Final = "state_drift_detected_total"
RECONCILIATION_SUCCESS_TOTAL: Final = "reconciliation_success_total"
RECONCILIATION_FAILURE_TOTAL: Final = "reconciliation_failure_total"
RECONCILIATION_SKIPPED_TOTAL: Final = "reconciliation_skipped_total"
USER_OVERRIDES_TOTAL: Final = "user_overrides_total"
OEM_API_LATENCY_SECONDS: Final = "oem_api_latency_seconds"
OEM_API_ERRORS_TOTAL: Final = "oem_api_errors_total"
CIRCUIT_BREAKER_STATE: Final = "circuit_breaker_state"
ENERGY_CONSUMPTION_KWH: Final = "energy_consumption_kwh"
ESTIMATED_COST_SAVINGS_EUR: Final = "estimated_cost_savings_eur"
ALERTS_RAISED_TOTAL: Final = "alerts_raised_total"
PRICES_MISSING_TOTAL: Final = "prices_missing_total"

_SPECS = (
    MetricSpec(
        COMMANDS_SENT_TOTAL,
        "counter",
        ("oem", "action"),
        "Command requests a manufacturer accepted (dispatch).",
    ),
    MetricSpec(
        COMMANDS_SUCCESS_TOTAL,
        "counter",
        ("oem", "action"),
        "Commands verified on the device (dispatch, verification).",
    ),
    MetricSpec(
        COMMANDS_FAILURE_TOTAL,
        "counter",
        ("oem", "action", "reason"),
        "Commands that ended failed; reason is the error type (dispatch).",
    ),
    MetricSpec(
        COMMAND_RETRY_TOTAL,
        "counter",
        ("oem", "reason"),
        "Command attempts that failed and will be retried (dispatch).",
    ),
    MetricSpec(
        COMMAND_DURATION_SECONDS,
        "histogram",
        ("oem",),
        "From a command's first send to its verification (dispatch).",
        unit="s",
        buckets=DURATION_BUCKETS_S,
    ),
    MetricSpec(
        STATE_DRIFT_DETECTED_TOTAL,
        "counter",
        ("oem",),
        "Devices found in another mode than their plan's (reconcile).",
    ),
    MetricSpec(
        RECONCILIATION_SUCCESS_TOTAL,
        "counter",
        ("oem",),
        "Devices judged by a reconciliation pass (reconcile).",
    ),
    MetricSpec(
        RECONCILIATION_FAILURE_TOTAL,
        "counter",
        ("reason",),
        "Devices a reconciliation pass could not read or remedy (reconcile).",
    ),
    MetricSpec(
        RECONCILIATION_SKIPPED_TOTAL,
        "counter",
        ("reason",),
        "Devices a reconciliation pass left alone on purpose (reconcile).",
    ),
    MetricSpec(
        USER_OVERRIDES_TOTAL,
        "counter",
        ("oem",),
        "Household changes noticed on a device (reconcile).",
    ),
    MetricSpec(
        OEM_API_LATENCY_SECONDS,
        "histogram",
        ("oem", "endpoint"),
        "Duration of a call to a manufacturer's cloud through the gateway.",
        unit="s",
        buckets=API_LATENCY_BUCKETS_S,
    ),
    MetricSpec(
        OEM_API_ERRORS_TOTAL,
        "counter",
        ("oem", "endpoint", "error_type"),
        "Failed calls to a manufacturer's cloud; error_type classifies the HTTP status "
        "(OemRateLimited 429, OemUnavailable 5xx or timeout, CommandRejected 4xx, "
        "CredentialsInvalid 401, DeviceOffline).",
    ),
    MetricSpec(
        CIRCUIT_BREAKER_STATE,
        "gauge",
        ("oem",),
        "Circuit breaker per manufacturer as an instance sees it: 0 closed, 1 half-open, 2 open.",
        buckets=BREAKER_BUCKETS,
    ),
    MetricSpec(
        ENERGY_CONSUMPTION_KWH,
        "histogram",
        ("oem",),
        "Electricity between a device's consecutive telemetry samples, from the earlier "
        "sample's power (ingest_telemetry); gaps over an hour are not counted.",
        unit="kW.h",
        buckets=ENERGY_BUCKETS_KWH,
    ),
    MetricSpec(
        ESTIMATED_COST_SAVINGS_EUR,
        "histogram",
        ("oem", "price_area"),
        "Baseline minus expected energy cost of each new plan over its horizon (optimize).",
        unit="{EUR}",
        buckets=SAVINGS_BUCKETS_EUR,
    ),
    MetricSpec(
        ALERTS_RAISED_TOTAL,
        "counter",
        ("kind", "severity"),
        "Alerts stored and published for a person (command_failed, persistent_drift, ...).",
    ),
    MetricSpec(
        PRICES_MISSING_TOTAL,
        "counter",
        ("area",),
        "Price ingestion runs at or after 15:00 market time that ended without tomorrow's "
        "prices (ingest_prices).",
    ),
)

METRICS: Final[Mapping[str, MetricSpec]] = {spec.name: spec for spec in _SPECS}
"""Every declared metric by name (``terraform/monitoring.tf`` has one log-based metric each)."""

_Key = tuple[str, tuple[tuple[str, str], ...]]


@dataclass
class Histogram:
    """Counts per bucket (Cloud Monitoring's explicit buckets: underflow ``< bounds[0]``, then
    ``[bounds[i-1], bounds[i])``, overflow ``>= bounds[-1]``), their sum and count."""

    bounds: tuple[float, ...]
    counts: list[int] = field(default_factory=list)
    total: float = 0.0
    count: int = 0

    def __post_init__(self) -> None:
        if not self.counts:
            self.counts = [0] * (len(self.bounds) + 1)

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_right(self.bounds, value)] += 1
        self.total += value
        self.count += 1


def _checked(name: str, kind: MetricKind, labels: Mapping[str, str]) -> MetricSpec:
    spec = METRICS.get(name)
    if spec is None:
        raise ValueError(f"{name} is not a declared metric")
    if spec.kind != kind:
        raise ValueError(f"{name} is a {spec.kind}, not a {kind}")
    if set(labels) != set(spec.labels):
        raise ValueError(f"{name} takes the labels {spec.labels}, got {tuple(sorted(labels))}")
    for label, value in labels.items():
        if not isinstance(value, str) or not _LABEL_VALUE.match(value):
            raise ValueError(f"{name}: label {label}={value!r} is not a short token")
    return spec


class Metrics:
    """Counters, histograms and gauges per (name, labels); safe from several threads.

    ``write`` receives one record per observation (default: a log record,
    :func:`~.metric_records.write_record`; None writes nothing). ``monotonic`` times the gauge
    heartbeat.
    """

    def __init__(
        self,
        write: RecordWriter | None = write_record,
        *,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._write = write
        self._monotonic = monotonic
        self._counters: dict[_Key, float] = {}
        self._histograms: dict[_Key, Histogram] = {}
        self._gauges: dict[_Key, float] = {}
        self._gauge_written: dict[_Key, float] = {}
        self._lock = threading.Lock()

    @staticmethod
    def _key(name: str, labels: Mapping[str, str]) -> _Key:
        return name, tuple(sorted(labels.items()))

    def _emit(self, spec: MetricSpec, value: float, labels: Mapping[str, str]) -> None:
        if self._write is not None:
            self._write(spec.name, spec.kind, value, labels)

    def inc(self, name: str, /, **labels: str) -> None:
        """Count one event."""
        spec = _checked(name, "counter", labels)
        key = self._key(name, labels)
        with self._lock:
            self._counters[key] = self._counters.get(key, 0.0) + 1.0
        self._emit(spec, 1.0, labels)

    def observe(self, name: str, value: float, /, **labels: str) -> None:
        """Add one value to a histogram (bucketed by the metric's declared bounds)."""
        spec = _checked(name, "histogram", labels)
        key = self._key(name, labels)
        with self._lock:
            histogram = self._histograms.get(key)
            if histogram is None:
                histogram = self._histograms[key] = Histogram(spec.buckets)
            histogram.observe(value)
        self._emit(spec, value, labels)

    def set(self, name: str, value: float, /, **labels: str) -> None:
        """Set a gauge; a record is written when the value changes, or when the last record of
        this series is :data:`GAUGE_HEARTBEAT_S` old."""
        spec = _checked(name, "gauge", labels)
        key = self._key(name, labels)
        now = self._monotonic()
        with self._lock:
            changed = self._gauges.get(key) != value
            written = self._gauge_written.get(key)
            due = changed or written is None or now - written >= GAUGE_HEARTBEAT_S
            self._gauges[key] = value
            if due:
                self._gauge_written[key] = now
        if due:
            self._emit(spec, value, labels)

    def get(self, name: str, **labels: str) -> float | None:
        """A gauge's last value for exactly these labels, ``None`` if never set."""
        with self._lock:
            return self._gauges.get(self._key(name, labels))

    def counter(self, name: str, **labels: str) -> float:
        """The counter for exactly these labels; with no labels, summed over every label set;
        with some, summed over the label sets that have them."""
        with self._lock:
            wanted = set(labels.items())
            return sum(
                value
                for (counted, key), value in self._counters.items()
                if counted == name and wanted <= set(key)
            )

    def histogram(self, name: str, **labels: str) -> Histogram | None:
        with self._lock:
            found = self._histograms.get(self._key(name, labels))
            if found is None:
                return None
            return Histogram(found.bounds, list(found.counts), found.total, found.count)

    def snapshot(self) -> dict[str, list[dict[str, object]]]:
        """Every series, for a run's output: ``{name: [{labels, value}, …]}`` (counters and
        gauges), ``{name: [{labels, count, sum, buckets}, …]}`` (histograms; bucket keys are
        the exclusive upper bounds and ``+Inf``)."""
        out: dict[str, list[dict[str, object]]] = {}
        with self._lock:
            for (name, labels), value in sorted({**self._counters, **self._gauges}.items()):
                out.setdefault(name, []).append({"labels": dict(labels), "value": value})
            for (name, labels), hist in sorted(self._histograms.items()):
                out.setdefault(name, []).append(
                    {
                        "labels": dict(labels),
                        "count": hist.count,
                        "sum": hist.total,
                        "buckets": dict(
                            zip([*map(str, hist.bounds), "+Inf"], hist.counts, strict=True)
                        ),
                    }
                )
        return out

    def reset(self) -> None:
        with self._lock:
            self._counters.clear()
            self._histograms.clear()
            self._gauges.clear()
            self._gauge_written.clear()


metrics = Metrics()
"""The process-wide registry (one per function instance)."""
