"""Standard Webhooks verification: authentic, fresh and not replayed, checked before any parsing.

A sender following the Standard Webhooks specification (https://www.standardwebhooks.com, 1.0.0)
sends three headers with the raw body:

- ``webhook-id``: the message's id, the same on every retry of one message;
- ``webhook-timestamp``: the attempt's time, integer Unix seconds;
- ``webhook-signature``: space-separated ``v1,<base64 HMAC-SHA256>`` entries (several during a
  secret rotation; other schemes, e.g. ``v1a``, are ignored), each over
  ``"{webhook-id}.{webhook-timestamp}.{raw body}"`` keyed with the secret, which is serialised
  as ``whsec_<base64>`` (24 to 64 random bytes).

:class:`WebhookVerifier` promises, in this order:

1. **Headers.** A missing header is :class:`SignatureInvalid` (401: the request carries no
   credentials); an id that is empty, longer than 256 characters, or contains whitespace or
   ``.`` (the specification forbids dots in it, since they delimit the signed content), or a
   timestamp that is not a plain integer, is :class:`WebhookMalformed` (400).
2. **Signature** over the raw bytes, before anything parses the body: every ``v1`` entry (at most
   16) is compared with the HMAC under every accepted key with :func:`hmac.compare_digest`
   (constant time). None matching is :class:`SignatureInvalid` (401), as is a header with no
   well-formed ``v1`` entry.
3. **Freshness.** A timestamp more than ``tolerance`` (5 minutes) before or after the clock is
   :class:`TimestampOutOfTolerance` (400). Checked after the signature, so only an authentic
   sender learns that its clock or queue is late.
4. **Replay.** Only then (the signature is valid) is the id recorded:
   ``webhook_ids/{sha256("{secret name}/{webhook id}")}`` created with ``create()``, holding the
   id, the secret version that verified it, ``received_at``, ``expires_at`` (``received_at`` +
   ``id_retention``, for a Firestore TTL policy on the collection group ``webhook_ids``) and
   ``status``: ``received``, then ``processed`` once the caller has handled the message
   (:meth:`WebhookVerifier.mark_processed`). :meth:`WebhookVerifier.claim` answers
   :attr:`Claim.NEW`, :attr:`Claim.PROCESSED` (a replay of a handled message: do nothing) or
   :attr:`Claim.UNFINISHED` (an earlier delivery was recorded but not handled, e.g. it crashed:
   handle it again; the handling must be idempotent). The hash keeps sender-chosen ids out of
   document paths; the secret's name namespaces ids per endpoint.

**Secrets** come from the secrets port: secret ``secret_name``, its ``latest`` version and the
``previous_versions`` numbered versions below it (Secret Manager numbers versions 1, 2, ...).
Rotation: add a new version (the sender signs with the new and the old secret meanwhile, as the
specification suggests); the old one keeps working while it is within ``previous_versions`` of
the latest; disabling or destroying a version (``SecretNotFound``) removes it at once. Decoded
keys are cached for ``key_cache_ttl`` per instance. Keys and signatures are never logged, stored
or put in an error message; :class:`SigningKey` shows only its version.

Why not the ``standardwebhooks`` package (1.1.0: pure Python, no dependencies, ~120 lines)? It
reads the wall clock (our services take a :class:`~hpsteer.ports.clock.Clock`), holds one secret
per object (rotation needs several), raises ``ValueError``/``binascii.Error`` rather than its own
error on a garbage signature header, and has no replay record. The algorithm is ~40 lines of
``hmac``/``hashlib``/``base64``; the tests check it against the specification's published test
vector, which that package reproduces too.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import re
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from hpsteer.errors import DocumentAlreadyExists, DocumentNotFound, InvalidInput, SecretNotFound
from hpsteer.ports.clock import Clock
from hpsteer.ports.secrets import SecretStore, SecretValue
from hpsteer.ports.store import DocumentStore

__all__ = [
    "HEADER_ID",
    "HEADER_SIGNATURE",
    "HEADER_TIMESTAMP",
    "Claim",
    "Keyring",
    "NoUsableSecret",
    "SignatureInvalid",
    "SigningKey",
    "TimestampOutOfTolerance",
    "VerifiedWebhook",
    "WebhookHeaders",
    "WebhookMalformed",
    "WebhookOptions",
    "WebhookRefused",
    "WebhookVerifier",
    "decode_secret",
    "read_headers",
    "sign",
    "signed_headers",
    "verify_signature",
    "webhook_id_path",
]

_log = logging.getLogger(__name__)

HEADER_ID = "webhook-id"
HEADER_TIMESTAMP = "webhook-timestamp"
HEADER_SIGNATURE = "webhook-signature"
SECRET_PREFIX = "whsec_"
WEBHOOK_IDS = "webhook_ids"

_ID = re.compile(r"[!-~]{1,256}")  # printable ASCII without space
_TIMESTAMP = re.compile(r"[0-9]{1,12}")
_MAX_SIGNATURES = 16
_KEY_BYTES = (24, 64)
_HMAC_BYTES = hashlib.sha256().digest_size


# -- refusals ---------------------------------------------------------------------------------


class WebhookRefused(InvalidInput):
    """A webhook refused before its body was read; ``status`` is the HTTP answer."""

    status = 400


class WebhookMalformed(WebhookRefused):
    status = 400


class TimestampOutOfTolerance(WebhookRefused):
    status = 400


class SignatureInvalid(WebhookRefused):
    status = 401


class NoUsableSecret(InvalidInput):
    """The configured secret has no version that decodes to a key: every webhook is refused."""


# -- options ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WebhookOptions:
    """How an endpoint verifies (defaults until :class:`~hpsteer.config.Settings` carries them)."""

    secret_name: str = "telemetry-webhook-secret"
    previous_versions: int = 1
    """Numbered versions below ``latest`` still accepted (rotation); 0 accepts only the latest."""
    tolerance: timedelta = timedelta(minutes=5)
    id_retention: timedelta = timedelta(hours=24)
    """How long an id is remembered; at least twice ``tolerance`` (past and future skew)."""
    key_cache_ttl: timedelta = timedelta(seconds=60)
    max_body_bytes: int = 1_000_000
    max_samples: int = 500

    def __post_init__(self) -> None:
        if not 0 <= self.previous_versions <= 10:
            raise ValueError("previous_versions must be between 0 and 10")
        if self.tolerance <= timedelta(0):
            raise ValueError("tolerance must be positive")
        if self.id_retention < 2 * self.tolerance:
            raise ValueError("id_retention must be at least twice the tolerance")
        if self.key_cache_ttl < timedelta(0) or self.max_body_bytes < 1 or self.max_samples < 1:
            raise ValueError("key_cache_ttl, max_body_bytes and max_samples must be positive")


# -- keys -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SigningKey:
    """One decoded secret version; its ``repr`` shows the version only."""

    name: str
    version: str
    _key: bytes = field(repr=False)

    def reveal(self) -> bytes:
        return self._key


def decode_secret(secret: SecretValue) -> SigningKey:
    """``whsec_<base64>`` (the prefix optional, padding optional) → the HMAC key.

    Raises :class:`InvalidInput` naming the secret and version, never the payload.
    """
    where = f"secret {secret.name} version {secret.version}"
    try:
        text = secret.reveal_text().strip().removeprefix(SECRET_PREFIX)
        key = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (UnicodeDecodeError, binascii.Error, ValueError):
        raise InvalidInput(f"{where} is not a whsec_<base64> webhook secret") from None
    low, high = _KEY_BYTES
    if not low <= len(key) <= high:
        raise InvalidInput(f"{where} decodes to {len(key)} bytes; Standard Webhooks needs 24-64")
    return SigningKey(secret.name, secret.version, key)


class Keyring:
    """The accepted versions of one secret, read through the port and cached for a while."""

    def __init__(self, secrets: SecretStore, clock: Clock, options: WebhookOptions) -> None:
        self._secrets = secrets
        self._clock = clock
        self._options = options
        self._lock = threading.Lock()
        self._keys: tuple[SigningKey, ...] = ()
        self._read_at: datetime | None = None

    def __repr__(self) -> str:
        return f"Keyring(secret={self._options.secret_name!r}, keys={len(self._keys)})"

    def keys(self) -> tuple[SigningKey, ...]:
        """The accepted keys, newest first; :class:`NoUsableSecret` when there is none."""
        now = self._clock.now()
        with self._lock:
            fresh = self._read_at is not None and now - self._read_at < self._options.key_cache_ttl
            if not fresh:
                self._keys = self._read()
                self._read_at = now
            keys = self._keys
        if not keys:
            raise NoUsableSecret(f"secret {self._options.secret_name} has no usable version")
        return keys

    def _read(self) -> tuple[SigningKey, ...]:
        name = self._options.secret_name
        try:
            latest = self._secrets.get(name, "latest")
        except SecretNotFound:
            return ()
        values = [latest]
        if latest.version.isdigit():
            newest = int(latest.version)
            for number in range(
                newest - 1, max(newest - 1 - self._options.previous_versions, 0), -1
            ):
                try:
                    values.append(self._secrets.get(name, str(number)))
                except SecretNotFound:  # disabled or destroyed: no longer accepted
                    continue
        keys = []
        for value in values:
            try:
                keys.append(decode_secret(value))
            except InvalidInput as err:
                _log.error("webhook secret skipped: %s", err)
        return tuple(keys)


# -- the algorithm ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WebhookHeaders:
    webhook_id: str
    timestamp: int
    """Unix seconds, as signed."""
    signatures: tuple[bytes, ...] = field(repr=False)
    """The decoded ``v1`` entries."""

    @property
    def sent_at(self) -> datetime:
        return datetime.fromtimestamp(self.timestamp, UTC)


def _signed_content(webhook_id: str, timestamp: int, body: bytes) -> bytes:
    return f"{webhook_id}.{timestamp}.".encode() + body


def sign(key: bytes, webhook_id: str, timestamp: int, body: bytes) -> str:
    """The ``v1,<base64>`` signature of one message (senders, the simulated fleet, tests)."""
    digest = hmac.new(key, _signed_content(webhook_id, timestamp, body), hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


def signed_headers(
    keys: Iterable[bytes], webhook_id: str, timestamp: int, body: bytes
) -> dict[str, str]:
    """The three Standard Webhooks headers, signed with every key (as a sender in rotation)."""
    return {
        HEADER_ID: webhook_id,
        HEADER_TIMESTAMP: str(timestamp),
        HEADER_SIGNATURE: " ".join(sign(key, webhook_id, timestamp, body) for key in keys),
    }


def _v1_signatures(header: str) -> tuple[bytes, ...]:
    found = []
    for entry in header.split()[:_MAX_SIGNATURES]:
        scheme, _, encoded = entry.partition(",")
        if scheme != "v1":
            continue
        try:
            decoded = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            continue
        if len(decoded) == _HMAC_BYTES:
            found.append(decoded)
    return tuple(found)


def read_headers(headers: Mapping[str, str]) -> WebhookHeaders:
    """The three headers (names in any case), checked for shape; nothing is verified yet."""
    lower = {name.lower(): value for name, value in headers.items()}
    missing = [h for h in (HEADER_ID, HEADER_TIMESTAMP, HEADER_SIGNATURE) if not lower.get(h)]
    if missing:
        raise SignatureInvalid(f"missing header {', '.join(missing)}")
    webhook_id = lower[HEADER_ID]
    if not _ID.fullmatch(webhook_id) or "." in webhook_id:
        raise WebhookMalformed(
            "webhook-id must be 1-256 printable characters without spaces or '.'"
        )
    timestamp = lower[HEADER_TIMESTAMP].strip()
    if not _TIMESTAMP.fullmatch(timestamp):
        raise WebhookMalformed("webhook-timestamp must be integer Unix seconds")
    signatures = _v1_signatures(lower[HEADER_SIGNATURE])
    if not signatures:
        raise SignatureInvalid("webhook-signature holds no well-formed v1 signature")
    return WebhookHeaders(webhook_id, int(timestamp), signatures)


def verify_signature(
    headers: WebhookHeaders, body: bytes, keys: Sequence[SigningKey]
) -> SigningKey:
    """The key that signed ``body``; :class:`SignatureInvalid` when none did."""
    content = _signed_content(headers.webhook_id, headers.timestamp, body)
    for key in keys:
        expected = hmac.new(key.reveal(), content, hashlib.sha256).digest()
        if any(hmac.compare_digest(expected, given) for given in headers.signatures):
            return key
    raise SignatureInvalid("no signature matches an accepted secret")


def _check_timestamp(headers: WebhookHeaders, now: datetime, tolerance: timedelta) -> None:
    skew = headers.sent_at - now
    if skew < -tolerance:
        raise TimestampOutOfTolerance(f"webhook-timestamp is {-skew} old (at most {tolerance})")
    if skew > tolerance:
        raise TimestampOutOfTolerance(f"webhook-timestamp is {skew} ahead (at most {tolerance})")


# -- the verifier -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class VerifiedWebhook:
    """A webhook whose signature and timestamp were checked; its body is still raw bytes."""

    webhook_id: str
    sent_at: datetime
    secret_version: str
    body: bytes = field(repr=False)


class Claim(StrEnum):
    NEW = "new"
    PROCESSED = "processed"
    UNFINISHED = "unfinished"


def webhook_id_path(secret_name: str, webhook_id: str) -> str:
    digest = hashlib.sha256(f"{secret_name}/{webhook_id}".encode()).hexdigest()
    return f"{WEBHOOK_IDS}/{digest}"


class WebhookVerifier:
    """Verifies the webhooks of one endpoint (see the module docstring)."""

    def __init__(
        self,
        keyring: Keyring,
        store: DocumentStore,
        clock: Clock,
        options: WebhookOptions,
    ) -> None:
        self._keyring = keyring
        self._store = store
        self._clock = clock
        self._options = options

    def verify(self, headers: Mapping[str, str], body: bytes) -> VerifiedWebhook:
        """Headers, signature, freshness; raises a :class:`WebhookRefused`."""
        read = read_headers(headers)
        key = verify_signature(read, body, self._keyring.keys())
        _check_timestamp(read, self._clock.now(), self._options.tolerance)
        return VerifiedWebhook(read.webhook_id, read.sent_at, key.version, body)

    def claim(self, webhook: VerifiedWebhook) -> Claim:
        """Record the id (first delivery) or say what became of the earlier one."""
        path = webhook_id_path(self._options.secret_name, webhook.webhook_id)
        now = self._clock.now()
        try:
            self._store.create(
                path,
                {
                    "endpoint": self._options.secret_name,
                    "webhook_id": webhook.webhook_id,
                    "sent_at": webhook.sent_at,
                    "secret_version": webhook.secret_version,
                    "received_at": now,
                    "expires_at": now + self._options.id_retention,
                    "status": "received",
                },
            )
        except DocumentAlreadyExists:
            existing = self._store.get(path)
            if existing is not None and existing.data.get("status") == "processed":
                return Claim.PROCESSED
            return Claim.UNFINISHED
        return Claim.NEW

    def mark_processed(self, webhook: VerifiedWebhook, **details: int | str) -> None:
        """Mark the id handled: a later delivery of it is a replay (:attr:`Claim.PROCESSED`)."""
        path = webhook_id_path(self._options.secret_name, webhook.webhook_id)
        changes = {"status": "processed", "processed_at": self._clock.now(), **details}
        try:
            self._store.update(path, changes)
        except DocumentNotFound:  # expired and deleted meanwhile: nothing left to mark
            _log.warning("webhook id record %s vanished before it was marked processed", path)
