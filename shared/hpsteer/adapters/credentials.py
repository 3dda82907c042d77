"""Where the households' OAuth credentials live: sealed in the document store, keyed by one secret.

**Why not one Secret Manager secret per household.** Secret Manager bills $0.06 a month for every
active secret version. One secret per account and credential (client id, perhaps a client
secret, and the rotating refresh token: 2.65 active versions per account on average) came to
$0.16 per device-month, sixteen times issue 10's whole budget of $0.01. So:

- **The manufacturers' application credentials** stay in Secret Manager: the OAuth client id and
  (for confidential clients) client secret of hpsteer's registration in each manufacturer's
  developer portal, one set per manufacturer and environment (each client module names them:
  ``client_id_secret_name()``...). All three manufacturers register clients per application
  (reference/manufacturer-apis.md §1.1, §2.1, §3.1), so no client id is per household. They are
  read on first use and kept for the instance's life (:meth:`CredentialStore.app_secret`): to
  rotate one, add a version and redeploy (or wait for the instances to be replaced).
- **Each household account's credentials** are one document,
  ``manufacturers/{manufacturer}/credentials/{account_id}``, beside the account's rate budget
  (``manufacturers/{manufacturer}/accounts/{account_id}``, written on every call: kept apart so
  that the budget's transactions never contend with a rotation) and the baselines. What is
  secret is sealed in one field; the rest says what the document is::

      manufacturer, account_id   plain, for an operator reading the store
      generation                 1 at onboarding, +1 at every write (a rotation's precondition)
      onboarded_at, stored_at    when a person consented; when the sealed value last changed
      sealed                     {alg: "AES-256-GCM", kid: "<key version>", nonce, ciphertext}
      access_expires_at          when the sealed access token expires (absent: none stored)

  The sealed plaintext is a JSON object: ``refresh_token``; the ``access_token`` the last
  refresh got, if it was stored (below); and, only for a myUplink household that runs its own
  app (client-credentials grant), that app's ``client_id`` and ``client_secret``: credentials
  that are genuinely per account travel with the account.
- **The current access token** is stored with the refresh token it came with, in the same
  envelope (same data key, same associated data), its expiry in clear beside it, so that a
  function instance that has not met the account within the hour uses it instead of refreshing
  (:func:`hpsteer.adapters.oauth.access_token_for`: one document read instead of two reads, a
  write and a call to the token endpoint). It is written only by a write that happens anyway: a
  rotation (:meth:`CredentialStore.store_refresh_token`) or a key-rotation reseal
  (:meth:`CredentialStore.reseal`); a refresh that writes nothing (the refresh token did not
  rotate, the key is current) leaves the stored one, which is then older and expires first. An
  access token is less powerful than the refresh token beside it (it lives an hour and cannot
  mint others), so storing it sealed there widens nothing. The clear expiry is not authenticated:
  altering it at worst makes an instance present an expired token (a 401, then a refresh) or
  refresh early. A new consent (:meth:`CredentialStore.onboard`) drops it. Documents written
  before access tokens were stored open as before, without one: their next refresh adds it.
- **Sealing**: AES-256-GCM (``cryptography``'s ``AESGCM``) with a random 96-bit nonce per
  encryption and the document's path as associated data, so a ciphertext copied into another
  account's document (or altered in any bit) does not decrypt: :class:`CredentialsInvalid`. Nonce
  and ciphertext are stored base64 (the store's values have no bytes type).
- **The data key** is one Secret Manager secret per environment, :data:`KEY_SECRET`: 32 random
  bytes, base64 (``head -c 32 /dev/urandom | base64 | gcloud secrets versions add
  credentials-encryption-key --data-file=-``). :class:`DataKeys` reads its ``latest`` version on
  first use and keeps it for the instance's life; ``kid`` is that version's number. The newest
  version seals; the :data:`PREVIOUS_KEY_VERSIONS` numbered versions below it still open (each
  read once, when a document sealed with it is first met); a version above the newest (the key
  was rotated after this instance read it) is read when met and seals from then on. **Key
  rotation**: add a version; every write seals with the newest, and a successful token refresh
  reseals an account still sealed with an older key (:meth:`CredentialStore.reseal`), so every
  active account moves to the new key within an access token's lifetime (an hour); destroy the
  old version only after that (a document still sealed with it can no longer be opened: its
  household must consent again). The access token is in the same envelope, so it opens, and
  moves to the new key, exactly as the refresh token does.

**Why a data key read once per instance, not Cloud KMS per operation.** KMS bills $0.03 per
10,000 operations: a decrypt per token refresh (hourly access tokens, ~730 refreshes per account
a month) would cost $0.002 per device-month, a fifth of the whole budget, and put a KMS call
(and its availability) on every refresh. The data key costs one Secret Manager access per
instance start, whatever the fleet. **What is weaker**: the key sits in every dispatch and
reconcile instance's memory for its life (a memory dump or a code-execution bug there exposes every
household's token), anyone granted ``secretAccessor`` on the key and read access to Firestore can
open every document, and no audit log records each decryption (KMS's data-access logs would).
Wrapping the data key with a KMS key (unwrapped once per instance start: the same cost) would add
a non-exportable root key and an audit trail; it is not done yet.

**Rotation of a refresh token** (:meth:`CredentialStore.store_refresh_token`) writes the new
sealed value only if the document is still the one this instance read the old token from: a
refresh that got an access token (every one, in practice) is one write with the document's
``update_time`` as read for precondition (no second read: about 22 reads per device-day fewer,
one for each hourly refresh); otherwise a transaction that checks the ``generation``. Every
write moves both on. When another instance wrote first, nothing is written and
``None`` is returned: its token stands, with the access token stored with it
(:mod:`hpsteer.adapters.oauth` then uses the access token it got and, if a later refresh is
refused, tries the newer stored token once).

**Nothing secret reaches a log line, an error message, a ``repr`` or an unsealed field**:
messages name the manufacturer, the account, the generation and the key version, never a token,
a key, a nonce or a ciphertext.

:func:`account_known` (does hpsteer hold credentials for an account?) reads the document only,
without the key. :func:`onboard_account` stores an account's first refresh token (after a
person's consent) for code that holds the ports rather than a :class:`CredentialStore`.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import os
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final

from hpsteer.errors import (
    CredentialsInvalid,
    DocumentNotFound,
    InvalidInput,
    PreconditionFailed,
    SecretNotFound,
)
from hpsteer.ports.clock import Clock
from hpsteer.ports.secrets import SecretStore
from hpsteer.ports.store import Document, DocumentStore, Transaction

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

__all__ = [
    "ALGORITHM",
    "KEY_BYTES",
    "KEY_SECRET",
    "NONCE_BYTES",
    "PREVIOUS_KEY_VERSIONS",
    "AccountCredentials",
    "CredentialStore",
    "DataKeys",
    "account_known",
    "add_data_key",
    "credentials_path",
    "ensure_data_key",
    "onboard_account",
]

KEY_SECRET: Final = "credentials-encryption-key"
"""The Secret Manager secret holding the data key (one per environment: one per project)."""
PREVIOUS_KEY_VERSIONS: Final = 1
"""Numbered key versions below the newest that still open documents (a rotation's overlap)."""
ALGORITHM: Final = "AES-256-GCM"
KEY_BYTES: Final = 32
NONCE_BYTES: Final = 12
_TAG_BYTES: Final = 16
_MANUFACTURER = re.compile(r"^[a-z][a-z0-9_]{1,39}$")
_ACCOUNT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")
"""As the rate budget's account ids (the two documents are named alike)."""
_SECRET_FIELDS: Final = ("refresh_token", "client_id", "client_secret")
"""The account's long-lived credentials in the sealed plaintext (``access_token`` is beside
them: what a refresh got, replaced by the next one)."""
_ACCESS_TOKEN: Final = "access_token"
_ACCESS_EXPIRES_AT: Final = "access_expires_at"

_log = logging.getLogger(__name__)


def credentials_path(manufacturer: str, account_id: str) -> str:
    """``manufacturers/{manufacturer}/credentials/{account_id}``; malformed names are refused."""
    if not isinstance(manufacturer, str) or not _MANUFACTURER.match(manufacturer):
        raise InvalidInput(f"not a manufacturer name: {str(manufacturer)[:60]!r}")
    if not isinstance(account_id, str) or not _ACCOUNT_ID.match(account_id):
        raise InvalidInput(
            f"account id {str(account_id)[:60]!r} must match {_ACCOUNT_ID.pattern} "
            "(it names a document as it is)"
        )
    return f"manufacturers/{manufacturer}/credentials/{account_id}"


def account_known(store: DocumentStore, manufacturer: str, account_id: str) -> bool:
    """Whether hpsteer holds credentials for the account (it was onboarded): one document read,
    no secret read, nothing opened. An account id that cannot name a document is not known; a
    malformed manufacturer name is :class:`InvalidInput`. A store that does not answer raises
    its own (transient) error, never "unknown"."""
    if not isinstance(manufacturer, str) or not _MANUFACTURER.match(manufacturer):
        raise InvalidInput(f"not a manufacturer name: {str(manufacturer)[:60]!r}")
    if not isinstance(account_id, str) or not _ACCOUNT_ID.match(account_id):
        return False
    document = store.get(credentials_path(manufacturer, account_id))
    return document is not None and isinstance(document.data.get("sealed"), dict)


@dataclass(frozen=True, slots=True)
class AccountCredentials:
    """One account's opened credentials; its ``repr`` shows no secret."""

    manufacturer: str
    account_id: str
    generation: int
    """The document's write count when read: a rotation writes only over this generation."""
    key_version: str
    """The data key version that sealed them."""
    refresh_token: str | None = field(default=None, repr=False)
    client_id: str | None = field(default=None, repr=False)
    """Only for an account with its own app (myUplink's client-credentials grant)."""
    client_secret: str | None = field(default=None, repr=False)
    access_token: str | None = field(default=None, repr=False)
    """The access token stored with them (module docstring), or ``None``."""
    access_expires_at: datetime | None = None
    """When ``access_token`` expires (``None`` exactly when there is none)."""
    update_time: datetime | None = field(default=None, compare=False)
    """The document's ``update_time`` when these were read or written (``None``: not known):
    a rotation over them is then one conditional write, no transaction (:meth:`CredentialStore.
    store_refresh_token`)."""

    def secrets(self) -> dict[str, str]:
        """The long-lived secret fields that are set, by name (the access token aside)."""
        return {
            name: value for name in _SECRET_FIELDS if isinstance(value := getattr(self, name), str)
        }


# -- the data key -----------------------------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: object) -> bytes | None:
    if not isinstance(text, str):
        return None
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None


def add_data_key(secrets: SecretStore, name: str = KEY_SECRET) -> str:
    """Add a new version of 32 random bytes to the data key secret; return its version.

    Operators use ``gcloud`` (module docstring); this is for local runs and tests."""
    return secrets.add_version(name, _b64(os.urandom(KEY_BYTES)).encode("ascii"))


def ensure_data_key(secrets: SecretStore, name: str = KEY_SECRET) -> str:
    """The data key's latest version, adding the first one if the secret has none."""
    try:
        return secrets.get(name).version
    except SecretNotFound:
        return add_data_key(secrets, name)


class DataKeys:
    """The data key's accepted versions, each read once per instance (module docstring)."""

    def __init__(
        self,
        secrets: SecretStore,
        name: str = KEY_SECRET,
        *,
        previous_versions: int = PREVIOUS_KEY_VERSIONS,
    ) -> None:
        if not 0 <= previous_versions <= 10:
            raise InvalidInput("previous_versions must be between 0 and 10")
        self._secrets = secrets
        self._name = name
        self._previous = previous_versions
        self._lock = threading.Lock()
        self._newest: str | None = None
        self._ciphers: dict[str, AESGCM | None] = {}
        """By version; ``None``: not accepted (too old, destroyed, missing)."""

    def __repr__(self) -> str:
        return f"DataKeys(secret={self._name!r}, newest={self._newest!r})"

    @property
    def name(self) -> str:
        return self._name

    def newest(self) -> str:
        """The version that seals (read on first use)."""
        return self._sealing()[0]

    def seal(self, plaintext: bytes, associated: bytes) -> dict[str, str]:
        """The sealed envelope of ``plaintext``, bound to ``associated`` (the document path)."""
        version, cipher = self._sealing()
        nonce = os.urandom(NONCE_BYTES)
        ciphertext = cipher.encrypt(nonce, plaintext, associated)
        return {
            "alg": ALGORITHM,
            "kid": version,
            "nonce": _b64(nonce),
            "ciphertext": _b64(ciphertext),
        }

    def open(self, sealed: object, associated: bytes, *, where: str) -> tuple[str, bytes]:
        """(key version, plaintext) of an envelope :meth:`seal` made for ``associated``;
        anything else is :class:`CredentialsInvalid` naming ``where`` and the key version."""
        from cryptography.exceptions import InvalidTag

        if not isinstance(sealed, Mapping) or sealed.get("alg") != ALGORITHM:
            raise CredentialsInvalid(f"{where}: not an {ALGORITHM} envelope")
        kid = sealed.get("kid")
        nonce = _unb64(sealed.get("nonce"))
        ciphertext = _unb64(sealed.get("ciphertext"))
        if (
            not isinstance(kid, str)
            or nonce is None
            or len(nonce) != NONCE_BYTES
            or ciphertext is None
            or len(ciphertext) < _TAG_BYTES
        ):
            raise CredentialsInvalid(f"{where}: a malformed {ALGORITHM} envelope")
        cipher = self._opening(kid)
        if cipher is None:
            raise CredentialsInvalid(
                f"{where}: sealed with version {kid[:20]} of secret {self._name}, which is not "
                f"accepted (newest {self.newest()}, {self._previous} previous accepted); "
                "a person must consent again"
            )
        try:
            return kid, cipher.decrypt(nonce, ciphertext, associated)
        except InvalidTag:
            raise CredentialsInvalid(
                f"{where}: does not open with key version {kid} (altered, or copied from "
                "another document)"
            ) from None

    # -- reading the secret ---------------------------------------------------------------------

    def _sealing(self) -> tuple[str, AESGCM]:
        with self._lock:
            if self._newest is None:
                version, cipher = self._read("latest")
                self._ciphers[version] = cipher
                self._newest = version
            newest = self._newest
            sealing = self._ciphers[newest]
        assert sealing is not None  # the newest was read successfully
        return newest, sealing

    def _opening(self, version: str) -> AESGCM | None:
        newest = self.newest()
        with self._lock:
            if version in self._ciphers:
                return self._ciphers[version]
            cipher: AESGCM | None = None
            if version.isdigit() and newest.isdigit() and not version.startswith("0"):
                wanted, current = int(version), int(newest)
                if wanted > current or wanted >= current - self._previous:
                    try:
                        cipher = self._read(version)[1]
                    except CredentialsInvalid:
                        cipher = None  # destroyed, missing or malformed: not accepted
                    if cipher is not None and wanted > current:
                        self._newest = version  # the key was rotated after this instance read
                        _log.info(
                            "credentials data key rotated; sealing with the newer version",
                            extra={"secret": self._name, "key_version": version},
                        )
            self._ciphers[version] = cipher
            return cipher

    def _read(self, version: str) -> tuple[str, AESGCM]:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        try:
            value = self._secrets.get(self._name, version)
        except SecretNotFound as err:
            raise CredentialsInvalid(
                f"the credentials data key is missing ({err}): no household's credentials "
                "can be opened"
            ) from None
        where = f"secret {value.name} version {value.version}"
        try:
            key = base64.b64decode(value.reveal().strip(), validate=True)
        except (binascii.Error, ValueError):
            raise CredentialsInvalid(f"{where} is not base64") from None
        if len(key) != KEY_BYTES:
            raise CredentialsInvalid(f"{where} is {len(key)} bytes, not {KEY_BYTES}")
        _log.debug(
            "credentials data key read", extra={"secret": value.name, "key_version": value.version}
        )
        return value.version, AESGCM(key)


# -- the store --------------------------------------------------------------------------------


class CredentialStore:
    """The manufacturers' app credentials and the households' sealed credentials (module
    docstring); one per instance, shared by every client, so each secret is read once."""

    def __init__(
        self,
        store: DocumentStore,
        secrets: SecretStore,
        clock: Clock,
        *,
        keys: DataKeys | None = None,
    ) -> None:
        self._store = store
        self._secrets = secrets
        self._clock = clock
        self._keys = keys if keys is not None else DataKeys(secrets)
        self._app: dict[str, str] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"CredentialStore(app_secrets_read={len(self._app)}, keys={self._keys!r})"

    @property
    def keys(self) -> DataKeys:
        return self._keys

    @property
    def clock(self) -> Clock:
        return self._clock

    # -- the manufacturers' applications ------------------------------------------------------

    def app_secret(self, name: str) -> str:
        """A manufacturer's application credential (client id or secret), read once and kept;
        a missing one is :class:`CredentialsInvalid` naming the secret."""
        with self._lock:
            cached = self._app.get(name)
        if cached is not None:
            return cached
        try:
            value = self._secrets.get(name).reveal_text().strip()
        except SecretNotFound as err:
            raise CredentialsInvalid(f"manufacturer app credentials missing: {err}") from None
        with self._lock:
            return self._app.setdefault(name, value)

    # -- the households' accounts -------------------------------------------------------------

    def account(self, manufacturer: str, account_id: str) -> AccountCredentials | None:
        """The account's credentials as stored now (one document read); ``None`` if it was
        never onboarded."""
        path = credentials_path(manufacturer, account_id)
        document = self._store.get(path)
        return None if document is None else self._opened(document, manufacturer, account_id)

    def require(self, manufacturer: str, account_id: str) -> AccountCredentials:
        """As :meth:`account`, but an account never onboarded is :class:`CredentialsInvalid`."""
        found = self.account(manufacturer, account_id)
        if found is None:
            raise CredentialsInvalid(
                f"{manufacturer} account {account_id} has no stored credentials: "
                "a person must consent (onboarding)"
            )
        return found

    def onboard(
        self,
        manufacturer: str,
        account_id: str,
        *,
        refresh_token: str | None = None,
        client_id: str | None = None,
        client_secret: str | None = None,
    ) -> AccountCredentials:
        """Store an account's credentials after a person's consent: its refresh token, or (an
        account with its own app) that app's client id and secret. A later consent replaces
        them; the generation moves on, so no instance's rotation can overwrite the new ones."""
        given = {"refresh_token": refresh_token, "client_id": client_id}
        given["client_secret"] = client_secret
        values = {k: v for k, v in given.items() if v is not None}
        for name, value in values.items():
            if not isinstance(value, str) or not value.strip():
                raise InvalidInput(f"onboarding {manufacturer} account {account_id}: empty {name}")
        if refresh_token is None and (client_id is None or client_secret is None):
            raise InvalidInput(
                f"onboarding {manufacturer} account {account_id}: a refresh token, or a client "
                "id and secret, is needed"
            )
        path = credentials_path(manufacturer, account_id)
        sealed = self._seal(path, values)
        now = self._clock.now()

        def attempt(tx: Transaction) -> int:
            document = tx.get(path)
            generation = _generation(document) + 1
            tx.set(
                path,
                {
                    "manufacturer": manufacturer,
                    "account_id": account_id,
                    "generation": generation,
                    "onboarded_at": now,
                    "stored_at": now,
                    "sealed": sealed,
                },
            )
            return generation

        generation = self._store.run_transaction(attempt)
        _log.info(
            "household credentials onboarded",
            extra={
                "oem": manufacturer,
                "account_id": account_id,
                "generation": generation,
                "key_version": sealed["kid"],
            },
        )
        return AccountCredentials(
            manufacturer,
            account_id,
            generation,
            sealed["kid"],
            refresh_token,
            client_id,
            client_secret,
        )

    def store_refresh_token(
        self,
        used: AccountCredentials,
        refresh_token: str,
        *,
        access_token: str | None = None,
        access_expires_at: datetime | None = None,
    ) -> AccountCredentials | None:
        """Replace the refresh token ``used`` held with ``refresh_token`` (and the stored access
        token with ``access_token``, the one the same refresh got, if given), in a transaction
        that writes only if the document is still at ``used.generation``; ``None`` when another
        instance (or a new consent) wrote first, whose tokens then stand."""
        if not isinstance(refresh_token, str) or not refresh_token:
            raise InvalidInput("a rotated refresh token must be a non-empty string")
        access = _access(used, access_token, access_expires_at)
        return self._replace(used, {**used.secrets(), "refresh_token": refresh_token}, access)

    def reseal(
        self,
        used: AccountCredentials,
        *,
        access_token: str | None = None,
        access_expires_at: datetime | None = None,
    ) -> bool:
        """Seal ``used``'s credentials again with the newest data key if an older one sealed
        them (key rotation), with ``access_token`` if given (the write happens anyway); True if
        this wrote. Same precondition as a rotation."""
        if used.key_version == self._keys.newest():
            return False
        access = _access(used, access_token, access_expires_at)
        return self._replace(used, used.secrets(), access) is not None

    def _replace(
        self,
        used: AccountCredentials,
        values: Mapping[str, str],
        access: tuple[str, datetime] | None,
    ) -> AccountCredentials | None:
        path = credentials_path(used.manufacturer, used.account_id)
        sealed_values = dict(values) if access is None else {**values, _ACCESS_TOKEN: access[0]}
        sealed = self._seal(path, sealed_values)  # once: a retried transaction writes the same
        now = self._clock.now()

        def attempt(tx: Transaction) -> bool:
            document = tx.get(path)
            if document is None or _generation(document) != used.generation:
                return False
            data = {k: v for k, v in document.data.items() if k != _ACCESS_EXPIRES_AT}
            data.update(generation=used.generation + 1, stored_at=now, sealed=sealed)
            if access is not None:
                data[_ACCESS_EXPIRES_AT] = access[1]
            tx.set(path, data)
            return True

        update_time: datetime | None = None
        if access is not None and used.update_time is not None:
            # The document as read is the precondition: any write since (another instance's
            # rotation, a new consent, a reseal) moved its update_time, as it moved its
            # generation. One write and no read, where the transaction reads it again.
            changes = {
                "generation": used.generation + 1,
                "stored_at": now,
                "sealed": sealed,
                _ACCESS_EXPIRES_AT: access[1],
            }
            try:
                update_time = self._store.update(path, changes, if_update_time=used.update_time)
                written = True
            except (PreconditionFailed, DocumentNotFound):
                written = False
        else:
            written = self._store.run_transaction(attempt)
        extra = {
            "oem": used.manufacturer,
            "account_id": used.account_id,
            "generation": used.generation + 1 if written else used.generation,
            "key_version": sealed["kid"],
            "access_expires_at": None if access is None else access[1].isoformat(),
        }
        if not written:
            _log.debug("household credentials changed meanwhile; not overwritten", extra=extra)
            return None
        _log.debug("household credentials stored", extra=extra)
        return AccountCredentials(
            used.manufacturer,
            used.account_id,
            used.generation + 1,
            sealed["kid"],
            values.get("refresh_token"),
            values.get("client_id"),
            values.get("client_secret"),
            None if access is None else access[0],
            None if access is None else access[1],
            update_time,
        )

    # -- sealing ------------------------------------------------------------------------------

    def _seal(self, path: str, values: Mapping[str, str]) -> dict[str, str]:
        plaintext = json.dumps(dict(values), separators=(",", ":"), sort_keys=True)
        return self._keys.seal(plaintext.encode("utf-8"), path.encode("utf-8"))

    def _opened(self, document: Document, manufacturer: str, account_id: str) -> AccountCredentials:
        where = f"stored credentials of {manufacturer} account {account_id}"
        kid, plaintext = self._keys.open(
            document.data.get("sealed"), document.path.encode("utf-8"), where=where
        )
        try:
            values: Any = json.loads(plaintext.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            values = None
        if not isinstance(values, dict) or not all(
            isinstance(values.get(name), str | None) for name in (*_SECRET_FIELDS, _ACCESS_TOKEN)
        ):
            raise CredentialsInvalid(f"{where}: the opened value is not a credentials object")
        access_token = values.get(_ACCESS_TOKEN)
        expires_at = document.data.get(_ACCESS_EXPIRES_AT)
        if not access_token or not isinstance(expires_at, datetime) or expires_at.tzinfo is None:
            access_token, expires_at = None, None  # none stored (or no usable expiry: refresh)
        return AccountCredentials(
            manufacturer,
            account_id,
            _generation(document),
            kid,
            values.get("refresh_token"),
            values.get("client_id"),
            values.get("client_secret"),
            access_token,
            expires_at,
            document.update_time,
        )


def _access(
    used: AccountCredentials, token: str | None, expires_at: datetime | None
) -> tuple[str, datetime] | None:
    """The access token a write stores: the one given, else the one ``used`` held (a write that
    got no new access token keeps the stored one, which still belongs to the account)."""
    if token is None and expires_at is None:
        if used.access_token is None or used.access_expires_at is None:
            return None
        return used.access_token, used.access_expires_at
    if not isinstance(token, str) or not token:
        raise InvalidInput("an access token to store must be a non-empty string")
    if not isinstance(expires_at, datetime) or expires_at.tzinfo is None:
        raise InvalidInput("an access token to store needs its expiry (a timezone-aware time)")
    return token, expires_at


def _generation(document: Document | None) -> int:
    generation = None if document is None else document.data.get("generation")
    return generation if isinstance(generation, int) and not isinstance(generation, bool) else 0


def onboard_account(
    store: DocumentStore,
    secrets: SecretStore,
    clock: Clock,
    manufacturer: str,
    account_id: str,
    *,
    refresh_token: str | None = None,
    client_id: str | None = None,
    client_secret: str | None = None,
) -> AccountCredentials:
    """:meth:`CredentialStore.onboard` for code that holds the ports (one key read per call)."""
    return CredentialStore(store, secrets, clock).onboard(
        manufacturer,
        account_id,
        refresh_token=refresh_token,
        client_id=client_id,
        client_secret=client_secret,
    )
