"""The secrets port: read a secret's latest or pinned version, add a version, destroy one.

Adding a version is for credentials that rotate on use (OAuth refresh tokens); destroying the
version a rotation replaced keeps the number of stored (and, in Secret Manager, billed) versions
bounded. Payloads are
returned wrapped in :class:`SecretValue`, whose ``repr`` and ``str`` never show the payload, so a
secret that reaches a log line or an error message by accident shows as ``***``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

__all__ = ["SecretStore", "SecretValue"]


@dataclass(frozen=True, slots=True)
class SecretValue:
    name: str
    version: str
    _payload: bytes = field(repr=False)

    def reveal(self) -> bytes:
        return self._payload

    def reveal_text(self) -> str:
        return self._payload.decode("utf-8")

    def __str__(self) -> str:
        return f"SecretValue(name={self.name!r}, version={self.version!r}, payload=***)"

    __repr__ = __str__


@runtime_checkable
class SecretStore(Protocol):
    def get(self, name: str, version: str = "latest") -> SecretValue:
        """Raise SecretNotFound if the secret or the version does not exist."""
        ...

    def add_version(self, name: str, payload: bytes) -> str:
        """Store a new version (creating the secret if needed) and return its version id."""
        ...

    def destroy_version(self, name: str, version: str) -> None:
        """Destroy one version; destroying one that is already destroyed or missing is not an
        error (idempotent); 'latest' is refused (InvalidInput). Reading a destroyed version
        raises SecretNotFound; 'latest' stays the newest version (we only destroy older ones)."""
        ...
