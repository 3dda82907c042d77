"""Who calls the API, and in which role.

**In the cloud** (``HPSTEER_BACKEND=gcp``) the function is invokable only by the members of
``var.api_invokers`` (Cloud Run's IAM checks their Google-signed ID token before the request
arrives). The function checks the token again (:mod:`hpsteer.runtime.oidc`: signature by Google's
current keys, expiry, audience ``Settings.api_url`` or one of ``Settings.api_extra_audiences``,
Google as issuer, a verified email), so a misconfigured ingress or invoker binding cannot let an
unverified caller through, and takes the token's email as the caller. The email's role comes
from ``Settings.api_roles`` (compared without case); an email with no role is refused. No or a
bad token: 401; a valid token of an email with no role (or none verified): 403; Google's keys
unreachable and none cached: 503.

**Locally** (backend ``local``) there is no identity to check: every call is the fixed
:data:`LOCAL_IDENTITY`, an admin, and every answer says so in :data:`IDENTITY_HEADER`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from hpsteer.api.errors import ApiError
from hpsteer.domain.roles import Role
from hpsteer.runtime.bootstrap import Dependencies
from hpsteer.services.operator.audit import Actor

if TYPE_CHECKING:
    from hpsteer.runtime.oidc import GoogleCerts, OidcVerifier

__all__ = [
    "IDENTITY_HEADER",
    "LOCAL_IDENTITY",
    "Caller",
    "caller_verifier",
    "identify",
    "verifier_key",
]

_log = logging.getLogger(__name__)

LOCAL_IDENTITY = "local-admin@hpsteer.local"
IDENTITY_HEADER = "X-Hpsteer-Identity"


@dataclass(frozen=True, slots=True)
class Caller:
    actor: Actor
    local: bool

    def header(self) -> str:
        if self.local:
            return f"{self.actor.email} (local runtime: fixed {self.actor.role.value} identity)"
        return f"{self.actor.email} ({self.actor.role.value})"


def verifier_key(audience: str | Sequence[str]) -> str:
    """The name under which :func:`identify` keeps its verifier in the dependencies."""
    return f"api-oidc:{audience if isinstance(audience, str) else ','.join(audience)}"


def caller_verifier(
    audience: str | Sequence[str], certs: GoogleCerts | None = None
) -> OidcVerifier:
    """An :class:`~hpsteer.runtime.oidc.OidcVerifier` for callers: any Google-verified email is
    accepted by the token check (people and service accounts alike); the role map decides."""
    from hpsteer.runtime.oidc import AccessDenied, OidcPolicy, OidcVerifier

    class CallerVerifier(OidcVerifier):
        def _check_service_account(self, claims: Mapping[str, Any]) -> None:
            email = claims.get("email")
            if not isinstance(email, str) or not email.strip():
                raise AccessDenied("the token carries no email")
            # Google writes a boolean; some older ID tokens carried the string "true".
            if claims.get("email_verified") not in (True, "true"):
                raise AccessDenied(f"token email {email!r} is not verified")

    audiences = audience if isinstance(audience, str) else tuple(audience)
    return CallerVerifier(OidcPolicy(audience=audiences, service_account="(any caller)"), certs)


def _roles(deps: Dependencies) -> dict[str, Role]:
    return {email.strip().lower(): Role(role) for email, role in deps.settings.api_roles.items()}


def identify(deps: Dependencies, authorization: str | None) -> Caller:
    """The caller of one request (module docstring); ApiError 401/403/503 otherwise."""
    settings = deps.settings
    if settings.backend != "gcp":
        return Caller(Actor(LOCAL_IDENTITY, Role.ADMIN), local=True)
    from hpsteer.runtime.oidc import AccessDenied, AuthenticationFailed, CertsUnavailable

    audience: str | tuple[str, ...] = settings.api_url
    if settings.api_extra_audiences:
        audience = (settings.api_url, *settings.api_extra_audiences)
    verifier = deps.singleton(verifier_key(audience), lambda: caller_verifier(audience))
    try:
        claims = verifier.verify(authorization)
    except AuthenticationFailed as err:
        _log.warning("refused an API call: %s", err)
        raise ApiError(
            401, "unauthenticated", str(err), headers={"WWW-Authenticate": "Bearer"}
        ) from None
    except AccessDenied as err:
        _log.warning("refused an API call: %s", err)
        raise ApiError(403, "forbidden", str(err)) from None
    except CertsUnavailable as err:
        _log.error("cannot check API callers: %s", err)
        raise ApiError(
            503,
            "certs_unavailable",
            "Google's signing keys are unreachable; try again",
            headers={"Retry-After": "30"},
        ) from None
    email = str(claims["email"]).strip().lower()
    role = _roles(deps).get(email)
    if role is None:
        _log.warning("refused an API call of %s: no role configured", email)
        raise ApiError(403, "no_role", f"{email} has no role in this API (HPSTEER_API_ROLES)")
    return Caller(Actor(email, role), local=False)
