"""OAuth2 access tokens for manufacturer clients: cached, refreshed, and rotated safely.

Every manufacturer here issues a short-lived access token against a refresh token that may rotate
on use. :func:`refresh_with_rotation` asks the token endpoint with the stored refresh token; when
that is refused and another instance has meanwhile stored a newer version, it tries that one once;
a refresh token that comes back different is stored as a new secret version before the access
token is used, and the version it replaced (whose token the manufacturer no longer accepts) is
destroyed: Secret Manager bills every version that is not destroyed, and a token rotating many
times a day would otherwise pile versions up without bound. That destroy is best-effort: a
failure is logged at WARNING (manufacturer and account, never a token) and the refresh succeeds.
:func:`access_token_from` reads the answer; :class:`AccessToken` caches it until shortly before it
expires. Token values never reach a log line or an error message.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from hpsteer.errors import CredentialsInvalid, HpsteerError, OemUnavailable
from hpsteer.ports.secrets import SecretStore, SecretValue

__all__ = ["AccessToken", "access_token_from", "refresh_with_rotation"]

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


def refresh_with_rotation(
    secrets: SecretStore,
    refresh_name: str,
    current: SecretValue,
    request: Callable[[str], dict[str, Any]],
    read_secret: Callable[[str], SecretValue],
    *,
    label: str,
    oem: str,
    account_id: str,
) -> dict[str, Any]:
    """The token endpoint's answer for the refresh token ``current`` (see the module docstring).

    ``request`` posts one refresh with the given refresh token; ``read_secret`` reads a secret and
    turns a missing one into the client's own error.
    """
    try:
        document = request(current.reveal_text().strip())
    except CredentialsInvalid:
        latest = read_secret(refresh_name)
        if latest.version == current.version:
            raise
        _log.debug(
            "%s refresh refused; a newer refresh token exists, trying it",
            label,
            extra={"oem": oem, "account_id": account_id},
        )
        current = latest
        document = request(current.reveal_text().strip())
    rotated = document.get("refresh_token")
    if isinstance(rotated, str) and rotated and rotated != current.reveal_text().strip():
        version = secrets.add_version(refresh_name, rotated.encode("utf-8"))
        _log.debug(
            "%s refresh token rotated and stored",
            label,
            extra={"oem": oem, "account_id": account_id, "stored_version": version},
        )
        _destroy_replaced(
            secrets, refresh_name, current, label=label, oem=oem, account_id=account_id
        )
    return document


def _destroy_replaced(
    secrets: SecretStore,
    refresh_name: str,
    replaced: SecretValue,
    *,
    label: str,
    oem: str,
    account_id: str,
) -> None:
    """Destroy the version holding the refresh token a rotation made invalid; never raises."""
    try:
        secrets.destroy_version(refresh_name, replaced.version)
    except HpsteerError as err:  # best-effort: the new token is stored, the refresh has succeeded
        _log.warning(
            "%s could not destroy the replaced refresh token version: %s",
            label,
            type(err).__name__,
            extra={
                "oem": oem,
                "account_id": account_id,
                "replaced_version": replaced.version,
            },
        )


def access_token_from(document: Mapping[str, Any], *, label: str, now: datetime) -> AccessToken:
    """The access token and its expiry from a token endpoint's answer."""
    access = document.get("access_token")
    if not isinstance(access, str) or not access:
        raise OemUnavailable(f"{label} token endpoint: answer without access_token")
    lifetime = document.get("expires_in", DEFAULT_LIFETIME_S)
    if not isinstance(lifetime, int | float) or isinstance(lifetime, bool):
        lifetime = DEFAULT_LIFETIME_S
    return AccessToken(access, now + timedelta(seconds=float(lifetime)))
