"""Cloud Function ``reconcile`` (Pub/Sub ``reconcile-requests``, from Cloud Scheduler every
``reconcile_interval_minutes``): one page of devices per message, each compared with its plan
and corrected, left alone (a household override) or alerted on
(:mod:`hpsteer.services.reconcile`). Never imports the planner.
"""

import gc

gc.disable()  # cold start: no collections while the modules load (benchmarks/coldstart.py)

import functions_framework
from cloudevents.http import CloudEvent

from hpsteer.runtime.entrypoint import run_pubsub
from hpsteer.services.reconcile import handle_reconcile_request

gc.freeze()  # what loaded lives as long as the instance: later collections skip it
gc.enable()


@functions_framework.cloud_event
def reconcile(event: CloudEvent) -> None:
    run_pubsub(event, handle_reconcile_request)
