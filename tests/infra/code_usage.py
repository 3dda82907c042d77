"""What each Cloud Function's code does with the cloud, read from the source: the IAM it needs.

terraform grants each function's service account roles on topics and queues; this module derives,
from the code alone, what those grants must be, so that the wiring test can hold terraform to it
(no missing grant, no grant beyond it).

For ``functions/<folder>/main.py`` it follows every ``import`` / ``from ... import`` of an
``hpsteer`` module, at any depth and including imports inside functions (the code loads heavy
modules lazily), to the set of ``shared/hpsteer`` modules the function can run: its *closure*.
In those modules it looks for

- ``<anything>.publish(<... Topic.MEMBER ...>, ...)``: the function publishes on that topic;
- ``<anything>.create_task(...)``: it enqueues Cloud Tasks;
- ``<anything>.delete_task(...)``: it deletes Cloud Tasks (a superseded command's task);
- ``<...analytics...>.query(...)``: it runs BigQuery queries (``roles/bigquery.jobUser``);
- imports of the Google clients that need a project-level role (:data:`CLIENT_ROLES`: Firestore,
  the Cloud Trace exporter, Cloud Monitoring, Cloud Logging's API; a function's stdout reaches
  Cloud Logging without any role).

The closure is followed name by name, not module by module: from the entry points' module, every
top-level function or class of ``shared/hpsteer`` named in reachable code (a class counts whole,
all its methods), plus the import-time statements of every module touched.

This is an **over-approximation**: a module in the closure may hold a publish the function never
reaches at run time (a branch not taken, a helper another function calls). It never misses a
publish written as above, which is the property that matters: a missing grant is an outage, an
extra one only a wider blast radius. The simulation package (``hpsteer.runtime.simulation``) and
the local backends are left out of the closure: they run on a developer's machine only and the
cloud functions never import them on their path (``bootstrap`` picks the gcp backends when
``HPSTEER_BACKEND=gcp``).
"""

from __future__ import annotations

import ast
import functools
from dataclasses import dataclass
from pathlib import Path

from hpsteer.domain.messages import Topic

__all__ = [
    "FUNCTIONS",
    "SHARED",
    "Usage",
    "cloud_event_entry_points",
    "entry_points",
    "function_folders",
    "import_closure",
    "reachable",
    "usage",
]

ROOT = Path(__file__).resolve().parents[2]
FUNCTIONS = ROOT / "functions"
SHARED = ROOT / "shared"

# Project-level roles a function needs when its reachable code imports the client.
CLIENT_ROLES: dict[str, str] = {
    "google.cloud.firestore": "roles/datastore.user",
    "opentelemetry.exporter.cloud_trace": "roles/cloudtrace.agent",
    "opentelemetry.exporter.cloud_monitoring": "roles/monitoring.metricWriter",
    "google.cloud.monitoring_v3": "roles/monitoring.metricWriter",
    "google.cloud.logging": "roles/logging.logWriter",
}

# The project-level role a function needs to run BigQuery queries (jobs run in the project;
# reading the tables is the dataset's dataEditor, bigquery.tf). Derived from a call
# ``<...analytics...>.query(`` in reachable code (the port's own pass-through aside).
ANALYTICS_QUERY_ROLE = "roles/bigquery.jobUser"

# Modules a cloud function never loads in the cloud: the simulation and the local backends.
_LOCAL_ONLY = ("hpsteer.runtime.simulation", "hpsteer.backends.local", "hpsteer.cli")


@dataclass(frozen=True)
class Usage:
    """What one function folder's code does with Pub/Sub and Cloud Tasks."""

    publishes: frozenset[Topic]
    enqueues: bool
    deletes_tasks: bool
    project_roles: frozenset[str]
    """Project-level roles the Google clients it imports need (:data:`CLIENT_ROLES`)."""


def function_folders() -> list[str]:
    """Every folder under ``functions/`` that holds a ``main.py``."""
    return sorted(p.parent.name for p in FUNCTIONS.glob("*/main.py"))


def _decorated_with(folder: str, kinds: tuple[str, ...]) -> list[str]:
    tree = ast.parse((FUNCTIONS / folder / "main.py").read_text())
    found = []
    for node in tree.body:
        if not isinstance(node, ast.FunctionDef):
            continue
        for decorator in node.decorator_list:
            target = decorator.func if isinstance(decorator, ast.Call) else decorator
            if (
                isinstance(target, ast.Attribute)
                and isinstance(target.value, ast.Name)
                and target.value.id == "functions_framework"
                and target.attr in kinds
            ):
                found.append(node.name)
    return found


def entry_points(folder: str) -> list[str]:
    """The functions of ``functions/<folder>/main.py`` decorated as functions-framework entry
    points (``@functions_framework.http`` / ``.cloud_event``)."""
    return _decorated_with(folder, ("http", "cloud_event"))


def cloud_event_entry_points(folder: str) -> list[str]:
    return _decorated_with(folder, ("cloud_event",))


def _module_file(name: str) -> Path | None:
    base = SHARED.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


Target = tuple[str, str | None]
"""An import's target: ``(module, None)`` for a module, ``(module, name)`` for a name in it."""

Node = tuple[str, str]
"""A unit of reachable code: ``(module, top-level name)``, or ``(module, MODULE)`` for the
statements that run on import."""

MODULE = "<module>"


@dataclass(frozen=True)
class _Module:
    name: str
    defs: dict[str, ast.AST]
    """Top-level functions and classes by name."""
    top: list[ast.AST]
    """What runs on import: every other top-level statement and the decorators."""
    aliases: dict[str, Target]
    """Every ``hpsteer`` import anywhere in the module, by the name it binds."""


def _is_module(name: str) -> bool:
    return _module_file(name) is not None


def _aliases(tree: ast.AST) -> dict[str, Target]:
    aliases: dict[str, Target] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] != "hpsteer":
                    continue
                if alias.asname:
                    aliases[alias.asname] = (alias.name, None)
                else:
                    aliases[alias.name.split(".")[0]] = ("hpsteer", None)
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "hpsteer":
            assert not node.level, "hpsteer uses absolute imports only"
            module = node.module or ""
            for alias in node.names:
                bound = alias.asname or alias.name
                child = f"{module}.{alias.name}"
                aliases[bound] = (child, None) if _is_module(child) else (module, alias.name)
    return aliases


@functools.cache
def _load(name: str, path: Path | None = None) -> _Module:
    source = path or _module_file(name)
    assert source is not None, name
    tree = ast.parse(source.read_text())
    defs: dict[str, ast.AST] = {}
    top: list[ast.AST] = []
    for statement in tree.body:
        if isinstance(statement, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            defs[statement.name] = statement
            top.extend(statement.decorator_list)
        else:
            top.append(statement)
    return _Module(name, defs, top, _aliases(tree))


def _chain(node: ast.AST) -> list[str] | None:
    """``a.b.c`` as ``["a", "b", "c"]``; None for anything not rooted at a plain name."""
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    return [node.id, *reversed(parts)]


def _resolve(target: Target, rest: list[str], depth: int = 0) -> Node | None:
    """The node ``target`` followed by the attribute names ``rest`` stands for."""
    module, name = target
    if name is None:
        while rest and _is_module(f"{module}.{rest[0]}"):
            module = f"{module}.{rest.pop(0)}"
        if not rest:
            return (module, MODULE)
        name = rest[0]
    loaded = _load(module)
    if name in loaded.defs:
        return (module, name)
    if name in loaded.aliases and depth < 10:  # a name re-exported by ``module``
        return _resolve(loaded.aliases[name], [], depth + 1)
    return (module, MODULE)  # a constant or other module-level value


def _references(module: _Module, code: list[ast.AST]) -> set[Node]:
    found: set[Node] = set()
    for root in code:
        for node in ast.walk(root):
            if not isinstance(node, ast.Name | ast.Attribute):
                continue
            chain = _chain(node)
            if chain is None:
                continue
            head, rest = chain[0], chain[1:]
            if head in module.defs:
                found.add((module.name, head))
            elif head in module.aliases:
                resolved = _resolve(module.aliases[head], list(rest))
                if resolved is not None:
                    found.add(resolved)
    return found


def _code(node: Node) -> tuple[_Module, list[ast.AST]]:
    module = _load(node[0])
    return module, (module.top if node[1] == MODULE else [module.defs[node[1]]])


@functools.cache
def reachable(folder: str) -> frozenset[Node]:
    """The code ``functions/<folder>/main.py`` can run: every top-level function or class of
    ``shared/hpsteer`` it names, transitively (a class counts whole), and the import-time
    statements of every module it touches."""
    main = _load(f"main:{folder}", FUNCTIONS / folder / "main.py")
    pending = list(_references(main, [*main.top, *main.defs.values()]))
    seen: set[Node] = set()
    while pending:
        node = pending.pop()
        if node in seen or node[0].startswith(_LOCAL_ONLY):
            continue
        seen.add(node)
        parts = node[0].split(".")
        pending.extend((".".join(parts[:i]), MODULE) for i in range(1, len(parts) + 1))
        module, code = _code(node)
        pending.extend(_references(module, code))
    return frozenset(seen)


def import_closure(folder: str) -> frozenset[str]:
    """The ``hpsteer`` modules the function touches."""
    return frozenset(module for module, _ in reachable(folder))


def _topics_in(node: ast.AST) -> set[Topic]:
    found = set()
    for sub in ast.walk(node):
        chain = _chain(sub)
        if chain and len(chain) >= 2 and chain[0] == "Topic" and chain[1] in Topic.__members__:
            found.add(Topic[chain[1]])
    return found


def _calls(code: list[ast.AST], method: str) -> list[ast.Call]:
    return [
        node
        for root in code
        for node in ast.walk(root)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == method
    ]


@functools.cache
def usage(folder: str) -> Usage:
    """Publishes, enqueues and task deletions in the function's reachable code. The backends
    (``hpsteer.backends``) are not scanned: they implement the ports, and a call through a port
    in the function's own code is what says it uses the cloud service."""
    publishes: set[Topic] = set()
    enqueues = deletes = False
    roles: set[str] = set()
    for node in reachable(folder):
        _, code = _code(node)
        for imported in _external_imports(code):
            roles.update(
                role
                for client, role in CLIENT_ROLES.items()
                if imported == client or imported.startswith(f"{client}.")
            )
        if node[0].startswith("hpsteer.backends"):
            continue
        for call in _calls(code, "publish"):
            if call.args:
                publishes |= _topics_in(call.args[0])
        if node[0] != "hpsteer.ports.analytics" and any(
            "analytics" in ast.unparse(call.func.value)  # type: ignore[attr-defined]
            for call in _calls(code, "query")
        ):
            roles.add(ANALYTICS_QUERY_ROLE)
        enqueues = enqueues or bool(_calls(code, "create_task"))
        deletes = deletes or bool(_calls(code, "delete_task"))
    return Usage(frozenset(publishes), enqueues, deletes, frozenset(roles))


def _external_imports(code: list[ast.AST]) -> set[str]:
    found: set[str] = set()
    for root in code:
        for node in ast.walk(root):
            if isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                found.add(node.module)
                found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found
