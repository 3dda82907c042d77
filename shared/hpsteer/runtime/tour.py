"""``hpsteer demo`` until the local runtime exists: a short, real tour of the foundation.

It wires the local backends with a simulated clock and follows one command for one heat pump
from creation to completion, through the same ports the Cloud Functions use: the command and its
events in the document store (transactions), a named task in a per-manufacturer queue with Cloud
Tasks' retry arithmetic (the emulated manufacturer answers 503 twice), a verification task ten
minutes later, every lifecycle event published on the ``command-events`` topic and appended,
exactly once, to an analytics table. The SQLite files it leaves behind can be opened afterwards.
Then it plans for real: two winter days in SE3 (January 2023) for each building archetype, on
the bundled real prices and weather, with the OR-Tools planner re-planning as production would
against houses it does not know exactly (``hpsteer backtest``), and prints the savings beside the
heat pump's own control and the indoor temperatures of both. The fleet, the manufacturers' clouds
and the whole pipeline on one machine are ``hpsteer simulate`` (not built yet).
"""

from __future__ import annotations

import json
import shutil
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TextIO

from cloudevents.http import CloudEvent

from hpsteer.backends.local.bus import LocalMessageBus
from hpsteer.backends.local.tasks import DispatchedRequest, DispatchResult, LocalTaskQueue
from hpsteer.domain.actions import GenericAction
from hpsteer.domain.commands import CommandEvent, CommandEventType
from hpsteer.domain.devices import ComfortBand, Device, Location, ThermalParameters
from hpsteer.domain.instants import parse_instant
from hpsteer.domain.market import PriceArea
from hpsteer.domain.messages import Topic
from hpsteer.errors import TaskAlreadyExists
from hpsteer.messaging.envelope import read_pubsub_message
from hpsteer.ports.analytics import Column, TableSchema
from hpsteer.ports.clock import SimulatedClock
from hpsteer.ports.tasks import QueueConfig, RetryConfig, TaskRequest
from hpsteer.runtime import bootstrap
from hpsteer.services.command_log import create_command, history, load_command, record_event

__all__ = ["run_tour"]

START = datetime(2024, 1, 15, 5, 0, tzinfo=UTC)
SLOT_AT = datetime(2024, 1, 15, 6, 0, tzinfo=UTC)
DEVICE_ID = "demo-home-1"
COMMAND_ID = "demo-home-1-20240115T0600Z-max"
QUEUE = RetryConfig(
    max_attempts=5,
    min_backoff=timedelta(seconds=10),
    max_backoff=timedelta(seconds=300),
    max_doublings=3,
)
COMMAND_EVENTS = TableSchema(
    name="command_events",
    columns=(
        Column("command_id", "STRING", required=True),
        Column("seq", "INT64", required=True),
        Column("type", "STRING", required=True),
        Column("occurred_at", "TIMESTAMP", required=True),
        Column("attempt", "INT64"),
        Column("error", "STRING"),
    ),
    partition_by="occurred_at",
    cluster_by=("command_id",),
)


def _device() -> Device:
    return Device(
        device_id=DEVICE_ID,
        manufacturer="viessmann",
        external_id="gateway-7633107/device-0",
        account_id="demo-account",
        price_area=PriceArea.SE3,
        location=Location(location_id="stockholm", latitude=59.30, longitude=18.16),
        comfort=ComfortBand(min_indoor_temp_c=20.0, setpoint_c=21.0, max_indoor_temp_c=23.0),
        thermal=ThermalParameters(
            archetype="renovated house",
            heat_loss_w_per_k=150,
            air_capacity_kwh_per_k=4.0,
            hp_max_heat_kw=8.0,
        ),
        registered_at=START,
    )


def _event_row(event: CommandEvent) -> bytes:
    row = {
        "command_id": event.command_id,
        "seq": event.seq,
        "type": event.type.value,
        "occurred_at": event.at.isoformat(),
        "attempt": event.attempt,
        "error": event.error,
    }
    return json.dumps(row).encode()


def run_tour(out_dir: Path, *, out: TextIO) -> int:
    if out_dir.exists():
        shutil.rmtree(out_dir)
    clock = SimulatedClock(START)
    manufacturer_answers = iter([503, 503, 200])

    def say(text: str) -> None:
        print(f"{clock.now():%H:%M:%S}  {text}", file=out)

    def dispatch(request: DispatchedRequest) -> DispatchResult:
        """Stands in for the dispatch function (issue 6) in front of an emulated manufacturer."""
        retry = int(request.headers["X-CloudTasks-TaskRetryCount"])
        task = request.headers["X-CloudTasks-TaskName"]
        at, attempt = clock.now(), retry + 1
        if request.url.endswith("/verify"):
            command = load_command(deps.store, DEVICE_ID, COMMAND_ID)
            sent_attempt = command.attempt if command else attempt
            record_event(
                deps.store,
                DEVICE_ID,
                COMMAND_ID,
                CommandEventType.VERIFIED,
                at,
                attempt=sent_attempt,
                dedup_key=f"{task}/{retry}",
            )
            record_event(
                deps.store,
                DEVICE_ID,
                COMMAND_ID,
                CommandEventType.COMPLETED,
                at,
                attempt=sent_attempt,
                dedup_key=f"{task}/{retry}/done",
            )
            say("verify task: the heat pump reports the +2 K shift -> verified, completed")
            return DispatchResult(200)
        record_event(
            deps.store,
            DEVICE_ID,
            COMMAND_ID,
            CommandEventType.SENT,
            at,
            attempt=attempt,
            dedup_key=f"{task}/{retry}/sent",
        )
        status = next(manufacturer_answers)
        if status != 200:
            record_event(
                deps.store,
                DEVICE_ID,
                COMMAND_ID,
                CommandEventType.RETRY_SCHEDULED,
                at,
                attempt=attempt,
                error=f"manufacturer answered {status}",
                dedup_key=f"{task}/{retry}/retry",
            )
            say(f"dispatch attempt {attempt}: manufacturer answered {status} -> retrying")
            return DispatchResult(503)
        record_event(
            deps.store,
            DEVICE_ID,
            COMMAND_ID,
            CommandEventType.ACKNOWLEDGED,
            at,
            attempt=attempt,
            dedup_key=f"{task}/{retry}/ack",
        )
        say(f"dispatch attempt {attempt}: manufacturer accepted -> acknowledged")
        deps.tasks.create_task(
            TaskRequest(
                queue="verification",
                name=f"{COMMAND_ID}-verify",
                url="http://127.0.0.1:8080/verify",
                schedule_at=at + timedelta(minutes=10),
                body=request.body,
            )
        )
        return DispatchResult(200)

    deps = bootstrap.local(clock=clock, dispatcher=dispatch, state_dir=out_dir)
    queue, bus = deps.tasks, deps.bus
    # The local wiring; the tour drives their clock and delivery rounds itself.
    assert isinstance(queue, LocalTaskQueue)
    assert isinstance(bus, LocalMessageBus)

    def to_analytics(event: CloudEvent) -> None:
        message = read_pubsub_message(event)
        row = json.loads(message.data)
        row["occurred_at"] = parse_instant(row["occurred_at"], field="occurred_at")
        deps.analytics.append("command_events", [row], [f"{row['command_id']}/{row['seq']}"])

    print("hpsteer demo, part 1: one command through the local backends.", file=out)
    print("(The whole pipeline on one machine, `hpsteer simulate`, is not built yet.)\n", file=out)
    deps.analytics.ensure_table(COMMAND_EVENTS)
    bus.subscribe(Topic.COMMAND_EVENTS, to_analytics, name="command-events-to-analytics")

    device = _device()
    deps.store.create(f"devices/{DEVICE_ID}", device.to_document())
    say(f"registered {DEVICE_ID} (viessmann, {device.price_area}, comfort 20-23 °C)")
    create_command(
        deps.store,
        CommandEvent(
            command_id=COMMAND_ID,
            seq=1,
            type=CommandEventType.CREATED,
            at=clock.now(),
            detail={
                "device_id": DEVICE_ID,
                "manufacturer": "viessmann",
                "generic_action": GenericAction.SET_MODE_MAX,
                "plan_id": "demo-plan",
                "slot_start_at": SLOT_AT.isoformat(),
                "correlation_id": "demo-trace",
                "manufacturer_payload": {
                    "feature": "heating.circuits.0.heating.curve",
                    "command": "setCurve",
                    "params": {"shift": 2, "slope": 1.4},
                },
            },
        ),
    )
    say(f"command {COMMAND_ID}: set_mode_max at {SLOT_AT:%H:%M} -> pending")

    for name in ("viessmann", "verification"):
        queue.ensure_queue(QueueConfig(name=name, retry=QUEUE))
    task = TaskRequest(
        queue="viessmann",
        name=COMMAND_ID,
        url="http://127.0.0.1:8080/dispatch",
        schedule_at=SLOT_AT,
        body=json.dumps({"command_id": COMMAND_ID}).encode(),
    )
    queue.create_task(task)
    say(f"named task {COMMAND_ID} scheduled for {SLOT_AT:%H:%M} in queue 'viessmann'")
    try:
        queue.create_task(task)
    except TaskAlreadyExists:
        say("the same task again is refused: TaskAlreadyExists (a redelivered outbox is safe)")

    while (due := queue.next_due_at()) is not None:
        clock.advance_to(due)
        queue.run_due()

    events = history(deps.store, DEVICE_ID, COMMAND_ID)
    for event in [*events, events[-1]]:  # the last one twice: a redelivery, ignored by insert id
        bus.publish(Topic.COMMAND_EVENTS, _event_row(event))
    bus.drain(wait=clock.advance_to)

    print("\nlifecycle, as stored (devices/…/commands/…/events):", file=out)
    for event in events:
        extra = f"  ({event.error})" if event.error else ""
        when = f"{event.at:%H:%M:%S}"
        line = f"  {event.seq:>2}  {when}  {event.type.value:<16} attempt {event.attempt}{extra}"
        print(line, file=out)
    rows = deps.analytics.query(
        "SELECT type, COUNT(*) AS n FROM `command_events` GROUP BY type ORDER BY MIN(seq)"
    )
    print("\nanalytics table command_events (one row per event, duplicates ignored):", file=out)
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
