"""Secrets without Google: read from environment variables, or versioned files in a directory.

* :class:`EnvSecretStore` is a reader: secret ``vicare-client-secret`` is the variable
  ``HPSTEER_SECRET_VICARE_CLIENT_SECRET`` (upper-cased, ``-`` → ``_``, so ``a-b`` and ``a_b``
  share a variable). It has one version, ``1`` (``latest`` is ``1``); ``add_version`` raises
  :class:`~hpsteer.errors.InvalidInput` pointing to :class:`FileSecretStore`.
* :class:`MemorySecretStore` keeps versions in this process's memory (the local runtime's
  simulated fleet rotates refresh tokens there; nothing touches a disk).
* :class:`FileSecretStore` keeps version ``n`` of secret ``name`` in ``<directory>/<name>/<n>``;
  ``latest`` is the highest ``n``. ``add_version`` writes a temporary file (mode 0600, fsynced)
  and links it to the next free number, which never overwrites a version, even with several
  processes writing.

``destroy_version`` follows Secret Manager: the version becomes unreadable (SecretNotFound), the
numbering never reuses it, ``latest`` stays the newest version, destroying twice or a missing
version is fine, and ``latest`` is refused (InvalidInput). The file store deletes the file; the
environment store is read-only and refuses like ``add_version``.

All validate names with Secret Manager's rules (``[A-Za-z0-9_-]{1,255}``) and versions (``latest``
or a positive integer) with :func:`check_name` / :func:`check_version`, raising InvalidInput; a
missing secret or version raises :class:`~hpsteer.errors.SecretNotFound`. Payloads never appear in
an error message or a ``repr``.
"""

from __future__ import annotations

import contextlib
import os
import re
import threading
from collections.abc import Mapping
from pathlib import Path

from hpsteer.errors import InvalidInput, SecretNotFound, SecretsUnavailable
from hpsteer.ports.secrets import SecretValue

__all__ = [
    "EnvSecretStore",
    "FileSecretStore",
    "MemorySecretStore",
    "check_name",
    "check_version",
]

_NAME = re.compile(r"[A-Za-z0-9_-]{1,255}")
_VERSION = re.compile(r"[1-9][0-9]{0,18}")


def check_name(name: str) -> str:
    """Secret Manager's rule for secret ids: 1-255 of letters, digits, ``_`` and ``-``."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        shown = name[:60] if isinstance(name, str) else type(name).__name__
        raise InvalidInput(f"secret name {shown!r} must match [A-Za-z0-9_-]{{1,255}}")
    return name


def check_version(version: str) -> str:
    """``latest`` or a positive integer, as Secret Manager names versions."""
    if version != "latest" and not (isinstance(version, str) and _VERSION.fullmatch(version)):
        raise InvalidInput(f"secret version {str(version)[:30]!r} must be 'latest' or a number")
    return version


def _check_destroyable(name: str, version: str) -> None:
    """A version to destroy is a number: ``latest`` moves, so destroying it is refused."""
    if check_version(version) == "latest":
        raise InvalidInput(f"secret {name}: destroy a numbered version, not 'latest'")


class MemorySecretStore:
    """Versioned secrets in memory: version ``n`` is the n-th payload added."""

    def __init__(self) -> None:
        self._versions: dict[str, list[bytes | None]] = {}
        """Payloads by version number - 1; ``None`` marks a destroyed version."""
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"MemorySecretStore({len(self._versions)} secrets)"

    def get(self, name: str, version: str = "latest") -> SecretValue:
        check_name(name)
        check_version(version)
        with self._lock:
            versions = self._versions.get(name)
            if not versions:
                raise SecretNotFound(f"secret {name} not found")
            number = len(versions) if version == "latest" else int(version)
            if number > len(versions):
                raise SecretNotFound(f"secret {name} has no version {version}")
            payload = versions[number - 1]
            if payload is None:
                raise SecretNotFound(f"secret {name} version {number} is destroyed")
            return SecretValue(name=name, version=str(number), _payload=payload)

    def add_version(self, name: str, payload: bytes) -> str:
        check_name(name)
        if not isinstance(payload, bytes):
            raise InvalidInput(f"secret {name}: payload must be bytes")
        with self._lock:
            versions = self._versions.setdefault(name, [])
            versions.append(bytes(payload))
            return str(len(versions))

    def destroy_version(self, name: str, version: str) -> None:
        check_name(name)
        _check_destroyable(name, version)
        with self._lock:
            versions = self._versions.get(name, [])
            number = int(version)
            if number <= len(versions):
                versions[number - 1] = None


class EnvSecretStore:
    """Secrets from environment variables; read-only, one version each."""

    def __init__(
        self, environ: Mapping[str, str] = os.environ, prefix: str = "HPSTEER_SECRET_"
    ) -> None:
        self._environ = environ
        self._prefix = prefix

    def __repr__(self) -> str:
        return f"EnvSecretStore(prefix={self._prefix!r})"

    def variable(self, name: str) -> str:
        """The environment variable that holds secret ``name``."""
        return self._prefix + check_name(name).upper().replace("-", "_")

    def get(self, name: str, version: str = "latest") -> SecretValue:
        variable = self.variable(name)
        check_version(version)
        value = self._environ.get(variable)
        if value is None:
            raise SecretNotFound(f"secret {name} not found (environment variable {variable})")
        if version not in ("latest", "1"):
            raise SecretNotFound(
                f"secret {name} has no version {version}: the environment holds version 1 only"
            )
        return SecretValue(name=name, version="1", _payload=value.encode("utf-8"))

    def add_version(self, name: str, payload: bytes) -> str:
        check_name(name)
        raise InvalidInput(
            f"cannot add a version to secret {name}: environment secrets are read-only; "
            "use FileSecretStore (or Secret Manager) for secrets that rotate"
        )

    def destroy_version(self, name: str, version: str) -> None:
        check_name(name)
        _check_destroyable(name, version)
        raise InvalidInput(
            f"cannot destroy a version of secret {name}: environment secrets are read-only"
        )


class FileSecretStore:
    """Versioned secrets as files ``<directory>/<name>/<version>``, readable by the owner only."""

    def __init__(self, directory: Path | str) -> None:
        self._directory = Path(directory)
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"FileSecretStore(directory={str(self._directory)!r})"

    def get(self, name: str, version: str = "latest") -> SecretValue:
        folder = self._directory / check_name(name)
        check_version(version)
        try:
            if version == "latest":
                versions = self._versions(folder)
                if not versions:
                    raise SecretNotFound(f"secret {name} not found (no versions)")
                version = str(max(versions))
            payload = (folder / version).read_bytes()
        except FileNotFoundError:
            if folder.is_dir():
                raise SecretNotFound(f"secret {name} has no version {version}") from None
            raise SecretNotFound(f"secret {name} not found") from None
        except OSError as err:
            raise SecretsUnavailable(f"cannot read secret {name}: {err.strerror}") from None
        return SecretValue(name=name, version=version, _payload=payload)

    def add_version(self, name: str, payload: bytes) -> str:
        folder = self._directory / check_name(name)
        if not isinstance(payload, bytes):
            raise InvalidInput(f"secret {name}: payload must be bytes")
        with self._lock:
            try:
                folder.mkdir(mode=0o700, parents=True, exist_ok=True)
                temporary = self._write_temporary(folder, payload)
                try:
                    return self._link_next(folder, temporary)
                finally:
                    temporary.unlink(missing_ok=True)
            except OSError as err:
                raise SecretsUnavailable(f"cannot store secret {name}: {err.strerror}") from None

    def destroy_version(self, name: str, version: str) -> None:
        folder = self._directory / check_name(name)
        _check_destroyable(name, version)
        try:
            (folder / version).unlink(missing_ok=True)
        except OSError as err:
            raise SecretsUnavailable(
                f"cannot destroy secret {name} version {version}: {err.strerror}"
            ) from None

    @staticmethod
    def _versions(folder: Path) -> list[int]:
        return [int(entry.name) for entry in folder.iterdir() if _VERSION.fullmatch(entry.name)]

    @staticmethod
    def _write_temporary(folder: Path, payload: bytes) -> Path:
        temporary = folder / f".tmp-{os.getpid()}-{threading.get_ident()}"
        temporary.unlink(missing_ok=True)
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(payload)
                handle.flush()
                os.fsync(handle.fileno())
        except BaseException:
            temporary.unlink(missing_ok=True)
            raise
        return temporary

    def _link_next(self, folder: Path, temporary: Path) -> str:
        while True:
            version = str(max(self._versions(folder), default=0) + 1)
            try:
                os.link(temporary, folder / version)  # fails if another writer took the number
            except FileExistsError:
                continue
            with contextlib.suppress(OSError):  # durability of the name; the data is synced
                directory = os.open(folder, os.O_RDONLY)
                try:
                    os.fsync(directory)
                finally:
                    os.close(directory)
            return version
