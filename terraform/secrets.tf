# Secret Manager: the secrets the code reads, declared without values (add versions with
# `gcloud secrets versions add NAME --data-file=-`), and who may read each.
#
# Names are the code's: the service secrets are Settings' defaults (hpsteer.config:
# entsoe_token_secret, telemetry_webhook_secret); the manufacturers' application credentials are
# what the clients' naming functions return (hpsteer.adapters.<manufacturer>.client.
# <kind>_secret_name()); the data key is hpsteer.adapters.credentials.KEY_SECRET.
# tests/infra/test_terraform_data.py compares them with the code.
#
# No secret per household. Secret Manager bills $0.06 a month per active version: a secret per
# household account (client id, client secret, rotating refresh token) cost $0.16 per
# device-month, sixteen times the whole budget (issue 10). What is per household (the refresh
# token; for a myUplink household with its own app, that app's client id and secret) lives in
# Firestore, manufacturers/{manufacturer}/credentials/{account_id}, sealed with AES-256-GCM
# under the data key below (hpsteer.adapters.credentials explains why a data key read once per
# instance and not Cloud KMS per operation). What stays here is per environment: one client
# registration per manufacturer (all three register clients per application, not per user:
# reference/manufacturer-apis.md §1.1, §2.1, §3.1), the data key, and the service secrets.
# Eight secrets with one version each, whatever the fleet.
#
# Replication is user-managed in var.region: the app credentials and the data key open EU
# households' heat pumps, and automatic replication would let Google place replicas outside the
# EU. One region is enough for this deployment: the functions run in that region and fail with it.
#
# Who reads what (derived from the code by the same test, through each functions/<folder>/main.py
# call graph): ingest_prices reads the ENTSO-E token (hpsteer.sources.catalogue), ingest_telemetry
# the webhook secret (its Standard Webhooks verifier), dispatch and reconcile the manufacturers'
# app credentials and the data key (the manufacturer gateway: each read once per instance). No
# function adds or destroys a version: a rotated refresh token is a Firestore write now. Key
# rotation is an operator's: add a version (`head -c 32 /dev/urandom | base64 | gcloud secrets
# versions add credentials-encryption-key --data-file=-`); the newest seals, the previous one
# still opens, and every token refresh reseals an account still sealed with the older key (the
# reconciler reads every device every 10 minutes, so every account refreshes within an hour);
# disable the older version after that, destroy it later.
#
# Every secret must exist before a function reads it: the functions may not create secrets, and
# reading a secret that does not exist is a permission error, not "not found".

locals {
  # The service secrets by name: the Settings field that names it, and the function folders that
  # read it.
  service_secrets = {
    "entsoe-api-token" = {
      setting = "entsoe_token_secret"
      readers = ["ingest_prices"]
    }
    "telemetry-webhook-secret" = {
      setting = "telemetry_webhook_secret"
      readers = ["ingest_telemetry"]
    }
  }

  # hpsteer's application credentials at each manufacturer's developer portal, one registration
  # per manufacturer and environment, by the names the clients read. ViCare's client is public
  # (authorization code + PKCE): no client secret.
  manufacturer_app_secrets = {
    "vicare-client-id"       = { manufacturer = "viessmann", kind = "client_id" }
    "myuplink-client-id"     = { manufacturer = "nibe_myuplink", kind = "client_id" }
    "myuplink-client-secret" = { manufacturer = "nibe_myuplink", kind = "client_secret" }
    "onecta-client-id"       = { manufacturer = "daikin_onecta", kind = "client_id" }
    "onecta-client-secret"   = { manufacturer = "daikin_onecta", kind = "client_secret" }
  }

  # The data key that seals the households' credentials in Firestore: 32 random bytes, base64.
  credentials_key_secret = "credentials-encryption-key"

  # The function folders that call the manufacturers: they read the app credentials and the key.
  manufacturer_secret_readers = ["dispatch", "reconcile"]

  secret_accessors = merge(
    {
      for pair in flatten([
        for name, secret in local.service_secrets : [for folder in secret.readers : [name, folder]]
      ]) : "${pair[0]}/${pair[1]}" => { secret = google_secret_manager_secret.service[pair[0]].id, folder = pair[1] }
    },
    {
      for pair in setproduct(keys(local.manufacturer_app_secrets), local.manufacturer_secret_readers) :
      "${pair[0]}/${pair[1]}" => { secret = google_secret_manager_secret.manufacturer[pair[0]].id, folder = pair[1] }
    },
    {
      for folder in local.manufacturer_secret_readers :
      "${local.credentials_key_secret}/${folder}" => { secret = google_secret_manager_secret.credentials_key.id, folder = folder }
    },
  )
}

resource "google_secret_manager_secret" "service" {
  for_each  = local.service_secrets
  secret_id = each.key
  labels    = merge(local.labels, { purpose = "service" })

  replication {
    user_managed {
      replicas {
        location = var.region
      }
    }
  }

  depends_on = [google_project_service.enabled]
}

resource "google_secret_manager_secret" "manufacturer" {
  for_each  = local.manufacturer_app_secrets
  secret_id = each.key
  labels    = merge(local.labels, { purpose = "manufacturer-app", manufacturer = each.value.manufacturer })

  replication {
    user_managed {
      replicas {
        location = var.region
      }
    }
  }

  depends_on = [google_project_service.enabled]
}

# The data key. A destroyed version that still seals households' credentials would make every
# one of them consent again: destruction is delayed 30 days (the version is disabled meanwhile
# and can be re-enabled).
resource "google_secret_manager_secret" "credentials_key" {
  secret_id           = local.credentials_key_secret
  labels              = merge(local.labels, { purpose = "credentials-key" })
  version_destroy_ttl = "2592000s"

  replication {
    user_managed {
      replicas {
        location = var.region
      }
    }
  }

  depends_on = [google_project_service.enabled]
}

resource "google_secret_manager_secret_iam_member" "accessor" {
  for_each  = local.secret_accessors
  secret_id = each.value.secret
  role      = "roles/secretmanager.secretAccessor"
  member    = "serviceAccount:${google_service_account.function[each.value.folder].email}"
}

output "secrets" {
  description = "Every secret declared (values are added outside terraform)."
  value = concat(
    [for secret in google_secret_manager_secret.service : secret.secret_id],
    [for secret in google_secret_manager_secret.manufacturer : secret.secret_id],
    [google_secret_manager_secret.credentials_key.secret_id],
  )
}
