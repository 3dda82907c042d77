# Pub/Sub delivery to the functions: explicit push subscriptions, not Eventarc triggers.
#
# Why: an Eventarc Pub/Sub trigger creates and owns its subscription, and terraform cannot give
# that subscription a dead-letter topic or a retry policy (the subscription is not a terraform
# resource; editing it by hand is overwritten or drifts). A message that fails for good would be
# redelivered until it expires, 24 hours of wasted invocations, and then be lost without a trace.
# An explicit subscription per (topic -> entry point) pair of
# hpsteer.runtime.simulation.topology.TRIGGERS pushes to the function's URL with an OIDC token
# of a dedicated push account (run.invoker on exactly those functions), backs off
# exponentially, and after var.pubsub_max_delivery_attempts moves the message to
# <topic>-dead-letter, where a pull subscription keeps it 7 days for inspection and replay.
# functions-framework turns the push body ({"message": ..., "subscription": ...}) into the same
# messagePublished CloudEvent Eventarc would deliver (tests/functions/test_push_delivery.py),
# so the entry points are unchanged.

locals {
  # TRIGGERS of hpsteer.runtime.simulation.topology: subscription name => where it delivers.
  push_subscriptions = {
    "price-ingest-requests-ingest-prices"    = { topic = "price-ingest-requests", function = "ingest_prices" }
    "weather-ingest-requests-ingest-weather" = { topic = "weather-ingest-requests", function = "ingest_weather" }
    "spot-price-updates-optimize-trigger"    = { topic = "spot-price-updates", function = "optimize_trigger" }
    "weather-updates-optimize-trigger"       = { topic = "weather-updates", function = "optimize_trigger" }
    "replan-requests-optimize-trigger"       = { topic = "replan-requests", function = "optimize_trigger" }
    "optimize-requests-optimize-shard"       = { topic = "optimize-requests", function = "optimize_shard" }
    "reconcile-requests-reconcile"           = { topic = "reconcile-requests", function = "reconcile" }
    "device-telemetry-ingest-telemetry"      = { topic = "device-telemetry", function = "ingest_telemetry" }
    "command-sweep-requests-sweep-commands"  = { topic = "command-sweep-requests", function = "sweep_commands" }
  }

  # Every topic a function is pushed from has a dead-letter topic.
  dead_letter_sources = toset([for sub in local.push_subscriptions : sub.topic])

  # The functions Pub/Sub pushes to: the push account may invoke these and no others.
  pushed_functions = toset([for sub in local.push_subscriptions : sub.function])

  pubsub_service_agent = "serviceAccount:service-${data.google_project.this.number}@gcp-sa-pubsub.iam.gserviceaccount.com"
}

resource "google_pubsub_topic" "dead_letter" {
  # checkov:skip=CKV_GCP_83: Google-managed encryption at rest, as for the data-flow topics; no customer-managed key is required for these messages
  for_each                   = local.dead_letter_sources
  name                       = "${each.value}-dead-letter"
  labels                     = local.labels
  message_retention_duration = "604800s"
  depends_on                 = [google_project_service.enabled]
}

resource "google_pubsub_subscription" "push" {
  for_each = local.push_subscriptions
  name     = each.key
  topic    = google_pubsub_topic.flow[each.value.topic].id
  labels   = local.labels

  # A delivery may run as long as the function may; Pub/Sub's ceiling is 600 s.
  ack_deadline_seconds       = min(local.functions[each.value.function].timeout, 600)
  message_retention_duration = "86400s"

  push_config {
    push_endpoint = google_cloudfunctions2_function.fn[each.value.function].url
    oidc_token {
      service_account_email = google_service_account.pubsub_push.email
      audience              = google_cloudfunctions2_function.fn[each.value.function].url
    }
  }

  retry_policy {
    minimum_backoff = "10s"
    maximum_backoff = "600s"
  }

  dead_letter_policy {
    dead_letter_topic     = google_pubsub_topic.dead_letter[each.value.topic].id
    max_delivery_attempts = var.pubsub_max_delivery_attempts
  }

  expiration_policy {
    ttl = "" # never expires for inactivity (a quiet topic is normal)
  }
}

# Dead letters are kept and inspectable: pull them (gcloud pubsub subscriptions pull) to see
# what failed, and republish to the source topic once fixed.
resource "google_pubsub_subscription" "dead_letter" {
  for_each                   = local.dead_letter_sources
  name                       = "${each.value}-dead-letter-inspect"
  topic                      = google_pubsub_topic.dead_letter[each.value].id
  labels                     = local.labels
  ack_deadline_seconds       = 60
  message_retention_duration = "604800s"
  retain_acked_messages      = true

  expiration_policy {
    ttl = ""
  }
}

# The Pub/Sub service agent forwards dead letters: it publishes on the dead-letter topics and
# acknowledges the forwarded message on the source subscription.
resource "google_pubsub_topic_iam_member" "dead_letter_publisher" {
  for_each = local.dead_letter_sources
  topic    = google_pubsub_topic.dead_letter[each.value].id
  role     = "roles/pubsub.publisher"
  member   = local.pubsub_service_agent
}

resource "google_pubsub_subscription_iam_member" "dead_letter_subscriber" {
  for_each     = local.push_subscriptions
  subscription = google_pubsub_subscription.push[each.key].id
  role         = "roles/pubsub.subscriber"
  member       = local.pubsub_service_agent
}

# The push account may invoke the Pub/Sub-triggered functions only (gen2: run.invoker on the
# function's Cloud Run service).
resource "google_cloud_run_v2_service_iam_member" "pubsub_push_invoker" {
  for_each = local.pushed_functions
  project  = var.project
  location = var.region
  name     = google_cloudfunctions2_function.fn[each.value].service_config[0].service
  role     = "roles/run.invoker"
  member   = "serviceAccount:${google_service_account.pubsub_push.email}"
}

# Pub/Sub mints the push account's OIDC tokens.
resource "google_service_account_iam_member" "pubsub_push_token_creator" {
  service_account_id = google_service_account.pubsub_push.name
  role               = "roles/iam.serviceAccountTokenCreator"
  member             = local.pubsub_service_agent
}
