"""The in-process way to reach the simulated fleet: a synchronous httpx transport.

``httpx.ASGITransport`` is async-only while the adapters use a sync ``httpx.Client``, so
:class:`SimTransport` calls the application's synchronous handler directly (no event loop, no
sockets: the fastest path, for tests and benchmarks). What it promises beyond a plain call:

- a timeout fault raises ``httpx.ReadTimeout`` (as a real client would after its timeout);
- a latency fault sleeps for real only when ``honour_latency`` is true (default false, so a
  simulation is not slowed down); the latency asked is added to :attr:`SimTransport.latency_s`;
- the request's path is decoded and its query parsed as a server would.
"""

from __future__ import annotations

import time

import httpx

from hpsteer.sim.app import Request, SimApp

__all__ = ["SimTransport"]


class SimTransport(httpx.BaseTransport):
    """A sync httpx transport that serves requests from a :class:`SimApp` in this process."""

    def __init__(self, app: SimApp, *, honour_latency: bool = False) -> None:
        self.app = app
        self.honour_latency = honour_latency
        self.latency_s = 0.0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        body = request.read()
        answer = self.app.handle(
            Request(
                method=request.method,
                path=request.url.path,
                query=dict(request.url.params),
                headers={k.lower(): v for k, v in request.headers.items()},
                body=body,
            )
        )
        if answer.delay_s:
            self.latency_s += answer.delay_s
            if self.honour_latency:
                time.sleep(answer.delay_s)
        if answer.drop:
            raise httpx.ReadTimeout("simulated timeout: the cloud did not answer", request=request)
        return httpx.Response(
            answer.status, headers=list(answer.headers), content=answer.body, request=request
        )
