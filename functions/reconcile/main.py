"""Cloud Function source ``reconcile``: two entry points (never imports the planner).

- ``reconcile`` (Pub/Sub ``reconcile-requests``, from Cloud Scheduler every
  ``reconcile_interval_minutes``): one page of devices per message, each compared with its plan
  and corrected, left alone (a household override) or alerted on
  (:mod:`hpsteer.services.reconcile`).
- ``recheck`` (HTTP, called by Cloud Tasks from ``recheck-devices`` with an OIDC token): one
  device reconciled again a minute or so after a run could not read it
  (:func:`hpsteer.services.recheck.handle_recheck`). Its only route is its own URL
  (``HPSTEER_RECHECK_URL``, also the token's audience); any other path is answered 404 before
  the token or the body is read.
"""

import gc

gc.disable()  # cold start: no collections while the modules load (benchmarks/coldstart.py)

import flask
import functions_framework
from cloudevents.http import CloudEvent

from hpsteer.runtime.entrypoint import dependencies, run_pubsub
from hpsteer.runtime.task_http import HttpAnswer, serve_routes
from hpsteer.services.recheck import handle_recheck
from hpsteer.services.reconcile import handle_reconcile_request

gc.freeze()  # what loaded lives as long as the instance: later collections skip it
gc.enable()


@functions_framework.cloud_event
def reconcile(event: CloudEvent) -> None:
    run_pubsub(event, handle_reconcile_request)


@functions_framework.http
def recheck(request: flask.Request) -> HttpAnswer:
    return serve_routes(request, [(dependencies().settings.recheck_url, handle_recheck)])
