"""The adapters' shared HTTP client never carries one household's cookies to the next call."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx

from hpsteer.adapters.http import http_client
from hpsteer.adapters.protocol import AdapterContext
from hpsteer.backends.local.secrets import MemorySecretStore
from hpsteer.ports.clock import SimulatedClock


def test_a_cookie_set_in_answer_to_one_call_is_never_sent_with_the_next() -> None:
    seen: list[str | None] = []

    def server(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("cookie"))
        return httpx.Response(
            200, json={}, headers={"set-cookie": "session=household-a; Path=/; HttpOnly"}
        )

    context = AdapterContext(
        secrets=MemorySecretStore(),
        clock=SimulatedClock(datetime(2025, 1, 15, tzinfo=UTC)),
        transport=httpx.MockTransport(server),
    )
    with http_client(context) as client:
        first = client.get("https://api.example.test/devices", headers={"authorization": "a"})
        client.get("https://api.example.test/devices", headers={"authorization": "b"})
    assert first.headers["set-cookie"].startswith("session=")  # the server did set one
    assert seen == [None, None]
    assert len(client.cookies) == 0
