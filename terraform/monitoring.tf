# Monitoring: the architecture's metrics as log-based metrics, and the alert policies an on-call
# person must hear about before customers notice. docs/operations.md explains every metric and
# every policy's runbook.
#
# Why log-based metrics (hpsteer.observability.metric_records): each metric observation is one
# structured log line {"hpsteer_metric": name, "metric_value": v, "metric_labels": {...}}.
# Function instances are short-lived and scale to zero: a push exporter per instance needs a
# per-instance label (series churn) and loses its last interval at shutdown, while a log line is
# on stdout the moment it is written and Cloud Logging aggregates every instance's lines into one
# series per label set. User-defined log-based metrics are computed from every entry the Logging
# API receives, regardless of exclusion filters
# (https://cloud.google.com/logging/docs/logs-based-metrics), so the records are then excluded
# from the _Default bucket: counted, never stored nor charged for storage.
#
# One google_logging_metric per metric declared in hpsteer.observability.metrics.METRICS (the
# infrastructure tests hold them equal): a counter counts its records (DELTA INT64); a histogram
# is a DELTA DISTRIBUTION of metric_value with the code's bucket bounds; a gauge too (its records
# are its changes and a heartbeat at most a minute apart while it is set, so a window's mean is
# the value the instances saw). Labels are exactly the declared ones: never a device, command or
# plan id (per-device figures live in Firestore and BigQuery).

variable "alert_emails" {
  description = "E-mail addresses notified by every alert policy (empty: the policies only open incidents in the console)."
  type        = list(string)
  default     = []
}

variable "store_metric_records" {
  description = "Keep the metric records in the _Default log bucket too (they are counted either way); for debugging a metric."
  type        = bool
  default     = false
}

variable "stuck_queue_depth" {
  description = "Tasks waiting in one Cloud Tasks queue for 30 minutes that mean commands are stuck."
  type        = number
  default     = 5000
}

variable "persistent_drift_alerts_per_hour" {
  description = "Persistent-drift alerts raised in an hour, fleet-wide, that page the on-call."
  type        = number
  default     = 10
}

locals {
  alert_channels = [for channel in google_monitoring_notification_channel.email : channel.name]
  # Gen2 Cloud Functions run as Cloud Run services: their log entries, and so the log-based
  # metrics drawn from them, are on the cloud_run_revision monitored resource.
  function_resource = "resource.type=\"cloud_run_revision\""
}

resource "google_monitoring_notification_channel" "email" {
  for_each     = toset(var.alert_emails)
  display_name = "hpsteer ${var.environment} on-call: ${each.value}"
  type         = "email"
  labels = {
    email_address = each.value
  }
  depends_on = [google_project_service.enabled]
}

resource "google_logging_project_exclusion" "metric_records" {
  name        = "hpsteer-metric-records"
  description = "hpsteer metric records: counted by the log-based metrics, not stored (see monitoring.tf)."
  filter      = "jsonPayload.hpsteer_metric:*"
  disabled    = var.store_metric_records
}

# -- log-based metrics (one per hpsteer.observability.metrics.METRICS entry) -------------------

resource "google_logging_metric" "commands_sent_total" {
  name        = "commands_sent_total"
  description = "Command requests a manufacturer accepted (dispatch)."
  filter      = "jsonPayload.hpsteer_metric=\"commands_sent_total\""

  metric_descriptor {
    metric_kind  = "DELTA"
    value_type   = "INT64"
    unit         = "1"
    display_name = "hpsteer commands_sent_total"

    labels {
      key         = "oem"
      value_type  = "STRING"
      description = "Manufacturer (adapter name)."
    }

    labels {
      key         = "action"
      value_type  = "STRING"
      description = "Generic action of the command."
    }
  }

  label_extractors = {
    oem    = "EXTRACT(jsonPayload.metric_labels.oem)"
    action = "EXTRACT(jsonPayload.metric_labels.action)"
  }
}

resource "google_logging_metric" "commands_success_total" {
  name        = "commands_success_total"
  description = "Commands verified on the device (dispatch, verification)."
  filter      = "jsonPayload.hpsteer_metric=\"commands_success_total\""

  metric_descriptor {
    metric_kind  = "DELTA"
    value_type   = "INT64"
    unit         = "1"
    display_name = "hpsteer commands_success_total"

    labels {
      key         = "oem"
      value_type  = "STRING"
      description = "Manufacturer (adapter name)."
    }

    labels {
      key         = "action"
      value_type  = "STRING"
      description = "Generic action of the command."
    }
  }

  label_extractors = {
    oem    = "EXTRACT(jsonPayload.metric_labels.oem)"
    action = "EXTRACT(jsonPayload.metric_labels.action)"
  }
}

resource "google_logging_metric" "commands_failure_total" {
  name        = "commands_failure_total"
  description = "Commands that ended failed; reason is the error type (dispatch)."
  filter      = "jsonPayload.hpsteer_metric=\"commands_failure_total\""

  metric_descriptor {
    metric_kind  = "DELTA"
    value_type   = "INT64"
    unit         = "1"
    display_name = "hpsteer commands_failure_total"

    labels {
      key         = "oem"
      value_type  = "STRING"
      description = "Manufacturer (adapter name)."
    }

    labels {
      key         = "action"
      value_type  = "STRING"
      description = "Generic action of the command."
    }

    labels {
      key         = "reason"
      value_type  = "STRING"
      description = "Why: an error type or a named reason."
    }
  }

  label_extractors = {
    oem    = "EXTRACT(jsonPayload.metric_labels.oem)"
    action = "EXTRACT(jsonPayload.metric_labels.action)"
    reason = "EXTRACT(jsonPayload.metric_labels.reason)"
  }
}

resource "google_logging_metric" "command_retry_total" {
  name        = "command_retry_total"
  description = "Command attempts that failed and will be retried (dispatch)."
  filter      = "jsonPayload.hpsteer_metric=\"command_retry_total\""

  metric_descriptor {
    metric_kind  = "DELTA"
    value_type   = "INT64"
    unit         = "1"
    display_name = "hpsteer command_retry_total"

    labels {
      key         = "oem"
      value_type  = "STRING"
      description = "Manufacturer (adapter name)."
    }

    labels {
      key         = "reason"
      value_type  = "STRING"
      description = "Why: an error type or a named reason."
    }
  }

  label_extractors = {
    oem    = "EXTRACT(jsonPayload.metric_labels.oem)"
    reason = "EXTRACT(jsonPayload.metric_labels.reason)"
  }
}

resource "google_logging_metric" "command_duration_seconds" {
  name            = "command_duration_seconds"
  description     = "From a command's first send to its verification (dispatch)."
  filter          = "jsonPayload.hpsteer_metric=\"command_duration_seconds\""
  value_extractor = "EXTRACT(jsonPayload.metric_value)"

  metric_descriptor {
    metric_kind  = "DELTA"
    value_type   = "DISTRIBUTION"
    unit         = "s"
    display_name = "hpsteer command_duration_seconds"

    labels {
      key         = "oem"
      value_type  = "STRING"
      description = "Manufacturer (adapter name)."
    }
  }

  label_extractors = {
    oem = "EXTRACT(jsonPayload.metric_labels.oem)"
  }

  bucket_options {
    explicit_buckets {
      bounds = [1.0, 5.0, 30.0, 60.0, 300.0, 600.0, 900.0, 1800.0, 3600.0, 7200.0]
    }
  }
}

resource "google_logging_metric" "state_drift_detected_total" {
  name        = "state_drift_detected_total"
  description = "Devices found in another mode than their plan's (reconcile)."
  filter      = "jsonPayload.hpsteer_metric=\"state_drift_detected_total\""

  metric_descriptor {
    metric_kind  = "DELTA"
    value_type   = "INT64"
    unit         = "1"
    display_name = "hpsteer state_drift_detected_total"

    labels {
      key         = "oem"
      value_type  = "STRING"
      description = "Manufacturer (adapter name)."
    }
  }

  label_extractors = {
    oem = "EXTRACT(jsonPayload.metric_labels.oem)"
  }
}

resource "google_logging_metric" "reconciliation_success_total" {
  name        = "reconciliation_success_total"
  description = "Devices judged by a reconciliation pass (reconcile)."
  filter      = "jsonPayload.hpsteer_metric=\"reconciliation_success_total\""

  metric_descriptor {
    metric_kind  = "DELTA"
    value_type   = "INT64"
    unit         = "1"
    display_name = "hpsteer reconciliation_success_total"

    labels {
      key         = "oem"
      value_type  = "STRING"
      description = "Manufacturer (adapter name)."
    }
  }

  label_extractors = {
    oem = "EXTRACT(jsonPayload.metric_labels.oem)"
  }
}

resource "google_logging_metric" "reconciliation_failure_total" {
  name        = "reconciliation_failure_total"
  description = "Devices a reconciliation pass could not read or remedy (reconcile)."
  filter      = "jsonPayload.hpsteer_metric=\"reconciliation_failure_total\""

  metric_descriptor {
    metric_kind  = "DELTA"
    value_type   = "INT64"
    unit         = "1"
    display_name = "hpsteer reconciliation_failure_total"

    labels {
      key         = "reason"
      value_type  = "STRING"
      description = "Why: an error type or a named reason."
    }
  }

  label_extractors = {
    reason = "EXTRACT(jsonPayload.metric_labels.reason)"
  }
}

resource "google_logging_metric" "reconciliation_skipped_total" {
  name        = "reconciliation_skipped_total"
  description = "Devices a reconciliation pass left alone on purpose (reconcile)."
  filter      = "jsonPayload.hpsteer_metric=\"reconciliation_skipped_total\""

  metric_descriptor {
    metric_kind  = "DELTA"
    value_type   = "INT64"
    unit         = "1"
    display_name = "hpsteer reconciliation_skipped_total"

    labels {
      key         = "reason"
      value_type  = "STRING"
      description = "Why: an error type or a named reason."
    }
  }

  label_extractors = {
    reason = "EXTRACT(jsonPayload.metric_labels.reason)"
  }
}

resource "google_logging_metric" "user_overrides_total" {
  name        = "user_overrides_total"
  description = "Household changes noticed on a device (reconcile)."
  filter      = "jsonPayload.hpsteer_metric=\"user_overrides_total\""

  metric_descriptor {
    metric_kind  = "DELTA"
    value_type   = "INT64"
    unit         = "1"
    display_name = "hpsteer user_overrides_total"

    labels {
      key         = "oem"
      value_type  = "STRING"
      description = "Manufacturer (adapter name)."
    }
  }

  label_extractors = {
    oem = "EXTRACT(jsonPayload.metric_labels.oem)"
  }
}

resource "google_logging_metric" "oem_api_latency_seconds" {
  name            = "oem_api_latency_seconds"
  description     = "Duration of a call to a manufacturer's cloud through the gateway."
  filter          = "jsonPayload.hpsteer_metric=\"oem_api_latency_seconds\""
  value_extractor = "EXTRACT(jsonPayload.metric_value)"

  metric_descriptor {
    metric_kind  = "DELTA"
    value_type   = "DISTRIBUTION"
    unit         = "s"
    display_name = "hpsteer oem_api_latency_seconds"

    labels {
      key         = "oem"
      value_type  = "STRING"
      description = "Manufacturer (adapter name)."
    }

    labels {
      key         = "endpoint"
      value_type  = "STRING"
      description = "Gateway operation: translate, send_command or read_state."
    }
  }

  label_extractors = {
    oem      = "EXTRACT(jsonPayload.metric_labels.oem)"
    endpoint = "EXTRACT(jsonPayload.metric_labels.endpoint)"
  }

  bucket_options {
    explicit_buckets {
      bounds = [0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0]
    }
  }
}

resource "google_logging_metric" "oem_api_errors_total" {
  name        = "oem_api_errors_total"
  description = "Failed calls to a manufacturer's cloud; error_type classifies the HTTP status (OemRateLimited 429, OemUnavailable 5xx or timeout, CommandRejected 4xx, CredentialsInvalid 401, DeviceOffline)."
  filter      = "jsonPayload.hpsteer_metric=\"oem_api_errors_total\""

  metric_descriptor {
    metric_kind  = "DELTA"
    value_type   = "INT64"
    unit         = "1"
    display_name = "hpsteer oem_api_errors_total"

    labels {
      key         = "oem"
      value_type  = "STRING"
      description = "Manufacturer (adapter name)."
    }

    labels {
      key         = "endpoint"
      value_type  = "STRING"
      description = "Gateway operation: translate, send_command or read_state."
    }

    labels {
      key         = "error_type"
      value_type  = "STRING"
      description = "Error class (classifies the HTTP status)."
    }
  }

  label_extractors = {
    oem        = "EXTRACT(jsonPayload.metric_labels.oem)"
    endpoint   = "EXTRACT(jsonPayload.metric_labels.endpoint)"
    error_type = "EXTRACT(jsonPayload.metric_labels.error_type)"
  }
}

resource "google_logging_metric" "circuit_breaker_state" {
  name            = "circuit_breaker_state"
  description     = "Circuit breaker per manufacturer as an instance sees it: 0 closed, 1 half-open, 2 open."
  filter          = "jsonPayload.hpsteer_metric=\"circuit_breaker_state\""
  value_extractor = "EXTRACT(jsonPayload.metric_value)"

  metric_descriptor {
    metric_kind  = "DELTA"
    value_type   = "DISTRIBUTION"
    unit         = "1"
    display_name = "hpsteer circuit_breaker_state"

    labels {
      key         = "oem"
      value_type  = "STRING"
      description = "Manufacturer (adapter name)."
    }
  }

  label_extractors = {
    oem = "EXTRACT(jsonPayload.metric_labels.oem)"
  }

  bucket_options {
    explicit_buckets {
      bounds = [0.5, 1.5]
    }
  }
}

resource "google_logging_metric" "energy_consumption_kwh" {
  name            = "energy_consumption_kwh"
  description     = "Electricity between a device's consecutive telemetry samples, from the earlier sample's power (ingest_telemetry); gaps over an hour are not counted."
  filter          = "jsonPayload.hpsteer_metric=\"energy_consumption_kwh\""
  value_extractor = "EXTRACT(jsonPayload.metric_value)"

  metric_descriptor {
    metric_kind  = "DELTA"
    value_type   = "DISTRIBUTION"
    unit         = "kW.h"
    display_name = "hpsteer energy_consumption_kwh"

    labels {
      key         = "oem"
      value_type  = "STRING"
      description = "Manufacturer (adapter name)."
    }
  }

  label_extractors = {
    oem = "EXTRACT(jsonPayload.metric_labels.oem)"
  }

  bucket_options {
    explicit_buckets {
      bounds = [0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0]
    }
  }
}

resource "google_logging_metric" "estimated_cost_savings_eur" {
  name            = "estimated_cost_savings_eur"
  description     = "Baseline minus expected energy cost of each new plan over its horizon (optimize)."
  filter          = "jsonPayload.hpsteer_metric=\"estimated_cost_savings_eur\""
  value_extractor = "EXTRACT(jsonPayload.metric_value)"

  metric_descriptor {
    metric_kind  = "DELTA"
    value_type   = "DISTRIBUTION"
    unit         = "{EUR}"
    display_name = "hpsteer estimated_cost_savings_eur"

    labels {
      key         = "oem"
      value_type  = "STRING"
      description = "Manufacturer (adapter name)."
    }

    labels {
      key         = "price_area"
      value_type  = "STRING"
      description = "Bidding zone."
    }
  }

  label_extractors = {
    oem        = "EXTRACT(jsonPayload.metric_labels.oem)"
    price_area = "EXTRACT(jsonPayload.metric_labels.price_area)"
  }

  bucket_options {
    explicit_buckets {
      bounds = [-1.0, -0.25, -0.05, 0.0, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0]
    }
  }
}

resource "google_logging_metric" "alerts_raised_total" {
  name        = "alerts_raised_total"
  description = "Alerts stored and published for a person (command_failed, persistent_drift, ...)."
  filter      = "jsonPayload.hpsteer_metric=\"alerts_raised_total\""

  metric_descriptor {
    metric_kind  = "DELTA"
    value_type   = "INT64"
    unit         = "1"
    display_name = "hpsteer alerts_raised_total"

    labels {
      key         = "kind"
      value_type  = "STRING"
      description = "Alert kind."
    }

    labels {
      key         = "severity"
      value_type  = "STRING"
      description = "Alert severity."
    }
  }

  label_extractors = {
    kind     = "EXTRACT(jsonPayload.metric_labels.kind)"
    severity = "EXTRACT(jsonPayload.metric_labels.severity)"
  }
}

resource "google_logging_metric" "prices_missing_total" {
  name        = "prices_missing_total"
  description = "Price ingestion runs at or after 15:00 market time that ended without tomorrow's prices (ingest_prices)."
  filter      = "jsonPayload.hpsteer_metric=\"prices_missing_total\""

  metric_descriptor {
    metric_kind  = "DELTA"
    value_type   = "INT64"
    unit         = "1"
    display_name = "hpsteer prices_missing_total"

    labels {
      key         = "area"
      value_type  = "STRING"
      description = "Bidding zone."
    }
  }

  label_extractors = {
    area = "EXTRACT(jsonPayload.metric_labels.area)"
  }
}

# -- alert policies (runbooks: docs/operations.md, "Alert policies") ---------------------------

resource "google_monitoring_alert_policy" "command_failure_ratio" {
  display_name          = "hpsteer ${var.environment}: command failure ratio over 10 %"
  combiner              = "OR"
  severity              = "WARNING"
  notification_channels = local.alert_channels

  conditions {
    display_name = "commands_failure_total / commands_sent_total > 0.1 for 10 min, per manufacturer"
    condition_threshold {
      filter             = "metric.type=\"logging.googleapis.com/user/${google_logging_metric.commands_failure_total.name}\" AND ${local.function_resource}"
      denominator_filter = "metric.type=\"logging.googleapis.com/user/${google_logging_metric.commands_sent_total.name}\" AND ${local.function_resource}"
      comparison         = "COMPARISON_GT"
      threshold_value    = 0.1
      duration           = "600s"

      aggregations {
        alignment_period     = "300s"
        per_series_aligner   = "ALIGN_DELTA"
        cross_series_reducer = "REDUCE_SUM"
        group_by_fields      = ["metric.label.oem"]
      }

      denominator_aggregations {
        alignment_period     = "300s"
        per_series_aligner   = "ALIGN_DELTA"
        cross_series_reducer = "REDUCE_SUM"
        group_by_fields      = ["metric.label.oem"]
      }
    }
  }

  alert_strategy {
    auto_close = "3600s"
  }

  documentation {
    mime_type = "text/markdown"
    subject   = "hpsteer: commands to $${metric.label.oem} failing"
    content   = <<-EOT
      More than one command in ten to **$${metric.label.oem}** ended failed over the last 10 minutes.
      Households are not being steered; each failed command also raised a `command_failed` alert.

      1. Logs Explorer: `jsonPayload.hpsteer_metric="commands_failure_total"` shows the `reason`
         label (error type); then `severity>=ERROR AND jsonPayload.oem="$${metric.label.oem}"`.
      2. Open one failed command's trace (`logging.googleapis.com/trace` of its log line) to see
         which hop failed: validate, send_to_oem or verify_execution.
      3. Manufacturer outage (OemUnavailable, breaker alert too): check its status page; nothing
         to do, commands are retried and superseded by the next plan.
         CredentialsInvalid: renew the account's secret in Secret Manager.
         CommandRejected / invalid_command: an adapter or translation bug; file it with the trace.
      Runbook: docs/operations.md#command-failure-ratio
    EOT
  }
}

resource "google_monitoring_alert_policy" "dead_lettered" {
  display_name          = "hpsteer ${var.environment}: messages dead-lettered"
  combiner              = "OR"
  severity              = "ERROR"
  notification_channels = local.alert_channels

  conditions {
    display_name = "a subscription forwarded messages to its dead-letter topic"
    condition_threshold {
      filter          = "metric.type=\"pubsub.googleapis.com/subscription/dead_letter_message_count\" AND resource.type=\"pubsub_subscription\""
      comparison      = "COMPARISON_GT"
      threshold_value = 0
      duration        = "0s"

      aggregations {
        alignment_period     = "300s"
        per_series_aligner   = "ALIGN_DELTA"
        cross_series_reducer = "REDUCE_SUM"
        group_by_fields      = ["resource.label.subscription_id"]
      }
    }
  }

  conditions {
    display_name = "a dead-letter topic's subscription holds messages"
    condition_threshold {
      filter          = "metric.type=\"pubsub.googleapis.com/subscription/num_undelivered_messages\" AND resource.type=\"pubsub_subscription\" AND resource.label.subscription_id=monitoring.regex.full_match(\".*-dead-letter.*\")"
      comparison      = "COMPARISON_GT"
      threshold_value = 0
      duration        = "300s"

      aggregations {
        alignment_period   = "300s"
        per_series_aligner = "ALIGN_MAX"
      }
    }
  }

  alert_strategy {
    auto_close = "86400s"
  }

  documentation {
    mime_type = "text/markdown"
    subject   = "hpsteer: messages dead-lettered"
    content   = <<-EOT
      A Pub/Sub message failed every delivery attempt and was moved to its `<topic>-dead-letter`
      topic: its work (a price day, a plan, a reconcile page, a telemetry sample) was not done.

      1. Pull the dead-letter topic's subscription
         (`gcloud pubsub subscriptions pull <topic>-dead-letter-inspect --limit 5`; it keeps
         messages 7 days); the attributes name the device or area, `traceparent` the trace.
      2. Logs Explorer: `severity>=ERROR` around the message's publish time for the function of
         that topic shows why it failed.
      3. Fix the cause, then republish the messages to the original topic (handlers are
         idempotent) and acknowledge them on the dead-letter subscription.
      Runbook: docs/operations.md#messages-dead-lettered
    EOT
  }
}

resource "google_monitoring_alert_policy" "work_stuck" {
  display_name          = "hpsteer ${var.environment}: commands or messages stuck"
  combiner              = "OR"
  severity              = "WARNING"
  notification_channels = local.alert_channels

  conditions {
    display_name = "a Cloud Tasks queue holds more than var.stuck_queue_depth tasks for 30 min"
    condition_threshold {
      filter          = "metric.type=\"cloudtasks.googleapis.com/queue/depth\" AND resource.type=\"cloud_tasks_queue\""
      comparison      = "COMPARISON_GT"
      threshold_value = var.stuck_queue_depth
      duration        = "1800s"

      aggregations {
        alignment_period   = "300s"
        per_series_aligner = "ALIGN_MEAN"
      }
    }
  }

  conditions {
    display_name = "a subscription's oldest unacknowledged message is over 30 min old"
    condition_threshold {
      filter          = "metric.type=\"pubsub.googleapis.com/subscription/oldest_unacked_message_age\" AND resource.type=\"pubsub_subscription\""
      comparison      = "COMPARISON_GT"
      threshold_value = 1800
      duration        = "600s"

      aggregations {
        alignment_period   = "300s"
        per_series_aligner = "ALIGN_MAX"
      }
    }
  }

  alert_strategy {
    auto_close = "7200s"
  }

  documentation {
    mime_type = "text/markdown"
    subject   = "hpsteer: work stuck in a queue"
    content   = <<-EOT
      Commands wait in a manufacturer's Cloud Tasks queue, or a Pub/Sub subscription is not
      being drained: plans are not reaching the heat pumps in their slots.

      1. Which queue or subscription: the incident's resource labels.
      2. Dispatch queue: is the manufacturer's breaker open (breaker alert) or its rate budget
         spent (`oem_api_errors_total` with error_type OemRateLimited)? Then the queue drains by
         itself; stale commands are superseded, not sent late.
      3. Otherwise check the function's errors (function error alert) and max instances; a
         paused queue (`gcloud tasks queues describe`) must be resumed.
      Runbook: docs/operations.md#commands-or-messages-stuck
    EOT
  }
}

resource "google_monitoring_alert_policy" "circuit_breaker_open" {
  display_name          = "hpsteer ${var.environment}: circuit breaker open for a manufacturer"
  combiner              = "OR"
  severity              = "CRITICAL"
  notification_channels = local.alert_channels

  conditions {
    display_name = "circuit_breaker_state mean over 1.5 (open) for 5 min, per manufacturer"
    condition_threshold {
      filter          = "metric.type=\"logging.googleapis.com/user/${google_logging_metric.circuit_breaker_state.name}\" AND ${local.function_resource}"
      comparison      = "COMPARISON_GT"
      threshold_value = 1.5
      duration        = "300s"

      aggregations {
        alignment_period     = "60s"
        per_series_aligner   = "ALIGN_MEAN"
        cross_series_reducer = "REDUCE_MEAN"
        group_by_fields      = ["metric.label.oem"]
      }
    }
  }

  alert_strategy {
    auto_close = "1800s"
  }

  documentation {
    mime_type = "text/markdown"
    subject   = "hpsteer: breaker open for $${metric.label.oem}"
    content   = <<-EOT
      The circuit breaker for **$${metric.label.oem}** has been open for 5 minutes: no instance
      calls that manufacturer's cloud, so none of its heat pumps receives commands or is read.

      1. Firestore `manufacturers/$${metric.label.oem}`, field `breaker`: `reason`, `opened_at`,
         `failure_rate`.
      2. Logs Explorer: `jsonPayload.hpsteer_metric="oem_api_errors_total"` and the adapter's
         WARNING lines (HTTP status) show what the manufacturer answers.
      3. An outage on their side: wait; the breaker probes every few minutes and closes itself.
         Our side (credentials, a changed API): fix and redeploy; do not edit the breaker
         document by hand unless the manufacturer confirms recovery.
      Runbook: docs/operations.md#circuit-breaker-open
    EOT
  }
}

resource "google_monitoring_alert_policy" "persistent_drift" {
  display_name          = "hpsteer ${var.environment}: persistent state drift"
  combiner              = "OR"
  severity              = "WARNING"
  notification_channels = local.alert_channels

  conditions {
    display_name = "persistent_drift alerts raised in an hour over var.persistent_drift_alerts_per_hour"
    condition_threshold {
      filter          = "metric.type=\"logging.googleapis.com/user/${google_logging_metric.alerts_raised_total.name}\" AND ${local.function_resource} AND metric.label.kind=\"persistent_drift\""
      comparison      = "COMPARISON_GT"
      threshold_value = var.persistent_drift_alerts_per_hour
      duration        = "0s"

      aggregations {
        alignment_period     = "3600s"
        per_series_aligner   = "ALIGN_DELTA"
        cross_series_reducer = "REDUCE_SUM"
      }
    }
  }

  alert_strategy {
    auto_close = "7200s"
  }

  documentation {
    mime_type = "text/markdown"
    subject   = "hpsteer: many devices drift from their plans"
    content   = <<-EOT
      Reconciliation keeps finding devices in another mode than their plan's, after remedying
      them: commands are accepted but do not stick.

      1. Firestore `alerts` (kind `persistent_drift`): which devices, and which manufacturer
         (`state_drift_detected_total` by oem in Metrics Explorer).
      2. One device: its `devices/{id}` document (`last_telemetry`, `reconcile`) and BigQuery
         `telemetry_history` / `command_events` for the last hours.
      3. One manufacturer only: their API may acknowledge without applying; households'
         own changes are overrides (`user_overrides_total`), not drift.
      Runbook: docs/operations.md#persistent-state-drift
    EOT
  }
}

resource "google_monitoring_alert_policy" "reconcile_not_running" {
  display_name          = "hpsteer ${var.environment}: reconciliation did not run for 30 minutes"
  combiner              = "OR"
  severity              = "ERROR"
  notification_channels = local.alert_channels

  conditions {
    display_name = "no reconciliation_success_total for 30 min"
    condition_absent {
      filter   = "metric.type=\"logging.googleapis.com/user/${google_logging_metric.reconciliation_success_total.name}\" AND ${local.function_resource}"
      duration = "1800s"

      aggregations {
        alignment_period     = "300s"
        per_series_aligner   = "ALIGN_DELTA"
        cross_series_reducer = "REDUCE_SUM"
      }
    }
  }

  alert_strategy {
    auto_close = "3600s"
  }

  documentation {
    mime_type = "text/markdown"
    subject   = "hpsteer: reconciliation stopped"
    content   = <<-EOT
      No device has been reconciled for 30 minutes (every 10 minutes is the schedule): drift and
      household overrides go unnoticed.

      1. Cloud Scheduler: is the reconcile job enabled, and did its last run succeed?
      2. `reconcile-requests` subscription backlog and the reconcile function's errors.
      3. `reconciliation_failure_total` by reason: every device failing (a manufacturer down,
         the store unavailable) also stops successes.
      Runbook: docs/operations.md#reconciliation-not-running
    EOT
  }
}

resource "google_monitoring_alert_policy" "prices_missing" {
  display_name          = "hpsteer ${var.environment}: no prices for tomorrow by 15:00"
  combiner              = "OR"
  severity              = "CRITICAL"
  notification_channels = local.alert_channels

  conditions {
    display_name = "prices_missing_total increased, per area"
    condition_threshold {
      filter          = "metric.type=\"logging.googleapis.com/user/${google_logging_metric.prices_missing_total.name}\" AND ${local.function_resource}"
      comparison      = "COMPARISON_GT"
      threshold_value = 0
      duration        = "0s"

      aggregations {
        alignment_period     = "300s"
        per_series_aligner   = "ALIGN_DELTA"
        cross_series_reducer = "REDUCE_SUM"
        group_by_fields      = ["metric.label.area"]
      }
    }
  }

  alert_strategy {
    auto_close = "43200s"
  }

  documentation {
    mime_type = "text/markdown"
    subject   = "hpsteer: no prices for tomorrow in $${metric.label.area}"
    content   = <<-EOT
      Price ingestion ran after 15:00 market time and still has no day-ahead prices for
      tomorrow in **$${metric.label.area}**. Without them tomorrow's plans cannot be made and
      devices fall back to their own control at midnight.

      1. Logs Explorer, the ingest_prices function at severity WARNING and above: "price source
         unavailable" (the source is down) or "price feed rejected" (its data).
      2. Check the ENTSO-E transparency platform and the fallback source for the area; a late
         auction (decoupling) publishes later: ingestion keeps asking until the window ends.
      3. Publish `{"areas": ["<area>"]}` on `price-ingest-requests` to ask again now.
      Runbook: docs/operations.md#no-prices-for-tomorrow
    EOT
  }
}

resource "google_monitoring_alert_policy" "function_errors" {
  display_name          = "hpsteer ${var.environment}: function error rate over 10 %"
  combiner              = "OR"
  severity              = "ERROR"
  notification_channels = local.alert_channels

  conditions {
    display_name = "5xx share of a function's requests over 0.1 for 10 min"
    condition_threshold {
      filter             = "metric.type=\"run.googleapis.com/request_count\" AND ${local.function_resource} AND metric.label.response_code_class=\"5xx\""
      denominator_filter = "metric.type=\"run.googleapis.com/request_count\" AND ${local.function_resource}"
      comparison         = "COMPARISON_GT"
      threshold_value    = 0.1
      duration           = "600s"

      aggregations {
        alignment_period     = "300s"
        per_series_aligner   = "ALIGN_DELTA"
        cross_series_reducer = "REDUCE_SUM"
        group_by_fields      = ["resource.label.service_name"]
      }

      denominator_aggregations {
        alignment_period     = "300s"
        per_series_aligner   = "ALIGN_DELTA"
        cross_series_reducer = "REDUCE_SUM"
        group_by_fields      = ["resource.label.service_name"]
      }
    }
  }

  alert_strategy {
    auto_close = "3600s"
  }

  documentation {
    mime_type = "text/markdown"
    subject   = "hpsteer: $${resource.label.service_name} failing"
    content   = <<-EOT
      More than one request in ten to the function **$${resource.label.service_name}** ended
      with a 5xx over 10 minutes. Dispatch answers 503 on purpose while a manufacturer is
      unavailable (Cloud Tasks retries): check the breaker alert first.

      1. Error Reporting groups the tracebacks by cause.
      2. Logs Explorer: `resource.labels.service_name="$${resource.label.service_name}"
         severity>=ERROR`; each line's trace opens the failing request in Cloud Trace.
      3. A failed deploy: roll back to the previous revision (Cloud Run revisions); a store or
         bus outage: see Google Cloud's status page.
      Runbook: docs/operations.md#function-error-rate
    EOT
  }
}
