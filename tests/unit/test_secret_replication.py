"""A secret the Secret Manager backend creates (the first version of a rotated refresh token)
keeps its replica in the configured region: households' credentials stay in the EU."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from google.api_core import exceptions as api
from google.cloud import secretmanager_v1

from hpsteer.backends.gcp.secret_manager import SecretManagerStore
from hpsteer.config import Settings


class _Client:
    """Secret Manager's client as far as add_version reaches it: no secret until created."""

    def __init__(self) -> None:
        self.created: list[Any] = []

    def add_secret_version(self, *, parent: str, **_: Any) -> Any:
        if not self.created:
            raise api.NotFound("no such secret")
        return SimpleNamespace(name=f"{parent}/versions/1")

    def create_secret(self, *, secret: Any, **_: Any) -> None:
        self.created.append(secret)


def test_a_created_secret_is_replicated_in_the_region_only() -> None:
    client = _Client()
    store = SecretManagerStore("hpsteer-test-1", client, replica_location="europe-west1")

    assert store.add_version("viessmann-acct-1-refresh-token", b"token") == "1"

    (secret,) = client.created
    assert [r.location for r in secret.replication.user_managed.replicas] == ["europe-west1"]
    assert not secret.replication.automatic


def test_the_cloud_store_takes_the_region_from_the_settings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    client = _Client()
    monkeypatch.setattr(secretmanager_v1, "SecretManagerServiceClient", lambda: client)
    settings = Settings(backend="gcp", project="hpsteer-test-1", region="europe-north1")

    SecretManagerStore.for_settings(settings).add_version("entsoe-api-token", b"t")

    assert client.created[0].replication.user_managed.replicas[0].location == "europe-north1"
