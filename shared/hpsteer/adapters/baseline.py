"""The household's own setting of each lever hpsteer steers, remembered while it steers.

A mode is an offset from the household's own value (its comfort setpoint, curve shift or heating
offset). That value is read from the device the first time hpsteer steers it, because afterwards
the device shows hpsteer's own shifted value. Adapters keep it in a :class:`BaselineBook`; the
in-memory one serves tests; :class:`StoreBaselineBook` keeps them in the document store, so that a
fresh function instance does not take an already shifted value for the household's own: adapters
built from an :class:`~hpsteer.adapters.protocol.AdapterContext` that carries a store use it.

Documents: ``manufacturers/{manufacturer}/baselines/{quoted key}`` with the key itself, the values
and when they were learnt (readable in the console; keys hold '/', so the id is percent-quoted).

**The epoch.** A stored value never changes; it is only forgotten (a household override) and then
learnt again. So every instance may keep the values it found for as long as they are not
forgotten, if it can tell when they are. :meth:`ManufacturerGateway.forget_baseline
<hpsteer.adapters.gateway.ManufacturerGateway.forget_baseline>` deletes the documents and then
sets ``devices/{id}.baseline_forgotten_at`` to the instant it forgot (the device's *epoch*);
:func:`~hpsteer.adapters.gateway.device_ref` carries it in ``DeviceRef.baseline_epoch`` (``""``
for a device never forgotten), and adapters pass it to :meth:`BaselineBook.get`. A value kept
under another epoch than the caller's is read again. Every caller reads the device document before
it calls (dispatch per delivery, reconcile per page), so an instance sees another instance's
``forget`` at its next call after that: the documents are deleted *before* the epoch moves, so a
value read after the move is never the forgotten one. (Two forgets of one device at the very
same instant would share an epoch; a forget is a household override that reconcile saw, and a
value is learnt only at a later command.) Without an epoch (``None``: a ``DeviceRef``
not built from a device document) a value is kept :data:`UNVERSIONED_TTL` (10 minutes), as before
epochs. Either way an entry is dropped after :data:`MAX_AGE` (a backstop for a device document
replaced whole, e.g. re-registered, whose epoch restarts at ``""``), and an instance keeps at
most :data:`MAX_ENTRIES` (least recently used go first). Only values found are kept: a key with no
value is read again at every call (a device not yet steered, or just forgotten; another instance
may be learning it at that moment).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final, Protocol
from urllib.parse import quote

from hpsteer.errors import DocumentAlreadyExists
from hpsteer.ports.clock import Clock
from hpsteer.ports.store import DocumentStore, Filter, Order

__all__ = [
    "MAX_AGE",
    "MAX_ENTRIES",
    "UNVERSIONED_TTL",
    "BaselineBook",
    "MemoryBaselineBook",
    "StoreBaselineBook",
]

UNVERSIONED_TTL: Final = timedelta(minutes=10)
"""How long a value read without an epoch is kept (another instance's ``forget`` is seen within
this time)."""
MAX_AGE: Final = timedelta(hours=24)
"""How long any value is kept, whatever its epoch."""
MAX_ENTRIES: Final = 50_000
"""Values one book keeps (one per steered lever of a device: a few MB for a whole shard)."""


class BaselineBook(Protocol):
    """Where the household's own value of a lever is kept while hpsteer steers it."""

    def get(self, key: str, *, epoch: str | None = None) -> Mapping[str, float] | None:
        """The values learnt for ``key``; ``epoch``: the device document's ``baseline_epoch``
        (module docstring), ``None`` when the caller does not know it."""
        ...

    def put(
        self, key: str, values: Mapping[str, float], *, epoch: str | None = None
    ) -> Mapping[str, float]:
        """Learn ``values`` for ``key`` unless a value is already learnt; the values that stand
        (the first learnt wins)."""
        ...

    def forget(self, key_prefix: str) -> None: ...


class MemoryBaselineBook:
    """A :class:`BaselineBook` in a dict (one process)."""

    def __init__(self) -> None:
        self._values: dict[str, dict[str, float]] = {}
        self._lock = threading.Lock()

    def get(self, key: str, *, epoch: str | None = None) -> Mapping[str, float] | None:
        with self._lock:
            found = self._values.get(key)
            return dict(found) if found is not None else None

    def put(
        self, key: str, values: Mapping[str, float], *, epoch: str | None = None
    ) -> Mapping[str, float]:
        with self._lock:
            return dict(self._values.setdefault(key, dict(values)))

    def forget(self, key_prefix: str) -> None:
        with self._lock:
            for key in [k for k in self._values if k.startswith(key_prefix)]:
                del self._values[key]


@dataclass(frozen=True, slots=True)
class _Kept:
    values: Mapping[str, float]
    epoch: str | None
    kept_at: datetime


class StoreBaselineBook:
    """A :class:`BaselineBook` in the document store, shared by every function instance.

    The first value learnt for a key wins (``create``): two instances steering the same device
    for the first time cannot overwrite the household's value with an already shifted one, and
    the loser uses the winner's value. Values found or learnt are kept in this instance as the
    module docstring says (every command translation and every poll reads its baseline: this
    saves a store read each); this instance's own :meth:`forget` drops them at once.
    """

    def __init__(
        self,
        store: DocumentStore,
        manufacturer: str,
        clock: Clock,
        cache_ttl: timedelta = UNVERSIONED_TTL,
        *,
        max_age: timedelta = MAX_AGE,
        max_entries: int = MAX_ENTRIES,
    ) -> None:
        self._store = store
        self._collection = f"manufacturers/{manufacturer}/baselines"
        self._clock = clock
        self._cache_ttl = cache_ttl
        self._max_age = max_age
        self._max_entries = max(1, max_entries)
        self._cache: OrderedDict[str, _Kept] = OrderedDict()
        self._lock = threading.Lock()

    def _path(self, key: str) -> str:
        return f"{self._collection}/{quote(key, safe='')}"

    def _kept(self, key: str, epoch: str | None, now: datetime) -> Mapping[str, float] | None:
        with self._lock:
            kept = self._cache.get(key)
            if kept is None:
                return None
            age = now - kept.kept_at
            if epoch is None:
                fresh = kept.epoch is None and age < self._cache_ttl
            else:
                fresh = kept.epoch == epoch and age < self._max_age
            if not fresh:
                del self._cache[key]
                return None
            self._cache.move_to_end(key)
            return kept.values

    def _keep(self, key: str, values: Mapping[str, float], epoch: str | None) -> None:
        with self._lock:
            self._cache[key] = _Kept(values, epoch, self._clock.now())
            self._cache.move_to_end(key)
            while len(self._cache) > self._max_entries:
                self._cache.popitem(last=False)

    def get(self, key: str, *, epoch: str | None = None) -> Mapping[str, float] | None:
        kept = self._kept(key, epoch, self._clock.now())
        if kept is not None:
            return dict(kept)
        found = self._read(key)
        if found is not None:
            self._keep(key, found, epoch)
            return dict(found)
        return None

    def _read(self, key: str) -> Mapping[str, float] | None:
        found = self._store.get(self._path(key))
        values = None if found is None else found.data.get("values")
        if not isinstance(values, dict):
            return None
        return {str(k): float(v) for k, v in values.items()}

    def put(
        self, key: str, values: Mapping[str, float], *, epoch: str | None = None
    ) -> Mapping[str, float]:
        learnt = {str(k): float(v) for k, v in values.items()}
        document = {"key": key, "values": learnt, "learnt_at": self._clock.now()}
        try:
            self._store.create(self._path(key), document)
        except DocumentAlreadyExists:
            stored = self._read(key)  # another instance learnt it first; its value stands
            if stored is None:  # ...and it was forgotten since
                return learnt
            self._keep(key, stored, epoch)
            return dict(stored)
        # Kept as if read back at once: the store holds exactly these values now, under the
        # caller's epoch (a forget deletes them and then moves the epoch, as for a value read).
        self._keep(key, learnt, epoch)
        return learnt

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
