"""How long each staged Cloud Function takes to import, and how big its deployable folder is.

Every function is staged (:mod:`deploy.stage`, into a temporary folder unless ``--stage`` names
an existing stage) and, unless ``--project-venv``, installed into a venv of its own from its
staged ``requirements.txt`` (``build/coldstart/venvs/<function>``, rebuilt only when the
requirements change; uv's cache makes that quick after the first time), with bytecode compiled
as pip compiles it when Cloud Functions' build installs the requirements. Then, per function,
``--runs`` fresh interpreters (default 5) each time ``import main`` with the staged folder as
working directory and ``sys.path[0]``, ``HPSTEER_BACKEND=gcp`` and no credentials; one
unmeasured run before them writes the staged source's bytecode (into a cache folder outside the
stage, ``PYTHONPYCACHEPREFIX``, so the stage terraform zips stays clean).

Figures (``python -m benchmarks.coldstart --json``), one object per function name (beside
``runs``, ``python`` and ``all_passed``):

- ``import_ms``: the median of the runs' ``import main`` time, functions-framework (and Flask
  under it) included, since ``main.py`` imports it first. Goal: ≤ 300 ms for dispatch,
  reconcile, ingest_prices, ingest_weather and ingest_telemetry, ≤ 350 ms for api (the operator
  API builds its forty-odd request and answer models at import; its use cases load on first
  use: about 310 ms here against dispatch's 270), ≤ 800 ms for optimize (whose
  ``optimize_shard`` loads OR-Tools on first use, not at import), on this machine.
- ``framework_ms``: the part of it that is importing ``functions_framework`` (the same for every
  function; in Cloud Functions the framework's own process has loaded it before ``main.py``), and
  ``own_ms`` = ``import_ms`` - ``framework_ms``: what this project's code and clients add.
- ``staged_mib``: the staged source folder (``main.py``, ``hpsteer``, ``requirements.txt``);
  ``deps_mib``: the installed size of its requirements (the venv's site-packages, bytecode
  included; absent with ``--project-venv``).
- ``heavy_modules``: which of the heavy clients (OR-Tools, BigQuery, numpy, matplotlib, the
  Cloud Trace exporter, the Firestore, Pub/Sub, Cloud Tasks and Secret Manager clients, gRPC)
  the import loaded; they should load on first use, not at import.
- ``goal_ms`` and ``passed`` per function; ``all_passed`` overall.

So does the garbage collector: every ``main.py`` disables it before its imports and freezes and
re-enables it after them. Importing allocates hundreds of thousands of objects (pydantic builds
its models' validators), and each collection of the oldest generation walks all of them: with
the collector on, reconcile took 315-420 ms here (median 365), with it off 259-297 (median 274).

Bytecode matters on this machine: with ``PYTHONDONTWRITEBYTECODE`` (set in this environment) and
no compiled bytecode, the same imports take two to three times as long, which is the compiler,
not the function.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from deploy.stage import REPO, folder_bytes, function_folders, stage

GOALS_MS: dict[str, float] = {
    "dispatch": 300.0,
    "reconcile": 300.0,
    "ingest_prices": 300.0,
    "ingest_weather": 300.0,
    "ingest_telemetry": 300.0,
    "optimize": 800.0,
    "api": 350.0,
}
DEFAULT_GOAL_MS = 300.0
HEAVY_MODULES = (
    "ortools",
    "google.cloud.bigquery",
    "numpy",
    "matplotlib",
    "opentelemetry.exporter.cloud_trace",
    "opentelemetry.sdk",
    "google.cloud.firestore",
    "google.cloud.pubsub_v1",
    "google.cloud.tasks_v2",
    "google.cloud.secretmanager_v1",
    "grpc",
)
VENVS = REPO / "build" / "coldstart" / "venvs"
MIB = 1024 * 1024
PROJECT = "hpsteer-bench-123"

_PROBE = f"""
import json, os, sys, time
sys.path[0] = os.getcwd()
start = time.perf_counter()
import functions_framework
framework = time.perf_counter()
import main
done = time.perf_counter()
heavy = [name for name in {HEAVY_MODULES!r} if name in sys.modules]
print(json.dumps({{"framework_ms": (framework - start) * 1000, "import_ms": (done - start) * 1000,
                  "heavy_modules": heavy}}))
"""


def _uv() -> str:
    local = Path(sys.executable).with_name("uv")
    return str(local) if local.exists() else "uv"


def function_venv(name: str, requirements: Path, root: Path = VENVS) -> Path:
    """A venv with exactly ``requirements`` installed (reused while they are unchanged)."""
    venv = root / name
    digest = hashlib.sha256(requirements.read_bytes()).hexdigest()
    marker = venv / ".requirements-sha256"
    if marker.exists() and marker.read_text() == digest:
        return venv
    subprocess.run(
        [_uv(), "venv", "--quiet", "--clear", "--python", sys.executable, str(venv)], check=True
    )
    subprocess.run(
        [
            _uv(),
            "pip",
            "install",
            "--quiet",
            "--compile-bytecode",
            "--python",
            str(venv / "bin" / "python"),
            "-r",
            str(requirements),
        ],
        check=True,
    )
    marker.write_text(digest)
    return venv


def _site_packages_bytes(venv: Path) -> int:
    return sum(folder_bytes(p) for p in venv.glob("lib/python*/site-packages"))


def _probe_env(pycache: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HPSTEER_", "GOOGLE_"))}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env.pop("PYTHONPATH", None)
    env.update(
        HPSTEER_BACKEND="gcp",
        HPSTEER_PROJECT=PROJECT,
        PYTHONPYCACHEPREFIX=str(pycache),
        GOOGLE_APPLICATION_CREDENTIALS=str(pycache / "no-credentials.json"),
    )
    return env


def measure_function(
    folder: Path, python: Path, runs: int, env: Mapping[str, str]
) -> dict[str, Any]:
    """The median import figures of ``runs`` fresh interpreters (after one unmeasured run)."""
    samples: list[dict[str, Any]] = []
    for attempt in range(runs + 1):
        done = subprocess.run(
            [str(python), "-c", _PROBE],
            cwd=folder,
            env=dict(env),
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"importing {folder.name}/main.py failed:\n{done.stderr}")
        if attempt:
            samples.append(json.loads(done.stdout.splitlines()[-1]))
    import_ms = statistics.median(s["import_ms"] for s in samples)
    framework_ms = statistics.median(s["framework_ms"] for s in samples)
    return {
        "import_ms": round(import_ms, 1),
        "framework_ms": round(framework_ms, 1),
        "own_ms": round(import_ms - framework_ms, 1),
        "runs_ms": [round(s["import_ms"], 1) for s in samples],
        "heavy_modules": sorted(set().union(*(s["heavy_modules"] for s in samples))),
    }


def measure(
    names: Sequence[str] = (),
    *,
    runs: int = 5,
    stage_dir: Path | None = None,
    project_venv: bool = False,
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="hpsteer-coldstart-") as scratch:
        scratch_path = Path(scratch)
        if stage_dir is None:
            stage_dir = scratch_path / "stage"
            stage(names, stage_dir)
        env = _probe_env(scratch_path / "pycache")
        figures: dict[str, Any] = {}
        for name in sorted(names or function_folders()):
            folder = stage_dir / name
            entry: dict[str, Any] = {}
            if project_venv:
                python = Path(sys.executable)
            else:
                venv = function_venv(name, folder / "requirements.txt")
                python = venv / "bin" / "python"
                entry["deps_mib"] = round(_site_packages_bytes(venv) / MIB, 1)
            entry = {**measure_function(folder, python, runs, env), **entry}
            entry["staged_mib"] = round(folder_bytes(folder) / MIB, 3)
            goal = GOALS_MS.get(name, DEFAULT_GOAL_MS)
            entry["goal_ms"] = goal
            entry["passed"] = entry["import_ms"] <= goal
            figures[name] = entry
    return {
        **figures,
        "runs": runs,
        "python": "project venv" if project_venv else "a venv per function from its requirements",
        "all_passed": all(f["passed"] for f in figures.values()),
    }


def _print_text(result: Mapping[str, Any]) -> None:
    print(f"import main, median of {result['runs']} fresh processes ({result['python']})")
    for name, f in result.items():
        if not isinstance(f, dict):
            continue
        deps = f" + deps {f['deps_mib']} MiB" if "deps_mib" in f else ""
        verdict = "pass" if f["passed"] else "FAIL"
        print(
            f"  {name:17} {f['import_ms']:6.0f} ms (framework {f['framework_ms']:.0f}, own "
            f"{f['own_ms']:.0f}; goal {f['goal_ms']:.0f}: {verdict})  staged "
            f"{f['staged_mib']:.2f} MiB{deps}  heavy: {', '.join(f['heavy_modules']) or '-'}"
        )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument("--runs", type=int, default=5, help="fresh processes per function")
    parser.add_argument("--stage", type=Path, help="an existing stage (default: stage afresh)")
    parser.add_argument(
        "--project-venv",
        action="store_true",
        help="import with the project's venv instead of a venv per function",
    )
    parser.add_argument("functions", nargs="*", help="function folders (default: all)")
    args = parser.parse_args(argv)
    result = measure(
        args.functions, runs=args.runs, stage_dir=args.stage, project_venv=args.project_venv
    )
    if args.json:
        print(json.dumps(result, indent=1))
    else:
        _print_text(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
