"""Log lines are JSON objects Cloud Logging understands, carry ids, and never carry secrets."""

import io
import json
import logging

import pytest
from opentelemetry.sdk.trace import TracerProvider

from hpsteer.observability.logging import configure_logging, log_context
from hpsteer.ports.secrets import SecretValue


@pytest.fixture
def lines():
    stream = io.StringIO()
    configure_logging("DEBUG", project="my-project", stream=stream)
    yield lambda: [json.loads(line) for line in stream.getvalue().splitlines()]
    logging.getLogger().handlers.clear()


def test_a_line_has_severity_message_and_bound_ids(lines):
    log = logging.getLogger("hpsteer.test")
    with log_context(device_id="d1", plan_id="p1"):
        log.warning("mode %s refused", "max", extra={"command_id": "c1"})
    log.info("outside")
    first, second = lines()
    assert first["severity"] == "WARNING"
    assert first["message"] == "mode max refused"
    assert (first["device_id"], first["plan_id"], first["command_id"]) == ("d1", "p1", "c1")
    assert "device_id" not in second


def test_an_exception_traceback_is_part_of_the_message(lines):
    try:
        raise ValueError("boom")
    except ValueError:
        logging.getLogger("hpsteer.test").exception("handling failed")
    (line,) = lines()
    assert line["severity"] == "ERROR"
    assert "handling failed" in line["message"]
    assert "ValueError: boom" in line["message"]


def test_fields_named_like_credentials_are_redacted(lines):
    secret = SecretValue(name="vicare", version="3", _payload=b"hunter2-refresh")
    logging.getLogger("hpsteer.test").info(
        "token refreshed %s", secret, extra={"refresh_token": "hunter2-refresh", "oem": "vicare"}
    )
    (line,) = lines()
    assert "hunter2" not in json.dumps(line)
    assert line["refresh_token"] == "***"
    assert line["oem"] == "vicare"


def test_a_line_written_inside_a_span_names_its_trace(lines):
    tracer = TracerProvider().get_tracer("test")
    with tracer.start_as_current_span("dispatch") as span:
        logging.getLogger("hpsteer.test").info("inside")
        context = span.get_span_context()
    (line,) = lines()
    assert line["logging.googleapis.com/trace"] == (
        f"projects/my-project/traces/{context.trace_id:032x}"
    )
    assert line["logging.googleapis.com/spanId"] == f"{context.span_id:016x}"
    assert line["logging.googleapis.com/trace_sampled"] is True


def test_ids_and_the_function_are_labels_cloud_logging_can_filter_on(lines):
    with log_context(device_id="d1", command_id="c1"):
        logging.getLogger("hpsteer.test").info("sent", extra={"oem": "vicare", "attempt": 2})
    (line,) = lines()
    labels = line["logging.googleapis.com/labels"]
    assert labels["device_id"] == "d1"
    assert labels["command_id"] == "c1"
    assert labels["oem"] == "vicare"
    assert "attempt" not in labels


def test_http_libraries_log_each_request_only_at_debug() -> None:
    """A line per manufacturer call would be the fleet's largest log item: the call is already
    measured (oem_api_latency_seconds) and traced."""
    stream = io.StringIO()
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        configure_logging("INFO", stream=stream)
        logging.getLogger("httpx").info("HTTP Request: GET https://api.example/ 200 OK")
        logging.getLogger("httpx").warning("connection pool full")
        logging.getLogger("hpsteer.test").info("ours")
        quiet = [json.loads(line)["message"] for line in stream.getvalue().splitlines()]
        configure_logging("DEBUG", stream=stream)
        logging.getLogger("httpcore").debug("send_request_headers.started")
        last = json.loads(stream.getvalue().splitlines()[-1])["message"]
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
        for name in ("httpx", "httpcore"):
            logging.getLogger(name).setLevel(logging.NOTSET)
    assert quiet == ["connection pool full", "ours"]
    assert last == "send_request_headers.started"
