"""OAuth2 access tokens for manufacturer clients: cached, refreshed, and rotated safely.

Every manufacturer here issues a short-lived access token against a refresh token that may rotate
on use. :func:`refresh_with_rotation` asks the token endpoint with the account's stored refresh
token (:class:`~hpsteer.adapters.credentials.CredentialStore`: one document read per refresh,
never a cached token, so an instance always presents the newest one stored). When that is
refused and another instance has meanwhile stored a newer one, it tries that one once. A refresh
token that comes back different is stored at once, in a transaction that writes only over the
generation this instance read (``CredentialStore.store_refresh_token``): if another instance
stored first, its token stands and this instance just uses the access token it got. A refresh
that does not rotate reseals the account with the newest data key when an older one sealed it
(key rotation). :func:`access_token_from` reads the answer; :class:`AccessToken` is usable until
shortly before it expires. Token values never reach a log line or an error message.

:class:`AccessTokenKeeper` keeps one account's access token in the instance's memory (each
client holds one: one per account and instance) and refreshes it when it is missing, about to
expire, or was refused (a 401): so the credentials document is read only then (about once an
hour per account and instance). It is thread-safe and refreshes once however many threads need
the token at once: the others wait and use the token it got. Refreshing one at a time matters
beyond cost: two threads of one instance refreshing with the same refresh token at once would
present a rotated token twice. A thread whose token was refused refreshes only if the kept
token is still the refused one (another thread may have refreshed meanwhile). The refresh token
itself is never kept between refreshes: every refresh reads the stored one.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from hpsteer.adapters.credentials import AccountCredentials, CredentialStore
from hpsteer.errors import CredentialsInvalid, OemUnavailable
from hpsteer.ports.clock import Clock

__all__ = ["AccessToken", "AccessTokenKeeper", "access_token_from", "refresh_with_rotation"]

_log = logging.getLogger(__name__)

TOKEN_MARGIN = timedelta(seconds=60)
DEFAULT_LIFETIME_S = 3600


@dataclass(frozen=True, slots=True)
class AccessToken:
    """An account's access token; used until ``TOKEN_MARGIN`` before it expires."""

    value: str = field(repr=False)
    expires_at: datetime

    def usable(self, now: datetime) -> bool:
        return now < self.expires_at - TOKEN_MARGIN


class AccessTokenKeeper:
    """One account's access token in this instance (see the module docstring)."""

    def __init__(self, clock: Clock, refresh: Callable[[], AccessToken]) -> None:
        self._clock = clock
        self._refresh = refresh
        self._access: AccessToken | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        access = self._access
        shown = "none" if access is None else f"until {access.expires_at.isoformat()}"
        return f"AccessTokenKeeper({shown})"

    def token(self, *, refused: str | None = None) -> str:
        """The access token to present: the kept one while usable (and not ``refused``: the
        token a request just had refused), else a new one from ``refresh``. A refresh that fails
        raises its error and keeps nothing new."""
        with self._lock:
            access = self._access
            if (
                access is not None
                and access.usable(self._clock.now())
                and (refused is None or access.value != refused)
            ):
                return access.value
            self._access = self._refresh()
            return self._access.value


def refresh_with_rotation(
    credentials: CredentialStore,
    current: AccountCredentials,
    request: Callable[[str], dict[str, Any]],
    *,
    label: str,
) -> dict[str, Any]:
    """The token endpoint's answer for ``current``'s refresh token (see the module docstring).

    ``request`` posts one refresh with the given refresh token. An account without a refresh
    token is :class:`CredentialsInvalid`.
    """
    extra = {"oem": current.manufacturer, "account_id": current.account_id}
    if not current.refresh_token:
        raise CredentialsInvalid(
            f"{label} account {current.account_id} has no refresh token: a person must consent"
        )
    try:
        document = request(current.refresh_token)
    except CredentialsInvalid:
        latest = credentials.account(current.manufacturer, current.account_id)
        if (
            latest is None
            or latest.generation == current.generation
            or not latest.refresh_token
            or latest.refresh_token == current.refresh_token
        ):
            raise
        _log.debug(
            "%s refresh refused; a newer refresh token exists, trying it", label, extra=extra
        )
        current = latest
        document = request(latest.refresh_token)
    rotated = document.get("refresh_token")
    if isinstance(rotated, str) and rotated and rotated != current.refresh_token:
        stored = credentials.store_refresh_token(current, rotated)
        _log.debug(
            "%s refresh token rotated and stored"
            if stored is not None
            else "%s refresh token rotated; another instance stored one first, which stands",
            label,
            extra={**extra, "generation": current.generation},
        )
    else:
        credentials.reseal(current)
    return document


def access_token_from(document: Mapping[str, Any], *, label: str, now: datetime) -> AccessToken:
    """The access token and its expiry from a token endpoint's answer."""
    access = document.get("access_token")
    if not isinstance(access, str) or not access:
        raise OemUnavailable(f"{label} token endpoint: answer without access_token")
    lifetime = document.get("expires_in", DEFAULT_LIFETIME_S)
    if not isinstance(lifetime, int | float) or isinstance(lifetime, bool):
        lifetime = DEFAULT_LIFETIME_S
    return AccessToken(access, now + timedelta(seconds=float(lifetime)))
