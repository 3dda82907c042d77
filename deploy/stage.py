"""Build each Cloud Function's deployable source folder: ``python -m deploy.stage``, ``make stage``.

For every folder under ``functions/`` (or the ones named), ``build/stage/<folder>/`` receives

- the folder's own files (``main.py``), without ``requirements.txt`` and caches;
- the shared package ``hpsteer`` copied from ``shared/hpsteer``, without ``__pycache__`` and
  without the sub-packages the function cannot reach: the import closure of ``main.py`` is
  followed through every ``import`` statement anywhere in a module (also inside functions and
  ``TYPE_CHECKING`` blocks, so code loaded on first use is kept) and through string constants
  naming an ``hpsteer`` module (the adapter registry imports manufacturers by name). A
  sub-package that no module of that closure lies in is left out (``hpsteer.sim``,
  ``hpsteer.runtime.simulation``, the backtest, the planner for all but ``optimize``); a reached
  package is copied whole. Over-keeping costs a few kilobytes, under-keeping a broken function;
  ``tests/infra/test_staging.py`` installs and imports every staged folder;
- the data the reached code reads at run time: ``data/tariffs/`` (the household tariffs) when
  the closure reaches ``hpsteer.tariffs`` (optimize, api), copied to ``data/tariffs/`` beside the
  package, where :func:`hpsteer.tariffs.default_directory` looks first. A folder beside the code,
  not an environment variable naming a path in the runtime's file system: the staged folder is
  complete on its own, the install test imports and reads it as deployed, and no terraform value
  has to know where Cloud Run unpacks the source;
- ``requirements.txt``: the function's direct needs (``functions/<folder>/requirements.txt``,
  version ranges) and everything they depend on, each pinned to the version in
  ``requirements.lock``.

Why the pins come from the lock's ``# via`` annotations and not from a resolver run: the lock is
the project's resolution for Python 3.11 on x86_64 Linux, and ``uv pip compile`` writes beside
each pin the packages that require it. The dependency closure of the function's direct needs in
that graph is therefore a subset of one consistent resolution, needs no network and no package
cache (``uv pip compile --offline`` fails on a fresh machine; without ``--offline`` staging would
hit PyPI on every build), and is the same on every machine. The annotation records an edge even
when an extra asked for it (grpcio via google-api-core[grpc]), so the closure can only be larger
than necessary, never smaller. A direct need that the lock lacks, or whose range excludes the
locked version, stops the build: regenerate the lock (see its header) or fix the range.

Staging is deterministic: same inputs, same bytes, same file modes and modification times
(files are written in sorted order, mode 0644, mtime fixed at 1980-01-01, the earliest a zip
entry can hold), so the archive terraform builds changes only when the content does.
"""

from __future__ import annotations

import argparse
import ast
import os
import re
import shutil
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import NormalizedName, canonicalize_name

__all__ = [
    "DATA_DIR",
    "DEFAULT_OUT",
    "FUNCTIONS_DIR",
    "LOCK_FILE",
    "PACKAGE_DATA",
    "REPO",
    "SHARED_DIR",
    "LockedPackage",
    "StagedFunction",
    "folder_bytes",
    "function_folders",
    "import_closure",
    "package_names",
    "pinned_requirements",
    "read_lock",
    "stage",
    "stage_function",
]

REPO = Path(__file__).resolve().parents[1]
FUNCTIONS_DIR = REPO / "functions"
SHARED_DIR = REPO / "shared"
DATA_DIR = REPO / "data"
PACKAGE_DATA: dict[str, str] = {"hpsteer.tariffs": "tariffs"}
"""``data/<folder>`` a function gets (as ``data/<folder>`` in its staged folder) when its import
closure reaches the module that reads it."""
PACKAGE = "hpsteer"
LOCK_FILE = REPO / "requirements.lock"
DEFAULT_OUT = REPO / "build" / "stage"
REQUIREMENTS = "requirements.txt"
FIXED_MTIME = 315532800  # 1980-01-01T00:00:00Z
FILE_MODE = 0o644
_SKIPPED_NAMES = frozenset({"__pycache__", ".mypy_cache", ".pytest_cache", ".ruff_cache"})
_SKIPPED_SUFFIXES = frozenset({".pyc", ".pyo"})
_MODULE_STRING = re.compile(rf"^{PACKAGE}(?:\.[A-Za-z_]\w*)+")
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)\s*$")
_VIA_INLINE = re.compile(r"^\s+# via (.+)$")
_VIA_CONTINUED = re.compile(r"^\s+#\s{3}(.+)$")


@dataclass(frozen=True)
class LockedPackage:
    name: NormalizedName
    version: str
    required_by: frozenset[NormalizedName]
    """Packages of the lock that depend on this one (its ``# via`` lines)."""


@dataclass(frozen=True)
class StagedFunction:
    name: str
    path: Path
    modules: frozenset[str]
    """The ``hpsteer`` modules reachable from the function's code (its import closure)."""
    packages: frozenset[str]
    """The ``hpsteer`` packages copied (the others were left out)."""
    pins: tuple[tuple[NormalizedName, str], ...]
    """``requirements.txt``: (name, version), sorted by name."""


# -- the import closure --------------------------------------------------------------------------


def _module_file(name: str, shared: Path) -> Path | None:
    base = shared.joinpath(*name.split("."))
    if (base / "__init__.py").is_file():
        return base / "__init__.py"
    if base.with_suffix(".py").is_file():
        return base.with_suffix(".py")
    return None


def _imported_names(source: str, package: str) -> set[str]:
    """Every module name ``source`` may import (``from m import x`` yields ``m`` and ``m.x``)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join([*parts, node.module] if node.module else parts)
            else:
                module = node.module or ""
            names.add(module)
            names.update(f"{module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            match = _MODULE_STRING.match(node.value)
            if match:
                names.add(match.group(0))
    return names


def import_closure(
    sources: Iterable[Path], shared: Path = SHARED_DIR, *, unfollowed: tuple[str, ...] = ()
) -> frozenset[str]:
    """The ``hpsteer`` modules reachable from ``sources`` (files outside the package).

    The imports of modules whose name starts with one of ``unfollowed`` are not followed (they
    are in the closure themselves): the tests ask what a function reaches besides the wiring.
    """
    seen: set[str] = set()
    todo: list[tuple[str, Path]] = [("", path) for path in sources]
    while todo:
        name, path = todo.pop()
        if unfollowed and name.startswith(unfollowed):
            continue
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for imported in _imported_names(path.read_text(encoding="utf-8"), package):
            parts = imported.split(".")
            if parts[0] != PACKAGE:
                continue
            for end in range(1, len(parts) + 1):
                candidate = ".".join(parts[:end])
                found = _module_file(candidate, shared)
                if found is not None and candidate not in seen:
                    seen.add(candidate)
                    todo.append((candidate, found))
    return frozenset(seen)


def _packages_of(modules: Iterable[str], shared: Path) -> frozenset[str]:
    """The packages ``modules`` lie in, with every ancestor package."""
    packages: set[str] = set()
    for module in modules:
        path = _module_file(module, shared)
        is_package = path is not None and path.name == "__init__.py"
        package = module if is_package else module.rpartition(".")[0]
        parts = package.split(".")
        packages.update(".".join(parts[:end]) for end in range(1, len(parts) + 1))
    return frozenset(packages)


def _package_files(shared: Path, packages: frozenset[str]) -> list[Path]:
    """Files of ``shared/hpsteer`` to stage: those whose every enclosing package is kept."""
    root = shared / PACKAGE
    kept: list[Path] = []
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(shared)
        if not path.is_file() or path.suffix in _SKIPPED_SUFFIXES:
            continue
        if _SKIPPED_NAMES.intersection(relative.parts):
            continue
        enclosing = [relative.parts[:end] for end in range(1, len(relative.parts))]
        if all(".".join(parts) in packages for parts in enclosing if _is_package(shared, parts)):
            kept.append(path)
    return kept


def _is_package(shared: Path, parts: Sequence[str]) -> bool:
    """A directory holding Python modules (namespace packages too: hpsteer.runtime.simulation
    has no ``__init__.py``); a directory of data files belongs to its enclosing package."""
    directory = shared.joinpath(*parts)
    return any(directory.glob("*.py"))


def _data_files(data: Path, modules: frozenset[str]) -> list[Path]:
    """Files of the ``data/`` folders the reached modules read (:data:`PACKAGE_DATA`)."""
    kept: list[Path] = []
    for module, folder in sorted(PACKAGE_DATA.items()):
        if module not in modules:
            continue
        for path in sorted((data / folder).rglob("*")):
            relative = path.relative_to(data)
            if path.is_file() and not _SKIPPED_NAMES.intersection(relative.parts):
                kept.append(path)
    return kept


def package_names(shared: Path = SHARED_DIR) -> list[str]:
    """Every package of ``shared/hpsteer``, sorted."""
    return sorted(
        ".".join(d.relative_to(shared).parts)
        for d in [shared / PACKAGE, *(shared / PACKAGE).rglob("*")]
        if d.is_dir()
        and not _SKIPPED_NAMES.intersection(d.relative_to(shared).parts)
        and _is_package(shared, d.relative_to(shared).parts)
    )


# -- pinned requirements -------------------------------------------------------------------------


def read_lock(text: str) -> dict[NormalizedName, LockedPackage]:
    """The pins of a ``uv pip compile`` output with the packages requiring each (``# via``)."""
    pins: dict[NormalizedName, str] = {}
    via: dict[NormalizedName, set[NormalizedName]] = {}
    current: NormalizedName | None = None
    for line in text.splitlines():
        pin = _PIN.match(line)
        if pin:
            current = canonicalize_name(pin.group(1))
            pins[current] = pin.group(2)
            via[current] = set()
            continue
        if current is None:
            continue
        annotation = _VIA_INLINE.match(line) or _VIA_CONTINUED.match(line)
        if annotation:
            parent = annotation.group(1).strip()
            if not parent.endswith(")"):  # "hpsteer (pyproject.toml)": the project itself
                via[current].add(canonicalize_name(parent))
        elif line.strip() and not line.lstrip().startswith("#"):
            raise ValueError(f"requirements.lock: unexpected line {line!r}")
    return {
        name: LockedPackage(name, version, frozenset(via[name])) for name, version in pins.items()
    }


def pinned_requirements(
    direct: Sequence[Requirement], lock: Mapping[NormalizedName, LockedPackage]
) -> tuple[tuple[NormalizedName, str], ...]:
    """``direct`` and everything the lock says they depend on, each at its locked version."""
    dependents: dict[NormalizedName, set[NormalizedName]] = {name: set() for name in lock}
    for package in lock.values():
        for parent in package.required_by:
            dependents.setdefault(parent, set()).add(package.name)
    wanted: set[NormalizedName] = set()
    todo: list[NormalizedName] = []
    for requirement in direct:
        name = canonicalize_name(requirement.name)
        locked = lock.get(name)
        if locked is None:
            raise ValueError(f"{requirement} is not in requirements.lock: regenerate the lock")
        if not requirement.specifier.contains(locked.version, prereleases=True):
            raise ValueError(
                f"{requirement} excludes the locked {locked.name}=={locked.version}: "
                "align the range or regenerate the lock"
            )
        todo.append(name)
    while todo:
        name = todo.pop()
        if name not in wanted:
            wanted.add(name)
            todo.extend(sorted(dependents.get(name, ())))
    return tuple((name, lock[name].version) for name in sorted(wanted))


def _direct_requirements(path: Path) -> list[Requirement]:
    requirements: list[Requirement] = []
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.split(" #", 1)[0].strip()
        if line and not line.startswith("#"):
            requirements.append(Requirement(line))
    return requirements


def _requirements_text(name: str, pins: Sequence[tuple[NormalizedName, str]]) -> str:
    header = (
        f"# The {name} function's runtime packages, pinned from requirements.lock by\n"
        f"# `python -m deploy.stage` (direct needs: functions/{name}/requirements.txt).\n"
    )
    return header + "".join(f"{package}=={version}\n" for package, version in pins)


# -- staging -------------------------------------------------------------------------------------


def function_folders(functions: Path = FUNCTIONS_DIR) -> list[str]:
    """Every folder under ``functions/`` with a ``main.py``, sorted."""
    return sorted(p.parent.name for p in functions.glob("*/main.py"))


def _write(path: Path, content: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    os.chmod(path, FILE_MODE)
    os.utime(path, (FIXED_MTIME, FIXED_MTIME))


def _fix_directory_times(root: Path) -> None:
    for directory in sorted((p for p in root.rglob("*") if p.is_dir()), reverse=True):
        os.utime(directory, (FIXED_MTIME, FIXED_MTIME))
    os.utime(root, (FIXED_MTIME, FIXED_MTIME))


def stage_function(
    name: str,
    out: Path,
    *,
    functions: Path = FUNCTIONS_DIR,
    shared: Path = SHARED_DIR,
    data: Path = DATA_DIR,
    lock: Mapping[NormalizedName, LockedPackage] | None = None,
) -> StagedFunction:
    """Build ``out/<name>/`` afresh from ``functions/<name>`` (see the module docstring)."""
    source = functions / name
    if not (source / "main.py").is_file():
        raise ValueError(f"{source} has no main.py")
    own_files = sorted(
        p
        for p in source.rglob("*")
        if p.is_file()
        and p.name != REQUIREMENTS
        and p.suffix not in _SKIPPED_SUFFIXES
        and not _SKIPPED_NAMES.intersection(p.relative_to(source).parts)
    )
    modules = import_closure([p for p in own_files if p.suffix == ".py"], shared)
    packages = _packages_of(modules, shared)
    locked = lock if lock is not None else read_lock(LOCK_FILE.read_text(encoding="utf-8"))
    pins = pinned_requirements(_direct_requirements(source / REQUIREMENTS), locked)

    target = out / name
    if target.exists():
        shutil.rmtree(target)
    for path in own_files:
        _write(target / path.relative_to(source), path.read_bytes())
    for path in _package_files(shared, packages):
        _write(target / path.relative_to(shared), path.read_bytes())
    for path in _data_files(data, modules):
        _write(target / "data" / path.relative_to(data), path.read_bytes())
    _write(target / REQUIREMENTS, _requirements_text(name, pins).encode())
    _fix_directory_times(target)
    return StagedFunction(name, target, modules, packages, pins)


def stage(
    names: Sequence[str] = (), out: Path = DEFAULT_OUT, *, functions: Path = FUNCTIONS_DIR
) -> list[StagedFunction]:
    """Stage ``names`` (every function when empty) into ``out``."""
    known = function_folders(functions)
    unknown = sorted(set(names) - set(known))
    if unknown:
        raise ValueError(f"no such function folder: {', '.join(unknown)} (known: {known})")
    lock = read_lock(LOCK_FILE.read_text(encoding="utf-8"))
    return [
        stage_function(name, out, functions=functions, lock=lock) for name in sorted(names or known)
    ]


def folder_bytes(path: Path) -> int:
    """Bytes of the files under ``path``."""
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deploy.stage", description=__doc__)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="default: build/stage")
    parser.add_argument("folders", nargs="*", help="function folders (default: all)")
    args = parser.parse_args(argv)
    try:
        staged = stage(args.folders, args.out)
    except ValueError as err:
        print(f"stage: {err}", file=sys.stderr)
        return 2
    all_packages = package_names()
    for item in staged:
        left_out = [
            package
            for package in all_packages
            if package not in item.packages and package.rpartition(".")[0] in item.packages
        ]
        print(
            f"{item.name}: {len(item.pins)} pinned packages, "
            f"{folder_bytes(item.path) / 1024:.0f} KiB -> {item.path}"
        )
        print(f"  left out: {', '.join(left_out) or 'nothing'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
