"""Cloud Function ``api``: the operator API (HTTP, Google identity, JSON).

Operators (people and their tools, ``hpsteer devices …``) call it with a Google-signed ID token;
Cloud Run's IAM admits only ``var.api_invokers``, and :func:`hpsteer.api.http.serve` verifies the
token again, maps the caller's email to a role, routes the request, validates it and answers
JSON (see :mod:`hpsteer.api`). Locally the caller is a fixed admin, and each answer says so.

This function never imports the planner, OR-Tools or numpy.
"""

from __future__ import annotations

import gc

gc.disable()  # cold start: no collections while the modules load (benchmarks/coldstart.py)

import flask
import functions_framework

from hpsteer.api.http import HttpAnswer, serve

gc.freeze()  # what loaded lives as long as the instance: later collections skip it
gc.enable()


@functions_framework.http
def api(request: flask.Request) -> HttpAnswer:
    return serve(request)
