"""``hpsteer simulate`` with tariffs: each home gets its area's default tariff when one covers the
run, is planned on what its household pays, and the report shows bill savings beside spot
savings (headline, sample homes, the spread over homes, the command's summary line)."""

from __future__ import annotations

import contextlib
import io
import json
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from hpsteer.backends.local.store import LocalDocumentStore
from hpsteer.domain.market import PriceArea
from hpsteer.runtime import cli
from hpsteer.runtime.simulation.options import SimulationOptions
from hpsteer.runtime.simulation.report import render_report
from hpsteer.runtime.simulation.tariffs import run_tariff
from tests.e2e.test_report import parsed, synthetic_record


def options(area: PriceArea, start: date, days: int = 1) -> SimulationOptions:
    return SimulationOptions(area=area, start=start, days=days)


@pytest.mark.parametrize(
    ("area", "start", "days", "expected"),
    [
        (PriceArea.SE3, date(2023, 1, 9), 2, "se3-vattenfall-t4"),
        (PriceArea.DK1, date(2024, 12, 31), 1, "dk1-n1"),
        (PriceArea.DK1, date(2024, 12, 31), 2, None),  # N1's data end with 2024
        (PriceArea.DE_LU, date(2024, 6, 3), 1, None),  # the German tariff starts in April 2025
        (PriceArea.SE4, date(2023, 1, 9), 1, None),  # no SE4 tariff is bundled
    ],
)
def test_a_run_gets_its_areas_default_tariff_only_when_it_prices_every_simulated_day(
    area: PriceArea, start: date, days: int, expected: str | None
) -> None:
    tariff = run_tariff(options(area, start, days))
    assert (None if tariff is None else tariff.id) == expected


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any], str]:
    """Three homes in SE3 for a day, fault-free, through the command line: (folder, summary,
    what the command printed)."""
    out = tmp_path_factory.mktemp("simulate-tariff")
    printed = io.StringIO()
    args = ["simulate", "--devices", "3", "--days", "1", "--faults", "none", "--out", str(out)]
    with contextlib.redirect_stdout(printed), contextlib.redirect_stderr(io.StringIO()):
        assert cli.main(args) == 0
    return out, json.loads((out / "summary.json").read_text()), printed.getvalue()


def test_every_home_carries_the_tariff_and_is_planned_on_it(
    run: tuple[Path, dict[str, Any], str],
) -> None:
    out, summary, _ = run
    assert summary["tariff_id"] == "se3-vattenfall-t4"
    store = LocalDocumentStore.open_readonly(out / "store.sqlite")
    devices = store.query("devices").documents
    assert len(devices) == 3
    for device in devices:
        assert device.data["tariff_id"] == "se3-vattenfall-t4"
        plan = store.get(f"devices/{device.id}/plans/{device.data['current_plan_id']}")
        assert plan is not None
        assert plan.data["tariff_id"] == "se3-vattenfall-t4"
        assert plan.data["tariff_note"] is None
        assert plan.data["expected_bill_eur"] > plan.data["expected_cost_eur"]


def test_the_summary_and_every_home_have_bill_and_spot_figures(
    run: tuple[Path, dict[str, Any], str],
) -> None:
    out, summary, _ = run
    bill, baseline = summary["bill_eur"], summary["baseline_bill_eur"]
    assert bill > summary["cost_eur"]
    assert baseline > summary["baseline_cost_eur"]
    assert summary["bill_savings_pct"] == pytest.approx(100 * (baseline - bill) / baseline, abs=0.1)
    homes = json.loads((out / "run.json").read_text())["homes"]
    assert sum(h["bill_eur"] for h in homes) == pytest.approx(bill, abs=0.01)
    assert all(h["bill_savings_pct"] is not None for h in homes)


def test_the_report_shows_bill_savings_beside_spot_savings(
    run: tuple[Path, dict[str, Any], str],
) -> None:
    out, _, _ = run
    page = (out / "report.html").read_text(encoding="utf-8")
    text = " ".join(parsed(page).text)
    assert "Bill savings vs baseline (%)" in text
    assert "se3-vattenfall-t4" in text
    assert ", bill savings " in page  # the sample homes' titles
    assert "on the bill" in page  # the spread of savings over the homes


def test_the_command_prints_bill_savings_beside_spot_savings(
    run: tuple[Path, dict[str, Any], str],
) -> None:
    _, summary, printed = run
    [line] = [line for line in printed.splitlines() if line.startswith("cost ")]
    assert line.endswith(
        f"savings {summary['savings_pct']} %; on the bill (se3-vattenfall-t4) "
        f"{summary['bill_eur']} EUR against {summary['baseline_bill_eur']} EUR: "
        f"bill savings {summary['bill_savings_pct']} %"
    )


def test_a_run_without_a_tariff_shows_no_bill_rows(tmp_path: Path) -> None:
    record = synthetic_record()
    record["summary"].update(
        {"tariff_id": None, "bill_eur": None, "baseline_bill_eur": None, "bill_savings_pct": None}
    )
    text = " ".join(parsed(render_report(record, tmp_path).read_text(encoding="utf-8")).text)
    assert "Bill savings" not in text
    assert "Household bill" not in text
    assert "Tariff" in text  # n/a: planned and billed at spot
