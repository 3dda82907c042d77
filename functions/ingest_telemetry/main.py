"""Cloud Function ``ingest_telemetry``: telemetry in, two entry points in one source.

- ``telemetry_webhook`` (HTTP, called by manufacturers' webhook senders): verifies the Standard
  Webhooks signature before reading the body, then publishes each sample on ``device-telemetry``
  (:func:`hpsteer.services.ingest_telemetry.serve_telemetry_webhook`).
- ``ingest_telemetry`` (Pub/Sub ``device-telemetry``): moves ``devices/{id}.last_telemetry``
  forward only and appends every sample to ``telemetry_history``
  (:func:`hpsteer.services.ingest_telemetry.handle_telemetry_message`);
  :func:`hpsteer.runtime.entrypoint.run_pubsub` acknowledges permanent failures and lets
  transient ones escape so that Pub/Sub delivers again.
"""

from __future__ import annotations

import gc

gc.disable()  # cold start: no collections while the modules load (benchmarks/coldstart.py)

import flask
import functions_framework
from cloudevents.http import CloudEvent

from hpsteer.runtime.entrypoint import dependencies, run_pubsub
from hpsteer.services.ingest_telemetry import (
    HttpAnswer,
    handle_telemetry_message,
    serve_telemetry_webhook,
)

gc.freeze()  # what loaded lives as long as the instance: later collections skip it
gc.enable()


@functions_framework.http
def telemetry_webhook(request: flask.Request) -> HttpAnswer:
    return serve_telemetry_webhook(request, dependencies())


@functions_framework.cloud_event
def ingest_telemetry(event: CloudEvent) -> None:
    run_pubsub(event, handle_telemetry_message)
