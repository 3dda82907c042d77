# The foundation every function stands on: the APIs, the Firestore database, the topics of the
# data flow (DESIGN.md) and the analytics dataset. The functions are in functions.tf, their
# Pub/Sub delivery in pubsub.tf, Cloud Tasks queues in tasks.tf, Cloud Scheduler jobs in
# scheduler.tf and the service accounts and grants in iam.tf.

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
    "storage.googleapis.com",
    "iam.googleapis.com",
    # API Gateway in front of the telemetry webhook (functions.tf).
    "apigateway.googleapis.com",
    "servicemanagement.googleapis.com",
    "servicecontrol.googleapis.com",
  ]

  # One topic per arrow of the data flow: exactly hpsteer.domain.messages.Topic (the wiring test
  # compares them). command-events is DESIGN.md's lifecycle stream for downstream consumers; no
  # function publishes on it yet.
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
    "command-sweep-requests",
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
  # checkov:skip=CKV_GCP_83: Google-managed encryption at rest; the messages carry ids and set-points, no requirement calls for a customer-managed key and its rotation
  for_each                   = toset(local.topics)
  name                       = each.value
  labels                     = local.labels
  message_retention_duration = "86400s"
  depends_on                 = [google_project_service.enabled]
}

resource "google_bigquery_dataset" "analytics" {
  # checkov:skip=CKV_GCP_81: Google-managed encryption at rest; no requirement calls for a customer-managed key for this history
  dataset_id  = "hpsteer_${var.environment}"
  location    = "EU"
  description = "hpsteer history: prices, weather, telemetry, command events, plans."
  labels      = local.labels
  depends_on  = [google_project_service.enabled]
}
