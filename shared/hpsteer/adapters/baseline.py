"""The household's own setting of each lever hpsteer steers, remembered while it steers.

A mode is an offset from the household's own value (its comfort setpoint, curve shift or heating
offset). That value is read from the device the first time hpsteer steers it, because afterwards
the device shows hpsteer's own shifted value. Adapters keep it in a :class:`BaselineBook`; the
in-memory one serves tests; :class:`StoreBaselineBook` keeps them in the document store, so that a
fresh function instance does not take an already shifted value for the household's own: adapters
built from an :class:`~hpsteer.adapters.protocol.AdapterContext` that carries a store use it.

Documents: ``manufacturers/{manufacturer}/baselines/{quoted key}`` with the key itself, the values
and when they were learnt (readable in the console; keys hold '/', so the id is percent-quoted).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Protocol
from urllib.parse import quote

from hpsteer.ports.clock import Clock
from hpsteer.ports.store import DocumentStore, Filter, Order

__all__ = ["BaselineBook", "MemoryBaselineBook", "StoreBaselineBook"]


class BaselineBook(Protocol):
    """Where the household's own value of a lever is kept while hpsteer steers it."""

    def get(self, key: str) -> Mapping[str, float] | None: ...

    def put(self, key: str, values: Mapping[str, float]) -> None: ...

    def forget(self, key_prefix: str) -> None: ...


class MemoryBaselineBook:
    """A :class:`BaselineBook` in a dict (one process)."""

    def __init__(self) -> None:
        self._values: dict[str, dict[str, float]] = {}
        self._lock = threading.Lock()

    def get(self, key: str) -> Mapping[str, float] | None:
        with self._lock:
            found = self._values.get(key)
            return dict(found) if found is not None else None

    def put(self, key: str, values: Mapping[str, float]) -> None:
        with self._lock:
            self._values[key] = dict(values)

    def forget(self, key_prefix: str) -> None:
        with self._lock:
            for key in [k for k in self._values if k.startswith(key_prefix)]:
                del self._values[key]


class StoreBaselineBook:
    """A :class:`BaselineBook` in the document store, shared by every function instance.

    The first value learnt for a key wins (``create``): two instances steering the same device
    for the first time cannot overwrite the household's value with an already shifted one.
    Since a stored value never changes, values found are kept in this instance for ``cache_ttl``
    (every command translation reads its baseline: this saves a store read per command); only
    :meth:`forget` removes one, and another instance's ``forget`` is seen within ``cache_ttl``.
    """

    def __init__(
        self,
        store: DocumentStore,
        manufacturer: str,
        clock: Clock,
        cache_ttl: timedelta = timedelta(minutes=10),
    ) -> None:
        self._store = store
        self._collection = f"manufacturers/{manufacturer}/baselines"
        self._clock = clock
        self._cache_ttl = cache_ttl
        self._cache: dict[str, tuple[datetime, Mapping[str, float]]] = {}
        self._lock = threading.Lock()

    def _path(self, key: str) -> str:
        return f"{self._collection}/{quote(key, safe='')}"

    def get(self, key: str) -> Mapping[str, float] | None:
        now = self._clock.now()
        with self._lock:
            cached = self._cache.get(key)
        if cached is not None and now < cached[0] + self._cache_ttl:
            return cached[1]
        found = self._store.get(self._path(key))
        if found is None:
            return None
        values = found.data.get("values")
        if not isinstance(values, dict):
            return None
        parsed = {str(k): float(v) for k, v in values.items()}
        with self._lock:
            self._cache[key] = (now, parsed)
        return parsed

    def put(self, key: str, values: Mapping[str, float]) -> None:
        from hpsteer.errors import DocumentAlreadyExists

        document = {
            "key": key,
            "values": {str(k): float(v) for k, v in values.items()},
            "learnt_at": self._clock.now(),
        }
        try:
            self._store.create(self._path(key), document)
        except DocumentAlreadyExists:
            return  # another instance learnt it first; the first value stands

    def forget(self, key_prefix: str) -> None:
        with self._lock:
            for key in [k for k in self._cache if k.startswith(key_prefix)]:
                del self._cache[key]
        cursor: str | None = None
        while True:
            page = self._store.query(
                self._collection,
                filters=[
                    Filter("key", ">=", key_prefix),
                    Filter("key", "<", key_prefix + "\uffff"),
                ],
                order_by=[Order("key")],
                limit=100,
                cursor=cursor,
            )
            for document in page.documents:
                self._store.delete(document.path)
            if page.next_cursor is None:
                return
            cursor = page.next_cursor
