"""How many adapter round trips per second the in-process simulated fleet serves.

Each manufacturer's adapter, built by the registry with the fleet's in-process transport
(:class:`hpsteer.sim.transport.SimTransport`), reads device state (``get_device_state``) from the
homes of a seeded fleet for a fixed wall-clock budget; the simulated clock advances one minute
after every pass over the homes, and each read steps the physics of the home it reads (as the
fleet does for every request). Figures:
``reads_per_s`` (state reads: ViCare and Onecta make one HTTP request per read, myUplink two) and
``requests_per_s`` (HTTP round trips), per manufacturer and overall. Goal: ``reads_per_s`` ≥ 2,000.
"""

from __future__ import annotations

import argparse
import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from hpsteer.adapters.protocol import AdapterContext
from hpsteer.adapters.registry import default_registry
from hpsteer.backends.local.store import LocalDocumentStore
from hpsteer.errors import SecretNotFound
from hpsteer.ports.clock import SimulatedClock
from hpsteer.ports.secrets import SecretValue
from hpsteer.sim import MANUFACTURERS, Fleet, SimApp, SimTransport

T0 = datetime(2025, 1, 15, 6, tzinfo=UTC)
BASE = "http://fleet.sim"
GOAL_READS_PER_S = 2000.0


class _MemorySecrets:
    """Versioned secrets in memory (the app credentials and the data key; the rotated refresh
    tokens are sealed into an in-memory document store)."""

    def __init__(self) -> None:
        self._versions: dict[str, list[bytes]] = {}

    def get(self, name: str, version: str = "latest") -> SecretValue:
        versions = self._versions.get(name)
        if not versions:
            raise SecretNotFound(f"secret {name} not found")
        index = len(versions) if version == "latest" else int(version)
        return SecretValue(name=name, version=str(index), _payload=versions[index - 1])

    def add_version(self, name: str, payload: bytes) -> str:
        self._versions.setdefault(name, []).append(payload)
        return str(len(self._versions[name]))

    def destroy_version(self, name: str, version: str) -> None:
        """Kept readable: the benchmark measures requests, not what a destroyed version costs."""


def measure(
    homes: int = 30, seconds_per_manufacturer: float = 1.0, seed: int = 0
) -> dict[str, Any]:
    clock = SimulatedClock(T0)
    fleet = Fleet(clock, homes=homes, seed=seed)
    app = SimApp(fleet)
    figures: dict[str, Any] = {"homes": homes, "goal_reads_per_s": GOAL_READS_PER_S}
    total_reads = 0
    total_requests = 0
    total_s = 0.0
    secrets = _MemorySecrets()
    credentials = fleet.seed_credentials(secrets, LocalDocumentStore(clock=clock))
    context = AdapterContext(
        secrets=secrets,
        clock=clock,
        base_urls=dict.fromkeys(MANUFACTURERS, BASE),
        transport=SimTransport(app),
        credentials=credentials,  # the baselines stay in memory, as before (no store)
    )
    registry = default_registry()
    for manufacturer in MANUFACTURERS:
        adapter = registry.build(manufacturer, context)
        refs = fleet.device_refs(manufacturer)
        for ref in refs:  # warm up: tokens, imports
            adapter.get_device_state(ref)
        requests_before = app.requests
        reads = 0
        started = time.perf_counter()
        while time.perf_counter() - started < seconds_per_manufacturer:
            for ref in refs:
                adapter.get_device_state(ref)
            reads += len(refs)
            fleet.advance(clock.now() + timedelta(minutes=1))
        elapsed = time.perf_counter() - started
        requests = app.requests - requests_before
        figures[manufacturer] = {
            "reads_per_s": round(reads / elapsed, 1),
            "requests_per_s": round(requests / elapsed, 1),
        }
        total_reads += reads
        total_requests += requests
        total_s += elapsed
    figures["reads_per_s"] = round(total_reads / total_s, 1)
    figures["requests_per_s"] = round(total_requests / total_s, 1)
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument("--homes", type=int, default=30, help="homes in the fleet (default 30)")
    parser.add_argument(
        "--seconds", type=float, default=1.0, help="wall seconds per manufacturer (default 1)"
    )
    args = parser.parse_args(argv)
    figures = measure(args.homes, args.seconds)
    if args.json:
        print(json.dumps(figures, indent=1))
        return 0
    print(f"adapter reads against the in-process simulated fleet ({args.homes} homes)")
    for manufacturer in MANUFACTURERS:
        row = figures[manufacturer]
        print(
            f"  {manufacturer:14s} {row['reads_per_s']:8.0f} reads/s "
            f"{row['requests_per_s']:8.0f} requests/s"
        )
    print(
        f"  {'overall':14s} {figures['reads_per_s']:8.0f} reads/s "
        f"{figures['requests_per_s']:8.0f} requests/s (goal >= {GOAL_READS_PER_S:.0f} reads/s)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
