"""The HTTP client each manufacturer adapter talks through.

One client per adapter (per manufacturer and function instance), shared by every thread of the
instance: httpx's clients are thread-safe and pool their connections. Its pool is sized for
reconciliation, the busiest caller: an instance serves up to 16 pages at once, each polling on
16 threads (``terraform/functions.tf``), so up to 256 calls may be in flight, possibly all to one
manufacturer. With fewer connections than calls the surplus would queue inside httpx (and time
out there) instead of waiting on the manufacturer; httpx's default is 100.

**No cookies.** The client is shared by every household the instance serves, and httpx keeps
the cookies a server sets and sends them with every later request to that server: a cookie set
in answer to one household's call (a session, a load balancer's affinity) would travel with the
next household's. The manufacturers' APIs authenticate each call by its bearer token and need
none, so the client's jar (:class:`NoCookieJar`) keeps nothing: no ``Cookie`` header ever
leaves, whatever an answer set. (It also spares httpx's parsing of every answer's headers for
cookies, about 50 µs a call.)
"""

from __future__ import annotations

from http.cookiejar import Cookie, CookieJar
from typing import Any, Final

import httpx

from hpsteer.adapters.protocol import AdapterContext

HTTP_MAX_CONNECTIONS: Final = 256
"""Connections one adapter's client opens at most (module docstring)."""
HTTP_KEEPALIVE_CONNECTIONS: Final = 64
"""Idle connections it keeps for reuse between bursts (httpx's default: 20)."""


class NoCookieJar(CookieJar):
    """A cookie jar that keeps nothing (module docstring, "No cookies")."""

    def extract_cookies(self, response: Any, request: Any) -> None:
        return None

    def set_cookie(self, cookie: Cookie) -> None:
        return None


def http_client(context: AdapterContext) -> httpx.Client:
    """A new client for one adapter: over the context's transport when it names one (tests, the
    local runtime's simulated fleet), else over the network, with the pool above and no
    cookies."""
    limits = httpx.Limits(
        max_connections=HTTP_MAX_CONNECTIONS, max_keepalive_connections=HTTP_KEEPALIVE_CONNECTIONS
    )
    if context.transport is not None:
        return httpx.Client(transport=context.transport, limits=limits, cookies=NoCookieJar())
    return httpx.Client(limits=limits, cookies=NoCookieJar())
