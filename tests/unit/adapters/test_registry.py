"""The adapter registry maps a manufacturer's name to a factory, builds each adapter once per
context, imports manufacturer modules only when asked, and names what it knows when it fails."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from hpsteer.adapters.protocol import AdapterContext, ManufacturerAdapter
from hpsteer.adapters.registry import DEFAULT_FACTORIES, AdapterRegistry, default_registry
from hpsteer.backends.local.secrets import EnvSecretStore
from hpsteer.errors import InvalidInput
from hpsteer.ports.clock import SimulatedClock

T0 = datetime(2024, 1, 15, 6, tzinfo=UTC)


class _Built:
    """Stands in for an adapter: remembers which context built it."""

    def __init__(self, name: str, context: AdapterContext) -> None:
        self.name = name
        self.context = context


class _CountingFactory:
    def __init__(self, name: str) -> None:
        self.name = name
        self.calls = 0

    def __call__(self, context: AdapterContext) -> ManufacturerAdapter:
        self.calls += 1
        return _Built(self.name, context)  # type: ignore[return-value] # a stand-in, see _Built


def _context() -> AdapterContext:
    return AdapterContext(secrets=EnvSecretStore(environ={}), clock=SimulatedClock(T0))


def test_build_uses_the_factory_registered_under_the_name() -> None:
    registry = AdapterRegistry()
    registry.register("acme", _CountingFactory("acme"))
    context = _context()
    adapter = registry.build("acme", context)
    assert isinstance(adapter, _Built)
    assert adapter.name == "acme"
    assert adapter.context is context


def test_an_adapter_is_built_once_per_context_and_reused() -> None:
    registry = AdapterRegistry()
    factory = _CountingFactory("acme")
    registry.register("acme", factory)
    first, second = _context(), _context()
    assert registry.build("acme", first) is registry.build("acme", first)
    assert registry.build("acme", second) is not registry.build("acme", first)
    assert factory.calls == 2


def test_registering_again_replaces_the_factory_and_forgets_built_adapters() -> None:
    registry = AdapterRegistry()
    old, new = _CountingFactory("old"), _CountingFactory("new")
    registry.register("acme", old)
    context = _context()
    registry.build("acme", context)
    registry.register("acme", new)
    assert registry.build("acme", context).name == "new"


def test_an_unknown_manufacturer_is_refused_naming_the_known_ones() -> None:
    registry = AdapterRegistry()
    registry.register("zeta", _CountingFactory("zeta"))
    registry.register("acme", _CountingFactory("acme"))
    assert registry.names() == ("acme", "zeta")
    with pytest.raises(
        InvalidInput, match=r"no adapter for manufacturer 'nope' \(known: acme, zeta\)"
    ):
        registry.build("nope", _context())


def test_the_default_registry_knows_the_three_real_manufacturers() -> None:
    assert default_registry().names() == ("daikin_onecta", "nibe_myuplink", "viessmann")
    assert set(DEFAULT_FACTORIES) == {"daikin_onecta", "nibe_myuplink", "viessmann"}


def test_importing_the_registry_imports_no_manufacturer_module() -> None:
    code = (
        "import json, sys, hpsteer.adapters.registry as r; r.default_registry(); "
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith('hpsteer.adapters.'))))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    loaded = json.loads(result.stdout)
    assert loaded == ["hpsteer.adapters.protocol", "hpsteer.adapters.registry"]


def test_the_viessmann_factory_resolves_from_its_import_path() -> None:
    factory = default_registry().factory("viessmann")
    assert callable(factory)
    assert factory.__qualname__ == "ViessmannAdapter.factory"


def test_a_manufacturer_whose_module_is_missing_is_not_installed() -> None:
    registry = AdapterRegistry()
    registry.register("acme", "hpsteer.adapters.acme_not_written_yet.adapter:AcmeAdapter.factory")
    with pytest.raises(InvalidInput, match=r"^adapter for acme is not installed"):
        registry.build("acme", _context())
    assert registry.names() == ("acme",)


def test_a_module_without_the_named_factory_is_not_installed() -> None:
    registry = AdapterRegistry()
    registry.register("acme", "hpsteer.adapters.protocol:AcmeAdapter.factory")
    with pytest.raises(InvalidInput, match=r"^adapter for acme is not installed .*AcmeAdapter"):
        registry.build("acme", _context())


def test_a_module_whose_own_import_fails_says_what_it_needs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "acme_needs_a_library.py").write_text("import library_nobody_installed\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    registry = AdapterRegistry()
    registry.register("acme", "acme_needs_a_library:factory")
    with pytest.raises(InvalidInput, match=r"needs library_nobody_installed, which is missing"):
        registry.build("acme", _context())


@pytest.mark.parametrize("path", ["no_colon", "module:", ":attribute"])
def test_a_malformed_import_path_is_refused_on_use(path: str) -> None:
    registry = AdapterRegistry()
    registry.register("acme", path)
    with pytest.raises(InvalidInput, match="not a 'module:attribute' import path"):
        registry.build("acme", _context())


def test_an_import_path_is_resolved_once_and_then_built_per_context() -> None:
    registry = AdapterRegistry()
    registry.register("acme", "tests.unit.adapters.test_registry:_built_from_path")
    context = _context()
    adapter = registry.build("acme", context)
    assert isinstance(adapter, _Built)
    assert registry.build("acme", context) is adapter


def _built_from_path(context: AdapterContext) -> ManufacturerAdapter:
    return _Built("acme", context)  # type: ignore[return-value] # a stand-in, see _Built
