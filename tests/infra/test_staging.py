"""Staging (``python -m deploy.stage``): what each function's deployable folder holds, that its
pins are the lock's, that staging is byte-for-byte repeatable, and that every staged folder
installs into a fresh venv from its own ``requirements.txt`` and imports without credentials or
network.

The install tests need PyPI (or uv's cache) like the rest of ``make test``; each takes a few
seconds once uv's cache holds the wheels.
"""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import NormalizedName, canonicalize_name

from deploy.stage import (
    FUNCTIONS_DIR,
    LOCK_FILE,
    REPO,
    SHARED_DIR,
    StagedFunction,
    function_folders,
    import_closure,
    package_names,
    pinned_requirements,
    read_lock,
    stage,
)

FUNCTIONS = function_folders()
LOCK = read_lock(LOCK_FILE.read_text(encoding="utf-8"))
NEVER_IN_DISPATCH = ("ortools", "matplotlib", "google.cloud.bigquery")
WIRING = ("hpsteer.runtime.bootstrap", "hpsteer.backends")
"""Which backend stands behind a port (and the local backends, never deployed)."""
NEVER_LOADED_AT_IMPORT = ("ortools", "matplotlib", "google.cloud.bigquery", "numpy")


@pytest.fixture(scope="module")
def staged(tmp_path_factory: pytest.TempPathFactory) -> dict[str, StagedFunction]:
    return {item.name: item for item in stage((), tmp_path_factory.mktemp("stage"))}


def _pins(folder: Path) -> dict[NormalizedName, str]:
    pins: dict[NormalizedName, str] = {}
    for line in (folder / "requirements.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            name, sep, version = line.partition("==")
            assert sep, f"{folder.name}: {line!r} is not an exact pin"
            pins[canonicalize_name(name)] = version
    return pins


def _direct(name: str) -> list[Requirement]:
    text = (FUNCTIONS_DIR / name / "requirements.txt").read_text()
    return [Requirement(x) for x in text.splitlines() if x.strip() and not x.startswith("#")]


def _tree(root: Path) -> dict[str, tuple[bytes, int, int]]:
    return {
        p.relative_to(root).as_posix(): (
            p.read_bytes() if p.is_file() else b"",
            p.stat().st_mode,
            int(p.stat().st_mtime),
        )
        for p in sorted(root.rglob("*"))
    }


def _module_level_imports(source: str) -> set[str]:
    """Modules imported when the module runs (not in functions, not under TYPE_CHECKING)."""
    names: set[str] = set()

    def visit(statements: list[ast.stmt]) -> None:
        for node in statements:
            if isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                names.add(node.module)
                names.update(f"{node.module}.{alias.name}" for alias in node.names)
            elif isinstance(node, ast.If):
                if "TYPE_CHECKING" not in ast.unparse(node.test):
                    visit(node.body)
                visit(node.orelse)
            elif isinstance(node, ast.Try):
                visit(node.body)
                for handler in node.handlers:
                    visit(handler.body)
                visit(node.orelse)
                visit(node.finalbody)

    visit(ast.parse(source).body)
    return names


# -- what a staged folder holds ------------------------------------------------------------------


def test_every_function_folder_is_staged_with_main_the_package_and_pinned_requirements(
    staged: dict[str, StagedFunction],
) -> None:
    assert sorted(staged) == FUNCTIONS
    for name, item in staged.items():
        for required in ("main.py", "requirements.txt", "hpsteer/__init__.py", "hpsteer/py.typed"):
            assert (item.path / required).is_file(), f"{name}: {required} missing"
        assert (item.path / "main.py").read_bytes() == (
            FUNCTIONS_DIR / name / "main.py"
        ).read_bytes()
        assert not [
            p for p in item.path.rglob("*") if p.name == "__pycache__" or p.suffix == ".pyc"
        ]


def test_staged_package_holds_every_module_the_function_reaches_and_no_simulation(
    staged: dict[str, StagedFunction],
) -> None:
    for name, item in staged.items():
        for module in item.modules:
            relative = Path(*module.split("."))
            assert (item.path / relative / "__init__.py").is_file() or (
                item.path / relative.with_suffix(".py")
            ).is_file(), f"{name}: {module} reached but not staged"
        assert not (item.path / "hpsteer" / "sim").exists(), name
        assert not (item.path / "hpsteer" / "runtime" / "simulation").exists(), name
        assert not (item.path / "hpsteer" / "optimizer" / "backtest").exists(), name


def test_only_optimize_gets_the_planner_and_the_thermal_model(
    staged: dict[str, StagedFunction],
) -> None:
    with_planner = sorted(n for n, s in staged.items() if (s.path / "hpsteer/optimizer").exists())
    with_thermal = sorted(n for n, s in staged.items() if (s.path / "hpsteer/thermal").exists())
    assert with_planner == ["optimize"]
    assert with_thermal == ["optimize"]


def test_adapters_imported_by_name_through_the_registry_are_staged(
    staged: dict[str, StagedFunction],
) -> None:
    for name in ("dispatch", "reconcile"):
        for manufacturer in ("viessmann", "nibe_myuplink", "daikin_onecta"):
            adapter = staged[name].path / "hpsteer" / "adapters" / manufacturer / "adapter.py"
            assert adapter.is_file(), f"{name}: {manufacturer} adapter missing"


def test_every_package_left_out_is_outside_the_functions_import_closure(
    staged: dict[str, StagedFunction],
) -> None:
    for name, item in staged.items():
        for package in package_names(SHARED_DIR):
            present = (item.path / Path(*package.split("."))).is_dir()
            assert present == (package in item.packages), f"{name}: {package}"


# -- pinned requirements -------------------------------------------------------------------------


def test_staged_requirements_pin_exactly_the_locked_versions(
    staged: dict[str, StagedFunction],
) -> None:
    for name, item in staged.items():
        pins = _pins(item.path)
        assert pins == {package: LOCK[package].version for package in pins}, name
        for requirement in _direct(name):
            assert canonicalize_name(requirement.name) in pins, f"{name}: {requirement} not pinned"


def test_staged_requirements_hold_the_dependencies_of_what_they_pin(
    staged: dict[str, StagedFunction],
) -> None:
    for name, item in staged.items():
        pins = _pins(item.path)
        for package in pins:
            required_by_pinned = LOCK[package].required_by & set(pins)
            is_direct = package in {canonicalize_name(r.name) for r in _direct(name)}
            assert is_direct or required_by_pinned, f"{name}: {package} pinned for nothing"
        for locked in LOCK.values():
            if locked.required_by & set(pins):
                assert locked.name in pins, f"{name}: {locked.name} needed but not pinned"


def test_dispatch_stages_no_solver_plotting_or_bigquery_import_at_module_level(
    staged: dict[str, StagedFunction],
) -> None:
    dispatch = staged["dispatch"]
    assert not {"ortools", "matplotlib", "numpy"} & set(_pins(dispatch.path))
    for path in dispatch.path.rglob("*.py"):
        imported = _module_level_imports(path.read_text())
        for heavy in NEVER_IN_DISPATCH:
            hits = [m for m in imported if m == heavy or m.startswith(heavy + ".")]
            assert not hits, f"{path.relative_to(dispatch.path)} imports {hits} at module level"


PORT_CLIENTS = {
    "store": "google-cloud-firestore",
    "bus": "google-cloud-pubsub",
    "tasks": "google-cloud-tasks",
    "analytics": "google-cloud-bigquery",
    "secrets": "google-cloud-secret-manager",
}
_PORT_USE = re.compile(r"\b(?:deps|context)\.(store|bus|tasks|analytics|secrets)\b")


def _module_sources(item: StagedFunction) -> dict[str, str]:
    """The function's own modules (the backend wiring left out), by name."""
    reached = import_closure([item.path / "main.py"], item.path, unfollowed=WIRING)
    sources: dict[str, str] = {}
    for module in sorted(reached):
        if module.startswith(WIRING):
            continue
        path = item.path / Path(*module.split("."))
        path = path / "__init__.py" if path.is_dir() else path.with_suffix(".py")
        sources[module] = path.read_text()
    return sources


def test_each_function_pins_the_google_client_of_exactly_the_ports_its_code_uses(
    staged: dict[str, StagedFunction],
) -> None:
    """A port is used where the code reads it off its dependencies (``deps.tasks``) or an
    adapter's context (``context.secrets``)."""
    for name, item in staged.items():
        used = {m for text in _module_sources(item).values() for m in _PORT_USE.findall(text)}
        pinned = {port for port, client in PORT_CLIENTS.items() if client in _pins(item.path)}
        assert pinned == used, f"{name}: ports used {sorted(used)}, clients {sorted(pinned)}"


def test_only_optimize_pins_ortools_and_no_function_pins_matplotlib(
    staged: dict[str, StagedFunction],
) -> None:
    assert sorted(n for n, s in staged.items() if "ortools" in _pins(s.path)) == ["optimize"]
    assert not [n for n, s in staged.items() if "matplotlib" in _pins(s.path)]


def test_the_lock_pins_every_project_dependency_within_its_range() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    for line in project["dependencies"]:
        requirement = Requirement(line)
        locked = LOCK.get(canonicalize_name(requirement.name))
        assert locked is not None, f"{requirement} missing from requirements.lock"
        assert requirement.specifier.contains(locked.version, prereleases=True), (
            f"requirements.lock pins {locked.name}=={locked.version} outside {requirement}: "
            "regenerate it (the command is in its header)"
        )


def test_a_range_that_excludes_the_locked_version_stops_staging() -> None:
    with pytest.raises(ValueError, match="excludes the locked"):
        pinned_requirements([Requirement("pydantic<2")], LOCK)


def test_a_requirement_missing_from_the_lock_stops_staging() -> None:
    with pytest.raises(ValueError, match=r"not in requirements\.lock"):
        pinned_requirements([Requirement("requests-oauthlib>=1")], LOCK)


def test_pins_follow_the_locks_via_annotations_transitively() -> None:
    lock = read_lock(
        "a==1.0\n    # via hpsteer (pyproject.toml)\n"
        "b==2.0\n    # via\n    #   a\n    #   d\n"
        "c==3.0\n    # via b\n"
        "d==4.0\n    # via hpsteer (pyproject.toml)\n"
    )
    assert pinned_requirements([Requirement("a>=1")], lock) == (
        ("a", "1.0"),
        ("b", "2.0"),
        ("c", "3.0"),
    )


# -- repeatability -------------------------------------------------------------------------------


def test_staging_twice_gives_the_same_bytes_modes_and_times(
    tmp_path: Path, staged: dict[str, StagedFunction]
) -> None:
    again = {item.name: item for item in stage((), tmp_path / "again")}
    for name, item in staged.items():
        assert _tree(item.path) == _tree(again[name].path), name


def test_restaging_removes_files_that_are_no_longer_staged(tmp_path: Path) -> None:
    (first,) = stage(["ingest_weather"], tmp_path)
    stale = first.path / "hpsteer" / "stale.py"
    stale.write_text("x = 1\n")
    stage(["ingest_weather"], tmp_path)
    assert not stale.exists()


# -- installs and imports ------------------------------------------------------------------------

_PROBE = """
import importlib.util, json, os, socket, sys
sys.path[0] = os.getcwd()
attempts = []
def refuse(*args, **kwargs):
    attempts.append(repr(args)[:200])
    raise OSError("network touched while importing main")
socket.socket.connect = refuse
socket.create_connection = refuse
socket.getaddrinfo = refuse
import main
loaded = sorted(m for m in sys.modules)
missing = [m for m in json.loads(sys.argv[1]) if importlib.util.find_spec(m) is None]
print(json.dumps({"network": attempts, "loaded": loaded, "missing": missing}))
"""


def _third_party_imports(item: StagedFunction) -> list[str]:
    """Non-``hpsteer`` modules the function's code imports anywhere (also on first use), apart
    from the backend wiring: which Google client a function needs follows from the ports its
    service uses, chosen in its requirements.txt, and the local backends are not deployed."""
    names: set[str] = set()
    for text in _module_sources(item).values():
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                names.add(node.module)
    return sorted(n for n in names if n.split(".")[0] not in sys.stdlib_module_names | {"hpsteer"})


def _uv() -> str:
    local = Path(sys.executable).with_name("uv")
    found = str(local) if local.exists() else shutil.which("uv")
    assert found, "uv not found beside the project's python nor on PATH (make install)"
    return found


@pytest.fixture(scope="module")
def venvs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("venvs")


@pytest.mark.parametrize("name", FUNCTIONS)
def test_staged_function_installs_from_its_requirements_and_imports_without_network(
    name: str, staged: dict[str, StagedFunction], venvs: Path
) -> None:
    item = staged[name]
    venv = venvs / name
    uv = _uv()
    subprocess.run([uv, "venv", "--quiet", "--python", sys.executable, str(venv)], check=True)
    python = venv / "bin" / "python"
    requirements = item.path / "requirements.txt"
    install = [uv, "pip", "install", "--quiet", "--python", str(python), "-r", str(requirements)]
    subprocess.run(install, check=True)
    frozen = subprocess.run(
        [uv, "pip", "freeze", "--python", str(python)], check=True, capture_output=True, text=True
    ).stdout
    installed = {
        canonicalize_name(line.partition("==")[0]): line.partition("==")[2]
        for line in frozen.splitlines()
        if "==" in line
    }
    assert installed == _pins(item.path), "the pins are not the complete install"

    env = {k: v for k, v in os.environ.items() if not k.startswith(("HPSTEER_", "GOOGLE_"))}
    env.pop("PYTHONPATH", None)
    env.update(HPSTEER_BACKEND="gcp", HPSTEER_PROJECT="hpsteer-test-123")
    done = subprocess.run(
        [str(python), "-c", _PROBE, json.dumps(_third_party_imports(item))],
        cwd=item.path,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.splitlines()[-1])
    assert report["network"] == []
    assert report["missing"] == [], "imported by the staged code but not installed"
    heavy = [
        m
        for m in report["loaded"]
        if any(m == h or m.startswith(h + ".") for h in NEVER_LOADED_AT_IMPORT)
    ]
    assert heavy == [], f"{name} loads {sorted({m.split('.')[0] for m in heavy})} at import"
