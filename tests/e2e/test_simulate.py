"""``hpsteer simulate``: the whole system on one machine, judged from what it leaves behind.

One day of 20 homes in SE3 under the ``realistic`` fault profile runs once for the module (about
half a minute); the tests read its ``summary.json``, its store and its truth. The command line is
exercised on a small fault-free run; bad input on nothing at all.
"""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from hpsteer.domain.commands import Command
from hpsteer.domain.market import PriceArea
from hpsteer.observability.metrics import METRICS
from hpsteer.runtime import cli
from hpsteer.runtime.simulation.engine import Simulation
from hpsteer.runtime.simulation.observer import drift_verdict
from hpsteer.runtime.simulation.options import SimulationOptions, check_options
from hpsteer.runtime.simulation.results import write_results
from hpsteer.runtime.simulation.topology import TRIGGERS
from hpsteer.services.reconcile import poll_stride
from tests.support.browser import looks_drawn, screenshot

SUMMARY_FIELDS = {
    "devices",
    "days",
    "savings_pct",
    "comfort_kh_below_per_home_day",
    "mode_changes_per_day",
    "commands",
    "commands_lost",
    "drift_corrected_within_interval_pct",
    "overrides_respected",
    "alerts",
}


@pytest.fixture(scope="module")
def day(tmp_path_factory: pytest.TempPathFactory) -> tuple[Simulation, dict[str, Any]]:
    out = tmp_path_factory.mktemp("simulate")
    options = SimulationOptions(
        area=PriceArea.SE3, start=date(2023, 1, 9), days=1, devices=20, seed=5, out=out
    )
    simulation = Simulation.build(options, check_options(options))
    simulation.run(traces=out / "traces.jsonl")
    record = write_results(simulation, out)
    return simulation, record["summary"]


def test_no_command_is_lost_forked_or_sent_twice(day: tuple[Simulation, dict[str, Any]]) -> None:
    _, summary = day
    assert summary["commands_lost"] == 0, summary["lost_examples"]
    assert summary["forked_histories"] == 0, summary["forked_examples"]
    assert summary["duplicate_side_effects"] == 0
    assert summary["messages_dead_lettered"] == 0
    assert summary["commands"]["completed"] > 0


def test_every_command_of_the_run_ends_terminal_or_waits_for_a_slot_after_it(
    day: tuple[Simulation, dict[str, Any]],
) -> None:
    simulation, _ = day
    store = simulation.local.deps.store
    for document in store.collection_group("commands").documents:
        command = Command.parse(document.data)
        slot = command.slot_start_at or command.created_at
        assert command.state.is_terminal or slot >= simulation.options.end_at, command


def test_households_are_never_fought(day: tuple[Simulation, dict[str, Any]]) -> None:
    _, summary = day
    assert summary["remediations_against_override"] == 0
    assert summary["overrides_respected"] == summary["household_changes"]


def test_drift_is_corrected_within_an_interval_where_the_read_budget_polls_every_interval(
    day: tuple[Simulation, dict[str, Any]],
) -> None:
    """ViCare and myUplink may be polled at every run; Onecta's 200 calls a day allow a poll
    every few runs, so its drift is corrected within its polling stride."""
    simulation, _ = day
    interval = simulation.interval
    for drift in simulation.observer.closed:
        verdict = drift_verdict(drift, interval)
        limits = simulation.local.gateway.adapter(drift.manufacturer).rate_limits
        stride = poll_stride(limits, interval)
        if verdict == "late" and drift.ended == "corrected" and drift.ended_at and drift.visible_at:
            assert drift.ended_at - drift.visible_at <= stride * interval, drift
        else:
            assert verdict != "late", drift


def test_steering_saves_money_without_leaving_homes_colder_than_their_own_control(
    day: tuple[Simulation, dict[str, Any]],
) -> None:
    _, summary = day
    assert summary["savings_pct"] > 0
    assert summary["cost_eur"] < summary["baseline_cost_eur"]
    assert summary["comfort_kh_below_per_home_day"] <= (
        summary["baseline_comfort_kh_below_per_home_day"] + 0.5
    )


def test_the_run_leaves_its_summary_record_report_and_store(
    day: tuple[Simulation, dict[str, Any]],
) -> None:
    simulation, summary = day
    out = simulation.options.out
    assert set(summary) >= SUMMARY_FIELDS
    assert json.loads((out / "summary.json").read_text()) == summary
    record = json.loads((out / "run.json").read_text())
    assert record["summary"] == summary
    assert len(record["homes"]) == 20
    assert sum(1 for h in record["homes"] if h["samples"]) == simulation.options.sample_homes
    assert record["prices"]
    assert record["fleet_load"]
    assert record["funnel"]
    assert (out / "report.html").stat().st_size > 10_000
    assert (out / "store.sqlite").exists()
    # The simulator's share of the run's time is told apart from the pipeline's (the benchmark).
    assert simulation.manufacturer_apis_s > 0.0
    assert simulation.homes_s > 0.0
    assert simulation.manufacturer_apis_s + simulation.homes_s < simulation.wall_s
    series = json.loads((out / "metrics.json").read_text())["series"]
    assert sum(p["value"] for p in series["commands_sent_total"]) > 0
    assert {p["labels"]["oem"] for p in series["estimated_cost_savings_eur"]} == {
        "viessmann",
        "nibe_myuplink",
        "daikin_onecta",
    }
    assert all("device_id" not in p["labels"] for points in series.values() for p in points)
    assert record["timelines"]
    for timeline in record["timelines"]:
        names = [span["name"] for span in timeline["spans"]]
        assert "execute_command" in names
        assert names[0].startswith("handle_")  # from the event that caused it


def test_the_runs_metrics_hold_every_declared_metric_counted_where_it_happens(
    day: tuple[Simulation, dict[str, Any]],
) -> None:
    simulation, _ = day
    metrics = json.loads((simulation.options.out / "metrics.json").read_text())
    assert set(metrics["metrics"]) == set(METRICS)
    assert set(metrics["series"]) == set(METRICS)
    counted_in_a_day = {
        "commands_sent_total",
        "commands_success_total",
        "command_duration_seconds",
        "reconciliation_success_total",
        "oem_api_latency_seconds",
        "circuit_breaker_state",
        "energy_consumption_kwh",
        "estimated_cost_savings_eur",
    }
    for name in counted_in_a_day:
        assert metrics["series"][name], f"{name} was never observed"
    for point in metrics["series"]["circuit_breaker_state"]:
        assert point["value"] in (0, 1, 2)
    for name, points in metrics["series"].items():
        declared = set(METRICS[name].labels)
        assert all(set(point["labels"]) == declared for point in points), name


def test_the_runs_report_opens_in_a_browser_with_its_pictures(
    day: tuple[Simulation, dict[str, Any]], tmp_path: Path
) -> None:
    simulation, _ = day
    assert looks_drawn(screenshot(simulation.options.out / "report.html", tmp_path))


def test_every_pubsub_trigger_reaches_the_cloud_functions_own_entry_point() -> None:
    from hpsteer.runtime.simulation.topology import load_entry_point

    for trigger in TRIGGERS:
        entry = load_entry_point(trigger.function, trigger.entry_point)
        assert entry.__module__ == f"hpsteer_function_{trigger.function}"


# -- the command line ---------------------------------------------------------------------------


def test_simulate_prints_its_summary_as_json_and_inspect_reads_the_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    args = ["simulate", "--devices", "3", "--days", "1", "--faults", "none", "--out", str(out)]
    assert cli.main([*args, "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert set(summary) >= SUMMARY_FIELDS
    assert summary["devices"] == 3
    assert summary["commands_lost"] == 0
    assert cli.main(["inspect", "device", "home-0000", "--state", str(out)]) == 0
    assert "home-0000" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["--area", "XX"], "XX"),
        (["--area", "DK2"], "DK2"),
        (["--start", "2021-01-01"], "prices"),
        (["--start", "2024-12-30", "--days", "3"], "prices"),
        (["--start", "yesterday"], "not a date"),
        (["--devices", "0"], "--devices"),
        (["--devices", "-4"], "--devices"),
        (["--days", "two"], "--days"),
        (["--faults", "apocalyptic"], "--faults"),
    ],
)
def test_bad_input_is_one_line_and_exit_1(
    argv: list[str], says: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["simulate", "--out", str(tmp_path / "out"), *argv]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("error: ")
    assert says in err
    assert "Traceback" not in err


def test_an_output_folder_that_cannot_be_written_is_one_line_and_exit_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    assert cli.main(["simulate", "--out", str(blocker / "report")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "cannot be written" in err


# -- on the emulators ---------------------------------------------------------------------------


@pytest.mark.emulator
def test_a_day_on_the_firestore_and_pubsub_emulators_loses_nothing_and_fights_no_household(
    tmp_path: Path,
) -> None:
    from hpsteer.config import Settings
    from hpsteer.runtime.emulators import EmulatorUnavailable
    from hpsteer.runtime.simulation.emulated import emulated_backends, snapshot
    from tests.support.emulator import unavailable

    options = SimulationOptions(
        area=PriceArea.SE3,
        start=date(2023, 1, 9),
        days=1,
        devices=12,
        seed=5,
        backend="emulators",
        out=tmp_path,
    )
    data = check_options(options)
    try:
        with emulated_backends(Settings(backend="local").project) as backends:
            simulation = Simulation.build(options, data, store=backends.store, bus=backends.bus)
            simulation.run()
            copy = snapshot(backends.store, backends.client, simulation.local.clock)
            summary = write_results(simulation, tmp_path, store_copy=copy)["summary"]
    except EmulatorUnavailable as err:
        unavailable(str(err))
    assert summary["commands_lost"] == 0, summary["lost_examples"]
    assert summary["forked_histories"] == 0, summary["forked_examples"]
    assert summary["duplicate_side_effects"] == 0
    assert summary["remediations_against_override"] == 0
    assert summary["commands"]["completed"] > 0
    assert summary["savings_pct"] > 0
    assert (tmp_path / "store.sqlite").exists()
    assert cli.main(["inspect", "device", "home-0000", "--state", str(tmp_path)]) == 0
