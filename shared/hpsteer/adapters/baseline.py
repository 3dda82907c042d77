"""The household's own setting of each lever hpsteer steers, remembered while it steers.

A mode is an offset from the household's own value (its comfort setpoint, curve shift or heating
offset). That value is read from the device the first time hpsteer steers it, because afterwards
the device shows hpsteer's own shifted value. Adapters keep it in a :class:`BaselineBook`; the
in-memory one serves tests and the local runtime. Production needs one kept in the document store
(a fresh function instance would otherwise take an already shifted value for the baseline): that
arrives with the command layer.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Protocol

__all__ = ["BaselineBook", "MemoryBaselineBook"]


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
