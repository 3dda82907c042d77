"""terraform/monitoring.tf matches the metrics the code declares, and its alerts can fire and
tell the on-call what to do."""

from __future__ import annotations

import re
from typing import Any

import pytest

from hpsteer.observability.metric_records import LABELS_FIELD, METRIC_FIELD, VALUE_FIELD
from hpsteer.observability.metrics import METRICS, MetricSpec
from tests.support.terraform import blocks, resources

PER_DEVICE_FIELDS = ("device_id", "command_id", "plan_id", "home_id", "sample_id", "account_id")
_USER_METRIC = re.compile(
    r"logging\.googleapis\.com/user/(?:\$\{google_logging_metric\.(\w+)\.name\}|(\w+))"
)


def _user_metrics(text: str) -> set[str]:
    """Log-based metrics a filter names, by reference or literally."""
    return {reference or literal for reference, literal in _USER_METRIC.findall(text)}


def _unescaped(text: str) -> str:
    return text.replace('\\"', '"')


def _one(body: dict[str, Any], block: str) -> dict[str, Any]:
    (found,) = body[block]
    return found


def _log_metrics() -> dict[str, dict[str, Any]]:
    return {
        name: body
        for (rtype, name), body in resources().items()
        if rtype == "google_logging_metric"
    }


def _alert_policies() -> dict[str, dict[str, Any]]:
    return {
        name: body
        for (rtype, name), body in resources().items()
        if rtype == "google_monitoring_alert_policy"
    }


def _conditions(policy: dict[str, Any]) -> list[dict[str, Any]]:
    found = []
    for condition in policy["conditions"]:
        for kind in ("condition_threshold", "condition_absent"):
            found.extend(condition.get(kind, []))
    return found


def test_every_declared_metric_has_a_log_based_metric_and_no_other_exists():
    assert set(_log_metrics()) == set(METRICS)


@pytest.mark.parametrize("spec", METRICS.values(), ids=lambda spec: spec.name)
def test_each_log_based_metric_matches_its_declaration(spec: MetricSpec):
    body = _log_metrics()[spec.name]
    assert body["name"] == spec.name
    assert _unescaped(body["filter"]) == f'jsonPayload.{METRIC_FIELD}="{spec.name}"'
    descriptor = _one(body, "metric_descriptor")
    assert descriptor["metric_kind"] == "DELTA"
    assert descriptor["unit"] == spec.unit
    declared = [label["key"] for label in descriptor.get("labels", [])]
    assert declared == list(spec.labels)
    assert body.get("label_extractors", {}) == {
        label: f"EXTRACT(jsonPayload.{LABELS_FIELD}.{label})" for label in spec.labels
    }
    if spec.kind == "counter":
        assert descriptor["value_type"] == "INT64"
        assert "value_extractor" not in body
        assert "bucket_options" not in body
    else:
        assert descriptor["value_type"] == "DISTRIBUTION"
        assert body["value_extractor"] == f"EXTRACT(jsonPayload.{VALUE_FIELD})"
        bounds = _one(_one(body, "bucket_options"), "explicit_buckets")["bounds"]
        assert [float(bound) for bound in bounds] == list(spec.buckets)


def test_no_label_extractor_reads_a_per_device_field():
    for name, body in _log_metrics().items():
        for label, extractor in body.get("label_extractors", {}).items():
            assert not any(field in extractor for field in PER_DEVICE_FIELDS), (name, label)
            assert extractor.startswith(f"EXTRACT(jsonPayload.{LABELS_FIELD}."), (name, label)


def test_metric_records_are_excluded_from_storage_but_still_counted():
    exclusion = resources()[("google_logging_project_exclusion", "metric_records")]
    assert exclusion["filter"] == f"jsonPayload.{METRIC_FIELD}:*"
    for body in _log_metrics().values():
        assert "bucket_name" not in body  # project-scoped metrics see excluded entries too


EXPECTED_POLICIES = {
    "command_failure_ratio",
    "dead_lettered",
    "work_stuck",
    "circuit_breaker_open",
    "persistent_drift",
    "reconcile_not_running",
    "prices_missing",
    "function_errors",
}


def test_the_alert_policies_an_operator_needs_exist():
    assert set(_alert_policies()) >= EXPECTED_POLICIES


@pytest.mark.parametrize("name", sorted(EXPECTED_POLICIES))
def test_every_alert_policy_watches_existing_metrics_and_tells_the_on_call_what_to_do(name):
    policy = _alert_policies()[name]
    log_metrics = _log_metrics()
    conditions = _conditions(policy)
    assert conditions, "a policy without a threshold or absence condition"
    for condition in conditions:
        for key in ("filter", "denominator_filter"):
            text = condition.get(key)
            if text is None:
                continue
            assert _user_metrics(text) <= set(log_metrics)
            assert "metric.type=" in _unescaped(text)
    documentation = _one(policy, "documentation")
    assert documentation["mime_type"] == "text/markdown"
    assert "docs/operations.md#" in documentation["content"]
    assert re.search(r"^1\. ", documentation["content"], re.MULTILINE), "numbered steps"
    assert policy["notification_channels"] == "${local.alert_channels}"


def test_log_based_alerts_cover_failures_breakers_drift_reconcile_and_prices():
    watched = set()
    for policy in _alert_policies().values():
        for condition in _conditions(policy):
            watched.update(_user_metrics(condition.get("filter", "")))
    assert watched >= {
        "commands_failure_total",
        "circuit_breaker_state",
        "alerts_raised_total",
        "reconciliation_success_total",
        "prices_missing_total",
    }


def test_notification_channels_come_from_an_email_list_that_defaults_to_empty():
    (variable,) = [block["alert_emails"] for block in blocks("variable") if "alert_emails" in block]
    assert variable["default"] == []
    channel = resources()[("google_monitoring_notification_channel", "email")]
    assert channel["type"] == "email"
    assert channel["for_each"] == "${toset(var.alert_emails)}"


def test_every_runbook_the_policies_link_is_a_section_of_the_operations_guide():
    from tests.support.terraform import TERRAFORM

    guide = (TERRAFORM.parent / "docs" / "operations.md").read_text()
    anchors = {
        re.sub(r"[^a-z0-9 -]", "", heading.lower()).strip().replace(" ", "-")
        for heading in re.findall(r"^#+ (.+)$", guide, re.MULTILINE)
    }
    for name, policy in _alert_policies().items():
        (link,) = re.findall(
            r"docs/operations\.md#([\w-]+)", _one(policy, "documentation")["content"]
        )
        assert link in anchors, name
