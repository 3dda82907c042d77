variable "project" {
  description = "Google Cloud project id that hosts hpsteer."
  type        = string
}

variable "region" {
  description = "Region for functions, queues and the Firestore database (an EU region keeps customer data in the EU)."
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
