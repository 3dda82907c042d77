"""`hpsteer inspect` shows a run's devices and commands from its store, readably.

The store is made by the real services on the local command path: three homes get a plan each
(written, made current and released as optimize does), one home's manufacturer refuses every
command (its commands fail with alerts), another home is re-planned (its older commands are
superseded), reconciliation polls the homes and the telemetry handler stores what it saw. The
snapshot is saved to ``store.sqlite`` and inspected from there.
"""

from __future__ import annotations

import argparse
import io
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from hpsteer.backends.local.bus import LocalMessageBus
from hpsteer.backends.local.store import LocalDocumentStore
from hpsteer.config import Settings
from hpsteer.domain.actions import Mode
from hpsteer.domain.market import PriceArea, Resolution
from hpsteer.domain.messages import ReconcileRequest
from hpsteer.domain.plans import Plan, PlanSlot
from hpsteer.ports.store import DocumentStore
from hpsteer.runtime.inspect import add_inspect_parser, inspect_command, inspect_device, run_inspect
from hpsteer.runtime.local_fleet import LocalFleet
from hpsteer.services.command_log import history
from hpsteer.services.ingest_telemetry import handle_telemetry_message
from hpsteer.services.outbox import release_plan
from hpsteer.services.plans_store import make_current, plan_document, write_plan
from hpsteer.services.reconcile import reconcile_page
from hpsteer.sim.faults import FaultSpec

T0 = datetime(2025, 1, 15, 6, tzinfo=UTC)
HOUR = timedelta(hours=1)
SWEEP_EVERY = timedelta(minutes=30)
FIRST = [Mode.MID, Mode.MAX, Mode.MAX, Mode.MIN, Mode.MIN, Mode.MID, Mode.MID, Mode.MID]
REPLAN = [Mode.MAX, Mode.MIN, Mode.MIN, Mode.MAX]


def hourly_plan(device_id: str, plan_id: str, start: datetime, modes: list[Mode]) -> Plan:
    slots = tuple(
        PlanSlot(
            start_at=start + i * HOUR,
            end_at=start + (i + 1) * HOUR,
            mode=mode,
            price_eur_per_mwh=40.0 + i,
            expected_power_kw=1.0,
            predicted_indoor_temp_c=21.0,
        )
        for i, mode in enumerate(modes)
    )
    return Plan(
        plan_id=plan_id,
        device_id=device_id,
        price_area=PriceArea.SE3,
        resolution=Resolution.PT60M,
        created_at=start,
        slots=slots,
        expected_cost_eur=1.25,
        baseline_cost_eur=1.5,
        solver="test",
    )


def settle(local: LocalFleet, plan: Plan) -> None:
    """What optimize does with a solved plan: write it, make it current, release its outbox."""
    store = local.deps.store
    document, _ = write_plan(store, plan, plan_document(plan, None, {}))
    make_current(
        store, plan.device_id, plan.plan_id, plan.start_at, plan.created_at, plan.mode_runs(),
        plan.end_at,
    )  # fmt: skip
    device = store.get(f"devices/{plan.device_id}")
    assert device is not None
    release_plan(local.deps, plan.device_id, device.data, document)


@dataclass(frozen=True)
class Run:
    state: Path
    store: DocumentStore
    healthy: str
    failing: str
    replan: Plan


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    local = LocalFleet.build(start=T0, homes=3, seed=1, settings=Settings(backend="local"))
    healthy, failing, _ = local.register_devices()
    local.fleet.faults.set_device(
        failing, FaultSpec(server_error_rate=1.0, wire_faults_on_writes_only=True)
    )
    for home in local.fleet:
        settle(local, hourly_plan(home.home_id, "p1", T0, FIRST))
    local.run_until(T0 + 2 * HOUR, sweep_every=SWEEP_EVERY)
    replan = hourly_plan(healthy, "p2", T0 + 2 * HOUR, REPLAN)
    settle(local, replan)
    local.run_until(T0 + 3 * HOUR + timedelta(minutes=30), sweep_every=SWEEP_EVERY)
    request = ReconcileRequest(scheduled_at=local.clock.now(), shard_size=100)
    reconcile_page(request, local.deps, gateway=local.gateway)  # polls every home
    bus, memory = local.deps.bus, local.deps.store
    assert isinstance(bus, LocalMessageBus)
    assert isinstance(memory, LocalDocumentStore)
    for message in bus.published("device-telemetry"):
        handle_telemetry_message(message, local.deps)
    state = tmp_path_factory.mktemp("hpsteer-report")
    memory.save_to(state / "store.sqlite")
    store = LocalDocumentStore.open_readonly(state / "store.sqlite")
    return Run(state, store, healthy, failing, replan)


def device_text(run: Run, device_id: str) -> str:
    out, err = io.StringIO(), io.StringIO()
    assert inspect_device(run.store, device_id, out=out, err=err) == 0
    assert err.getvalue() == ""
    return out.getvalue()


def command_text(run: Run, command_id: str, device_id: str) -> str:
    out, err = io.StringIO(), io.StringIO()
    assert inspect_command(run.store, command_id, device_id=device_id, out=out, err=err) == 0
    assert err.getvalue() == ""
    return out.getvalue()


def section(text: str, heading: str) -> list[str]:
    """The rows of a table under ``heading`` (after its column line and rule)."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(heading))
    rows = []
    for line in lines[start + 3 :]:
        if not line:
            break
        rows.append(line)
    return rows


def field(text: str, name: str) -> str:
    line = next(x for x in text.splitlines() if x.startswith(f"  {name} "))
    return line[len(name) + 2 :].strip()


# -- a device ----------------------------------------------------------------------------------


def test_a_device_shows_its_documents_key_fields(run: Run) -> None:
    text = device_text(run, run.healthy)
    assert text.startswith(f"device {run.healthy} ")
    assert field(text, "manufacturer") == "viessmann"
    assert field(text, "price area") == "SE3"
    assert field(text, "steering") == "enabled"
    assert field(text, "current plan") == "p2"
    assert field(text, "last telemetry").startswith("observed 2025-01-15T09:30:00Z: indoor_temp_c=")


def test_a_device_shows_its_plans_newest_first_with_the_current_one_and_outbox_counts(
    run: Run,
) -> None:
    plans = [row.split() for row in section(device_text(run, run.healthy), "plans")]
    assert [(row[0], row[1]) for row in plans] == [("p2", "yes"), ("p1", "no")]
    assert plans[0][-3:] == ["1.25", "1.5", "queued=3"]  # expected, baseline, outbox
    assert plans[1][-1] == "queued=3"
    assert plans[1][-2] == "pending=1,"  # its last change: never within reach before the re-plan


def test_a_device_shows_its_commands_newest_first_with_their_states(run: Run) -> None:
    rows = [row.split()[:4:3] for row in section(device_text(run, run.healthy), "commands")]
    assert rows == [
        ["p2-s003", "pending"],
        ["p2-s000", "completed"],
        # (p1's change at 5 h never became a command: the re-plan came before it was in reach)
        ["p1-s003", "completed"],  # p2 makes the same change at the same time: it adopted it
        ["p1-s001", "completed"],
        ["p1-s000", "completed"],
    ]


def test_the_intended_mode_now_is_the_current_plans_mode_at_the_latest_write(run: Run) -> None:
    out = io.StringIO()
    assert inspect_device(run.store, run.healthy, out=out, err=io.StringIO(), as_json=True) == 0
    view = json.loads(out.getvalue())
    as_of = datetime.fromisoformat(view["as_of"])
    assert as_of >= T0 + 3 * HOUR + timedelta(minutes=30)  # the telemetry stored at the end
    expected = run.replan.mode_at(as_of)
    assert expected is not None
    assert view["intended_now"]["mode"] == expected.value
    assert view["intended_now"]["plan_id"] == "p2"


def test_the_intended_mode_follows_a_given_now(run: Run) -> None:
    out = io.StringIO()
    at = T0 + 2 * HOUR + timedelta(minutes=5)
    assert inspect_device(run.store, run.healthy, out=out, err=io.StringIO(), now=at) == 0
    assert field(out.getvalue(), "intended now").startswith("max since 2025-01-15T08:00:00Z")


def test_a_failing_device_shows_its_failed_commands_and_open_alerts(run: Run) -> None:
    text = device_text(run, run.failing)
    failed = [row for row in section(text, "commands") if " failed " in row]
    assert {row.split()[0] for row in failed} == {"p1-s000", "p1-s001", "p1-s003"}
    assert all("HTTP 500" in row for row in failed)
    alerts = text.split("\nopen alerts\n")[1].splitlines()
    assert len(alerts) == 3
    assert all(line.startswith("  CRITICAL command_failed at ") for line in alerts)


def test_a_device_in_json_is_one_object_with_iso_instants(run: Run) -> None:
    out = io.StringIO()
    assert inspect_device(run.store, run.failing, out=out, err=io.StringIO(), as_json=True) == 0
    view = json.loads(out.getvalue())
    assert view["device_id"] == run.failing
    assert [p["plan_id"] for p in view["plans"]] == ["p1"]
    assert view["plans"][0]["current"] is True
    assert view["plans"][0]["start_at"] == "2025-01-15T06:00:00Z"
    assert {c["state"] for c in view["commands"]} >= {"failed"}
    assert len(view["open_alerts"]) == 3


# -- a command ---------------------------------------------------------------------------------


def test_a_command_shows_its_state_and_its_event_history_in_seq_order(run: Run) -> None:
    text = command_text(run, "p1-s001", run.healthy)
    assert field(text, "state") == "completed"
    assert field(text, "generic_action") == "set_mode_max"
    assert field(text, "attempt") == "1"
    rows = [row.split() for row in section(text, "events")]
    assert [(row[0], row[2]) for row in rows] == [
        ("1", "created"),
        ("2", "sent"),
        ("3", "acknowledged"),
        ("4", "verified"),
        ("5", "completed"),
    ]
    assert text.rstrip().endswith("alerts\n  none")


def test_a_failed_command_shows_every_retry_and_its_alert(run: Run) -> None:
    text = command_text(run, "p1-s001", run.failing)
    assert field(text, "state") == "failed"
    rows = [row.split() for row in section(text, "events")]
    events = history(run.store, run.failing, "p1-s001")
    assert [int(row[0]) for row in rows] == [e.seq for e in events] == list(range(1, len(rows) + 1))
    assert [row[2] for row in rows] == [e.type.value for e in events]
    assert rows[-1][2] == "failed"
    assert "retry_scheduled" in {row[2] for row in rows}
    [alert] = text.split("\nalerts\n")[1].splitlines()
    assert alert.startswith("  CRITICAL command_failed at 2025-01-15T07:")
    assert "p1-s001" in alert


def test_a_command_in_json_is_one_object_with_its_events_and_alert(run: Run) -> None:
    out = io.StringIO()
    code = inspect_command(
        run.store, "p1-s001", device_id=run.failing, out=out, err=io.StringIO(), as_json=True
    )
    assert code == 0
    view = json.loads(out.getvalue())
    assert view["command"]["state"] == "failed"
    assert "slot_start_at" in view["command"]
    assert None not in view["command"].values()  # only the fields that are set
    seqs = [e["seq"] for e in view["events"]]
    assert seqs == sorted(seqs)
    assert view["events"][0]["at"] == "2025-01-15T06:00:00Z"
    assert [a["kind"] for a in view["alerts"]] == ["command_failed"]


def test_a_command_id_on_one_device_is_found_without_naming_the_device(run: Run) -> None:
    out = io.StringIO()
    code = inspect_command(run.store, "p2-s003", device_id=None, out=out, err=io.StringIO())
    assert code == 0
    assert out.getvalue().startswith(f"command p2-s003 of device {run.healthy}\n")


def test_a_command_id_on_several_devices_without_a_device_lists_them_in_one_line(
    run: Run,
) -> None:
    out, err = io.StringIO(), io.StringIO()
    assert inspect_command(run.store, "p1-s001", device_id=None, out=out, err=err) == 1
    assert out.getvalue() == ""
    [line] = err.getvalue().splitlines()
    assert line.startswith("error: command p1-s001 exists on devices ")
    assert all(home in line for home in (run.healthy, run.failing))
    assert "--device" in line


# -- what is not there -------------------------------------------------------------------------


@pytest.mark.parametrize("device_id", ["home-9999", "a/b", ".."])
def test_an_unknown_device_is_one_line_and_exit_1(run: Run, device_id: str) -> None:
    out, err = io.StringIO(), io.StringIO()
    assert inspect_device(run.store, device_id, out=out, err=err, source="S") == 1
    assert (out.getvalue(), err.getvalue()) == ("", f"error: no device {device_id} in S\n")


def test_an_unknown_command_is_one_line_and_exit_1(run: Run) -> None:
    for device_id in (None, run.healthy):
        err = io.StringIO()
        code = inspect_command(
            run.store, "nope", device_id=device_id, out=io.StringIO(), err=err, source="S"
        )
        assert code == 1
        [line] = err.getvalue().splitlines()
        assert line.startswith("error: no command nope")
        assert line.endswith(" in S")


# -- the command line --------------------------------------------------------------------------


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="hpsteer")
    add_inspect_parser(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(["inspect", *argv])


def test_the_command_line_reads_the_store_of_the_state_folder(run: Run) -> None:
    out, err = io.StringIO(), io.StringIO()
    args = parse("command", "p1-s000", "--device", run.failing, "--state", str(run.state), "--json")
    assert run_inspect(args, out=out, err=err) == 0
    assert json.loads(out.getvalue())["command"]["state"] == "failed"
    out = io.StringIO()
    assert run_inspect(parse("device", run.healthy, "--state", str(run.state)), out=out) == 0
    assert out.getvalue().startswith(f"device {run.healthy} ")


def test_the_command_line_names_the_store_file_for_an_unknown_device(run: Run) -> None:
    err = io.StringIO()
    args = parse("device", "home-9999", "--state", str(run.state))
    assert run_inspect(args, out=io.StringIO(), err=err) == 1
    assert err.getvalue() == f"error: no device home-9999 in {run.state / 'store.sqlite'}\n"


def test_a_missing_store_is_one_line_naming_it_and_asking_for_a_simulation(
    tmp_path: Path,
) -> None:
    out, err = io.StringIO(), io.StringIO()
    assert (
        run_inspect(parse("device", "home-0000", "--state", str(tmp_path)), out=out, err=err) == 1
    )
    assert out.getvalue() == ""
    [line] = err.getvalue().splitlines()
    assert str(tmp_path / "store.sqlite") in line
    assert "hpsteer simulate" in line


def test_the_state_folder_defaults_to_the_simulators_output_folder() -> None:
    assert parse("device", "x").state == Path("hpsteer-report")
    assert parse("command", "c").device_id is None
