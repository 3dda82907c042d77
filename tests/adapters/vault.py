"""Where the adapter tests keep credentials, as a deployment does (hpsteer.adapters.credentials):
the manufacturer's app credentials and the data key as secrets, each household account's
credentials sealed in a document store. Each :meth:`Vault.instance` is another function
instance's view of them (its own caches, the same secrets and documents)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hpsteer.adapters.credentials import (
    KEY_SECRET,
    CredentialStore,
    add_data_key,
    credentials_path,
)
from hpsteer.backends.local.secrets import FileSecretStore
from hpsteer.backends.local.store import LocalDocumentStore
from hpsteer.ports.clock import Clock


@dataclass
class Vault:
    secrets: FileSecretStore
    store: LocalDocumentStore
    clock: Clock
    reads: list[str] = field(default_factory=list)
    """Every secret read through :meth:`instance` stores (``name/version``)."""

    @classmethod
    def create(cls, directory: Path, clock: Clock, app: Mapping[str, str]) -> Vault:
        """A data key and the manufacturer's app secrets (name → value) in ``directory``."""
        secrets = FileSecretStore(directory / "secrets")
        add_data_key(secrets)
        for name, value in app.items():
            secrets.add_version(name, value.encode())
        return cls(secrets, LocalDocumentStore(clock=clock), clock)

    def instance(self) -> CredentialStore:
        """A credential store as a new function instance builds it (nothing cached yet)."""
        return CredentialStore(self.store, _CountingSecrets(self.secrets, self.reads), self.clock)

    def document(self, manufacturer: str, account_id: str) -> dict[str, Any]:
        found = self.store.get(credentials_path(manufacturer, account_id))
        assert found is not None
        return found.data

    def key_bytes(self) -> bytes:
        """The data key's stored payload (base64 text), to check that it never leaks."""
        return self.secrets.get(KEY_SECRET).reveal()

    def stored_text(self) -> str:
        """Every credentials document, as JSON text (what Firestore would hold)."""
        page = self.store.collection_group("credentials")
        return json.dumps([d.data for d in page.documents], default=str)


class _CountingSecrets:
    """The file store, remembering each read (the adapters must read each secret once)."""

    def __init__(self, inner: FileSecretStore, reads: list[str]) -> None:
        self._inner = inner
        self._reads = reads

    def get(self, name: str, version: str = "latest") -> Any:
        self._reads.append(f"{name}/{version}")
        return self._inner.get(name, version)

    def add_version(self, name: str, payload: bytes) -> str:
        return self._inner.add_version(name, payload)

    def destroy_version(self, name: str, version: str) -> None:
        self._inner.destroy_version(name, version)
