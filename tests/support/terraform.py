"""The repository's terraform, read as data for the infrastructure tests.

terraform itself cannot initialise here (no provider downloads), so the ``.tf`` files are parsed
with python-hcl2, which lives in the ``.tools/hcl`` venv (``make tools``): checkov, in a venv of
its own, ships a conflicting ``hcl2`` module. The parser runs once per test session in that venv
and hands back JSON.

:func:`resources` flattens the parse into ``{(type, name): body}``; :func:`blocks` gives the
other top-level blocks (``variable``, ``locals``, ``output``, ``terraform``, ``provider``).
Values keep python-hcl2's rendering: references and expressions as strings such as
``"${google_pubsub_topic.flow[\\"alerts\\"].id}"``.
"""

from __future__ import annotations

import functools
import json
import subprocess
from pathlib import Path
from typing import Any

from tests.support.emulator import ROOT, tool_executable

__all__ = ["TERRAFORM", "blocks", "parse_all", "resources", "tf_files"]

TERRAFORM = ROOT / "terraform"

_PARSER = r"""
import json, sys, hcl2
options = hcl2.SerializationOptions(
    with_comments=False, explicit_blocks=False, strip_string_quotes=True, preserve_heredocs=False
)
out = {}
for path in sys.argv[1:]:
    with open(path) as handle:
        try:
            out[path] = {"ok": hcl2.load(handle, serialization_options=options)}
        except Exception as err:  # noqa: BLE001 - reported per file
            out[path] = {"error": f"{type(err).__name__}: {err}"}
print(json.dumps(out, default=str))
"""


def tf_files() -> list[Path]:
    return sorted(TERRAFORM.rglob("*.tf"))


@functools.cache
def parse_all() -> dict[str, dict[str, Any]]:
    """``{relative path: {"ok": parsed} | {"error": message}}`` for every ``.tf`` file."""
    python = tool_executable("hcl", "python")
    files = [str(path) for path in tf_files()]
    done = subprocess.run(
        [python, "-c", _PARSER, *files], capture_output=True, text=True, check=True, timeout=120
    )
    parsed: dict[str, dict[str, Any]] = json.loads(done.stdout)
    return {str(Path(path).relative_to(ROOT)): result for path, result in parsed.items()}


def _documents() -> list[dict[str, Any]]:
    documents = []
    for path, result in parse_all().items():
        if "error" in result:
            raise AssertionError(f"{path} does not parse: {result['error']}")
        documents.append(result["ok"])
    return documents


def resources(kind: str = "resource") -> dict[tuple[str, str], dict[str, Any]]:
    """Every ``resource`` (or ``data``) block as ``{(type, name): body}``."""
    found: dict[tuple[str, str], dict[str, Any]] = {}
    for document in _documents():
        for block in document.get(kind, []):
            for rtype, named in block.items():
                for name, body in named.items():
                    assert (rtype, name) not in found, f"{kind} {rtype}.{name} declared twice"
                    found[(rtype, name)] = body
    return found


def blocks(kind: str) -> list[dict[str, Any]]:
    """Every top-level block of ``kind`` (``variable``, ``locals``, ``output``, ...)."""
    return [block for document in _documents() for block in document.get(kind, [])]
