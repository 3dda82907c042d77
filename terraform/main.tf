# The foundation every function stands on: the APIs, the Firestore database, the topics of the
# data flow (DESIGN.md) and the analytics dataset. Functions, triggers, queues, scheduler jobs and
# IAM arrive with the issues that build each function.

locals {
  labels = {
    app         = "hpsteer"
    environment = var.environment
  }

  services = [
    "cloudfunctions.googleapis.com",
    "run.googleapis.com",
    "eventarc.googleapis.com",
    "pubsub.googleapis.com",
    "firestore.googleapis.com",
    "cloudtasks.googleapis.com",
    "cloudscheduler.googleapis.com",
    "secretmanager.googleapis.com",
    "bigquery.googleapis.com",
    "cloudbuild.googleapis.com",
    "artifactregistry.googleapis.com",
    "cloudtrace.googleapis.com",
    "logging.googleapis.com",
    "monitoring.googleapis.com",
  ]

  # One topic per arrow of the data flow; names match hpsteer.domain.messages.Topic.
  topics = [
    "price-ingest-requests",
    "spot-price-updates",
    "weather-ingest-requests",
    "weather-updates",
    "optimize-requests",
    "replan-requests",
    "reconcile-requests",
    "device-telemetry",
    "command-events",
    "alerts",
  ]
}

resource "google_project_service" "enabled" {
  for_each           = toset(local.services)
  service            = each.value
  disable_on_destroy = false
}

resource "google_firestore_database" "main" {
  name                    = "(default)"
  location_id             = var.region
  type                    = "FIRESTORE_NATIVE"
  concurrency_mode        = "OPTIMISTIC"
  delete_protection_state = var.environment == "prod" ? "DELETE_PROTECTION_ENABLED" : "DELETE_PROTECTION_DISABLED"
  depends_on              = [google_project_service.enabled]
}

resource "google_pubsub_topic" "flow" {
  for_each                   = toset(local.topics)
  name                       = each.value
  labels                     = local.labels
  message_retention_duration = "86400s"
  depends_on                 = [google_project_service.enabled]
}

resource "google_bigquery_dataset" "analytics" {
  dataset_id  = "hpsteer_${var.environment}"
  location    = "EU"
  description = "hpsteer history: prices, weather, telemetry, command events, plans."
  labels      = local.labels
  depends_on  = [google_project_service.enabled]
}
