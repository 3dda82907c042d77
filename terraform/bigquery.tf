# The analytics tables: one per TableSchema the code declares (hpsteer.services.*), in the dataset
# of main.tf.
#
# The columns come from terraform/schemas/<table>.json, generated from those TableSchema
# constants (`python -m deploy.bigquery_schemas`; tests/infra/test_terraform_data.py fails when a
# file is stale). Partitioning and clustering below repeat each TableSchema's partition_by and
# cluster_by (the same test compares them): the functions' ensure_table creates the table the
# same way when it is missing and, on a table terraform made, only adds new nullable columns.
#
# Every table is partitioned by day on its time column and clustered by device, location or area,
# so a question about one device over a week reads a week of that device's blocks.
# require_partition_filter is set on the tables that grow with the fleet (a query without a date
# range would scan years of every device). The code appends (streaming inserts) and queries one
# table: optimize reads telemetry_history to identify each house, one query per shard for its
# devices over identify_history_days (a partition filter on observed_at, clustered by device).
# spot_prices (96 rows per area and day) and cost_savings (one row per plan and day) stay cheap
# to scan whole.

locals {
  # History cannot be rebuilt: prod refuses to destroy a table; dev and staging may be torn down.
  bigquery_deletion_protection = var.environment == "prod"

  bigquery_tables = {
    spot_prices = {
      partition_field          = "slot_start_at"
      clustering               = ["area"]
      require_partition_filter = false
      description              = "Day-ahead prices per slot, every stored version."
    }
    weather_forecasts = {
      partition_field          = "valid_at"
      clustering               = ["location_id"]
      require_partition_filter = true
      description              = "Every stored weather forecast, one row per location, issue time and instant."
    }
    telemetry_history = {
      partition_field          = "observed_at"
      clustering               = ["device_id"]
      require_partition_filter = true
      description              = "Every telemetry sample ingested, late and out-of-order ones included."
    }
    command_events = {
      partition_field          = "occurred_at"
      clustering               = ["device_id", "command_id"]
      require_partition_filter = true
      description              = "Every command lifecycle event, as stored in Firestore (one row per event)."
    }
    # Every change made through the operator API (hpsteer.services.operator.audit). Small
    # (people's actions), read whole by an auditor: no partition filter required.
    audit_events = {
      partition_field          = "occurred_at"
      clustering               = ["target_type", "target_id"]
      require_partition_filter = false
      description              = "Every change made through the operator API: who, when, what, before and after."
    }
    plans = {
      partition_field          = "start_at"
      clustering               = ["device_id"]
      require_partition_filter = true
      description              = "One row per plan written (optimization runs)."
    }
    cost_savings = {
      partition_field          = "market_date"
      clustering               = ["device_id"]
      require_partition_filter = false
      description              = "Planned vs own-control energy cost per plan and local day, on the same forecast."
    }
  }
}

resource "google_bigquery_table" "history" {
  # checkov:skip=CKV_GCP_80: Google-managed encryption; a customer-managed key (Cloud KMS, its rotation and IAM) is not part of this deployment, and the data (prices, telemetry of heat pumps, command events) is not of a class that requires one.
  for_each = local.bigquery_tables

  dataset_id               = google_bigquery_dataset.analytics.dataset_id
  table_id                 = each.key
  description              = each.value.description
  schema                   = file("${path.module}/schemas/${each.key}.json")
  clustering               = each.value.clustering
  require_partition_filter = each.value.require_partition_filter
  deletion_protection      = local.bigquery_deletion_protection
  labels                   = local.labels

  time_partitioning {
    type  = "DAY"
    field = each.value.partition_field
  }
}

# Every function appends rows (command events from dispatch, optimize, reconcile and the API;
# prices, weather, telemetry and plans from their own functions, telemetry also from reconcile: a
# page's polls not worth storing, in one append; audit events from the API), so each function's
# account edits the dataset's tables (streaming inserts need bigquery.tables.updateData, which
# dataEditor holds). Only optimize runs queries: reading rows is bigquery.tables.getData, which
# dataEditor holds too, and the query job needs roles/bigquery.jobUser in the project (iam.tf).
# tests/infra/test_terraform_data.py derives the list from each folder's code.
locals {
  bigquery_writers = ["api", "dispatch", "ingest_prices", "ingest_telemetry", "ingest_weather", "optimize", "reconcile"]
}

resource "google_bigquery_dataset_iam_member" "writer" {
  for_each   = toset(local.bigquery_writers)
  dataset_id = google_bigquery_dataset.analytics.dataset_id
  role       = "roles/bigquery.dataEditor"
  member     = "serviceAccount:${google_service_account.function[each.value].email}"
}

output "bigquery_tables" {
  description = "The analytics tables' ids by name."
  value       = { for name, table in google_bigquery_table.history : name => table.id }
}
