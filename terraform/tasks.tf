# Cloud Tasks queues: one per manufacturer, so one manufacturer's outage or throttling never holds
# up another's, the verification queue, and the rechecks of devices a reconcile run could not read
# (hpsteer.services.recheck_tasks.RECHECK_QUEUE). Names, retry configs and rates are
# hpsteer.services.command_tasks' (dispatch_queue(m) for every m of
# hpsteer.adapters.registry.DEFAULT_FACTORIES, and VERIFY_QUEUE): the dispatch handler reads the
# same retry config to know its last attempt, so the wiring test compares these field by field.
# max_retry_duration 0s: unlimited (the code's None); max_attempts bounds the retries.

locals {
  task_queues = {
    # DISPATCH_RETRY: attempts 10, 20, 40, 80, 160, 240, 300 s apart (about 14 minutes).
    "dispatch-viessmann" = {
      max_dispatches_per_second = 10
      max_concurrent_dispatches = 20
      max_attempts              = 8
      min_backoff               = "10s"
      max_backoff               = "300s"
      max_doublings             = 3
      max_retry_duration        = "0s"
    }
    "dispatch-nibe-myuplink" = {
      max_dispatches_per_second = 10
      max_concurrent_dispatches = 20
      max_attempts              = 8
      min_backoff               = "10s"
      max_backoff               = "300s"
      max_doublings             = 3
      max_retry_duration        = "0s"
    }
    "dispatch-daikin-onecta" = {
      max_dispatches_per_second = 5
      max_concurrent_dispatches = 10
      max_attempts              = 8
      min_backoff               = "10s"
      max_backoff               = "300s"
      max_doublings             = 3
      max_retry_duration        = "0s"
    }
    # VERIFY_RETRY.
    "verify-commands" = {
      max_dispatches_per_second = 20
      max_concurrent_dispatches = 40
      max_attempts              = 5
      min_backoff               = "30s"
      max_backoff               = "600s"
      max_doublings             = 3
      max_retry_duration        = "0s"
    }
    # hpsteer.services.recheck_tasks.RECHECK_QUEUE: attempts 15 and 30 s apart.
    "recheck-devices" = {
      max_dispatches_per_second = 20
      max_concurrent_dispatches = 20
      max_attempts              = 3
      min_backoff               = "15s"
      max_backoff               = "60s"
      max_doublings             = 2
      max_retry_duration        = "0s"
    }
  }
}

resource "google_cloud_tasks_queue" "command" {
  for_each = local.task_queues
  name     = each.key
  location = var.region

  rate_limits {
    max_dispatches_per_second = each.value.max_dispatches_per_second
    max_concurrent_dispatches = each.value.max_concurrent_dispatches
  }

  retry_config {
    max_attempts       = each.value.max_attempts
    min_backoff        = each.value.min_backoff
    max_backoff        = each.value.max_backoff
    max_doublings      = each.value.max_doublings
    max_retry_duration = each.value.max_retry_duration
  }

  # Every attempt logged: a command's delivery history is part of its audit trail.
  stackdriver_logging_config {
    sampling_ratio = 1.0
  }

  depends_on = [google_project_service.enabled]
}
