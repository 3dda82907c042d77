"""What every manufacturer's API client does alike: one account's bearer-token API access.

Each client (:mod:`hpsteer.adapters.nibe_myuplink.client`,
:mod:`hpsteer.adapters.viessmann.client`, :mod:`hpsteer.adapters.daikin_onecta.client`) is an
:class:`OemApiClient` and keeps what differs per manufacturer: its label (``"myUplink"``) and log
fields, its requests' headers and body, its token endpoint's form (and client authentication),
how a 429 names ``retry_at``, and how answers are translated into hpsteer errors. Here:

- **the wiring**: the account, the credential store, the clock, the adapter's shared httpx client
  and the account's :class:`~hpsteer.adapters.oauth.AccessTokenKeeper` (one per client: the
  credentials document is read only when a token is due);
- **a request** (:meth:`OemApiClient._call`): sent with the kept access token (a timeout or a
  connection failure is :class:`~hpsteer.errors.OemUnavailable` naming the method, the path and
  httpx's error class), its answer logged at debug level (the client adds its rate limit
  headers) and translated by the client; after a 401 the keeper gets another token (unless
  another thread already did; never the refused one) and the request is sent once more; a second
  401 is :class:`~hpsteer.errors.CredentialsInvalid` ("needs a new consent");
- **the token endpoint** (:meth:`OemApiClient._post_token_form`): ``POST`` of a form; timeouts and
  connection failures, 5xx and 408 are OemUnavailable, 429 is
  :class:`~hpsteer.errors.OemRateLimited` (``retry_at`` as the client reads it), any other 4xx is
  CredentialsInvalid ("a person must consent again", quoting the answer's ``error`` only), a
  non-JSON answer is OemUnavailable;
- the small helpers every client's translation uses (:func:`json_or_none`, :func:`short`) and
  the parsed-URL cache (:func:`parsed_url`).

**No secret leaves**: httpx errors are never chained (their request carries the
``Authorization`` header or the form's secrets); messages name the method and the path without
query, or "token endpoint"; log lines go to the client's own module logger with the oem, the
account, method, path and status only.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from datetime import datetime
from functools import lru_cache
from typing import Any, ClassVar, Final

import httpx

from hpsteer.adapters.credentials import CredentialStore
from hpsteer.adapters.oauth import AccessToken, AccessTokenKeeper, access_token_for
from hpsteer.errors import CredentialsInvalid, OemRateLimited, OemUnavailable
from hpsteer.ports.clock import Clock

__all__ = [
    "URLS_KEPT",
    "OemApiClient",
    "RetryAt",
    "json_or_none",
    "parsed_url",
    "short",
]

URLS_KEPT: Final = 3 * 1024
"""Request URLs kept parsed (one or two per device, up to 1024 for each of the three
manufacturers: a function instance's devices fit)."""

RetryAt = Callable[[httpx.Response, Any, datetime], datetime | None]
"""When a 429 says to try again: from the answer, its parsed JSON body (or ``None``) and now."""


class _Unauthorized(Exception):
    """Internal: a 401, answered by one refresh and retry."""


class OemApiClient:
    """One account's API access at one manufacturer (its tokens); see the module docstring.

    A subclass names ``label``, ``oem``, its default URLs and its module's logger, and implements
    ``_answer`` (an answer translated) and ``_refresher`` (its refresh request); it may override
    ``_obtain`` (the :class:`~hpsteer.adapters.oauth.AccessTokenKeeper`'s source of access
    tokens: by default the stored one or a refresh), ``_request`` (how a request's body is sent)
    and ``_answer_fields`` (its answers' log fields)."""

    label: ClassVar[str]
    """How messages and log lines name the API (``"myUplink"``)."""
    oem: ClassVar[str]
    """The manufacturer: the credentials' key and the log lines' ``oem`` field."""
    default_base_url: ClassVar[str]
    default_token_url: ClassVar[str]
    _log: ClassVar[logging.Logger]

    def __init__(
        self,
        account_id: str,
        credentials: CredentialStore,
        clock: Clock,
        *,
        http: httpx.Client,
        base_url: str | None = None,
        token_url: str | None = None,
        timeout_s: float = 15.0,
    ) -> None:
        self.account_id = account_id
        self._credentials = credentials
        self._clock = clock
        self._http = http
        self._base_url = (base_url if base_url is not None else self.default_base_url).rstrip("/")
        self._token_url = token_url if token_url is not None else self.default_token_url
        self._timeout = httpx.Timeout(timeout_s)
        self._tokens = AccessTokenKeeper(clock, self._obtain)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(account_id={self.account_id!r}, base_url={self._base_url!r})"

    # -- requests -------------------------------------------------------------------------

    def _call(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        json_body: Mapping[str, Any] | None = None,
        is_command: bool = False,
    ) -> Any:
        """``_attempt`` with the kept access token; after a 401, once more with another."""
        token = self._tokens.token()
        try:
            return self._attempt(method, path, params, json_body, is_command, token)
        except _Unauthorized:
            self._log.debug(
                "%s access token refused; refreshing once",
                self.label,
                extra=self._fields(method, path),
            )
        token = self._tokens.token(refused=token)
        try:
            return self._attempt(method, path, params, json_body, is_command, token)
        except _Unauthorized:
            raise CredentialsInvalid(
                f"{self.label} {method} {path}: HTTP 401 after a token refresh; "
                f"account {self.account_id} needs a new consent"
            ) from None

    def _attempt(
        self,
        method: str,
        path: str,
        params: Mapping[str, str] | None,
        json_body: Mapping[str, Any] | None,
        is_command: bool,
        token: str,
    ) -> Any:
        """One request with ``token``: its answer translated (``_answer``), or
        ``_Unauthorized`` on a 401."""
        response = self._request(method, path, params, json_body, token)
        log = self._log
        if log.isEnabledFor(logging.DEBUG):  # build the record's fields only when it is kept
            log.debug(
                "%s answered",
                self.label,
                extra={
                    **self._fields(method, path),
                    "status": response.status_code,
                    **self._answer_fields(response),
                },
            )
        if response.status_code == 401:
            raise _Unauthorized
        return self._answer(response, method, path, is_command=is_command)

    def _request(
        self,
        method: str,
        path: str,
        params: Mapping[str, str] | None,
        json_body: Mapping[str, Any] | None,
        token: str,
    ) -> httpx.Response:
        """The answer to one request with ``token`` and ``json_body`` as httpx's JSON (a client
        sending its body otherwise overrides this)."""
        return self._send(
            method,
            path,
            params=params,
            json=json_body,
            headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
        )

    def _answer_fields(self, response: httpx.Response) -> dict[str, str | None]:
        """What an answer's debug log line carries beyond the request and the status (a
        client's rate limit headers)."""
        return {}

    def _answer(self, response: httpx.Response, method: str, path: str, *, is_command: bool) -> Any:
        """A non-401 answer translated: its JSON document (or what the client makes of it), or
        the hpsteer error it means."""
        raise NotImplementedError

    def _send(
        self,
        method: str,
        path: str,
        *,
        headers: Mapping[str, str],
        params: Mapping[str, str] | None = None,
        json: Any = None,
        content: bytes | None = None,
    ) -> httpx.Response:
        """The answer to one request to ``base_url + path``; a timeout or connection failure
        is :class:`~hpsteer.errors.OemUnavailable` (never chained)."""
        try:
            return self._http.request(
                method,
                parsed_url(self._base_url + path),
                params=params,
                json=json,
                content=content,
                headers=headers,
                timeout=self._timeout,
            )
        except httpx.TransportError as err:
            raise _not_arrived(f"{self.label} {method} {path}", err) from None

    def _fields(self, method: str, path: str) -> dict[str, str]:
        """A request's log fields."""
        return {"oem": self.oem, "method": method, "path": path}

    # -- tokens ---------------------------------------------------------------------------

    def _obtain(self, refused: frozenset[str]) -> AccessToken:
        """An access token none of ``refused``: the stored one or a refreshed one (the keeper
        calls this one thread at a time per account). A client whose accounts may have no
        refresh token overrides this."""
        return access_token_for(
            self._credentials,
            self._credentials.require(self.oem, self.account_id),
            self._refresher,
            label=self.label,
            refused=refused,
        )

    def _refresher(self) -> Callable[[str], dict[str, Any]]:
        """Called when a refresh is due: reads what one needs (the app's credentials) and
        returns the request that posts a refresh with a given refresh token."""
        raise NotImplementedError

    def _post_token_form(
        self,
        form: Mapping[str, str],
        *,
        what: str,
        retry_at: RetryAt,
        auth: tuple[str, str] | None = None,
    ) -> dict[str, Any]:
        """The token endpoint's JSON answer to ``form`` (with HTTP Basic ``auth`` if given);
        failures as the module docstring says. ``what`` names the request in a refusal
        (``"the refresh"``)."""
        label = self.label
        try:
            response = self._http.post(
                self._token_url,
                data=dict(form),
                auth=httpx.BasicAuth(*auth) if auth is not None else httpx.USE_CLIENT_DEFAULT,
                headers={"Accept": "application/json"},
                timeout=self._timeout,
            )
        except httpx.TransportError as err:
            raise _not_arrived(f"{label} token endpoint", err) from None
        status = response.status_code
        self._log.debug(
            "%s token endpoint answered",
            label,
            extra={"oem": self.oem, "account_id": self.account_id, "status": status},
        )
        document = json_or_none(response)
        if status == 429:
            raise OemRateLimited(
                f"{label} token endpoint: rate limited (HTTP 429)",
                retry_at=retry_at(response, document, self._clock.now()),
            )
        if status >= 500 or status == 408:
            raise OemUnavailable(f"{label} token endpoint: HTTP {status}")
        if status >= 400:
            error = document.get("error") if isinstance(document, dict) else None
            raise CredentialsInvalid(
                f"{label} token endpoint refused {what} for account {self.account_id}: "
                f"HTTP {status} {short(error)}; a person must consent again"
            )
        if not isinstance(document, dict):
            raise OemUnavailable(f"{label} token endpoint: HTTP {status} with a non-JSON body")
        return document


# -- helpers --------------------------------------------------------------------------------


@lru_cache(maxsize=URLS_KEPT)
def parsed_url(text: str) -> httpx.URL:
    """``text`` parsed once: given a string, httpx parses the URL again on every request, which
    cost a fifth of a request's own time (an ``httpx.URL`` is immutable: sharing it is safe)."""
    return httpx.URL(text)


def _not_arrived(where: str, err: httpx.TransportError) -> OemUnavailable:
    """A request that got no answer: timed out or failed to connect, naming httpx's error class
    only (the error itself carries the request: never chain it)."""
    how = "timed out" if isinstance(err, httpx.TimeoutException) else "connection failed"
    return OemUnavailable(f"{where}: {how} ({type(err).__name__})")


def json_or_none(response: httpx.Response) -> Any:
    """The answer's body parsed as JSON, or ``None`` when it is not JSON."""
    try:
        return response.json()
    except ValueError:
        return None


def short(value: Any, limit: int = 120) -> str:
    """``value`` for a message: whitespace collapsed, at most ``limit`` characters (then "…"),
    ``"-"`` for ``None``."""
    text = " ".join(str(value).split()) if value is not None else "-"
    return text[:limit] + ("…" if len(text) > limit else "")
