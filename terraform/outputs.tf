output "function_urls" {
  description = "Each function's URL by entry point (the gen2 cloudfunctions.net URL)."
  value = merge(
    { for key, fn in google_cloudfunctions2_function.fn : key => fn.url },
    { telemetry_webhook = google_cloudfunctions2_function.telemetry_webhook.url },
  )
}

output "telemetry_webhook_url" {
  description = "Where manufacturers send telemetry webhooks (API Gateway, POST)."
  value       = "https://${google_api_gateway_gateway.telemetry.default_hostname}/telemetry"
}

output "topics" {
  description = "Pub/Sub topic ids by name."
  value       = { for name, topic in google_pubsub_topic.flow : name => topic.id }
}

output "dead_letter_topics" {
  description = "Dead-letter topic ids by source topic; pull <topic>-dead-letter-inspect to read them."
  value       = { for name, topic in google_pubsub_topic.dead_letter : name => topic.id }
}

output "task_queues" {
  description = "Cloud Tasks queue ids by name."
  value       = { for name, queue in google_cloud_tasks_queue.command : name => queue.id }
}

output "tasks_invoker_service_account" {
  description = "The account whose OIDC token Cloud Tasks attaches (HPSTEER_TASKS_SERVICE_ACCOUNT)."
  value       = google_service_account.tasks_invoker.email
}

output "function_service_accounts" {
  description = "Each function folder's service account email."
  value       = { for folder, account in google_service_account.function : folder => account.email }
}

output "bigquery_dataset" {
  description = "The analytics dataset (HPSTEER_BIGQUERY_DATASET)."
  value       = google_bigquery_dataset.analytics.dataset_id
}
