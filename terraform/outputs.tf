output "topics" {
  description = "Pub/Sub topic ids by name."
  value       = { for name, topic in google_pubsub_topic.flow : name => topic.id }
}

output "bigquery_dataset" {
  description = "The analytics dataset (HPSTEER_BIGQUERY_DATASET)."
  value       = google_bigquery_dataset.analytics.dataset_id
}
