"""What every provider client does with HTTP: fetch with a timeout, and sort failures.

- no answer (timeout, refused connection, broken transfer) → :class:`ProviderUnavailable`;
- HTTP 408, 429 (with its ``Retry-After``) and 5xx → :class:`ProviderUnavailable`: the provider may
  answer later, or the next source may answer now;
- any other status is returned to the caller, who knows whether its provider means "no data"
  by a 404 or a refusal by a 400.

Messages are one line and carry a short, whitespace-folded excerpt of an error body, never a
request URL with its query (a query may hold a token).
"""

from __future__ import annotations

from collections.abc import Mapping

import httpx

from hpsteer.errors import ProviderUnavailable

__all__ = ["error_detail", "get", "raise_if_unavailable", "snippet"]

_DETAIL_KEYS = ("message", "error", "reason", "title", "detail")


def snippet(text: str, limit: int = 80) -> str:
    """``text`` folded onto one line and cut to ``limit`` characters, quoted."""
    one_line = " ".join(text.split())
    return repr(one_line[:limit] + ("…" if len(one_line) > limit else ""))


def error_detail(response: httpx.Response) -> str:
    """A short reason from an error body: a JSON ``message``/``error``/``reason``/… if present."""
    try:
        document = response.json()
    except ValueError:
        return snippet(response.text) if response.text.strip() else "no body"
    if isinstance(document, dict):
        for key in _DETAIL_KEYS:
            if isinstance(document.get(key), str):
                return snippet(document[key], 160)
    return snippet(response.text)


def raise_if_unavailable(response: httpx.Response, label: str) -> None:
    status = response.status_code
    if status == httpx.codes.TOO_MANY_REQUESTS:
        retry_after = response.headers.get("Retry-After")
        hint = f", Retry-After {retry_after} s" if retry_after else ""
        raise ProviderUnavailable(f"{label}: rate limited (HTTP 429{hint})")
    if status == httpx.codes.REQUEST_TIMEOUT or status >= 500:
        raise ProviderUnavailable(f"{label}: HTTP {status} {error_detail(response)}")


def get(
    client: httpx.Client,
    url: str,
    params: Mapping[str, str | int | float],
    label: str,
    timeout: httpx.Timeout | float,
) -> httpx.Response:
    """GET ``url``; ProviderUnavailable for no answer, 408, 429 and 5xx, else the response."""
    try:
        response = client.get(url, params=params, timeout=timeout)
    except httpx.TimeoutException as err:
        raise ProviderUnavailable(f"{label}: timed out ({type(err).__name__})") from err
    except httpx.TransportError as err:
        raise ProviderUnavailable(f"{label}: connection failed ({type(err).__name__})") from err
    raise_if_unavailable(response, label)
    return response
