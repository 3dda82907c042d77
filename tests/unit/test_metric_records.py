"""Every metric observation is one JSON log record, with only its declared labels."""

import io
import json
import logging

import pytest
from opentelemetry.sdk.trace import TracerProvider

from hpsteer.observability.logging import configure_logging, log_context
from hpsteer.observability.metrics import (
    CIRCUIT_BREAKER_STATE,
    COMMAND_DURATION_SECONDS,
    COMMANDS_FAILURE_TOTAL,
    COMMANDS_SENT_TOTAL,
    GAUGE_HEARTBEAT_S,
    METRICS,
    Metrics,
    MetricSpec,
)

VIESSMANN_MAX = {"oem": "viessmann", "action": "set_mode_max"}


@pytest.fixture
def lines():
    stream = io.StringIO()
    configure_logging("WARNING", project="my-project", stream=stream)
    yield lambda: [json.loads(line) for line in stream.getvalue().splitlines()]
    logging.getLogger().handlers.clear()


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_counter_increment_is_one_json_record_with_name_value_and_labels(lines):
    Metrics().inc(COMMANDS_SENT_TOTAL, **VIESSMANN_MAX)
    (line,) = lines()
    assert line["severity"] == "INFO"
    assert line["message"] == "metric commands_sent_total"
    assert line["hpsteer_metric"] == "commands_sent_total"
    assert line["metric_kind"] == "counter"
    assert line["metric_value"] == 1.0
    assert line["metric_labels"] == VIESSMANN_MAX


def test_records_are_written_even_when_the_function_logs_only_warnings(lines):
    Metrics().inc(COMMANDS_SENT_TOTAL, **VIESSMANN_MAX)
    logging.getLogger("hpsteer.test").info("not written at WARNING")
    assert [line["message"] for line in lines()] == ["metric commands_sent_total"]


def test_a_histogram_observation_records_the_observed_value(lines):
    Metrics().observe(COMMAND_DURATION_SECONDS, 42.5, oem="nibe_myuplink")
    (line,) = lines()
    assert (line["metric_kind"], line["metric_value"]) == ("histogram", 42.5)
    assert line["metric_labels"] == {"oem": "nibe_myuplink"}


def test_a_record_written_inside_a_span_carries_that_spans_trace(lines):
    tracer = TracerProvider().get_tracer("test")
    with tracer.start_as_current_span("execute_command") as span:
        Metrics().inc(COMMANDS_SENT_TOTAL, **VIESSMANN_MAX)
        context = span.get_span_context()
    (line,) = lines()
    assert line["logging.googleapis.com/trace"] == (
        f"projects/my-project/traces/{context.trace_id:032x}"
    )
    assert line["logging.googleapis.com/spanId"] == f"{context.span_id:016x}"


def test_bound_ids_stay_in_the_log_line_but_never_become_metric_labels(lines):
    with log_context(device_id="home-17", command_id="c-1"):
        Metrics().inc(COMMANDS_SENT_TOTAL, **VIESSMANN_MAX)
    (line,) = lines()
    assert line["device_id"] == "home-17"
    assert line["metric_labels"] == VIESSMANN_MAX


def test_every_counter_increment_and_observation_is_exactly_one_record():
    written = []
    registry = Metrics(lambda *record: written.append(record))
    for _ in range(3):
        registry.inc(COMMANDS_SENT_TOTAL, **VIESSMANN_MAX)
    registry.observe(COMMAND_DURATION_SECONDS, 7.0, oem="viessmann")
    registry.observe(COMMAND_DURATION_SECONDS, 7.0, oem="viessmann")
    assert len(written) == 5
    assert registry.counter(COMMANDS_SENT_TOTAL, **VIESSMANN_MAX) == 3
    duration = registry.histogram(COMMAND_DURATION_SECONDS, oem="viessmann")
    assert duration is not None
    assert duration.count == 2


def test_a_gauge_is_recorded_when_it_changes_and_again_after_the_heartbeat():
    written = []
    clock = Clock()
    registry = Metrics(lambda *record: written.append(record), monotonic=clock)
    registry.set(CIRCUIT_BREAKER_STATE, 0, oem="viessmann")
    registry.set(CIRCUIT_BREAKER_STATE, 0, oem="viessmann")  # unchanged: no record
    registry.set(CIRCUIT_BREAKER_STATE, 2, oem="viessmann")
    clock.now += GAUGE_HEARTBEAT_S - 1
    registry.set(CIRCUIT_BREAKER_STATE, 2, oem="viessmann")  # unchanged, recent: no record
    clock.now += 1
    registry.set(CIRCUIT_BREAKER_STATE, 2, oem="viessmann")  # heartbeat
    assert [value for _, _, value, _ in written] == [0, 2, 2]
    assert registry.get(CIRCUIT_BREAKER_STATE, oem="viessmann") == 2


@pytest.mark.parametrize(
    "labels",
    [
        {"oem": "viessmann", "action": "set_mode_max", "device_id": "home-17"},
        {"oem": "viessmann", "action": "set_mode_max", "command_id": "c-1"},
        {"oem": "viessmann"},
        {"oem": "viessmann", "action": "set_mode_max", "token": "abc"},
    ],
    ids=["device id", "command id", "a declared label missing", "undeclared label"],
)
def test_labels_other_than_exactly_the_declared_ones_are_refused(labels):
    written = []
    registry = Metrics(lambda *record: written.append(record))
    with pytest.raises(ValueError, match="takes the labels"):
        registry.inc(COMMANDS_SENT_TOTAL, **labels)
    assert written == []
    assert registry.counter(COMMANDS_SENT_TOTAL) == 0


@pytest.mark.parametrize(
    "value",
    [
        "Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJob21lLTE3In0.c2lnbmF0dXJl",
        "x" * 65,
        "https://api.viessmann.com/iot/v1?access_token=abc",
        "OemUnavailable: 503 from https://api.example",
        "",
    ],
    ids=["bearer token", "too long", "url with a token", "error message", "empty"],
)
def test_a_label_value_that_is_not_a_short_token_is_refused_so_secrets_never_become_labels(
    value, lines
):
    with pytest.raises(ValueError, match="not a short token"):
        Metrics().inc(COMMANDS_FAILURE_TOTAL, oem="viessmann", action="set_mode_max", reason=value)
    assert lines() == []


def test_an_undeclared_metric_or_the_wrong_kind_is_refused():
    registry = Metrics(None)
    with pytest.raises(ValueError, match="not a declared metric"):
        registry.inc("commands_sent", **VIESSMANN_MAX)
    with pytest.raises(ValueError, match="is a counter"):
        registry.observe(COMMANDS_SENT_TOTAL, 1.0, **VIESSMANN_MAX)


@pytest.mark.parametrize("label", ["device_id", "home_id", "api_key", "secret_name", "id"])
def test_no_metric_can_declare_an_id_or_a_secret_as_a_label(label):
    with pytest.raises(ValueError, match="label"):
        MetricSpec("example_total", "counter", ("oem", label), "an example")


def test_no_declared_metric_has_a_per_device_label():
    for spec in METRICS.values():
        assert not {"device_id", "command_id", "plan_id", "home_id"} & set(spec.labels)


def test_histogram_buckets_follow_cloud_monitorings_explicit_buckets():
    registry = Metrics(None)
    for value in (0.5, 1.0, 4.99, 5.0, 9000.0):
        registry.observe(COMMAND_DURATION_SECONDS, value, oem="viessmann")
    duration = registry.histogram(COMMAND_DURATION_SECONDS, oem="viessmann")
    assert duration is not None
    # underflow (< 1), [1, 5), [5, 30), ..., overflow (>= 7200)
    assert duration.counts[:3] == [1, 2, 1]
    assert duration.counts[-1] == 1


def test_the_snapshot_holds_counters_histograms_and_gauges_in_one_registry():
    registry = Metrics(None)
    registry.inc(COMMANDS_SENT_TOTAL, **VIESSMANN_MAX)
    registry.observe(COMMAND_DURATION_SECONDS, 3.0, oem="viessmann")
    registry.set(CIRCUIT_BREAKER_STATE, 1, oem="viessmann")
    snapshot = registry.snapshot()
    assert snapshot[COMMANDS_SENT_TOTAL] == [{"labels": VIESSMANN_MAX, "value": 1.0}]
    assert snapshot[CIRCUIT_BREAKER_STATE] == [{"labels": {"oem": "viessmann"}, "value": 1}]
    (duration,) = snapshot[COMMAND_DURATION_SECONDS]
    assert (duration["count"], duration["sum"], duration["buckets"]["5.0"]) == (1, 3.0, 1)
