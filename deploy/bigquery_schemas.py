"""The BigQuery schema files terraform applies, generated from the code's ``TableSchema`` constants.

Why generated: the functions create and grow their tables themselves (``Analytics.ensure_table``,
:mod:`hpsteer.backends.gcp.bigquery_analytics`), but terraform creates them first, with
partitioning, clustering and deletion protection. Both must declare the same columns: a column
terraform lacks is added by the code and then dropped again by the next ``terraform apply``; a
column the code lacks makes ``ensure_table`` refuse the table ("the schema drops column ...").
So the files are never written by hand::

    python -m deploy.bigquery_schemas           # (re)write terraform/schemas/<table>.json
    python -m deploy.bigquery_schemas --check   # exit 1 naming the stale files

The tables are found in the code, not listed here: every module-level ``NAME = TableSchema(...)``
in the ``hpsteer`` package (the backends and the port only build schemas at run time). Types are
written in BigQuery's legacy spelling (``INTEGER``, ``FLOAT``, ``BOOLEAN``), which is what the
API's ``tables.get`` answers, so terraform sees no difference after an apply; the code's BigQuery
backend reads both spellings. Partitioning and clustering stay in ``terraform/bigquery.tf``; the
infrastructure tests compare them with the same constants.
"""

from __future__ import annotations

import argparse
import ast
import importlib
import json
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

from hpsteer.ports.analytics import Column, TableSchema

__all__ = [
    "PACKAGE",
    "SCHEMAS",
    "code_tables",
    "render",
    "rendered_files",
    "stale_files",
    "write_files",
]

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "shared" / "hpsteer"
SCHEMAS = ROOT / "terraform" / "schemas"
COMMAND = "python -m deploy.bigquery_schemas"

_SKIPPED = ("backends", "ports")
"""Sub-packages that build schemas at run time (from a live table) rather than declare them."""

_LEGACY_TYPES = {"INT64": "INTEGER", "FLOAT64": "FLOAT", "BOOL": "BOOLEAN"}


def _declarations(path: Path) -> Iterator[str]:
    """Names assigned ``TableSchema(...)`` at the top level of the module at ``path``."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    for node in tree.body:
        value: ast.expr | None
        if isinstance(node, ast.Assign):
            value, targets = node.value, node.targets
        elif isinstance(node, ast.AnnAssign):
            value, targets = node.value, [node.target]
        else:
            continue
        called = value.func if isinstance(value, ast.Call) else None
        if isinstance(called, ast.Name) and called.id == "TableSchema":
            yield from (target.id for target in targets if isinstance(target, ast.Name))


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def code_tables() -> dict[str, TableSchema]:
    """Every table the code declares, by table name (two declarations of one name fail)."""
    found: dict[str, TableSchema] = {}
    where: dict[str, str] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.relative_to(PACKAGE).parts[0] in _SKIPPED:
            continue
        names = list(_declarations(path))
        if not names:
            continue
        module = importlib.import_module(_module_name(path))
        for name in names:
            schema = getattr(module, name)
            if not isinstance(schema, TableSchema):
                raise TypeError(f"{module.__name__}.{name} is not a TableSchema")
            origin = f"{module.__name__}.{name}"
            if schema.name in found and found[schema.name] != schema:
                raise ValueError(
                    f"table {schema.name} is declared twice: {where[schema.name]} and {origin}"
                )
            found.setdefault(schema.name, schema)
            where.setdefault(schema.name, origin)
    return dict(sorted(found.items()))


def _field(column: Column) -> dict[str, str]:
    field = {
        "name": column.name,
        "type": _LEGACY_TYPES.get(column.type, column.type),
        "mode": "REQUIRED" if column.required else "NULLABLE",
    }
    if column.description:
        field["description"] = column.description
    return field


def render(schema: TableSchema) -> str:
    """The table's schema file: BigQuery's JSON schema, the code's column order."""
    return json.dumps([_field(column) for column in schema.columns], indent=2) + "\n"


def rendered_files(tables: dict[str, TableSchema] | None = None) -> dict[Path, str]:
    """``{terraform/schemas/<table>.json: content}`` for every table of the code."""
    tables = code_tables() if tables is None else tables
    return {SCHEMAS / f"{name}.json": render(schema) for name, schema in tables.items()}


def stale_files(wanted: dict[Path, str] | None = None) -> list[str]:
    """What differs from the code: files missing, out of date, or of no table of the code."""
    wanted = rendered_files() if wanted is None else wanted
    stale: list[str] = []
    for path, text in wanted.items():
        if not path.exists():
            stale.append(f"{path.relative_to(ROOT)} is missing")
        elif path.read_text(encoding="utf-8") != text:
            stale.append(f"{path.relative_to(ROOT)} differs from the code")
    present = sorted(SCHEMAS.glob("*.json")) if SCHEMAS.is_dir() else []
    stale += [
        f"{path.relative_to(ROOT)} belongs to no table of the code"
        for path in present
        if path not in wanted
    ]
    return stale


def write_files(wanted: dict[Path, str] | None = None) -> list[Path]:
    """Write every schema file, remove those of tables the code no longer has; the paths
    written or removed."""
    wanted = rendered_files() if wanted is None else wanted
    SCHEMAS.mkdir(parents=True, exist_ok=True)
    changed: list[Path] = []
    for path, text in wanted.items():
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")
            changed.append(path)
    for path in sorted(SCHEMAS.glob("*.json")):
        if path not in wanted:
            path.unlink()
            changed.append(path)
    return changed


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=COMMAND, description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--check", action="store_true", help="only report stale files (exit 1 if any)"
    )
    args = parser.parse_args(argv)
    if args.check:
        stale = stale_files()
        for line in stale:
            print(f"stale: {line}", file=sys.stderr)
        if stale:
            print(f"run: {COMMAND}", file=sys.stderr)
        return 1 if stale else 0
    for path in write_files():
        print(f"{'wrote' if path.exists() else 'removed'} {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
