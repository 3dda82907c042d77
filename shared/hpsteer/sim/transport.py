"""The in-process way to reach the simulated fleet: a synchronous httpx transport.

``httpx.ASGITransport`` is async-only while the adapters use a sync ``httpx.Client``, so
:class:`SimTransport` calls the application's synchronous handler directly (no event loop, no
sockets: the fastest path, for tests and benchmarks). What it promises beyond a plain call:

- a timeout fault raises ``httpx.ReadTimeout`` (as a real client would after its timeout);
- a latency fault sleeps for real only when ``honour_latency`` is true (default false, so a
  simulation is not slowed down); the latency asked is added to :attr:`SimTransport.latency_s`;
- the request's path is decoded and its query parsed as a server would;
- :attr:`SimTransport.served_s` adds up the wall time the application took to answer (the
  simulated manufacturers' side of every call, their homes' physics stepped on the way), so a
  run can tell the simulator's share of its time from the client's.
"""

from __future__ import annotations

import time

import httpx

from hpsteer.sim.app import Request, Response, SimApp

__all__ = ["SimTransport"]


class SimTransport(httpx.BaseTransport):
    """A sync httpx transport that serves requests from a :class:`SimApp` in this process."""

    def __init__(self, app: SimApp, *, honour_latency: bool = False) -> None:
        self.app = app
        self.honour_latency = honour_latency
        self.latency_s = 0.0
        self.served_s = 0.0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        asked = Request(
            method=request.method,
            path=url.path,
            query=dict(url.params) if url.query else {},
            headers=_headers(request.headers),
            body=request.read(),
        )
        began = time.perf_counter()
        try:
            answer = self.app.handle(asked)
        finally:
            self.served_s += time.perf_counter() - began
        if answer.delay_s:
            self.latency_s += answer.delay_s
            if self.honour_latency:
                time.sleep(answer.delay_s)
        if answer.drop:
            raise httpx.ReadTimeout("simulated timeout: the cloud did not answer", request=request)
        return _response(answer, request)


def _headers(headers: httpx.Headers) -> dict[str, str]:
    """``dict(headers.items())``: lower-cased names, repeated ones joined with ``", "``; decoded
    here straight from the raw ASCII bytes (httpx's ``items()`` re-checks the encoding per
    header), or by httpx itself when a header is not ASCII."""
    decoded: dict[str, str] = {}
    try:
        for raw_name, raw_value in headers.raw:
            name, value = raw_name.decode("ascii").lower(), raw_value.decode("ascii")
            decoded[name] = f"{decoded[name]}, {value}" if name in decoded else value
    except UnicodeDecodeError:
        return dict(headers.items())
    return decoded


def _response(answer: Response, request: httpx.Request) -> httpx.Response:
    """The answer as a transport hands it over: the body as a stream with its
    ``Content-Length`` (what ``httpx.Response(content=…)`` would add, without re-checking every
    header it was given)."""
    headers = (
        [*answer.headers, ("Content-Length", str(len(answer.body)))]
        if answer.body
        else answer.headers
    )
    return httpx.Response(
        answer.status, headers=headers, stream=httpx.ByteStream(answer.body), request=request
    )
