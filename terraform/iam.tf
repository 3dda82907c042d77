# Service accounts and grants: one account per function folder with only the roles its code
# needs, a dedicated invoker account for Cloud Tasks' OIDC tokens, a push account for Pub/Sub
# (pubsub.tf grants it) and the API Gateway's account for the telemetry webhook.
#
# What each folder publishes, enqueues and deletes is derived from the code by
# tests/infra/code_usage.py, and the wiring test holds the locals below to it exactly: a grant
# is added here when the code starts using a topic or queue, and removed when it stops.
# secrets.tf grants secretAccessor, bigquery.tf dataEditor on the dataset.

locals {
  # Topics each folder's code publishes on (roles/pubsub.publisher on those topics only).
  function_publishes = {
    api              = ["replan-requests"]
    dispatch         = ["alerts"]
    ingest_prices    = ["spot-price-updates"]
    ingest_telemetry = ["device-telemetry", "replan-requests"]
    ingest_weather   = ["weather-updates"]
    optimize         = ["optimize-requests"]
    reconcile        = ["alerts", "device-telemetry", "reconcile-requests", "replan-requests"]
  }

  # Folders whose code creates Cloud Tasks: enqueuer on the queues, actAs on the invoker account
  # (a task carries that account's OIDC token). The API enqueues the hand-back command.
  task_enqueuers = ["api", "dispatch", "optimize", "reconcile"]

  # Folders whose code deletes a superseded command's task (outbox.supersede; the API when
  # steering stops).
  task_deleters = ["api", "dispatch", "optimize"]

  # Project-level roles by folder, from the clients the code imports: Firestore (all) and the
  # Cloud Trace exporter (all: entrypoint configures it). Logs go to stdout, which Cloud Logging
  # collects without a role; no metrics exporter exists yet (no metricWriter). BigQuery jobs
  # where the code queries analytics (optimize reads telemetry_history to identify houses).
  function_project_roles = {
    api              = ["roles/cloudtrace.agent", "roles/datastore.user"]
    dispatch         = ["roles/cloudtrace.agent", "roles/datastore.user"]
    ingest_prices    = ["roles/cloudtrace.agent", "roles/datastore.user"]
    ingest_telemetry = ["roles/cloudtrace.agent", "roles/datastore.user"]
    ingest_weather   = ["roles/cloudtrace.agent", "roles/datastore.user"]
    optimize         = ["roles/bigquery.jobUser", "roles/cloudtrace.agent", "roles/datastore.user"]
    reconcile        = ["roles/cloudtrace.agent", "roles/datastore.user"]
  }

  publisher_grants = merge([
    for folder, topics in local.function_publishes : {
      for topic in topics : "${folder}/${topic}" => { folder = folder, topic = topic }
    }
  ]...)

  enqueuer_grants = merge([
    for folder in local.task_enqueuers : {
      for queue in keys(local.task_queues) : "${folder}/${queue}" => { folder = folder, queue = queue }
    }
  ]...)

  deleter_grants = merge([
    for folder in local.task_deleters : {
      for queue in keys(local.task_queues) : "${folder}/${queue}" => { folder = folder, queue = queue }
    }
  ]...)

  project_grants = merge([
    for folder, roles in local.function_project_roles : {
      for role in roles : "${folder}/${role}" => { folder = folder, role = role }
    }
  ]...)
}

# One account per folder: the keys are the folder names (secrets.tf and bigquery.tf grant to
# google_service_account.function["<folder>"]).
resource "google_service_account" "function" {
  for_each     = toset(["api", "dispatch", "ingest_prices", "ingest_telemetry", "ingest_weather", "optimize", "reconcile"])
  account_id   = "hps-${var.environment}-${replace(each.value, "_", "-")}"
  display_name = "hpsteer ${each.value} function (${var.environment})"
  description  = "Runs functions/${each.value}; roles: iam.tf, secrets.tf, bigquery.tf."
}

resource "google_service_account" "tasks_invoker" {
  account_id   = "hps-${var.environment}-tasks-invoker"
  display_name = "hpsteer Cloud Tasks invoker (${var.environment})"
  description  = "Cloud Tasks attaches its OIDC token to its calls: commands, their verifications, device rechecks (HPSTEER_TASKS_SERVICE_ACCOUNT); it may invoke the dispatch and recheck functions and nothing else."
}

resource "google_service_account" "pubsub_push" {
  account_id   = "hps-${var.environment}-pubsub-push"
  display_name = "hpsteer Pub/Sub push (${var.environment})"
  description  = "Pub/Sub push subscriptions attach its OIDC token; it may invoke the Pub/Sub-triggered functions only."
}

resource "google_service_account" "webhook_gateway" {
  account_id   = "hps-${var.environment}-webhook-gw"
  display_name = "hpsteer telemetry webhook gateway (${var.environment})"
  description  = "API Gateway calls telemetry_webhook with its token; it may invoke that function only."
}

resource "google_project_iam_member" "function" {
  for_each = local.project_grants
  project  = var.project
  role     = each.value.role
  member   = "serviceAccount:${google_service_account.function[each.value.folder].email}"
}

resource "google_pubsub_topic_iam_member" "function_publisher" {
  for_each = local.publisher_grants
  topic    = google_pubsub_topic.flow[each.value.topic].id
  role     = "roles/pubsub.publisher"
  member   = "serviceAccount:${google_service_account.function[each.value.folder].email}"
}

resource "google_cloud_tasks_queue_iam_member" "function_enqueuer" {
  for_each = local.enqueuer_grants
  name     = google_cloud_tasks_queue.command[each.value.queue].id
  location = var.region
  role     = "roles/cloudtasks.enqueuer"
  member   = "serviceAccount:${google_service_account.function[each.value.folder].email}"
}

resource "google_cloud_tasks_queue_iam_member" "function_task_deleter" {
  for_each = local.deleter_grants
  name     = google_cloud_tasks_queue.command[each.value.queue].id
  location = var.region
  role     = "roles/cloudtasks.taskDeleter"
  member   = "serviceAccount:${google_service_account.function[each.value.folder].email}"
}

# A task that carries the invoker's OIDC token may only be created by who may act as it.
resource "google_service_account_iam_member" "enqueuer_acts_as_invoker" {
  for_each           = toset(local.task_enqueuers)
  service_account_id = google_service_account.tasks_invoker.name
  role               = "roles/iam.serviceAccountUser"
  member             = "serviceAccount:${google_service_account.function[each.value].email}"
}

# Cloud Tasks' invoker may call dispatch (both its routes: commands and /verify) and recheck,
# nothing else.
resource "google_cloud_run_v2_service_iam_member" "tasks_invoker" {
  for_each = toset(["dispatch", "recheck"])
  project  = var.project
  location = var.region
  name     = google_cloudfunctions2_function.fn[each.value].service_config[0].service
  role     = "roles/run.invoker"
  member   = "serviceAccount:${google_service_account.tasks_invoker.email}"
}

# The gateway may call the telemetry webhook, nothing else.
resource "google_cloud_run_v2_service_iam_member" "webhook_gateway" {
  project  = var.project
  location = var.region
  name     = google_cloudfunctions2_function.telemetry_webhook.service_config[0].service
  role     = "roles/run.invoker"
  member   = "serviceAccount:${google_service_account.webhook_gateway.email}"
}

# The operator API: the members of var.api_invokers may call it (people and their tools, each
# with a Google ID token; never allUsers: the variable's validation refuses it). Inside, the
# caller's email needs a role in var.api_roles.
resource "google_cloud_run_v2_service_iam_member" "api_invoker" {
  for_each = toset(var.api_invokers)
  project  = var.project
  location = var.region
  name     = google_cloudfunctions2_function.api.service_config[0].service
  role     = "roles/run.invoker"
  member   = each.value
}
