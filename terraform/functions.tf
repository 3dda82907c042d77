# The Cloud Functions (2nd gen): one function per entry point of every folder under functions/.
#
# A folder's staged source (build/stage/<folder>: main.py, the hpsteer package, requirements.txt;
# `make stage`) is zipped and uploaded once, named by its MD5, so a change to the code gives a new
# object and redeploys every function of that folder; several entry points of one folder
# (dispatch: dispatch, sweep_commands; optimize: optimize_trigger, optimize_shard;
# ingest_telemetry: telemetry_webhook, ingest_telemetry) are separate functions on the same
# object, each sized for its own work. One function can serve more than one route: commands'
# verifications are the dispatch function's /verify route (functions/dispatch/main.py routes by
# path), not a function of their own, so the two share dispatch's instances.
#
# Nothing here is publicly invokable: Pub/Sub pushes with the push account's OIDC token
# (pubsub.tf), Cloud Tasks calls dispatch (both its routes) and recheck with the invoker account's token
# (iam.tf), and the manufacturers' telemetry webhook goes through API Gateway, whose own account
# is the only invoker of telemetry_webhook (the function checks the Standard Webhooks signature).

locals {
  # The gen2 URL the code also uses as the OIDC audience of its Cloud Tasks
  # (HPSTEER_DISPATCH_URL / HPSTEER_VERIFY_URL; the function names are the keys below with
  # dashes): the deterministic cloudfunctions.net form, built here because the functions' own
  # settings carry it (their url attribute would be a cycle). Verification is the dispatch
  # function's /verify route: its tasks go to the dispatch function's URL + "/verify", with
  # the dispatch function's own URL as their audience (what Cloud Run admits), and
  # functions/dispatch/main.py routes the path (/verify, or /dispatch/verify should the
  # platform pass the function's name on) to the verify handler.
  function_url_prefix = "https://${var.region}-${var.project}.cloudfunctions.net"
  dispatch_url        = "${local.function_url_prefix}/dispatch"
  verify_url          = "${local.dispatch_url}/verify"
  # The recheck function (functions/reconcile/main.py, entry point recheck): its own URL, the
  # audience of its tasks' tokens (HPSTEER_RECHECK_URL).
  recheck_url = "${local.function_url_prefix}/recheck"
  # The operator API's URL, the audience its callers' ID tokens carry (HPSTEER_API_URL).
  api_url = "${local.function_url_prefix}/api"

  # Every function's settings (hpsteer.config.Settings, prefix HPSTEER_).
  common_env = {
    HPSTEER_BACKEND            = "gcp"
    HPSTEER_PROJECT            = var.project
    HPSTEER_REGION             = var.region
    HPSTEER_ENVIRONMENT        = var.environment
    HPSTEER_FIRESTORE_DATABASE = google_firestore_database.main.name
    HPSTEER_BIGQUERY_DATASET   = google_bigquery_dataset.analytics.dataset_id
    HPSTEER_BIGQUERY_LOCATION  = google_bigquery_dataset.analytics.location
    HPSTEER_LOG_LEVEL          = var.log_level
    HPSTEER_TRACE_SAMPLE_RATE  = tostring(var.trace_sample_rate)
  }

  # One entry per entry point reached from inside Google Cloud (Cloud Tasks, Pub/Sub push):
  # ingress internal only. The telemetry webhook, reached from the internet, is its own resource
  # below. Sizing: memory and CPU per instance, timeout (for Pub/Sub-pushed functions also the
  # subscription's ack deadline), max instances, requests per instance.
  functions = {
    # HTTP from Cloud Tasks, two routes: the per-manufacturer queues' commands (its own URL)
    # and verify-commands' verifications (/verify: one device read each). Both I/O bound (a
    # Firestore transaction or two and one manufacturer API call, a few ms of CPU a request):
    # nearly all of a request's time is spent waiting on the manufacturer. 16 requests share an
    # instance, its Firestore client (one gRPC channel, thread-safe) and its adapters' HTTP pools
    # (256 connections per manufacturer): the two routes' traffic, about 5.5 requests in flight
    # for 100,000 devices (benchmarks/cloud_cost.py), then fits one instance instead of keeping
    # one busy per route (64 -> 35 vCPU-s per device-month there), and at a few ms of CPU each,
    # 16 at once keep the one vCPU far below the autoscaler's 60 % target, so no transaction on
    # a device's command documents waits for the CPU. Timeout 60 s = both tasks' dispatch
    # deadline (command_tasks: dispatch_deadline), so Cloud Tasks and the function give up
    # together. 20 x 16 = 320 > all four queues' summed max_concurrent_dispatches (50 for the
    # dispatch queues + 40 for verify-commands), as 20 x 8 each was for the two functions.
    dispatch = {
      folder        = "dispatch"
      entry_point   = "dispatch"
      memory        = "512Mi"
      cpu           = "1"
      timeout       = 60
      max_instances = var.dispatch_max_instances
      concurrency   = 16
      env = {
        HPSTEER_DISPATCH_URL          = local.dispatch_url
        HPSTEER_VERIFY_URL            = local.verify_url
        HPSTEER_TASKS_SERVICE_ACCOUNT = google_service_account.tasks_invoker.email
        HPSTEER_TASKS_LOCATION        = var.region
      }
    }
    # Pub/Sub command-sweep-requests every command_sweep_interval_minutes: pages through
    # the plans whose release is due and stuck commands. One sweep at a time (max 1 instance, 1
    # request) so two ticks never race over the same commands; 300 s for a large fleet's pages.
    # The due releases (about 13 per device a day in the simulated week: plans' changes coming
    # within reach, replaced plans' releases dropped) are settled 16 at a time
    # (HPSTEER_SWEEP_WORKERS): each waits on a few round trips, one after another.
    sweep_commands = {
      folder        = "dispatch"
      entry_point   = "sweep_commands"
      memory        = "512Mi"
      cpu           = "1"
      timeout       = 300
      max_instances = 1
      concurrency   = 1
      env = {
        HPSTEER_DISPATCH_URL          = local.dispatch_url
        HPSTEER_VERIFY_URL            = local.verify_url
        HPSTEER_TASKS_SERVICE_ACCOUNT = google_service_account.tasks_invoker.email
        HPSTEER_TASKS_LOCATION        = var.region
        HPSTEER_SWEEP_WORKERS         = "16"
      }
    }
    # Pub/Sub price-ingest-requests, a few times a day: several provider calls with their own
    # retries and fallbacks, then validation; 300 s covers the slowest chain. Rare, so 2
    # instances of 1 request each.
    ingest_prices = {
      folder        = "ingest_prices"
      entry_point   = "ingest_prices"
      memory        = "512Mi"
      cpu           = "1"
      timeout       = 300
      max_instances = 2
      concurrency   = 1
      env           = {}
    }
    # Pub/Sub weather-ingest-requests every 3 hours: one Open-Meteo call per location, in
    # sequence; 300 s, 1 request per instance, few instances.
    ingest_weather = {
      folder        = "ingest_weather"
      entry_point   = "ingest_weather"
      memory        = "512Mi"
      cpu           = "1"
      timeout       = 300
      max_instances = 3
      concurrency   = 1
      env           = {}
    }
    # Pub/Sub spot-price-updates, weather-updates, replan-requests: reads device pages and
    # publishes shards, no solver imported (cold start stays small). I/O bound: 4 per instance.
    optimize_trigger = {
      folder        = "optimize"
      entry_point   = "optimize_trigger"
      memory        = "512Mi"
      cpu           = "1"
      timeout       = 300
      max_instances = 5
      concurrency   = 4
      env = {
        HPSTEER_DISPATCH_URL          = local.dispatch_url
        HPSTEER_VERIFY_URL            = local.verify_url
        HPSTEER_TASKS_SERVICE_ACCOUNT = google_service_account.tasks_invoker.email
        HPSTEER_TASKS_LOCATION        = var.region
      }
    }
    # Pub/Sub optimize-requests: solves a MILP (OR-Tools) per device of a shard (<= 100), on a
    # thread pool of os.cpu_count() workers. CPU bound: 1 vCPU and 2 GiB (OR-Tools, numpy and
    # the model in memory), ONE shard per instance so solves never share the CPU; 540 s for a
    # full shard (about 15 s of CPU). One vCPU, not two: the CPU work costs the same vCPU-seconds
    # either way, but every second the shard waits on its round trips is billed per vCPU
    # (benchmarks/cloud_cost.py: 51 -> 38 vCPU-s per device-month); a shard takes a few seconds
    # longer. Scale comes from instances (optimize_max_instances), not concurrency. Before
    # planning, each house is identified from HPSTEER_IDENTIFY_HISTORY_DAYS of telemetry_history
    # (one BigQuery query per shard, one Firestore query per location for the forecasts issued
    # over those days; about 0.1 s of numpy per device for 7 days).
    # HPSTEER_IDENTIFY_HOUSES = "false" plans every house on its registered parameters instead.
    # A shard's store, Cloud Tasks and BigQuery round trips (reading each device's inputs,
    # writing its plan, making it current, releasing its commands: about 2 s a device-day one
    # after another) run on 16 threads (HPSTEER_OPTIMIZE_IO_WORKERS), each device's solve going
    # to the solver pool, so the instance waits on its CPUs, not on those round trips.
    optimize_shard = {
      folder        = "optimize"
      entry_point   = "optimize_shard"
      memory        = "2Gi"
      cpu           = "1"
      timeout       = 540
      max_instances = var.optimize_max_instances
      concurrency   = 1
      env = {
        HPSTEER_DISPATCH_URL          = local.dispatch_url
        HPSTEER_VERIFY_URL            = local.verify_url
        HPSTEER_TASKS_SERVICE_ACCOUNT = google_service_account.tasks_invoker.email
        HPSTEER_TASKS_LOCATION        = var.region
        HPSTEER_IDENTIFY_HOUSES       = "true"
        HPSTEER_IDENTIFY_HISTORY_DAYS = "7"
        HPSTEER_OPTIMIZE_IO_WORKERS   = "16"
      }
    }
    # Pub/Sub reconcile-requests every reconcile_interval_minutes, one page of devices per
    # message (it publishes the next page): reads state through the adapters, waiting on the
    # manufacturers almost all the time, so a page's devices are reconciled on 16 threads
    # (HPSTEER_RECONCILE_WORKERS) and an instance serves 16 pages: at most 256 calls in flight,
    # within the adapters' 256 connections per client (one client per manufacturer,
    # hpsteer.adapters.http.HTTP_MAX_CONNECTIONS), so no thread waits for a connection.
    # Every page of a run is published at once (500 for 100,000 devices), so instances run
    # full. A page's CPU is about 0.75 ms a device (150 ms for 200, measured by
    # benchmarks/cloud_cost.py) over the ~4 s its polls take: 16 pages keep the one vCPU (the
    # least Cloud Run allows above one request at a time) about 60 % busy, the autoscaler's
    # own CPU target. Billed instance time is per instance, not per request, so 16 pages cost
    # a quarter of what 4 did (cloud_cost: 55 -> 14 vCPU-s per device-month). 512Mi holds the
    # clients, 16 pages of 200 device documents (~2 KB each) and 256 thread stacks (a few
    # hundred KB each in use). 300 s for a page of 200 devices with slow manufacturer APIs.
    reconcile = {
      folder        = "reconcile"
      entry_point   = "reconcile"
      memory        = "512Mi"
      cpu           = "1"
      timeout       = 300
      max_instances = 20
      concurrency   = 16
      env = {
        HPSTEER_DISPATCH_URL               = local.dispatch_url
        HPSTEER_VERIFY_URL                 = local.verify_url
        HPSTEER_TASKS_SERVICE_ACCOUNT      = google_service_account.tasks_invoker.email
        HPSTEER_TASKS_LOCATION             = var.region
        HPSTEER_RECHECK_URL                = local.recheck_url
        HPSTEER_RECONCILE_INTERVAL_MINUTES = tostring(var.reconcile_interval_minutes)
        HPSTEER_RECONCILE_WORKERS          = "16"
      }
    }
    # HTTP from Cloud Tasks (recheck-devices): one device reconciled again a minute or so after
    # a run could not read it (hpsteer.services.recheck). Each is one device document, a read or
    # two of its manufacturer and perhaps a remediation's command: I/O bound and rare (a failed
    # read of the run's polls), so 16 per instance and few instances. Timeout 60 s = its task's
    # dispatch deadline (recheck_tasks), so Cloud Tasks and the function give up together.
    recheck = {
      folder        = "reconcile"
      entry_point   = "recheck"
      memory        = "512Mi"
      cpu           = "1"
      timeout       = 60
      max_instances = 5
      concurrency   = 16
      env = {
        HPSTEER_DISPATCH_URL               = local.dispatch_url
        HPSTEER_VERIFY_URL                 = local.verify_url
        HPSTEER_RECHECK_URL                = local.recheck_url
        HPSTEER_TASKS_SERVICE_ACCOUNT      = google_service_account.tasks_invoker.email
        HPSTEER_TASKS_LOCATION             = var.region
        HPSTEER_RECONCILE_INTERVAL_MINUTES = tostring(var.reconcile_interval_minutes)
      }
    }
    # Pub/Sub device-telemetry: one small transaction and one streaming insert per sample, the
    # highest message rate of the system: 16 per instance, short timeout, many instances. It
    # knows reconciliation's interval: a pushed sample is refreshed every quarter of it.
    ingest_telemetry = {
      folder        = "ingest_telemetry"
      entry_point   = "ingest_telemetry"
      memory        = "512Mi"
      cpu           = "1"
      timeout       = 60
      max_instances = 50
      concurrency   = 16
      env = {
        HPSTEER_RECONCILE_INTERVAL_MINUTES = tostring(var.reconcile_interval_minutes)
      }
    }
  }

  function_folders = toset(concat([for fn in local.functions : fn.folder], ["ingest_telemetry", "api"]))
  function_name    = { for key, fn in local.functions : key => replace(key, "_", "-") }

  # The operator API's settings beyond the common ones: its own URL (the ID tokens' audience),
  # the callers' roles, and what the hand-back command's Cloud Task needs (it enqueues on the
  # dispatch queues when steering stops).
  api_env = {
    HPSTEER_API_URL               = local.api_url
    HPSTEER_API_ROLES             = jsonencode(var.api_roles)
    HPSTEER_API_EXTRA_AUDIENCES   = jsonencode(var.api_extra_audiences)
    HPSTEER_DISPATCH_URL          = local.dispatch_url
    HPSTEER_VERIFY_URL            = local.verify_url
    HPSTEER_TASKS_SERVICE_ACCOUNT = google_service_account.tasks_invoker.email
    HPSTEER_TASKS_LOCATION        = var.region
  }
}

data "google_project" "this" {}

# Staged sources: the bucket keeps old objects (versioning) for a rollback; nothing in it is
# public.
resource "google_storage_bucket" "function_sources" {
  # checkov:skip=CKV_GCP_62: the bucket only holds build artefacts terraform uploads; Cloud Audit Logs record access, a separate access-log bucket adds nothing
  name                        = "${var.project}-hpsteer-${var.environment}-sources"
  location                    = var.region
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = var.environment != "prod"
  labels                      = local.labels

  versioning {
    enabled = true
  }

  lifecycle_rule {
    condition {
      num_newer_versions = 10
      with_state         = "ARCHIVED"
    }
    action {
      type = "Delete"
    }
  }

  depends_on = [google_project_service.enabled]
}

data "archive_file" "function_source" {
  for_each    = local.function_folders
  type        = "zip"
  source_dir  = "${path.module}/../build/stage/${each.value}"
  output_path = "${path.module}/../build/zip/${each.value}.zip"
}

resource "google_storage_bucket_object" "function_source" {
  for_each = local.function_folders
  # The MD5 in the name: new code, new object, new deployment.
  name   = "${each.value}/${data.archive_file.function_source[each.value].output_md5}.zip"
  bucket = google_storage_bucket.function_sources.name
  source = data.archive_file.function_source[each.value].output_path
}

resource "google_cloudfunctions2_function" "fn" {
  for_each    = local.functions
  name        = local.function_name[each.key]
  location    = var.region
  description = "hpsteer ${each.value.folder}.${each.value.entry_point} (${var.environment})"
  labels      = merge(local.labels, { function = each.value.folder })

  build_config {
    runtime     = "python311"
    entry_point = each.value.entry_point
    source {
      storage_source {
        bucket = google_storage_bucket.function_sources.name
        object = google_storage_bucket_object.function_source[each.value.folder].name
      }
    }
  }

  service_config {
    available_memory                 = each.value.memory
    available_cpu                    = each.value.cpu
    timeout_seconds                  = each.value.timeout
    min_instance_count               = 0
    max_instance_count               = each.value.max_instances
    max_instance_request_concurrency = each.value.concurrency
    ingress_settings                 = "ALLOW_INTERNAL_ONLY"
    all_traffic_on_latest_revision   = true
    service_account_email            = google_service_account.function[each.value.folder].email
    environment_variables            = merge(local.common_env, each.value.env)
  }

  depends_on = [google_project_service.enabled]
}

# --- the telemetry webhook and its front door ------------------------------------------------
# HTTP from the manufacturers' webhook senders, through API Gateway. Verify a signature, publish:
# I/O bound, 16 requests per instance, 30 s; bursts of webhooks from a large fleet: 20 instances.
resource "google_cloudfunctions2_function" "telemetry_webhook" {
  name        = "telemetry-webhook"
  location    = var.region
  description = "hpsteer ingest_telemetry.telemetry_webhook (${var.environment})"
  labels      = merge(local.labels, { function = "ingest_telemetry" })

  build_config {
    runtime     = "python311"
    entry_point = "telemetry_webhook"
    source {
      storage_source {
        bucket = google_storage_bucket.function_sources.name
        object = google_storage_bucket_object.function_source["ingest_telemetry"].name
      }
    }
  }

  service_config {
    # checkov:skip=CKV_GCP_124: API Gateway calls from outside the project's network, so ingress must allow all; IAM lets only the gateway's account invoke (iam.tf) and the function verifies each webhook's signature
    available_memory                 = "512Mi"
    available_cpu                    = "1"
    timeout_seconds                  = 30
    min_instance_count               = 0
    max_instance_count               = 20
    max_instance_request_concurrency = 16
    ingress_settings                 = "ALLOW_ALL"
    all_traffic_on_latest_revision   = true
    service_account_email            = google_service_account.function["ingest_telemetry"].email
    environment_variables            = local.common_env
  }

  depends_on = [google_project_service.enabled]
}

# Manufacturers cannot present a Google identity token, and no function may be public: API
# Gateway accepts their POST /telemetry and calls telemetry_webhook with its own account's token.
# The gateway does not authenticate the sender; the function verifies the Standard Webhooks
# signature over the raw body before reading anything (hpsteer.services.webhooks).

resource "google_api_gateway_api" "telemetry" {
  provider     = google-beta
  api_id       = "hpsteer-telemetry-${var.environment}"
  display_name = "hpsteer telemetry webhook (${var.environment})"
  labels       = local.labels
  depends_on   = [google_project_service.enabled]
}

resource "google_api_gateway_api_config" "telemetry" {
  provider             = google-beta
  api                  = google_api_gateway_api.telemetry.api_id
  api_config_id_prefix = "telemetry-"
  labels               = local.labels

  openapi_documents {
    document {
      path = "telemetry.yaml"
      contents = base64encode(yamlencode({
        swagger  = "2.0"
        info     = { title = "hpsteer telemetry webhook", version = "1.0.0" }
        schemes  = ["https"]
        produces = ["application/json"]
        paths = {
          "/telemetry" = {
            post = {
              operationId = "telemetryWebhook"
              "x-google-backend" = {
                address          = google_cloudfunctions2_function.telemetry_webhook.url
                jwt_audience     = google_cloudfunctions2_function.telemetry_webhook.url
                path_translation = "CONSTANT_ADDRESS"
                deadline         = 30
              }
              responses = {
                "202" = { description = "Accepted: the samples are on device-telemetry." }
                "200" = { description = "A replay of a processed webhook." }
              }
            }
          }
        }
      }))
    }
  }

  gateway_config {
    backend_config {
      google_service_account = google_service_account.webhook_gateway.email
    }
  }

  lifecycle {
    create_before_destroy = true
  }
}

resource "google_api_gateway_gateway" "telemetry" {
  provider     = google-beta
  gateway_id   = "hpsteer-telemetry-${var.environment}"
  api_config   = google_api_gateway_api_config.telemetry.id
  region       = var.region
  display_name = "hpsteer telemetry webhook (${var.environment})"
  labels       = local.labels
}

# --- the operator API ------------------------------------------------------------------------
# HTTP from operators' tools (the CLI with --api, curl with an ID token) outside Google Cloud, so
# ingress allows all; Cloud Run's IAM admits only var.api_invokers (iam.tf), and the function
# verifies the token again and maps the caller's email to a role (var.api_roles).
# Sizing: I/O bound (Firestore reads and transactions, a publish, a task), used by a few people:
# 512 MiB and 1 vCPU, 8 requests per instance, 3 instances. Timeout 300 s for the largest request,
# a CSV import of 1,000 rows, each its own transaction (about 0.1 s a row); everything else
# answers in well under a second.
resource "google_cloudfunctions2_function" "api" {
  name        = "api"
  location    = var.region
  description = "hpsteer api.api: the operator API (${var.environment})"
  labels      = merge(local.labels, { function = "api" })

  build_config {
    runtime     = "python311"
    entry_point = "api"
    source {
      storage_source {
        bucket = google_storage_bucket.function_sources.name
        object = google_storage_bucket_object.function_source["api"].name
      }
    }
  }

  service_config {
    # checkov:skip=CKV_GCP_124: operators call the API from their own machines, so ingress must allow all; IAM admits only var.api_invokers (iam.tf), never allUsers, and the function verifies each caller's Google ID token and role
    available_memory                 = "512Mi"
    available_cpu                    = "1"
    timeout_seconds                  = 300
    min_instance_count               = 0
    max_instance_count               = 3
    max_instance_request_concurrency = 8
    ingress_settings                 = "ALLOW_ALL"
    all_traffic_on_latest_revision   = true
    service_account_email            = google_service_account.function["api"].email
    environment_variables            = merge(local.common_env, local.api_env)
  }

  depends_on = [google_project_service.enabled]
}

output "api_url" {
  description = "The operator API's URL (hpsteer devices ... --api URL); callers need roles/run.invoker (var.api_invokers) and a role in var.api_roles."
  value       = google_cloudfunctions2_function.api.url
}
