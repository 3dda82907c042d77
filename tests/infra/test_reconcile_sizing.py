"""Reconcile's sizing in terraform against what its threads need (``terraform/functions.tf``)."""

from __future__ import annotations

from hpsteer.adapters.http import HTTP_MAX_CONNECTIONS, http_client
from hpsteer.adapters.protocol import AdapterContext
from hpsteer.backends.local.secrets import MemorySecretStore
from hpsteer.ports.clock import SystemClock
from tests.support.terraform import blocks


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
    assert workers * pages <= HTTP_MAX_CONNECTIONS


def test_an_adapters_http_client_opens_as_many_connections_as_reconcile_needs() -> None:
    """The limit above is the one the adapters' clients are built with (httpx's own default is
    100)."""
    context = AdapterContext(secrets=MemorySecretStore(), clock=SystemClock())
    with http_client(context) as client:
        pool = client._transport._pool  # type: ignore[attr-defined]
        assert pool._max_connections == HTTP_MAX_CONNECTIONS
