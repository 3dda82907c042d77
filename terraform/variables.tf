variable "project" {
  description = "Google Cloud project id that hosts hpsteer."
  type        = string
}

variable "region" {
  description = "Region for functions, queues, scheduler jobs and the Firestore database (an EU region keeps customer data in the EU)."
  type        = string
  default     = "europe-west1"
}

variable "environment" {
  description = "dev, staging or prod: part of resource names and labels."
  type        = string
  default     = "dev"

  validation {
    condition     = contains(["dev", "staging", "prod"], var.environment)
    error_message = "environment must be dev, staging or prod."
  }
}

variable "price_areas" {
  description = "Bidding zones whose prices are ingested and whose devices are steered."
  type        = list(string)
  default     = ["SE3", "SE4", "DK1", "DK2"]
}

variable "reconcile_interval_minutes" {
  description = "How often Cloud Scheduler asks for reconciliation (HPSTEER_RECONCILE_INTERVAL_MINUTES; the code's default is 10)."
  type        = number
  default     = 10

  validation {
    condition     = var.reconcile_interval_minutes >= 5 && var.reconcile_interval_minutes <= 15 && floor(var.reconcile_interval_minutes) == var.reconcile_interval_minutes
    error_message = "reconcile_interval_minutes must be a whole number from 5 to 15 (Settings.reconcile_interval_minutes)."
  }
}

variable "command_sweep_interval_minutes" {
  description = "How often the command sweep releases interrupted outboxes and re-enqueues lost tasks (the simulation sweeps every 30 minutes)."
  type        = number
  default     = 30

  validation {
    condition     = contains([10, 15, 20, 30, 60], var.command_sweep_interval_minutes)
    error_message = "command_sweep_interval_minutes must divide an hour: 10, 15, 20, 30 or 60."
  }
}

variable "trace_sample_rate" {
  description = "Share of traces exported to Cloud Trace (HPSTEER_TRACE_SAMPLE_RATE; errors always are)."
  type        = number
  default     = 0.1

  validation {
    condition     = var.trace_sample_rate >= 0 && var.trace_sample_rate <= 1
    error_message = "trace_sample_rate must be between 0 and 1."
  }
}

variable "log_level" {
  description = "HPSTEER_LOG_LEVEL of every function."
  type        = string
  default     = "INFO"

  validation {
    condition     = contains(["DEBUG", "INFO", "WARNING", "ERROR"], var.log_level)
    error_message = "log_level must be DEBUG, INFO, WARNING or ERROR."
  }
}

variable "optimize_max_instances" {
  description = "Most optimize_shard instances solving at once (one MILP solve per instance): bounds the fan-out of one price day over the fleet."
  type        = number
  default     = 50
}

variable "dispatch_max_instances" {
  description = "Most dispatch instances (commands and their verifications); with its concurrency this must stay above all command queues' summed max_concurrent_dispatches."
  type        = number
  default     = 20
}

variable "pubsub_max_delivery_attempts" {
  description = "Deliveries of one message to a function before Pub/Sub moves it to the topic's dead-letter topic (5-100)."
  type        = number
  default     = 10

  validation {
    condition     = var.pubsub_max_delivery_attempts >= 5 && var.pubsub_max_delivery_attempts <= 100
    error_message = "Pub/Sub allows 5 to 100 delivery attempts."
  }
}

variable "api_invokers" {
  description = "IAM members who may call the operator API (user:, group: or serviceAccount:; roles/run.invoker on the api function). What each may do inside is api_roles."
  type        = list(string)
  default     = []

  validation {
    condition = alltrue([
      for member in var.api_invokers : can(regex("^(user|group|serviceAccount):[^@\\s]+@[^@\\s]+$", member))
    ])
    error_message = "api_invokers must be user:, group: or serviceAccount: members with an email; never allUsers or allAuthenticatedUsers."
  }
}

variable "api_roles" {
  description = "Caller email -> role inside the operator API: viewer (read), operator (everything but delete and bulk import), admin (everything). HPSTEER_API_ROLES of the api function; an invoker with no role here is refused (403)."
  type        = map(string)
  default     = {}

  validation {
    condition     = alltrue([for role in values(var.api_roles) : contains(["viewer", "operator", "admin"], role)])
    error_message = "api_roles values must be viewer, operator or admin."
  }
}

variable "api_extra_audiences" {
  description = "ID-token audiences the operator API accepts besides its URL (HPSTEER_API_EXTRA_AUDIENCES). A person's `gcloud auth print-identity-token` carries gcloud's client id, 32555940559.apps.googleusercontent.com, and cannot ask for another: add it to let people call the API with their own account (their role in api_roles still decides). Empty: only tokens minted for the API's URL."
  type        = list(string)
  default     = []
}
