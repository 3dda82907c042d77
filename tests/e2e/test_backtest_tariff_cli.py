"""`hpsteer backtest --tariff ID` adds the bill to the JSON and the table; a tariff that cannot
price the period is one line and exit 1."""

from __future__ import annotations

import json

import pytest

from hpsteer.runtime.cli import main

SHORT = ["backtest", "--area", "SE3", "--start", "2023-01-09", "--days", "1"]
BILL_KEYS = (
    "bill_eur",
    "baseline_bill_eur",
    "bill_savings_pct",
    "bill_savings_if_planned_on_spot_pct",
)


def test_json_with_a_tariff_has_the_four_bill_figures_per_archetype_and_in_the_summary(capsys):
    args = [*SHORT, "--archetype", "all", "--tariff", "se3-vattenfall-t4", "--json"]
    assert main([*args, "--planner", "cheapest_hours"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["tariff"] == "se3-vattenfall-t4"
    for figures in [report, *report["archetypes"].values()]:
        for key in BILL_KEYS:
            assert isinstance(figures[key], float), key


def test_the_table_with_a_tariff_has_the_bill_columns(capsys):
    assert main([*SHORT, "--planner", "own_control", "--tariff", "se3-vattenfall-t4"]) == 0
    out = capsys.readouterr().out
    assert "tariff se3-vattenfall-t4" in out
    assert "bill %" in out


@pytest.mark.parametrize(
    ("tariff", "message"),
    [
        ("dk1-n1", "tariff dk1-n1 is for price area DK1, not SE3"),
        ("se3-nowhere", "no tariff with id 'se3-nowhere'"),
        ("../etc", "no tariff with id '../etc'"),
    ],
    ids=["another-area", "unknown", "a-path"],
)
def test_a_tariff_that_cannot_be_used_exits_1_with_one_line(capsys, tariff, message):
    assert main([*SHORT, "--tariff", tariff]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("error: ")
    assert message in captured.err
    assert captured.err.count("\n") == 1
