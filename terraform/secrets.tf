# Secret Manager: the secrets the code reads, declared without values (add versions with
# `gcloud secrets versions add NAME --data-file=-`), and who may read or rotate each.
#
# Names are the code's: the service secrets are Settings' defaults (hpsteer.config:
# entsoe_token_secret, telemetry_webhook_secret); the manufacturer credentials follow the
# adapters' naming functions (hpsteer.adapters.<manufacturer>.client.<kind>_secret_name), expanded
# for every account of var.manufacturer_accounts. tests/infra/test_terraform_data.py renders these
# patterns for sample account ids and compares them with the functions.
#
# Replication is user-managed in var.region: the manufacturer credentials open EU households'
# heat pumps, and automatic replication would let Google place replicas outside the EU. One
# region is enough for this deployment: the functions run in that region and fail with it.
#
# Who reads what (derived from the code by the same test, through each functions/<folder>/main.py
# call graph): ingest_prices reads the ENTSO-E token (hpsteer.sources.catalogue), ingest_telemetry
# the webhook secret (its Standard Webhooks verifier), dispatch and reconcile the manufacturer
# credentials (the manufacturer gateway). Both of the latter refresh OAuth tokens, and a refresh
# token that rotates on use is stored as a new version at once (hpsteer.adapters.oauth), so they
# may also add versions to the refresh-token secrets, and only to those.
#
# Every secret must exist before a function reads it: the functions may not create secrets, and
# reading a secret that does not exist is a permission error, not "not found". A myUplink
# account with client credentials only leaves its refresh-token secret without a version (the
# adapter then asks for a client-credentials token).

variable "manufacturer_accounts" {
  description = "Manufacturer (daikin_onecta, nibe_myuplink, viessmann) -> the account ids whose credentials hpsteer holds; each account gets its credential secrets."
  type        = map(list(string))
  default     = {}

  validation {
    condition = alltrue([
      for manufacturer in keys(var.manufacturer_accounts) :
      contains(["daikin_onecta", "nibe_myuplink", "viessmann"], manufacturer)
    ])
    error_message = "manufacturer_accounts keys must be daikin_onecta, nibe_myuplink or viessmann."
  }

  validation {
    condition = alltrue(flatten([
      for accounts in values(var.manufacturer_accounts) :
      [for account in accounts : can(regex("^[A-Za-z0-9_-]{1,200}$", account))]
    ]))
    error_message = "account ids must be 1-200 letters, digits, '_' or '-' (they become part of secret ids)."
  }
}

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

  # The adapters' secret names per credential kind; {account} stands for the account id.
  manufacturer_secret_patterns = {
    daikin_onecta = {
      client_id     = "onecta-{account}-client-id"
      client_secret = "onecta-{account}-client-secret"
      refresh_token = "onecta-{account}-refresh-token"
    }
    nibe_myuplink = {
      client_id     = "myuplink-{account}-client-id"
      client_secret = "myuplink-{account}-client-secret"
      refresh_token = "myuplink-{account}-refresh-token"
    }
    viessmann = {
      client_id     = "vicare-{account}-client-id"
      refresh_token = "vicare-{account}-refresh-token"
    }
  }

  # The function folders that call the manufacturers (read every credential), and those that
  # store rotated refresh tokens.
  manufacturer_secret_readers = ["dispatch", "reconcile"]
  refresh_token_writers       = ["dispatch", "reconcile"]

  manufacturer_secrets = merge([
    for manufacturer, accounts in var.manufacturer_accounts : {
      for pair in setproduct(accounts, keys(local.manufacturer_secret_patterns[manufacturer])) :
      replace(local.manufacturer_secret_patterns[manufacturer][pair[1]], "{account}", pair[0]) => {
        manufacturer = manufacturer
        kind         = pair[1]
      }
    }
  ]...)

  secret_accessors = merge(
    {
      for pair in flatten([
        for name, secret in local.service_secrets : [for folder in secret.readers : [name, folder]]
      ]) : "${pair[0]}/${pair[1]}" => { secret = google_secret_manager_secret.service[pair[0]].id, folder = pair[1] }
    },
    {
      for pair in setproduct(keys(local.manufacturer_secrets), local.manufacturer_secret_readers) :
      "${pair[0]}/${pair[1]}" => { secret = google_secret_manager_secret.manufacturer[pair[0]].id, folder = pair[1] }
    },
  )

  refresh_token_secrets = [
    for name, secret in local.manufacturer_secrets : name if secret.kind == "refresh_token"
  ]

  secret_version_adders = {
    for pair in setproduct(local.refresh_token_secrets, local.refresh_token_writers) :
    "${pair[0]}/${pair[1]}" => { secret = google_secret_manager_secret.manufacturer[pair[0]].id, folder = pair[1] }
  }
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
  for_each  = local.manufacturer_secrets
  secret_id = each.key
  labels    = merge(local.labels, { purpose = "manufacturer", manufacturer = each.value.manufacturer })

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

# Rotating a refresh token adds a version and destroys the one it replaced (Secret Manager bills
# every version not destroyed): Secret Version Manager holds versions.add and versions.destroy.
resource "google_secret_manager_secret_iam_member" "version_adder" {
  for_each  = local.secret_version_adders
  secret_id = each.value.secret
  role      = "roles/secretmanager.secretVersionManager"
  member    = "serviceAccount:${google_service_account.function[each.value.folder].email}"
}

output "secrets" {
  description = "Every secret declared (values are added outside terraform)."
  value = concat(
    [for secret in google_secret_manager_secret.service : secret.secret_id],
    [for secret in google_secret_manager_secret.manufacturer : secret.secret_id],
  )
}
