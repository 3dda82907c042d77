"""The OIDC check an HTTP function that Cloud Tasks calls runs before it reads the request body.

A Cloud Task with an ``oidcToken`` arrives with ``Authorization: Bearer <ID token>``: a JWT that
Google signed (RS256, a ``kid`` naming one of the certificates published at
:data:`GOOGLE_CERTS_URL`), whose ``aud`` is the task's ``oidcToken.audience`` (by default the
task's URL, i.e. the function's URL), whose ``iss`` is ``https://accounts.google.com`` or
``accounts.google.com``, and whose ``email`` is the task's ``oidcToken.serviceAccountEmail`` with
``email_verified`` true. :meth:`OidcVerifier.verify` promises:

- it returns the token's claims only when the signature, ``iat``/``exp`` (within the policy's
  clock skew), audience, issuer, email and ``email_verified`` all hold;
- :class:`AuthenticationFailed` (HTTP 401): no or malformed header, not a JWT, unknown key, bad
  signature, expired or not yet valid, wrong audience, wrong issuer;
- :class:`AccessDenied` (HTTP 403): a genuine Google token, but not for the expected service
  account, or its email is not verified;
- :class:`CertsUnavailable` (HTTP 503, a :class:`~hpsteer.errors.TransientError`): Google's
  certificates could not be fetched and none are cached, so nothing can be said about the token;
- no error message ever contains the token (google-auth's own messages may quote a malformed
  token or its segments, so those are never passed on for a token that does not parse, and every
  message is scrubbed of the token before it is raised).

Signature, expiry and audience are checked by google-auth (:func:`google.auth.jwt.decode`); no
cryptography is written here. What is hand-written is the certificate cache
(:class:`GoogleCerts`), because ``google.oauth2.id_token.verify_token`` fetches the certificates on
every call, and google-auth's documented remedy (a CacheControl-wrapped ``requests`` session) would
add two dependencies for a dict and a deadline. The cache is thin: it keeps the certificates until
the response's ``Cache-Control: max-age`` runs out (one hour when there is none), refetches once
when a token names a ``kid`` it does not hold (Google rotated its keys), but at most once a minute
for such misses, so a stream of tokens with made-up key ids cannot turn into a stream of fetches.
When a refresh fails it keeps serving the certificates it has and tries again a minute later.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from google.auth import exceptions as google_auth_exceptions
from google.auth import jwt

from hpsteer.errors import TransientError

if TYPE_CHECKING:
    import httpx

__all__ = [
    "GOOGLE_CERTS_URL",
    "AccessDenied",
    "AuthenticationFailed",
    "CertsUnavailable",
    "GoogleCerts",
    "OidcPolicy",
    "OidcVerifier",
    "fetch_google_certs",
]

_log = logging.getLogger(__name__)

GOOGLE_CERTS_URL = "https://www.googleapis.com/oauth2/v1/certs"
"""Google's ID-token signing certificates: a JSON object of key id to PEM X.509 certificate."""

_FETCH_TIMEOUT_S = 5.0
_FALLBACK_TTL_S = 3600.0
"""How long certificates are kept when the response carries no ``max-age``."""
_MIN_TTL_S = 60.0
"""A floor under ``max-age``, so that a ``max-age=0`` cannot make every request fetch."""
_MISS_REFETCH_COOLDOWN_S = 60.0
"""At most one refetch per this many seconds because a token named an unknown key id."""
_RETRY_AFTER_FAILURE_S = 60.0
"""After a failed refresh, the stale certificates are served this long before trying again."""
_MAX_MESSAGE_CHARS = 300

CertsFetcher = Callable[[], tuple[Mapping[str, str], float | None]]
"""Returns (key id -> PEM certificate, seconds they stay fresh or None); raises CertsUnavailable."""


class AuthenticationFailed(Exception):
    """The request does not carry a valid Google ID token for this function (HTTP 401)."""

    status = 401


class AccessDenied(Exception):
    """A valid Google ID token, but not of the service account this function expects (HTTP 403)."""

    status = 403


class CertsUnavailable(TransientError):
    """Google's signing certificates could not be fetched and none are cached (HTTP 503)."""

    status = 503


@dataclass(frozen=True, slots=True)
class OidcPolicy:
    """What a token must say: its audience (the function's URL; or one of several) and the
    tasks' service account."""

    audience: str | tuple[str, ...]
    service_account: str
    issuers: tuple[str, ...] = ("https://accounts.google.com", "accounts.google.com")
    clock_skew_s: int = 10


class GoogleCerts:
    """Google's signing certificates, fetched through ``fetch`` and kept while they are fresh.

    Thread-safe: a function instance serving concurrent requests fetches once, not once per thread.
    """

    def __init__(
        self, fetch: CertsFetcher | None = None, *, now: Callable[[], float] = time.time
    ) -> None:
        self._fetch = fetch if fetch is not None else fetch_google_certs
        self._now = now
        self._lock = threading.Lock()
        self._certs: Mapping[str, str] = {}
        self._fresh_until: float | None = None
        self._last_miss_refetch_at: float | None = None

    def get(self, kid: str | None) -> Mapping[str, str]:
        """The current certificates; refreshed first if stale, or once if ``kid`` is unknown.

        The result may still lack ``kid``: the caller then rejects the token.
        """
        with self._lock:
            now = self._now()
            if self._fresh_until is None or now >= self._fresh_until:
                self._refresh(now)
            elif kid is not None and kid not in self._certs and self._may_refetch_for_miss(now):
                self._last_miss_refetch_at = now
                self._refresh(now)
            return self._certs

    def _may_refetch_for_miss(self, now: float) -> bool:
        last = self._last_miss_refetch_at
        return last is None or now - last >= _MISS_REFETCH_COOLDOWN_S

    def _refresh(self, now: float) -> None:
        try:
            certs, max_age_s = self._fetch()
        except CertsUnavailable as err:
            if not self._certs:
                raise
            _log.warning("kept stale Google certificates: %s", err)
            self._fresh_until = now + _RETRY_AFTER_FAILURE_S
            return
        self._certs = dict(certs)
        ttl_s = _FALLBACK_TTL_S if max_age_s is None else max(max_age_s, _MIN_TTL_S)
        self._fresh_until = now + ttl_s


class OidcVerifier:
    """Checks the ``Authorization`` header of one request against an :class:`OidcPolicy`."""

    def __init__(self, policy: OidcPolicy, certs: GoogleCerts | None = None) -> None:
        self._policy = policy
        self._certs = certs if certs is not None else GoogleCerts()

    def verify(self, authorization: str | None) -> Mapping[str, Any]:
        """The token's claims, or AuthenticationFailed (401) / AccessDenied (403).

        CertsUnavailable (503) escapes only when Google's certificates were never fetched.
        """
        token = _bearer_token(authorization)
        try:
            claims = self._verified_claims(token)
            self._check_issuer(claims)
            self._check_service_account(claims)
        except (AuthenticationFailed, AccessDenied) as err:
            raise type(err)(_scrubbed(str(err), token)) from None
        return claims

    def _verified_claims(self, token: str) -> Mapping[str, Any]:
        kid = _key_id(token)
        certs = self._certs.get(kid)
        if kid is not None and kid not in certs:
            raise AuthenticationFailed(f"token key id {kid!r} is not among Google's certificates")
        try:
            claims: Mapping[str, Any] = jwt.decode(  # type: ignore[no-untyped-call]  # google-auth
                token,
                certs=certs,
                audience=(
                    self._policy.audience
                    if isinstance(self._policy.audience, str)
                    else list(self._policy.audience)
                ),
                clock_skew_in_seconds=self._policy.clock_skew_s,
            )
        except (google_auth_exceptions.GoogleAuthError, ValueError) as err:
            raise AuthenticationFailed(f"token rejected: {err}") from None
        return claims

    def _check_issuer(self, claims: Mapping[str, Any]) -> None:
        issuer = claims.get("iss")
        if issuer not in self._policy.issuers:
            raise AuthenticationFailed(
                f"token issuer is {issuer!r}, expected one of {list(self._policy.issuers)}"
            )

    def _check_service_account(self, claims: Mapping[str, Any]) -> None:
        email = claims.get("email")
        if email != self._policy.service_account:
            raise AccessDenied(
                f"token email is {email!r}, expected {self._policy.service_account!r}"
            )
        # Google writes a boolean; some older ID tokens carried the string "true".
        if claims.get("email_verified") not in (True, "true"):
            raise AccessDenied(f"token email {email!r} is not verified")


def fetch_google_certs(
    *,
    url: str = GOOGLE_CERTS_URL,
    timeout_s: float = _FETCH_TIMEOUT_S,
    transport: httpx.BaseTransport | None = None,
) -> tuple[dict[str, str], float | None]:
    """GET Google's certificates: (key id -> PEM certificate, seconds they stay fresh or None).

    Freshness is the response's ``Cache-Control`` ``max-age`` less its ``Age``. Any failure
    (network, non-2xx, not a JSON object of strings) raises :class:`CertsUnavailable`.
    """
    import httpx  # Lazily: only an instance that verifies a token pays for it.

    try:
        with httpx.Client(timeout=timeout_s, transport=transport) as client:
            response = client.get(url)
            response.raise_for_status()
            body = response.json()
    except (httpx.HTTPError, ValueError) as err:
        raise CertsUnavailable(f"fetching {url} failed: {err}") from err
    if not isinstance(body, dict) or not all(
        isinstance(kid, str) and isinstance(pem, str) for kid, pem in body.items()
    ):
        raise CertsUnavailable(f"{url} did not answer a JSON object of key id to certificate")
    return body, _fresh_for_s(response.headers)


def _fresh_for_s(headers: Mapping[str, str]) -> float | None:
    max_age_s = _max_age_s(headers.get("cache-control", ""))
    if max_age_s is None:
        return None
    age = headers.get("age", "").strip()
    return max(max_age_s - (int(age) if age.isdigit() else 0), 0.0)


def _max_age_s(cache_control: str) -> float | None:
    for directive in cache_control.split(","):
        name, _, value = directive.strip().partition("=")
        if name.lower() == "max-age" and value.strip().isdigit():
            return float(value.strip())
    return None


def _bearer_token(authorization: str | None) -> str:
    if authorization is None or not authorization.strip():
        raise AuthenticationFailed("no Authorization header")
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer":
        raise AuthenticationFailed("Authorization header is not a Bearer token")
    token = token.strip()
    if not token or any(character.isspace() for character in token):
        raise AuthenticationFailed("Authorization header carries no single Bearer token")
    return token


def _key_id(token: str) -> str | None:
    """The ``kid`` of the unverified header; google-auth's message may quote the token: dropped."""
    try:
        header = jwt.decode_header(token)  # type: ignore[no-untyped-call]  # google-auth untyped
    except (google_auth_exceptions.GoogleAuthError, ValueError):
        raise AuthenticationFailed("token is not a JWT (header.payload.signature)") from None
    kid = header.get("kid")
    if kid is not None and not isinstance(kid, str):
        raise AuthenticationFailed("token header's kid is not a string")
    return kid


def _scrubbed(message: str, token: str) -> str:
    """``message`` without the token or any of its segments, and not longer than a log line."""
    for secret in (token, *token.split(".")):
        if len(secret) >= 8:
            message = message.replace(secret, "<token>")
    if len(message) > _MAX_MESSAGE_CHARS:
        message = message[: _MAX_MESSAGE_CHARS - 1] + "…"
    return message
