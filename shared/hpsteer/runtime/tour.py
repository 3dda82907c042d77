"""``hpsteer demo`` until ``hpsteer simulate`` exists: a short, real tour of what is built.

Part 1 follows planned mode changes of three homes (one per manufacturer: ViCare, myUplink,
Onecta) from a plan's outbox to verified commands, through exactly what the cloud runs: the
outbox release (commands in the document store, named tasks in per-manufacturer queues with
Cloud Tasks' retry arithmetic), the dispatch and verify handlers with the real adapters, circuit
breaker and rate budget, against the simulated fleet behind the manufacturers' emulated APIs.
ViCare's cloud answers 5xx to the first two commands, so its history shows the retries; the
event log of each command and the analytics table ``command_events`` are printed, and the SQLite
files it leaves behind can be opened afterwards. Part 2 plans for real: two winter days in SE3
(January 2023) for each building archetype, on the bundled real prices and weather, with the
OR-Tools planner re-planning as production would against houses it does not know exactly
(``hpsteer backtest``), and prints the savings beside the heat pump's own control and the indoor
temperatures of both.
"""

from __future__ import annotations

import shutil
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, TextIO

from hpsteer.config import Settings
from hpsteer.domain.actions import GenericAction
from hpsteer.domain.market import PriceArea
from hpsteer.errors import TaskAlreadyExists
from hpsteer.runtime.local_fleet import LocalFleet
from hpsteer.services.command_log import history
from hpsteer.services.command_tasks import dispatch_queue, dispatch_task
from hpsteer.services.outbox import command_id_for, marker_path, release_plan
from hpsteer.sim.faults import FaultSpec

__all__ = ["PLAN_ID", "START", "run_tour"]

START = datetime(2025, 1, 15, 5, 0, tzinfo=UTC)
SLOT_AT = datetime(2025, 1, 15, 6, 0, tzinfo=UTC)
PLAN_ID = "20250115T0600Z-demo"
CHANGES = (
    (SLOT_AT, GenericAction.SET_MODE_MAX),
    (SLOT_AT + timedelta(hours=2), GenericAction.SET_MODE_MIN),
    (SLOT_AT + timedelta(hours=4), GenericAction.SET_MODE_MID),
)


def _plan_document(device_id: str) -> dict[str, Any]:
    """A plan's outbox as optimize leaves it (the plan itself is part 2's business)."""
    return {
        "plan_id": PLAN_ID,
        "device_id": device_id,
        "start_at": SLOT_AT,
        "end_at": SLOT_AT + timedelta(hours=6),
        "outbox": [
            {"at": at.isoformat(), "action": action.value, "slot_index": 4 * i, "status": "pending"}
            for i, (at, action) in enumerate(CHANGES)
        ],
    }


def run_tour(out_dir: Path, *, out: TextIO) -> int:
    if out_dir.exists():
        shutil.rmtree(out_dir)
    settings = Settings(backend="local", local_state_dir=out_dir)
    local = LocalFleet.build(start=START, homes=3, seed=2025, settings=settings)
    clock, store = local.clock, local.deps.store

    def say(text: str) -> None:
        print(f"{clock.now():%H:%M:%S}  {text}", file=out)

    print(
        "hpsteer demo, part 1: planned mode changes of three homes, from outbox to verified.",
        file=out,
    )
    print("(The whole pipeline on one machine, `hpsteer simulate`, is not built yet.)\n", file=out)
    local.register_devices()
    for home in local.fleet:
        say(
            f"registered {home.home_id}: {home.manufacturer}, {home.archetype}, "
            f"setpoint {home.room_setpoint_c:.0f} °C"
        )
    for home in local.fleet:
        plan = _plan_document(home.home_id)
        store.set(f"devices/{home.home_id}/plans/{PLAN_ID}", plan)
        store.set(
            marker_path(home.home_id, PLAN_ID),
            {"device_id": home.home_id, "plan_id": PLAN_ID, "created_at": clock.now()},
        )
        store.update(f"devices/{home.home_id}", {"current_plan_id": PLAN_ID})
        device = store.get(f"devices/{home.home_id}")
        assert device is not None
        released = release_plan(local.deps, home.home_id, device.data, plan)
        queue = dispatch_queue(home.manufacturer).name
        say(f"{home.home_id}: plan released, {len(released.queued)} commands, tasks in {queue}")
    first = next(iter(local.fleet))
    command_id = command_id_for(PLAN_ID, 0)
    command = store.get(f"devices/{first.home_id}/commands/{command_id}")
    assert command is not None
    again = dispatch_task(
        settings,
        first.manufacturer,
        str(command.data["task_name"]),
        first.home_id,
        command_id,
        SLOT_AT,
    )
    try:
        local.deps.tasks.create_task(again)
    except TaskAlreadyExists:
        say(
            "the same named task again is refused: TaskAlreadyExists (a redelivered outbox is safe)"
        )
    vicare = next(h for h in local.fleet if h.manufacturer == "viessmann")
    local.fleet.faults.set_device(
        vicare.home_id, FaultSpec(server_error_rate=1.0, wire_faults_on_writes_only=True)
    )
    say(f"ViCare's cloud now answers 500 to every command for {vicare.home_id}")
    local.run_until(SLOT_AT + timedelta(seconds=15))
    local.fleet.faults.clear(vicare.home_id)
    say("ViCare's cloud recovers")
    local.run_until(SLOT_AT + timedelta(hours=5))

    for home in local.fleet:
        received = home.commands_received
        print(f"\n{home.home_id} ({home.manufacturer}): {received} commands received", file=out)
        for index in range(len(CHANGES)):
            events = history(store, home.home_id, command_id_for(PLAN_ID, 4 * index))
            print(f"  command {command_id_for(PLAN_ID, 4 * index)}:", file=out)
            for event in events:
                extra = f"  ({event.error})" if event.error else ""
                when, kind = f"{event.at:%H:%M:%S}", event.type.value
                line = f"    {event.seq:>2}  {when}  {kind:<16} attempt {event.attempt}{extra}"
                print(line, file=out)
    rows = local.deps.analytics.query(
        "SELECT type, COUNT(*) AS n FROM `command_events` GROUP BY type ORDER BY MIN(seq)"
    )
    print("\nanalytics table command_events (one row per event):", file=out)
    for row in rows:
        print(f"  {row['type']:<16} {row['n']}", file=out)
    print(f"\nstate is in {out_dir}/store.sqlite and {out_dir}/analytics.sqlite", file=out)
    _plan_on_real_prices(out)
    return 0


_PART_2 = """
hpsteer demo, part 2: planning on real prices (SE3, 9-10 January 2023).
Each house is simulated with physics the planner does not know exactly and re-planned when
prices (13:00) and weather (every 3 h) arrive; it is compared with the heat pump's own control
on the same house and weather. The same as:
  hpsteer backtest --area SE3 --start 2023-01-09 --days 2 --archetype all
"""


def _plan_on_real_prices(out: TextIO) -> None:
    from hpsteer.optimizer.backtest import BacktestScenario, format_table, run_backtest

    print(_PART_2, file=out)
    scenario = BacktestScenario(
        area=PriceArea.SE3,
        start=date(2023, 1, 9),
        days=2,
        archetype="all",
        planner="ortools",
        seed=0,
    )
    print(format_table(run_backtest(scenario)), file=out)
