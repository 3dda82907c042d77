"""Cloud Function ``ingest_prices``: Pub/Sub ``price-ingest-requests`` (from Cloud Scheduler).

Fetches, validates, stores and announces day-ahead prices: :mod:`hpsteer.services.ingest_prices`.
Permanent errors are logged and acknowledged; transient ones are raised for redelivery; requests
older than ``HPSTEER_PRICE_REQUEST_MAX_AGE_MINUTES`` are dropped.
"""

import gc

gc.disable()  # cold start: no collections while the modules load (benchmarks/coldstart.py)

from datetime import timedelta

import functions_framework
from cloudevents.http import CloudEvent

from hpsteer.runtime.entrypoint import dependencies, run_pubsub
from hpsteer.services.ingest_prices import handle_price_ingest_request

gc.freeze()  # what loaded lives as long as the instance: later collections skip it
gc.enable()


@functions_framework.cloud_event
def ingest_prices(event: CloudEvent) -> None:
    max_age = timedelta(minutes=dependencies().settings.price_request_max_age_minutes)
    run_pubsub(event, handle_price_ingest_request, max_age=max_age)
