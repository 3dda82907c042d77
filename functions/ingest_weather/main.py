"""Cloud Function ``ingest_weather``: a ``weather-ingest-requests`` message in, forecasts stored.

Everything happens in :func:`hpsteer.services.ingest_weather.handle_weather_ingest_request`;
:func:`hpsteer.runtime.entrypoint.run_pubsub` decodes the CloudEvent, drops requests older than
six hours (a redelivery of an old schedule tick must not fetch now), acknowledges permanent
failures and lets transient ones escape so that Pub/Sub delivers again.
"""

from __future__ import annotations

import gc

gc.disable()  # cold start: no collections while the modules load (benchmarks/coldstart.py)

from datetime import timedelta

import functions_framework
from cloudevents.http import CloudEvent

from hpsteer.runtime.entrypoint import run_pubsub
from hpsteer.services.ingest_weather import handle_weather_ingest_request

gc.freeze()  # what loaded lives as long as the instance: later collections skip it
gc.enable()


@functions_framework.cloud_event
def ingest_weather(event: CloudEvent) -> None:
    run_pubsub(event, handle_weather_ingest_request, max_age=timedelta(hours=6))
