terraform {
  required_version = ">= 1.6"

  # State in a versioned GCS bucket, one prefix per environment: cloudbuild.yaml passes
  # -backend-config="bucket=..." and -backend-config="prefix=hpsteer/<environment>".
  backend "gcs" {}

  required_providers {
    google = {
      source  = "hashicorp/google"
      version = "~> 6.12"
    }
    google-beta = {
      source  = "hashicorp/google-beta"
      version = "~> 6.12"
    }
    # Zips each staged function folder (build/stage/<folder>) for its source object.
    archive = {
      source  = "hashicorp/archive"
      version = "~> 2.6"
    }
  }
}

provider "google" {
  project = var.project
  region  = var.region
}

provider "google-beta" {
  project = var.project
  region  = var.region
}
