"""One structured log record per metric observation: how the metrics reach Cloud Monitoring.

Every counter increment, histogram observation and gauge change of
:class:`~hpsteer.observability.metrics.Metrics` is also written as one log record through the
process's logging setup (:mod:`hpsteer.observability.logging`), so it is one JSON line on stdout
with the same trace fields as any other line written inside the span::

    {"severity": "INFO", "message": "metric commands_sent_total",
     "hpsteer_metric": "commands_sent_total", "metric_kind": "counter", "metric_value": 1.0,
     "metric_labels": {"oem": "viessmann", "action": "set_mode_max"},
     "logging.googleapis.com/trace": "projects/…/traces/…", …}

Cloud Logging puts these fields under ``jsonPayload``; ``terraform/monitoring.tf`` defines one
log-based metric per declared metric on ``jsonPayload.hpsteer_metric="<name>"`` (a counter counts
the records, a histogram or gauge is a distribution of ``jsonPayload.metric_value``), with one
label extractor per declared label (``jsonPayload.metric_labels.<label>``), and excludes the
records from the ``_Default`` bucket: user-defined log-based metrics are computed from every log
entry the Logging API receives, "regardless of any inclusion filters or exclusion filters"
(https://cloud.google.com/logging/docs/logs-based-metrics), and excluded entries are not charged
for storage.

Why log records and not the OpenTelemetry metrics SDK: function instances are short-lived and
scale to zero. A push exporter per instance must label each instance's series uniquely (Cloud
Monitoring refuses two writers of one series), so every cold start adds time series (churn and
cardinality), and it loses whatever it counted since its last export when the instance is
stopped (Google's own Prometheus sidecar for Cloud Run needs a shutdown scrape and recommends
always-allocated CPU for that reason:
https://cloud.google.com/stackdriver/docs/managed-prometheus/cloudrun-sidecar). A log line per
observation costs nothing extra in code paths that log anyway, is on stdout as soon as it is
written (it survives the instance), and Cloud Logging aggregates it into one series per label
set, whichever instance wrote it.

The records are written at INFO on the logger ``hpsteer.metrics``, whose level is pinned to INFO
so that a function configured to log only warnings still counts.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, Final

__all__ = [
    "KIND_FIELD",
    "LABELS_FIELD",
    "LOGGER_NAME",
    "METRIC_FIELD",
    "VALUE_FIELD",
    "record_fields",
    "write_record",
]

METRIC_FIELD: Final = "hpsteer_metric"
"""The metric's name: what a log-based metric's filter matches (``jsonPayload.hpsteer_metric``)."""
KIND_FIELD: Final = "metric_kind"
"""``counter``, ``histogram`` or ``gauge`` (for a reader of the logs; the filter does not need
it)."""
VALUE_FIELD: Final = "metric_value"
"""The observation: 1 for a counter, the observed value for a histogram, the new value of a
gauge (a distribution's value extractor reads it)."""
LABELS_FIELD: Final = "metric_labels"
"""The declared labels and their values (label extractors read ``metric_labels.<label>``)."""
LOGGER_NAME: Final = "hpsteer.metrics"

_records = logging.getLogger(LOGGER_NAME)
_records.setLevel(logging.INFO)


def record_fields(name: str, kind: str, value: float, labels: Mapping[str, str]) -> dict[str, Any]:
    """The fields a metric record adds to its log line (see the module docstring)."""
    return {
        METRIC_FIELD: name,
        KIND_FIELD: kind,
        VALUE_FIELD: float(value),
        LABELS_FIELD: dict(sorted(labels.items())),
    }


def write_record(name: str, kind: str, value: float, labels: Mapping[str, str]) -> None:
    """Write one metric record through the logging setup (one JSON line in production)."""
    _records.info("metric %s", name, extra=record_fields(name, kind, value, labels))
