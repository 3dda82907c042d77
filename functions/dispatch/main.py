"""Cloud Function ``dispatch``: two entry points in one source.

- ``dispatch`` (HTTP, called by Cloud Tasks with an OIDC token), routed by the request's path
  (:func:`hpsteer.runtime.task_http.serve_routes`):

  - ``HPSTEER_DISPATCH_URL`` (from the per-manufacturer queues): sends one command through its
    manufacturer's adapter (:func:`hpsteer.services.dispatch.handle_dispatch`);
  - ``HPSTEER_VERIFY_URL``, ``/verify`` below it (from ``verify-commands``): checks that the device
    is in the commanded mode (:func:`hpsteer.services.dispatch.handle_verify`);
  - any other path: 404, before the token or the body is read.

  Both routes check the token against the function's own URL (``HPSTEER_DISPATCH_URL``), the
  audience the tasks name.
  Verification is a route, not a function of its own, so both wait on the manufacturers on the
  same instances (terraform/functions.tf).
- ``sweep_commands`` (Pub/Sub ``command-sweep-requests`` from Cloud Scheduler): releases plan
  outboxes a crash interrupted and re-enqueues commands whose tasks were lost
  (:func:`hpsteer.services.outbox.handle_sweep_request`).

This function never imports OR-Tools or the planner.
"""

import gc

gc.disable()  # cold start: no collections while the modules load (benchmarks/coldstart.py)

import flask
import functions_framework
from cloudevents.http import CloudEvent

from hpsteer.runtime.entrypoint import dependencies, run_pubsub
from hpsteer.runtime.task_http import HttpAnswer, serve_routes
from hpsteer.services.dispatch import handle_dispatch, handle_verify
from hpsteer.services.outbox import handle_sweep_request

gc.freeze()  # what loaded lives as long as the instance: later collections skip it
gc.enable()


@functions_framework.http
def dispatch(request: flask.Request) -> HttpAnswer:
    settings = dependencies().settings
    return serve_routes(
        request,
        [(settings.dispatch_url, handle_dispatch), (settings.verify_url, handle_verify)],
    )


@functions_framework.cloud_event
def sweep_commands(event: CloudEvent) -> None:
    run_pubsub(event, handle_sweep_request)
