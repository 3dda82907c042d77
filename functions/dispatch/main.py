"""Cloud Function ``dispatch``: three entry points in one source.

- ``dispatch`` (HTTP, called by Cloud Tasks from the per-manufacturer queues with an OIDC
  token): sends one command through its manufacturer's adapter
  (:func:`hpsteer.services.dispatch.handle_dispatch`).
- ``verify`` (HTTP, called by Cloud Tasks from ``verify-commands``): checks that the device is in
  the commanded mode (:func:`hpsteer.services.dispatch.handle_verify`).
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
from hpsteer.runtime.task_http import HttpAnswer, serve_task
from hpsteer.services.dispatch import handle_dispatch, handle_verify
from hpsteer.services.outbox import handle_sweep_request

gc.freeze()  # what loaded lives as long as the instance: later collections skip it
gc.enable()


@functions_framework.http
def dispatch(request: flask.Request) -> HttpAnswer:
    return serve_task(request, handle_dispatch, audience=dependencies().settings.dispatch_url)


@functions_framework.http
def verify(request: flask.Request) -> HttpAnswer:
    return serve_task(request, handle_verify, audience=dependencies().settings.verify_url)


@functions_framework.cloud_event
def sweep_commands(event: CloudEvent) -> None:
    run_pubsub(event, handle_sweep_request)
