"""The simulated fleet as a real HTTP server on 127.0.0.1 (``hpsteer sim serve``).

Standard library only (``http.server.ThreadingHTTPServer``): each request is handed to the same
synchronous handler the in-process transport uses (:meth:`hpsteer.sim.app.SimApp.handle`).

Promises:

- binds 127.0.0.1 only; port 0 picks a free port (:attr:`SimServer.port` tells which);
- a latency fault sleeps before answering; a timeout fault closes the connection without an
  answer (the client sees a dropped connection, which the adapters report as unavailable, as they
  do a timeout);
- with ``follow_wall_clock`` the fleet's simulated clock is moved to the wall clock before each
  request (a live fleet for manual runs); otherwise time moves only when the caller advances it.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Final
from urllib.parse import parse_qs, unquote, urlsplit

from hpsteer.sim.app import Request, SimApp

__all__ = ["HOST", "SimServer"]

HOST: Final = "127.0.0.1"


class SimServer:
    """A :class:`SimApp` served over HTTP on 127.0.0.1 in a background thread."""

    def __init__(self, app: SimApp, *, port: int = 0, follow_wall_clock: bool = False) -> None:
        self.app = app
        self.follow_wall_clock = follow_wall_clock
        self._server = ThreadingHTTPServer((HOST, port), _handler_for(self))
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def start(self) -> SimServer:
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="hpsteer-sim-server", daemon=True
        )
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        """Serve in this thread until interrupted."""
        self._server.serve_forever()

    def stop(self) -> None:
        """Stop a server started with :meth:`start` and release its port."""
        self._server.shutdown()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.close()

    def close(self) -> None:
        """Release the port (after :meth:`serve_forever` returned)."""
        self._server.server_close()

    def __enter__(self) -> SimServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _handler_for(server: SimServer) -> type[BaseHTTPRequestHandler]:
    class _Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _serve(self) -> None:
            if server.follow_wall_clock:
                server.app.fleet.advance(datetime.now(UTC))
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            parts = urlsplit(self.path)
            answer = server.app.handle(
                Request(
                    method=self.command,
                    path=unquote(parts.path),
                    query={k: v[0] for k, v in parse_qs(parts.query).items()},
                    headers={k.lower(): v for k, v in self.headers.items()},
                    body=body,
                )
            )
            if answer.delay_s:
                time.sleep(answer.delay_s)
            if answer.drop:
                self.close_connection = True
                return
            self.send_response(answer.status)
            for name, value in answer.headers:
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(answer.body)))
            self.end_headers()
            self.wfile.write(answer.body)

        do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _serve

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet: requests carry bearer tokens; nothing is logged."""

    return _Handler
