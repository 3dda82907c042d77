"""The data services in terraform match what the code does with them.

- **Firestore**: every query the code makes has its index, and no composite index lacks a query
  (shapes recorded from a run, :mod:`tests.infra.query_shapes`); no field exempt from indexing
  is one a query or an index uses (nor a map's subfield of it), and each is a field the code
  names; the TTL policies sit on the expiry fields the code writes.
- **BigQuery**: one table per ``TableSchema`` of the code, its schema file generated from it
  (``python -m deploy.bigquery_schemas``), partitioned and clustered as the code declares; the
  functions that append rows (and only they) may edit the dataset.
- **Secret Manager**: the secrets are named as the code names them (a fixed set: the households'
  credentials are sealed in Firestore, not kept as secrets), each function may read exactly the
  secrets its own code reads, found by following the references from its
  ``functions/<folder>/main.py`` through ``shared/hpsteer``, and none may add or destroy versions.
"""

from __future__ import annotations

import ast
import functools
import json
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest

from deploy import bigquery_schemas
from hpsteer.adapters.credentials import KEY_SECRET
from hpsteer.adapters.registry import DEFAULT_FACTORIES
from hpsteer.config import Settings
from hpsteer.ports.analytics import TableSchema
from tests.infra.query_shapes import (
    CompositeNeed,
    GroupFieldNeed,
    QueryRecorder,
    code_call_sites,
    index_needs,
    record_queries,
)
from tests.support.terraform import blocks, resources

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT / "shared"
FUNCTIONS = ROOT / "functions"
FOLDERS = sorted(p.name for p in FUNCTIONS.iterdir() if (p / "main.py").is_file())


def _locals() -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for block in blocks("locals"):
        merged.update(block)
    return merged


def _of_type(kind: str) -> dict[str, dict[str, Any]]:
    return {name: body for (rtype, name), body in resources().items() if rtype == kind}


# == Firestore ================================================================================


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> QueryRecorder:
    return record_queries(tmp_path_factory.mktemp("query-shapes"))


def _declared_composites() -> dict[str, dict[str, Any]]:
    return _of_type("google_firestore_index")


def _satisfies(index: dict[str, Any], need: CompositeNeed) -> bool:
    """Whether the terraform ``index`` serves ``need``: same collection id and scope, the
    equality fields first (in any order), then exactly the ordered fields and directions."""
    if index["collection"] != need.collection_id:
        return False
    if index.get("query_scope", "COLLECTION") != need.scope:
        return False
    fields = [f for f in index["fields"] if f.get("field_path") != "__name__"]
    head = len(need.equalities) + len(need.array_contains)
    equal = {f["field_path"] for f in fields[:head] if "order" in f}
    contains = {f["field_path"] for f in fields[:head] if f.get("array_config") == "CONTAINS"}
    ordered = tuple((f["field_path"], f.get("order")) for f in fields[head:])
    return (
        equal == set(need.equalities)
        and contains == set(need.array_contains)
        and ordered == need.orders
    )


def _group_field_indexes() -> set[GroupFieldNeed]:
    declared: set[GroupFieldNeed] = set()
    for body in _of_type("google_firestore_field").values():
        for config in body.get("index_config", []):
            for index in config.get("indexes", []):
                if index.get("query_scope") == "COLLECTION_GROUP":
                    mode = index.get("order") or index.get("array_config")
                    declared.add(GroupFieldNeed(body["collection"], body["field"], mode))
    return declared


def test_the_recorded_run_reaches_every_query_call_site_of_the_code(
    recorded: QueryRecorder,
) -> None:
    missing = sorted(code_call_sites() - recorded.call_sites)
    assert not missing, (
        "these queries of the code were never run, so their index is unchecked: make "
        "tests/infra/query_shapes.record_queries reach them: " + ", ".join(map(str, missing))
    )


def test_the_recorder_attributes_each_query_to_its_line_in_the_code(
    recorded: QueryRecorder,
) -> None:
    sites = code_call_sites()
    strays = sorted(site for site in recorded.call_sites if site not in sites)
    assert not strays, f"queries attributed to lines that make none: {strays}"


def test_every_query_shape_the_code_makes_has_its_index_in_terraform(
    recorded: QueryRecorder,
) -> None:
    composites = _declared_composites()
    group_fields = _group_field_indexes()
    missing: list[str] = []
    for shape, sites in sorted(recorded.seen.items()):
        for need in index_needs(shape):
            found = (
                any(_satisfies(index, need) for index in composites.values())
                if isinstance(need, CompositeNeed)
                else need in group_fields
            )
            if not found:
                where = ", ".join(map(str, sorted(sites)))
                missing.append(f"{shape} (from {where}) needs {need}")
    assert not missing, "add to terraform/firestore.tf:\n" + "\n".join(missing)


def test_terraform_declares_no_composite_index_that_no_query_uses(
    recorded: QueryRecorder,
) -> None:
    needs = [
        need
        for shape in recorded.seen
        for need in index_needs(shape)
        if isinstance(need, CompositeNeed)
    ]
    unused = sorted(
        name
        for name, index in _declared_composites().items()
        if not any(_satisfies(index, need) for need in needs)
    )
    assert not unused, f"composite indexes no query of the code uses (each costs writes): {unused}"


def test_terraform_declares_no_collection_group_field_index_that_no_query_uses(
    recorded: QueryRecorder,
) -> None:
    needed = {
        need
        for shape in recorded.seen
        for need in index_needs(shape)
        if isinstance(need, GroupFieldNeed)
    }
    assert _group_field_indexes() <= needed, sorted(_group_field_indexes() - needed)


def _exemptions() -> dict[str, tuple[str, str]]:
    """``{resource: (collection group, field path)}`` of every field whose ``index_config`` is
    empty: Firestore keeps no single-field index for it, nor for a map's subfields."""
    return {
        name: (body["collection"], body["field"])
        for name, body in _of_type("google_firestore_field").items()
        if any(not config.get("indexes") for config in body.get("index_config", []))
    }


def _within(name: str, field: str) -> bool:
    """Whether the field path ``name`` is ``field`` or one of its subfields."""
    return name == field or name.startswith(field + ".")


def test_no_query_or_index_of_the_code_uses_a_field_exempt_from_indexing(
    recorded: QueryRecorder,
) -> None:
    # An empty index_config (no indexes at all) is the deliberate exemption of a TTL field (a
    # monotonically increasing timestamp is a write hotspot) or of a large value read with its
    # document only, whose index entries would cost writes and storage for nothing. Firestore
    # would refuse (or stop serving) a query on the field or on a map's subfield.
    queried = {
        (shape.collection_id, name)
        for shape in recorded.seen
        for name in [*(f for f, _ in shape.filters), *(f for f, _ in shape.orders)]
    }
    indexed = {
        (index["collection"], field["field_path"])
        for index in _declared_composites().values()
        for field in index["fields"]
    } | {
        (body["collection"], body["field"])
        for body in _of_type("google_firestore_field").values()
        if any(config.get("indexes") for config in body.get("index_config", []))
    }
    exemptions = _exemptions()
    assert ("plans", "slots") in exemptions.values()
    for name, (collection, field) in exemptions.items():
        used = sorted(
            f"{group}.{path}"
            for group, path in queried | indexed
            if group == collection and _within(path, field)
        )
        assert not used, f"{name}: indexing disabled on a field a query or index uses: {used}"


def test_each_exempted_field_is_one_the_code_names() -> None:
    # A stale exemption (a field renamed or dropped) saves nothing and misleads the next reader.
    # The field is named in the code as a string (a document key, a constant) or as the keyword
    # of the model or dataclass whose fields make the document.
    named = set()
    for _, tree in _python_sources():
        named |= _string_constants(tree) | _keyword_names(tree)
    for name, (_, field) in _exemptions().items():
        assert field.split(".")[0] in named, f"{name}: the code names no field {field}"


def test_a_field_index_override_keeps_the_automatic_collection_scope_indexes() -> None:
    # An index_config replaces what the field inherits: a field that gains a collection-group
    # index must list its collection-scope indexes again, or collection queries on it break.
    # (An empty one is an exemption: see above.)
    automatic = {
        ("ASCENDING", "COLLECTION"),
        ("DESCENDING", "COLLECTION"),
        ("CONTAINS", "COLLECTION"),
    }
    for name, body in _of_type("google_firestore_field").items():
        for config in body.get("index_config", []):
            indexes = config.get("indexes", [])
            if not indexes:
                continue
            modes = {
                (i.get("order") or i.get("array_config"), i.get("query_scope", "COLLECTION"))
                for i in indexes
            }
            assert automatic <= modes, f"{name} drops automatic indexes: {automatic - modes}"


def _python_sources() -> Iterator[tuple[Path, ast.Module]]:
    for path in sorted((SHARED / "hpsteer").rglob("*.py")):
        yield path, ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def _dict_keys(tree: ast.AST) -> set[str]:
    return {
        key.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Dict)
        for key in node.keys
        if isinstance(key, ast.Constant) and isinstance(key.value, str)
    }


def _keyword_names(tree: ast.AST) -> set[str]:
    """Names given as keyword arguments (fields of a model or a dataclass built by the code)."""
    return {
        keyword.arg
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        for keyword in node.keywords
        if keyword.arg
    }


def _string_constants(tree: ast.AST) -> set[str]:
    return {
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str)
    }


def _ttl_policies() -> dict[str, tuple[str, str]]:
    return {
        name: (body["collection"], body["field"])
        for name, body in _of_type("google_firestore_field").items()
        if body.get("ttl_config")
    }


def test_each_ttl_policy_is_on_an_expiry_field_the_code_writes_into_that_collection() -> None:
    policies = _ttl_policies()
    assert policies, "no TTL policy: webhook_ids/*.expires_at expires (services/webhooks.py)"
    for name, (collection, field) in policies.items():
        writers = [
            path
            for path, tree in _python_sources()
            if collection in _string_constants(tree) and field in _dict_keys(tree)
        ]
        assert writers, f"{name}: no module writes {field} into documents of {collection}"


def test_every_expires_at_the_code_writes_has_a_ttl_policy() -> None:
    policed = {field for _, field in _ttl_policies().values()}
    expiring = sorted(
        str(path.relative_to(ROOT))
        for path, tree in _python_sources()
        if "expires_at" in _dict_keys(tree) and "expires_at" not in policed
    )
    assert not expiring, f"documents with expires_at but no TTL policy: {expiring}"


# == BigQuery =================================================================================


@functools.cache
def _code_tables() -> dict[str, TableSchema]:
    return bigquery_schemas.code_tables()


def _terraform_tables() -> dict[str, dict[str, Any]]:
    tables: dict[str, dict[str, Any]] = _locals()["bigquery_tables"]
    return tables


def test_the_schema_files_are_what_the_code_generates_now() -> None:
    stale = bigquery_schemas.stale_files()
    assert not stale, (
        "terraform/schemas is out of date with the code's TableSchema constants: "
        f"{stale}; run `{bigquery_schemas.COMMAND}`"
    )


def test_the_code_declares_the_tables_of_the_design() -> None:
    design = {"spot_prices", "telemetry_history", "command_events", "plans", "cost_savings"}
    assert design <= set(_code_tables()), sorted(design - set(_code_tables()))
    assert any(name.startswith("weather") for name in _code_tables())


def test_every_table_of_the_code_has_a_terraform_table_and_no_other_exists() -> None:
    assert set(_terraform_tables()) == set(_code_tables())


def test_terraform_tables_partition_and_cluster_as_the_code_declares() -> None:
    for name, table in _terraform_tables().items():
        schema = _code_tables()[name]
        assert table["partition_field"] == schema.partition_by, name
        assert schema.column(table["partition_field"]).type in ("TIMESTAMP", "DATE"), name
        assert tuple(table["clustering"]) == schema.cluster_by, name
        assert table["description"] == schema.description, name


def test_the_table_resource_takes_partitioning_clustering_and_schema_from_those_entries() -> None:
    body = resources()[("google_bigquery_table", "history")]
    assert body["for_each"] == "${local.bigquery_tables}"
    assert body["table_id"] == "${each.key}"
    assert body["dataset_id"] == "${google_bigquery_dataset.analytics.dataset_id}"
    assert body["schema"] == '${file("${path.module}/schemas/${each.key}.json")}'
    assert body["clustering"] == "${each.value.clustering}"
    assert body["require_partition_filter"] == "${each.value.require_partition_filter}"
    assert body["time_partitioning"] == [{"type": "DAY", "field": "${each.value.partition_field}"}]


def test_tables_are_protected_from_deletion_in_prod_only() -> None:
    body = resources()[("google_bigquery_table", "history")]
    assert body["deletion_protection"] == "${local.bigquery_deletion_protection}"
    assert _locals()["bigquery_deletion_protection"] == '${var.environment == "prod"}'


def test_the_tables_growing_with_the_fleet_refuse_queries_without_a_date_range() -> None:
    for name in ("telemetry_history", "command_events"):
        assert _terraform_tables()[name]["require_partition_filter"] is True, name


def test_the_generated_types_read_back_as_the_codes_types() -> None:
    from hpsteer.backends.gcp.bigquery_analytics import _LEGACY_TYPES

    for name, schema in _code_tables().items():
        fields = json.loads((bigquery_schemas.SCHEMAS / f"{name}.json").read_text())
        assert [f["name"] for f in fields] == [c.name for c in schema.columns], name
        for field, column in zip(fields, schema.columns, strict=True):
            assert _LEGACY_TYPES[field["type"]] == column.type, (name, field)
            assert (field["mode"] == "REQUIRED") == column.required, (name, field)


# == Secret Manager: names ====================================================================


def _client_module(manufacturer: str) -> Any:
    import importlib

    return importlib.import_module(f"hpsteer.adapters.{manufacturer}.client")


def _naming_functions(manufacturer: str) -> dict[str, Any]:
    """``{kind: <kind>_secret_name}`` exported by the manufacturer's client module."""
    module = _client_module(manufacturer)
    suffix = "_secret_name"
    return {
        name.removesuffix(suffix): getattr(module, name)
        for name in module.__all__
        if name.endswith(suffix)
    }


def test_the_service_secrets_carry_the_names_the_settings_default_to() -> None:
    secrets = _locals()["service_secrets"]
    fields = Settings.model_fields
    for name, secret in secrets.items():
        assert fields[secret["setting"]].default == name
    named = {f for f in fields if f.endswith("_secret") and fields[f].annotation is str}
    assert named == {s["setting"] for s in secrets.values()}


def test_every_manufacturer_of_the_registry_has_its_app_secrets() -> None:
    app = _locals()["manufacturer_app_secrets"]
    assert {secret["manufacturer"] for secret in app.values()} == set(DEFAULT_FACTORIES)


@pytest.mark.parametrize("manufacturer", sorted(DEFAULT_FACTORIES))
def test_the_app_secrets_are_the_names_the_clients_read(manufacturer: str) -> None:
    app = _locals()["manufacturer_app_secrets"]
    declared = {name: s["kind"] for name, s in app.items() if s["manufacturer"] == manufacturer}
    read = {function(): kind for kind, function in _naming_functions(manufacturer).items()}
    assert declared == read


def test_the_data_key_is_the_secret_the_credential_store_reads() -> None:
    assert _locals()["credentials_key_secret"] == KEY_SECRET
    body = resources()[("google_secret_manager_secret", "credentials_key")]
    assert body["secret_id"] == "${local.credentials_key_secret}"


def test_the_data_keys_versions_are_destroyed_only_after_a_delay() -> None:
    body = resources()[("google_secret_manager_secret", "credentials_key")]
    assert int(body["version_destroy_ttl"].removesuffix("s")) >= 7 * 86_400


def test_no_secret_is_declared_per_household_account() -> None:
    assert not [b for b in blocks("variable") if "manufacturer_accounts" in b]
    for body in _of_type("google_secret_manager_secret").values():
        assert "account" not in json.dumps(body.get("for_each", ""))


def test_secrets_hold_no_values_in_terraform() -> None:
    assert not _of_type("google_secret_manager_secret_version")


def test_secrets_stay_in_the_deployment_region() -> None:
    for name, body in _of_type("google_secret_manager_secret").items():
        (replication,) = body["replication"]
        assert "auto" not in replication, name
        (managed,) = replication["user_managed"]
        assert [r["location"] for r in managed["replicas"]] == ["${var.region}"], name


# == Secret Manager: who reads what ===========================================================
#
# A function reads a secret if code reachable from its main.py reads it. Reachability follows
# names (functions, classes, constants) from main.py's imports through every module they
# reference, including imports inside functions and "module:attribute" import paths (the
# adapter registry's lazy factories); a class counts whole. The local wiring
# (hpsteer.runtime.bootstrap.local, which names every adapter to create the local queues) is
# left out: deployed functions run with HPSTEER_BACKEND=gcp, i.e. bootstrap.production.

_NOT_DEPLOYED = frozenset({("hpsteer.runtime.bootstrap", "local")})
_IMPORT_PATH = re.compile(r"^(hpsteer(?:\.\w+)+):(\w+)")
Node = tuple[str, str]
"""(module, top-level name); the name "" is the module's own top-level code."""


@functools.cache
def _module_path(name: str) -> Path | None:
    base = SHARED.joinpath(*name.split("."))
    for path in (base / "__init__.py", base.with_suffix(".py")):
        if path.is_file():
            return path
    return None


def _aliases(nodes: Iterable[ast.AST], module: str, is_package: bool) -> dict[str, Node]:
    """What each imported name in ``nodes`` stands for: ``(module, attribute or "")``."""
    found: dict[str, Node] = {}
    for node in nodes:
        for sub in ast.walk(node):
            if isinstance(sub, ast.Import):
                for alias in sub.names:
                    bound = alias.asname or alias.name.split(".")[0]
                    found[bound] = (alias.name if alias.asname else bound, "")
            elif isinstance(sub, ast.ImportFrom):
                base = sub.module or ""
                if sub.level:
                    parts = module.split(".")[: None if is_package else -1]
                    parts = parts[: len(parts) - (sub.level - 1)]
                    base = ".".join([*parts, *([sub.module] if sub.module else [])])
                for alias in sub.names:
                    found[alias.asname or alias.name] = (base, alias.name)
    return found


class _Module:
    def __init__(self, name: str) -> None:
        path = _module_path(name)
        tree = ast.parse(path.read_text(encoding="utf-8")) if path else ast.Module([], [])
        self.name = name
        self.is_package = path is not None and path.name == "__init__.py"
        self.defs: dict[str, list[ast.stmt]] = {}
        self.body: list[ast.stmt] = []
        for stmt in tree.body:
            if isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                self.defs.setdefault(stmt.name, []).append(stmt)
            elif isinstance(stmt, ast.Assign | ast.AnnAssign):
                targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]
                names = [t.id for t in targets if isinstance(t, ast.Name)]
                for target in names:
                    self.defs.setdefault(target, []).append(stmt)
                if not names:
                    self.body.append(stmt)
            elif not isinstance(stmt, ast.Import | ast.ImportFrom):
                self.body.append(stmt)
        self.imports = _aliases(tree.body, name, self.is_package)

    def statements(self, name: str) -> list[ast.stmt]:
        return self.defs.get(name, []) if name else self.body


@functools.cache
def _module(name: str) -> _Module:
    return _Module(name)


def _resolve(target: Node, depth: int = 0) -> Node | None:
    """The definition ``target`` names, through re-exports; None outside hpsteer."""
    module, attribute = target
    if not module.startswith("hpsteer") or depth > 20:
        return None
    if attribute and _module_path(f"{module}.{attribute}"):
        return (f"{module}.{attribute}", "")
    if not _module_path(module):
        return None
    found = _module(module)
    if not attribute or attribute in found.defs:
        return (module, attribute)
    if attribute in found.imports:
        return _resolve(found.imports[attribute], depth + 1)
    return (module, "")


def _references(node: Node) -> set[Node]:
    module_name, name = node
    module = _module(module_name)
    statements = module.statements(name)
    names = {**module.imports, **_aliases(statements, module_name, module.is_package)}
    found: set[Node] = {(module_name, "")} if name else set()
    for statement in statements:
        for sub in ast.walk(statement):
            target: Node | None = None
            if isinstance(sub, ast.Name):
                target = names.get(sub.id) or (
                    (module_name, sub.id) if sub.id in module.defs else None
                )
            elif isinstance(sub, ast.Attribute) and isinstance(sub.value, ast.Name):
                base = names.get(sub.value.id)
                dotted = ".".join(p for p in base if p) if base else ""
                target = (dotted, sub.attr) if dotted and _module_path(dotted) else None
            elif isinstance(sub, ast.Constant) and isinstance(sub.value, str):
                match = _IMPORT_PATH.match(sub.value)
                target = (match[1], match[2]) if match else None
            resolved = _resolve(target) if target else None
            if resolved is not None:
                found.add(resolved)
    return found


@functools.cache
def _reached(folder: str) -> frozenset[Node]:
    main = FUNCTIONS / folder / "main.py"
    tree = ast.parse(main.read_text(encoding="utf-8"))
    todo = [n for t in _aliases(tree.body, "main", False).values() if (n := _resolve(t))]
    seen: set[Node] = set()
    while todo:
        node = todo.pop()
        if node in seen or node in _NOT_DEPLOYED:
            continue
        seen.add(node)
        todo.extend(_references(node) - seen)
    return frozenset(seen)


def _uses(folder: str, found: Any) -> list[str]:
    """The reached definitions (outside the settings, the ports and the backends) in which
    ``found(ast node)`` holds."""
    hits = []
    for module_name, name in sorted(_reached(folder)):
        if module_name == "hpsteer.config" or module_name.startswith(
            ("hpsteer.ports", "hpsteer.backends")
        ):
            continue
        for statement in _module(module_name).statements(name):
            if any(found(sub) for sub in ast.walk(statement)):
                hits.append(f"{module_name}.{name}")
                break
    return hits


def _reads_setting(setting: str) -> Any:
    return lambda node: isinstance(node, ast.Attribute) and node.attr == setting


def _names_a_manufacturer_secret(node: ast.AST) -> bool:
    return (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id.endswith("_secret_name")
    )


def _reads_the_data_key(node: ast.AST) -> bool:
    return isinstance(node, ast.Name) and node.id == "KEY_SECRET"


def _changes_secret_versions(node: ast.AST) -> bool:
    return (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr in ("add_version", "destroy_version")
    )


def test_the_call_graph_sees_the_lazy_manufacturer_adapters_of_the_dispatcher() -> None:
    # The adapters are imported by import path on first use (hpsteer.adapters.registry): if the
    # walk missed those paths, no function would seem to read any manufacturer secret.
    assert ("hpsteer.adapters.oauth", "refresh_with_rotation") in _reached("dispatch")
    assert ("hpsteer.runtime.bootstrap", "production") in _reached("dispatch")


@pytest.mark.parametrize("setting", ["entsoe_token_secret", "telemetry_webhook_secret"])
def test_a_service_secret_is_readable_by_exactly_the_functions_whose_code_reads_it(
    setting: str,
) -> None:
    (name,) = [n for n, s in _locals()["service_secrets"].items() if s["setting"] == setting]
    readers = sorted(f for f in FOLDERS if _uses(f, _reads_setting(setting)))
    assert readers, f"no function reads Settings.{setting}"
    assert sorted(_locals()["service_secrets"][name]["readers"]) == readers


def test_manufacturer_credentials_are_readable_by_exactly_the_functions_calling_them() -> None:
    readers = sorted(f for f in FOLDERS if _uses(f, _names_a_manufacturer_secret))
    assert readers, "no function reads manufacturer credentials"
    assert sorted(_locals()["manufacturer_secret_readers"]) == readers
    key_readers = sorted(f for f in FOLDERS if _uses(f, _reads_the_data_key))
    assert key_readers == readers, "the data key is read where the credentials are opened"


def test_no_function_adds_or_destroys_a_secret_version() -> None:
    # A rotated refresh token is a Firestore write (hpsteer.adapters.credentials); no function
    # holds secretVersionAdder or secretVersionManager.
    for folder in FOLDERS:
        assert _uses(folder, _changes_secret_versions) == [], folder
    roles = json.dumps(_of_type("google_secret_manager_secret_iam_member"))
    assert "secretVersion" not in roles


def _appends_analytics_rows(node: ast.AST) -> bool:
    return (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr in ("ensure_table", "append")
        and "analytics" in ast.unparse(node.func.value)
    )


def test_the_dataset_is_editable_by_exactly_the_functions_that_append_rows() -> None:
    writers = sorted(f for f in FOLDERS if _uses(f, _appends_analytics_rows))
    assert writers, "no function appends to BigQuery"
    assert sorted(_locals()["bigquery_writers"]) == writers
    body = resources()[("google_bigquery_dataset_iam_member", "writer")]
    assert body["for_each"] == "${toset(local.bigquery_writers)}"
    assert body["dataset_id"] == "${google_bigquery_dataset.analytics.dataset_id}"
    assert body["role"] == "roles/bigquery.dataEditor"
    assert body["member"] == "serviceAccount:${google_service_account.function[each.value].email}"


def test_secret_grants_go_to_the_functions_own_service_accounts_one_secret_at_a_time() -> None:
    body = resources()[("google_secret_manager_secret_iam_member", "accessor")]
    assert body["for_each"] == "${local.secret_accessors}"
    assert body["role"] == "roles/secretmanager.secretAccessor"
    assert body["secret_id"] == "${each.value.secret}"
    assert body["member"] == (
        "serviceAccount:${google_service_account.function[each.value.folder].email}"
    )
    assert set(_of_type("google_secret_manager_secret_iam_member")) == {"accessor"}


def test_the_accessors_cover_the_app_secrets_and_the_data_key_for_the_readers() -> None:
    expression = _locals()["secret_accessors"]
    assert (
        "setproduct(keys(local.manufacturer_app_secrets), local.manufacturer_secret_readers)"
        in (expression)
    )
    assert "for folder in local.manufacturer_secret_readers" in expression
    assert "google_secret_manager_secret.credentials_key.id" in expression


def test_no_secret_role_is_granted_on_the_whole_project() -> None:
    project_wide = [
        name
        for (rtype, name), body in resources().items()
        if rtype.startswith("google_project_iam") and "secretmanager" in json.dumps(body)
    ]
    assert not project_wide, f"secret roles must be granted per secret: {project_wide}"


def test_every_function_folder_named_in_a_secret_grant_exists() -> None:
    named = {
        *(f for s in _locals()["service_secrets"].values() for f in s["readers"]),
        *_locals()["manufacturer_secret_readers"],
    }
    assert named <= set(FOLDERS), sorted(named - set(FOLDERS))
