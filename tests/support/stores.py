"""A ``document_store`` fixture: the local store, and Firestore on the emulator; and a store that
records the documents read.

Tests that need "a document store, whichever" take ``document_store``; they run once per backend,
the Firestore run marked ``emulator`` and reset before each test.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from hpsteer.backends.local.store import LocalDocumentStore
from hpsteer.ports.store import DocumentStore
from tests.support.firestore import PROJECT


@pytest.fixture(scope="session")
def firestore_test_client(request: pytest.FixtureRequest) -> Any:
    request.getfixturevalue("firestore_emulator")
    from google.cloud import firestore

    return firestore.Client(project=PROJECT)


@pytest.fixture(params=["local", pytest.param("firestore", marks=pytest.mark.emulator)])
def document_store(request: pytest.FixtureRequest) -> Iterator[DocumentStore]:
    if request.param == "local":
        yield LocalDocumentStore()
        return
    from hpsteer.backends.gcp.firestore_store import FirestoreDocumentStore

    request.getfixturevalue("reset_firestore")
    yield FirestoreDocumentStore(request.getfixturevalue("firestore_test_client"))


class ReadRecordingStore:
    """A store that records the path of every document read (``get``, and ``get`` inside
    transactions), in order; everything else goes to ``inner`` unchanged."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.read: list[str] = []

    def get(self, path: str) -> Any:
        self.read.append(path)
        return self.inner.get(path)

    def run_transaction(self, fn: Any, **kwargs: Any) -> Any:
        def recorded(tx: Any) -> Any:
            original = tx.get

            def get(path: str) -> Any:
                self.read.append(path)
                return original(path)

            tx.get = get
            return fn(tx)

        return self.inner.run_transaction(recorded, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)
