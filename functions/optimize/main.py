"""Cloud Function ``optimize``: two entry points in one source.

- ``optimize_trigger`` (Pub/Sub ``spot-price-updates``, ``weather-updates``, ``replan-requests``):
  fans the event out into shards on ``optimize-requests``; imports no solver.
- ``optimize_shard`` (Pub/Sub ``optimize-requests``): plans the shard's devices with OR-Tools
  (:mod:`hpsteer.services.optimize`).

Permanent errors are logged and acknowledged; transient ones are raised for redelivery.
"""

import gc

gc.disable()  # cold start: no collections while the modules load (benchmarks/coldstart.py)

import functions_framework
from cloudevents.http import CloudEvent

from hpsteer.runtime.entrypoint import run_pubsub
from hpsteer.services.optimize import handle_optimize_request, handle_optimize_trigger

gc.freeze()  # what loaded lives as long as the instance: later collections skip it
gc.enable()


@functions_framework.cloud_event
def optimize_trigger(event: CloudEvent) -> None:
    run_pubsub(event, handle_optimize_trigger)


@functions_framework.cloud_event
def optimize_shard(event: CloudEvent) -> None:
    run_pubsub(event, handle_optimize_request)
