"""How fast the local document store records command lifecycles.

Each command is created and then taken through sent, acknowledged, verified and completed: five
transactions, five event documents and five state writes. Measured on the in-memory store and on
the store persisted to SQLite (what the local runtime uses when asked to keep its state), as the
median of a few repetitions. The figure bounds how many commands a local simulation can push
through per second of wall time.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from hpsteer.backends.local.store import LocalDocumentStore
from hpsteer.domain.commands import CommandEvent, CommandEventType
from hpsteer.ports.clock import SimulatedClock
from hpsteer.services.command_log import create_command, record_event

T0 = datetime(2024, 1, 15, 6, tzinfo=UTC)
STEPS = (
    CommandEventType.SENT,
    CommandEventType.ACKNOWLEDGED,
    CommandEventType.VERIFIED,
    CommandEventType.COMPLETED,
)


def lifecycles_per_second(store: LocalDocumentStore, commands: int) -> float:
    started = time.perf_counter()
    for n in range(commands):
        command_id = f"c{n}"
        device_id = f"d{n % 50}"
        create_command(
            store,
            CommandEvent(
                command_id=command_id,
                seq=1,
                type=CommandEventType.CREATED,
                at=T0,
                detail={
                    "device_id": device_id,
                    "manufacturer": "viessmann",
                    "generic_action": "set_mode_max",
                    "correlation_id": command_id,
                },
            ),
        )
        for step, event_type in enumerate(STEPS, start=1):
            record_event(store, device_id, command_id, event_type, T0 + timedelta(seconds=step))
    return commands / (time.perf_counter() - started)


def main(commands: int = 400, repeats: int = 3) -> None:
    print(f"command lifecycles (create + 4 transitions), {commands} commands, median of {repeats}")
    in_memory = [
        lifecycles_per_second(LocalDocumentStore(clock=SimulatedClock(T0)), commands)
        for _ in range(repeats)
    ]
    print(f"  local store, in memory:   {statistics.median(in_memory):8.0f} lifecycles/s")
    persisted = []
    for _ in range(repeats):
        with tempfile.TemporaryDirectory() as folder:
            store = LocalDocumentStore(clock=SimulatedClock(T0), path=Path(folder) / "s.sqlite")
            persisted.append(lifecycles_per_second(store, commands))
            store.close()
    print(f"  local store, SQLite file: {statistics.median(persisted):8.0f} lifecycles/s")


if __name__ == "__main__":
    main()
