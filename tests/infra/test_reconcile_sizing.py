"""Reconcile's sizing in terraform against what its threads need (``terraform/functions.tf``)."""

from __future__ import annotations

from tests.support.terraform import blocks

HTTPX_MAX_CONNECTIONS = 100
"""httpx's default ``Limits(max_connections=100)`` (https://www.python-httpx.org/advanced/
resource-limits/): the adapters build their client as ``httpx.Client()``, one per manufacturer
and instance."""


def _reconcile() -> dict[str, object]:
    for block in blocks("locals"):
        if "functions" in block:
            reconcile: dict[str, object] = block["functions"]["reconcile"]
            return reconcile
    raise AssertionError("no functions map in terraform's locals")


def test_reconciles_manufacturer_calls_in_flight_fit_one_http_clients_connections() -> None:
    """Every page an instance serves reconciles its devices on ``HPSTEER_RECONCILE_WORKERS``
    threads, all through one HTTP client per manufacturer: more threads than connections would
    queue for a connection (and time out waiting) instead of waiting on the manufacturer."""
    reconcile = _reconcile()
    env = reconcile["env"]
    assert isinstance(env, dict)
    workers = int(env["HPSTEER_RECONCILE_WORKERS"])
    pages = int(str(reconcile["concurrency"]))
    assert workers > 1  # a page's polls overlap: it waits for its longest lane, not the sum
    assert workers * pages <= HTTPX_MAX_CONNECTIONS
