"""The secrets port: read a secret's latest or pinned version, add a version.

Adding a version is for credentials that rotate on use (OAuth refresh tokens). Payloads are
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
