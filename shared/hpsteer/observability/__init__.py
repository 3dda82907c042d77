"""Logs for Cloud Logging, tracing and metrics."""
