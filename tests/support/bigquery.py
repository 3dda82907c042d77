"""The BigQuery stand-in for the contract tests: bqemulator (DuckDB underneath), offline.

``bigquery_emulator`` starts ``bqemulator start`` from the ``.tools/bq`` venv once per session,
in memory (``--ephemeral``), with its REST and gRPC servers on free ``127.0.0.1`` ports.

Offline start: bqemulator runs ``INSTALL spatial; LOAD spatial`` at boot and fails without the
DuckDB extension repository. DuckDB's ``INSTALL`` is a no-op when the extension file is already
in its extension directory (``$HOME/.duckdb/extensions/v<duckdb>/<platform>/``), so the fixture
gives the emulator a temporary ``HOME`` in which that file is a symlink to the copy that the
``duckdb-extension-spatial`` package ships. ``BQEMU_ENABLE_FORMAT_EXTENSIONS=false`` skips its
best-effort ``INSTALL avro`` (a network attempt at every start). bqemulator 1.4.0 also needs
``numpy`` at start (DuckDB's ``create_function``), which its package does not declare.

Tests get a :class:`BigQueryEmulator` and make a client with :meth:`BigQueryEmulator.client`;
isolation between tests comes from a fresh dataset per test (:meth:`BigQueryEmulator.new_dataset`),
which is cheaper than deleting tables.
"""

from __future__ import annotations

import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.emulator import EmulatorProcess, free_port, tool_executable, unavailable

__all__ = ["BigQueryEmulator", "bigquery_emulator"]

PROJECT = "hpsteer-test"

_FIND_SPATIAL = """
import pathlib, duckdb, duckdb_extension_spatial
version = "v" + duckdb.__version__
platform = duckdb.connect().execute("PRAGMA platform").fetchone()[0]
shipped = pathlib.Path(duckdb_extension_spatial.__file__).parent / "extensions" / version
print(version, platform, shipped / "spatial.duckdb_extension", sep="\\n")
"""


@dataclass(frozen=True)
class BigQueryEmulator:
    endpoint: str
    project: str
    start_seconds: float

    def client(self) -> Any:
        from hpsteer.backends.gcp.bigquery_analytics import emulator_client

        return emulator_client(self.endpoint, self.project)

    @staticmethod
    def new_dataset() -> str:
        return f"test_{uuid.uuid4().hex[:12]}"


def _offline_home(python: str, home: Path) -> None:
    """Put the packaged spatial extension where DuckDB's ``INSTALL spatial`` finds it."""
    try:
        found = subprocess.run(
            [python, "-c", _FIND_SPATIAL], check=True, capture_output=True, text=True, timeout=60
        )
    except (OSError, subprocess.SubprocessError) as err:
        unavailable(f"cannot locate the packaged DuckDB spatial extension: {err}")
    version, platform, shipped = found.stdout.split("\n")[:3]
    if not Path(shipped).is_file():
        unavailable(f"duckdb-extension-spatial ships no {shipped}")
    target = home / ".duckdb" / "extensions" / version / platform
    target.mkdir(parents=True)
    (target / "spatial.duckdb_extension").symlink_to(shipped)


def _answers(endpoint: str, project: str) -> bool:
    response = httpx.get(f"{endpoint}/bigquery/v2/projects/{project}/datasets", timeout=0.5)
    return response.status_code == 200


@pytest.fixture(scope="session")
def bigquery_emulator() -> Iterator[BigQueryEmulator]:
    executable = tool_executable("bq", "bqemulator")
    python = str(Path(executable).with_name("python"))
    with tempfile.TemporaryDirectory(prefix="hpsteer-bqemulator-") as tmp:
        home = Path(tmp)
        started = time.monotonic()
        _offline_home(python, home)
        rest_port, grpc_port = free_port(), free_port()
        endpoint = f"http://127.0.0.1:{rest_port}"
        process = EmulatorProcess(
            "bqemulator",
            [
                executable,
                "start",
                "--rest-host=127.0.0.1",
                f"--rest-port={rest_port}",
                "--grpc-host=127.0.0.1",
                f"--grpc-port={grpc_port}",
                "--ephemeral",
                f"--project={PROJECT}",
                "--log-level=warning",
                "--no-admin",
            ],
            ready=lambda: _answers(endpoint, PROJECT),
            env={
                "HOME": str(home),
                "BQEMU_ENABLE_FORMAT_EXTENSIONS": "false",
                "NO_PROXY": "127.0.0.1,localhost",
                "no_proxy": "127.0.0.1,localhost",
            },
            cwd=home,  # no stray .bqemu.toml from the working directory
            start_timeout_s=60.0,
        )
        process.start()
        try:
            yield BigQueryEmulator(endpoint, PROJECT, time.monotonic() - started)
        finally:
            process.stop()
