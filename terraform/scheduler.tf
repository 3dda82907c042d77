# Cloud Scheduler jobs: each publishes a fixed body on the topic its function is pushed from. A
# Pub/Sub target cannot put the tick's time in the body, so no body carries scheduled_at: the
# handler takes the minute the message was published in (hpsteer.domain.messages.schedule_tick),
# and duplicates of one tick fall in the same minute. The wiring test decodes every body with
# the function's own model.

locals {
  scheduler_jobs = {
    # Day-ahead prices: the auction's results appear around 12:45-13:00 CET, and providers
    # publish them over the following hour or two (later on a delayed auction). Ask every half
    # hour from 13:15 to 15:45 Berlin time; an ingest that finds the day stored and unchanged
    # does nothing, so the later asks cost one read each.
    "ingest-prices" = {
      topic       = "price-ingest-requests"
      schedule    = "15,45 13-15 * * *"
      time_zone   = "Europe/Berlin"
      description = "Day-ahead prices of var.price_areas for the next delivery day, in the publication window."
      body        = { schema_version = 1, areas = var.price_areas }
    }
    # Forecasts every 3 hours for every location with a steered device (empty location_ids),
    # a few minutes past the hour, away from the top-of-the-hour crowd at Open-Meteo.
    "ingest-weather" = {
      topic       = "weather-ingest-requests"
      schedule    = "7 */3 * * *"
      time_zone   = "Etc/UTC"
      description = "Weather forecasts for every location with a steered device."
      body        = { schema_version = 1 }
    }
    # Reconciliation of every device, one page per message (the function publishes the next).
    "reconcile" = {
      topic       = "reconcile-requests"
      schedule    = "*/${var.reconcile_interval_minutes} * * * *"
      time_zone   = "Etc/UTC"
      description = "Reconcile every device with its plan."
      body        = { schema_version = 1 }
    }
    # Release interrupted outboxes, re-enqueue commands whose tasks were lost.
    "command-sweep" = {
      topic       = "command-sweep-requests"
      schedule    = "*/${var.command_sweep_interval_minutes} * * * *"
      time_zone   = "Etc/UTC"
      description = "Sweep plan outboxes and stuck commands."
      body        = { schema_version = 1 }
    }
  }
}

resource "google_cloud_scheduler_job" "tick" {
  for_each    = local.scheduler_jobs
  name        = "hpsteer-${var.environment}-${each.key}"
  region      = var.region
  description = each.value.description
  schedule    = each.value.schedule
  time_zone   = each.value.time_zone

  # A failed publish is tried again; a tick lost for good is covered by the next one.
  retry_config {
    retry_count          = 3
    min_backoff_duration = "10s"
    max_backoff_duration = "60s"
  }

  pubsub_target {
    topic_name = google_pubsub_topic.flow[each.value.topic].id
    data       = base64encode(jsonencode(each.value.body))
  }

  depends_on = [google_project_service.enabled]
}
