"""OAuth2 access tokens for manufacturer clients: cached, stored, refreshed, and rotated safely.

Every manufacturer here issues a short-lived access token (an hour) against a refresh token that
may rotate on use. :func:`access_token_for` gives a client the account's access token from the
credentials document it has just read (:class:`~hpsteer.adapters.credentials.CredentialStore`,
one read): the **stored access token** when it is usable for more than ``TOKEN_MARGIN`` and is
not one this instance saw refused, with no token endpoint call and no write; else a refresh.
A function instance that has not met the account within the hour (dispatch, with its verify
route, and reconcile run on many instances, and a household's commands are hours apart) thus
uses the token another instance got, instead of refreshing (a read, a write and a token
endpoint call).

:func:`refresh_with_rotation` asks the token endpoint with the account's stored refresh token
(read with the document, never a cached one, so an instance always presents the newest one
stored). When that is refused and another instance has meanwhile stored a newer one, it tries
that one once. A refresh token that comes back different is stored at once, with the access
token the same answer carried (sealed alike: no extra write), in a transaction that writes only
over the generation this instance read (``CredentialStore.store_refresh_token``): if another
instance stored first, its tokens stand and this instance just uses the access token it got. A
refresh that does not rotate reseals the account (with its new access token) when an older data
key sealed it (key rotation), and otherwise writes nothing: that access token stays in this
instance's memory only. :func:`access_token_from` reads the answer; :class:`AccessToken` is
usable until shortly before it expires. Token values never reach a log line or an error message.

:class:`AccessTokenKeeper` keeps one account's access token in the instance's memory (each
client holds one: one per account and instance) and gets another when it is missing, about to
expire, or was refused (a 401): so the credentials document is read only then (about once an
hour per account and instance). It is thread-safe and gets one however many threads need the
token at once: the others wait and use the token it got. Getting one at a time matters beyond
cost: two threads of one instance refreshing with the same refresh token at once would present a
rotated token twice. A thread whose token was refused gets another only if the kept token is
still the refused one (another thread may have done so meanwhile). The keeper remembers the last
few tokens refused here and passes them on, so a refused token still stored in the document (its
expiry not reached) is never taken up again: the account is refreshed instead, and the rotation's
write replaces it. The refresh token itself is never kept between refreshes: every refresh reads
the stored one.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from hpsteer.adapters.credentials import AccountCredentials, CredentialStore
from hpsteer.errors import CredentialsInvalid, OemUnavailable
from hpsteer.ports.clock import Clock

__all__ = [
    "AccessToken",
    "AccessTokenKeeper",
    "access_token_for",
    "access_token_from",
    "refresh_with_rotation",
    "stored_access_token",
]

_log = logging.getLogger(__name__)

TOKEN_MARGIN = timedelta(seconds=60)
DEFAULT_LIFETIME_S = 3600
REFUSED_KEPT = 4
"""Access tokens refused here (a 401) that a keeper remembers, never to take them up again."""


@dataclass(frozen=True, slots=True)
class AccessToken:
    """An account's access token; used until ``TOKEN_MARGIN`` before it expires."""

    value: str = field(repr=False)
    expires_at: datetime

    def usable(self, now: datetime) -> bool:
        return now < self.expires_at - TOKEN_MARGIN


class AccessTokenKeeper:
    """One account's access token in this instance (see the module docstring).

    ``obtain`` gets a usable access token that is none of the values it is given (the tokens
    refused here): the stored one or a refreshed one (:func:`access_token_for`)."""

    def __init__(self, clock: Clock, obtain: Callable[[frozenset[str]], AccessToken]) -> None:
        self._clock = clock
        self._obtain = obtain
        self._access: AccessToken | None = None
        self._refused: deque[str] = deque(maxlen=REFUSED_KEPT)
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        access = self._access
        shown = "none" if access is None else f"until {access.expires_at.isoformat()}"
        return f"AccessTokenKeeper({shown})"

    def token(self, *, refused: str | None = None) -> str:
        """The access token to present: the kept one while usable (and not ``refused``: the
        token a request just had refused), else a new one from ``obtain``. A failure raises its
        error and keeps nothing new."""
        with self._lock:
            if refused is not None and refused not in self._refused:
                self._refused.append(refused)
            access = self._access
            if (
                access is not None
                and access.usable(self._clock.now())
                and (refused is None or access.value != refused)
            ):
                return access.value
            self._access = self._obtain(frozenset(self._refused))
            return self._access.value


def stored_access_token(
    account: AccountCredentials, now: datetime, *, refused: Collection[str] = ()
) -> AccessToken | None:
    """The access token stored with ``account``'s credentials, if it is usable at ``now`` (more
    than ``TOKEN_MARGIN`` left) and is none of ``refused``; else ``None``."""
    if account.access_token is None or account.access_expires_at is None:
        return None
    stored = AccessToken(account.access_token, account.access_expires_at)
    if not stored.usable(now) or stored.value in refused:
        return None
    return stored


def access_token_for(
    credentials: CredentialStore,
    account: AccountCredentials,
    refresher: Callable[[], Callable[[str], dict[str, Any]]],
    *,
    label: str,
    refused: Collection[str] = (),
) -> AccessToken:
    """``account``'s access token (just read from the store): the stored one if usable and not
    ``refused``, else a new one from :func:`refresh_with_rotation` (which stores it with the
    rotated refresh token). ``refresher`` is called only when a refresh is due: it reads what a
    refresh needs (the manufacturer app's credentials) and returns the request that posts one
    refresh with a given refresh token."""
    stored = stored_access_token(account, credentials.clock.now(), refused=refused)
    if stored is not None:
        _log.debug(
            "%s access token taken from the credentials document",
            label,
            extra={
                "oem": account.manufacturer,
                "account_id": account.account_id,
                "generation": account.generation,
            },
        )
        return stored
    document = refresh_with_rotation(credentials, account, refresher(), label=label)
    return access_token_from(document, label=label, now=credentials.clock.now())


def refresh_with_rotation(
    credentials: CredentialStore,
    current: AccountCredentials,
    request: Callable[[str], dict[str, Any]],
    *,
    label: str,
) -> dict[str, Any]:
    """The token endpoint's answer for ``current``'s refresh token (see the module docstring);
    its access token is stored with the rotated refresh token (or a reseal), when either is
    written.

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
    access = _parsed_or_none(document, now=credentials.clock.now())
    token, expires_at = (None, None) if access is None else (access.value, access.expires_at)
    rotated = document.get("refresh_token")
    if isinstance(rotated, str) and rotated and rotated != current.refresh_token:
        stored = credentials.store_refresh_token(
            current, rotated, access_token=token, access_expires_at=expires_at
        )
        _log.debug(
            "%s refresh token rotated and stored"
            if stored is not None
            else "%s refresh token rotated; another instance stored one first, which stands",
            label,
            extra={**extra, "generation": current.generation},
        )
    else:
        credentials.reseal(current, access_token=token, access_expires_at=expires_at)
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


def _parsed_or_none(document: Mapping[str, Any], *, now: datetime) -> AccessToken | None:
    """The answer's access token, or ``None`` (the caller's :func:`access_token_from` then says
    what is wrong with the answer; the rotated refresh token is stored all the same)."""
    try:
        return access_token_from(document, label="token endpoint", now=now)
    except OemUnavailable:
        return None
