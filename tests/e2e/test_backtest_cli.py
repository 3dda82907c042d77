"""`hpsteer backtest` prints one JSON object or a table; bad input is one line and exit 1."""

import json
import subprocess
import sys

import pytest

from hpsteer.runtime.cli import main

SHORT = ["backtest", "--area", "SE4", "--start", "2023-02-06", "--days", "2"]


def test_json_output_is_one_object_with_the_figures(capsys):
    assert main([*SHORT, "--archetype", "new", "--planner", "cheapest_hours", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["area"] == "SE4"
    assert report["archetype"] == "new_floor_heating"
    assert report["planner"] == "cheapest_hours"
    for name in ("cost_eur", "baseline_cost_eur", "savings_pct", "perfect_model_savings_pct"):
        assert isinstance(report[name], float)
    assert report["heat_pump_kwh"] > 0


def test_without_json_a_table_has_a_row_per_house_and_the_average(capsys):
    args = [*SHORT, "--days", "1", "--archetype", "all", "--planner", "own_control"]
    assert main(args) == 0
    out = capsys.readouterr().out
    for name in ("old_radiators", "renovated_radiators", "new_floor_heating", "average"):
        assert name in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--area", "XX", "--start", "2023-01-09"], "unknown price area 'XX'"),
        (["--area", "SE3", "--start", "2021-01-09"], "no bundled prices for SE3 on 2021-01-09"),
        (["--area", "AT", "--start", "2025-11-03"], "no bundled weather for AT"),
        (["--area", "SE3", "--start", "2023-01-09", "--days", "0"], "days must be >= 1"),
        (["--area", "SE3", "--start", "2023-01-09", "--days", "two"], "whole numbers"),
        (["--area", "SE3", "--start", "9 Jan"], "is not a date"),
        (["--area", "SE3", "--start", "2023-01-09", "--archetype", "igloo"], "unknown archetype"),
        (["--area", "SE3", "--start", "2023-01-09", "--planner", "guess"], "unknown planner"),
    ],
    ids=[
        "unknown-area",
        "no-prices",
        "no-weather",
        "no-days",
        "days-not-a-number",
        "start-not-a-date",
        "unknown-archetype",
        "unknown-planner",
    ],
)
def test_bad_input_exits_1_with_one_line(capsys, args, message):
    assert main(["backtest", *args]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("error: ")
    assert message in captured.err
    assert captured.err.count("\n") == 1


def test_bad_input_from_the_shell_has_no_traceback():
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "hpsteer.runtime.cli",
            "backtest",
            "--area",
            "AT",
            "--start",
            "2025-11-03",
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert done.returncode == 1
    assert done.stderr.startswith("error: no bundled weather for AT")
    assert "Traceback" not in done.stderr
    assert done.stderr.count("\n") == 1
