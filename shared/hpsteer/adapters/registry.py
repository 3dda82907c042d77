"""The adapter registry: a manufacturer's name → the factory that builds its adapter.

Promises:

- ``build(name, context)`` builds the adapter once per (name, context object) and hands back the
  same adapter afterwards (an adapter holds an HTTP client and tokens: one per function instance
  is what we want);
- an unknown name raises :class:`~hpsteer.errors.InvalidInput` naming the known manufacturers;
- factories may be registered as import paths (``"package.module:Class.factory"``), resolved on
  first use: importing this module imports no manufacturer module, so a function pays only for
  the manufacturers it calls. A path whose module does not exist raises ``InvalidInput``
  ("adapter for X is not installed").

:func:`default_registry` registers the real manufacturers by import path.
"""

from __future__ import annotations

import importlib
import threading
from typing import Final

from hpsteer.adapters.protocol import AdapterContext, AdapterFactory, ManufacturerAdapter
from hpsteer.errors import InvalidInput

__all__ = ["DEFAULT_FACTORIES", "AdapterRegistry", "default_registry"]

DEFAULT_FACTORIES: Final[dict[str, str]] = {
    "viessmann": "hpsteer.adapters.viessmann.adapter:ViessmannAdapter.factory",
    # The class names of the two below follow the Viessmann adapter's pattern; their modules are
    # being written now: align these strings with them if they choose other names.
    "nibe_myuplink": "hpsteer.adapters.nibe_myuplink.adapter:NibeMyUplinkAdapter.factory",
    "daikin_onecta": "hpsteer.adapters.daikin_onecta.adapter:DaikinOnectaAdapter.factory",
}
"""The real manufacturers: name → ``"module:attribute.path"`` of a factory."""


def _resolve(name: str, import_path: str) -> AdapterFactory:
    module_name, sep, attribute_path = import_path.partition(":")
    if not sep or not module_name or not attribute_path:
        raise InvalidInput(
            f"adapter for {name!r}: {import_path!r} is not a 'module:attribute' import path"
        )
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        if err.name is not None and (module_name + ".").startswith(err.name + "."):
            raise InvalidInput(
                f"adapter for {name} is not installed (no module {module_name})"
            ) from err
        raise InvalidInput(
            f"adapter for {name} cannot be imported: its module {module_name} needs "
            f"{err.name}, which is missing"
        ) from err
    target: object = module
    for part in attribute_path.split("."):
        try:
            target = getattr(target, part)
        except AttributeError as err:
            raise InvalidInput(
                f"adapter for {name} is not installed ({module_name} has no {attribute_path})"
            ) from err
    if not callable(target):
        raise InvalidInput(f"adapter for {name}: {import_path} is not callable")
    return target  # callable; its signature is the module's promise, not checked here


class AdapterRegistry:
    """Factories by manufacturer name, and the adapters built from them per context."""

    def __init__(self) -> None:
        self._factories: dict[str, AdapterFactory | str] = {}
        # Keyed by id(context); the context is kept beside the adapter so the id cannot be reused
        # by another object while the entry lives. (AdapterContext holds a dict: not hashable.)
        self._built: dict[tuple[str, int], tuple[AdapterContext, ManufacturerAdapter]] = {}
        self._lock = threading.Lock()

    def register(self, name: str, factory: AdapterFactory | str) -> None:
        """Register (or replace) the factory for ``name``: a callable or an import path."""
        if not isinstance(name, str) or not name:
            raise InvalidInput(f"a manufacturer name must be a non-empty string, got {name!r}")
        if not (callable(factory) or isinstance(factory, str)):
            raise InvalidInput(f"the factory for {name!r} must be callable or an import path")
        with self._lock:
            self._factories[name] = factory
            for key in [k for k in self._built if k[0] == name]:
                del self._built[key]

    def names(self) -> tuple[str, ...]:
        """The registered manufacturers, sorted (installed or not)."""
        with self._lock:
            return tuple(sorted(self._factories))

    def factory(self, name: str) -> AdapterFactory:
        """The factory for ``name``, importing it on first use."""
        with self._lock:
            registered = self._factories.get(name)
        if registered is None:
            known = ", ".join(self.names()) or "none"
            raise InvalidInput(f"no adapter for manufacturer {name!r} (known: {known})")
        if isinstance(registered, str):
            resolved = _resolve(name, registered)
            with self._lock:
                if self._factories.get(name) == registered:
                    self._factories[name] = resolved
            return resolved
        return registered

    def build(self, name: str, context: AdapterContext) -> ManufacturerAdapter:
        """The adapter for ``name`` in ``context``, built on the first call and then reused."""
        key = (name, id(context))
        with self._lock:
            cached = self._built.get(key)
        if cached is not None:
            return cached[1]
        adapter = self.factory(name)(context)
        with self._lock:
            # Two threads may build at once; the first stored wins, so callers share one adapter.
            return self._built.setdefault(key, (context, adapter))[1]


def default_registry() -> AdapterRegistry:
    """A registry of the real manufacturers (``DEFAULT_FACTORIES``); nothing imported yet."""
    registry = AdapterRegistry()
    for name, import_path in DEFAULT_FACTORIES.items():
        registry.register(name, import_path)
    return registry
