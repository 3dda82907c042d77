"""Optimize plans a device with a tariff on what its household pays, and says so in the plan.

The rig is the one of ``tests/services/test_optimize.py`` (real SE3 2023 prices and Stockholm
weather stored through the ingest services, local backends). SE3 homes get Vattenfall's T4
tariff (``data/tariffs/se3-vattenfall-t4.toml``), which prices 2023 and 2024.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import sys
from datetime import date
from pathlib import Path

import numpy as np
import pytest

from hpsteer.domain.market import PriceArea
from hpsteer.domain.plans import plan_id_for
from hpsteer.optimizer.planner import OrToolsPlanner, PlanResult
from hpsteer.optimizer.problem import PlanningProblem
from hpsteer.ports.clock import SimulatedClock
from hpsteer.runtime import bootstrap
from hpsteer.runtime.bootstrap import Dependencies
from hpsteer.services.optimize import plan_shard
from hpsteer.services.plan_inputs import (
    PlanningOptions,
    assemble,
    horizon_prices,
    latest_forecast,
    load_device,
)
from hpsteer.services.plans_store import plan_from_document, plan_path
from hpsteer.tariffs import ENV_DIRECTORY, load_tariff
from tests.services.test_optimize import (
    NOW,
    STOCKHOLM,
    count,
    register,
    shard,
    store_forecast,
    store_prices,
)

TARIFF = "se3-vattenfall-t4"
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def ready() -> Dependencies:
    """Local backends on a clock at ``NOW``, with two SE3 price days and a forecast stored."""
    deps = bootstrap.local(clock=SimulatedClock(NOW))
    store_prices(deps, date(2023, 1, 15), date(2023, 1, 16))
    store_forecast(deps)
    return deps


class RecordingPlanner(OrToolsPlanner):
    """The real planner, keeping every problem it was handed."""

    def __init__(self) -> None:
        super().__init__()
        self.problems: list[PlanningProblem] = []

    def solve(self, problem: PlanningProblem) -> PlanResult:
        self.problems.append(problem)
        return super().solve(problem)


def plan_of(deps: Dependencies, device_id: str, planner: OrToolsPlanner | None = None):
    (outcome,) = plan_shard(shard(device_id), deps, planner=planner)
    assert outcome.status == "planned", outcome
    assert outcome.plan_id is not None
    stored = deps.store.get(plan_path(device_id, outcome.plan_id))
    assert stored is not None
    return outcome.plan_id, stored.data


def tariff_copy(tmp_path: Path, edit: tuple[str, str] | None = None) -> Path:
    """The bundled tariffs in a folder of their own, with one text replacement in T4's file."""
    folder = tmp_path / "tariffs"
    shutil.copytree(REPO / "data" / "tariffs", folder)
    if edit is not None:
        path = folder / f"{TARIFF}.toml"
        text = path.read_text()
        assert edit[0] in text
        path.write_text(text.replace(edit[0], edit[1], 1))
    return folder


def test_a_device_with_a_tariff_is_planned_on_the_effective_price_of_each_slot(
    ready: Dependencies,
) -> None:
    register(ready, "d1", tariff_id=TARIFF)
    planner = RecordingPlanner()

    _, document = plan_of(ready, "d1", planner)

    tariff = load_tariff(TARIFF)
    [problem] = planner.problems
    slots = document["slots"]
    starts = [plan_from_document(document).slots[i].start_at for i in range(len(slots))]
    spot = [slot["price_eur_per_mwh"] for slot in slots]
    effective = tariff.effective_prices(starts, spot)
    assert problem.prices_eur_per_mwh == pytest.approx(np.array(effective) * 1000.0)
    assert [slot["bill_price_eur_per_kwh"] for slot in slots] == pytest.approx(effective)
    # Grid, taxes and VAT come on top of the spot price.
    assert all(e > p / 1000.0 + 0.05 for e, p in zip(effective, spot, strict=True))


def test_the_plan_states_spot_and_bill_costs_for_the_plan_and_its_baseline(
    ready: Dependencies,
) -> None:
    register(ready, "d1", tariff_id=TARIFF)

    _, document = plan_of(ready, "d1")

    slots = document["slots"]
    kwh = [slot["expected_power_kw"] * 1.0 for slot in slots]  # hourly slots
    spot = sum(s["price_eur_per_mwh"] / 1000.0 * e for s, e in zip(slots, kwh, strict=True))
    bill = sum(s["bill_price_eur_per_kwh"] * e for s, e in zip(slots, kwh, strict=True))
    assert document["tariff_id"] == TARIFF
    assert document["tariff_note"] is None
    assert document["expected_cost_eur"] == pytest.approx(spot)
    assert document["expected_bill_eur"] == pytest.approx(bill)
    assert document["baseline_bill_eur"] > document["baseline_cost_eur"] > 0
    assert document["expected_bill_eur"] <= document["baseline_bill_eur"] * 1.05
    days = document["cost_by_day"]
    assert sum(d["planned_cost_eur"] for d in days) == pytest.approx(spot)
    [row] = ready.analytics.query(
        "SELECT tariff_id, expected_bill_eur, baseline_bill_eur, expected_cost_eur FROM `plans`"
    )
    assert row["tariff_id"] == TARIFF
    assert row["expected_bill_eur"] == pytest.approx(document["expected_bill_eur"])
    assert row["baseline_bill_eur"] == pytest.approx(document["baseline_bill_eur"])
    assert row["expected_cost_eur"] == pytest.approx(spot)


def test_the_plan_records_the_tariffs_content_hash_and_versions_among_its_inputs(
    ready: Dependencies,
) -> None:
    register(ready, "d1", tariff_id=TARIFF)

    plan_id, document = plan_of(ready, "d1")

    recorded = document["inputs"]["tariff"]
    assert recorded["tariff_id"] == TARIFF
    assert recorded["content_hash"] == load_tariff(TARIFF).content_hash
    key = document["inputs_key"]
    assert key.endswith(f"|tariff={TARIFF}@{recorded['content_hash']}")
    assert plan_id == plan_id_for("d1", plan_from_document(document).start_at, key)
    assert recorded["valid_from"]
    assert all(v <= "2023-01-16" for v in recorded["valid_from"])


def test_a_tariff_makes_another_plan_than_spot_and_changed_tariff_values_another_again(
    ready: Dependencies, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    register(ready, "spot")
    register(ready, "billed", tariff_id=TARIFF)
    options = PlanningOptions()
    spot_id, spot_document = plan_of(ready, "spot")
    billed_id, _ = plan_of(ready, "billed")
    monkeypatch.setenv(
        ENV_DIRECTORY, str(tariff_copy(tmp_path, ("per_kwh = 0.0", "per_kwh = 0.5")))
    )

    changed_id, changed = plan_of(ready, "billed")

    # A device without a tariff keeps the plan id it always had (its inputs key alone).
    record = load_device(ready.store, "spot", now=NOW, options=options)
    inputs = assemble(
        record,
        horizon_prices(ready.store, PriceArea.SE3, NOW, options.max_horizon),
        latest_forecast(ready.store, *STOCKHOLM),
        options,
    )
    assert spot_document["inputs_key"] == inputs.inputs_key()
    assert spot_document["tariff_id"] is None
    assert spot_document["expected_bill_eur"] is None
    assert "bill_price_eur_per_kwh" not in spot_document["slots"][0]
    assert "tariff" not in spot_document["inputs"]
    # The tariff, and then its changed values, each make a new plan.
    assert billed_id.split("-")[0] == spot_id.split("-")[0]  # same start
    assert len({spot_id.split("-")[1], billed_id.split("-")[1], changed_id.split("-")[1]}) == 3
    bundled = load_tariff(TARIFF, REPO / "data" / "tariffs")
    assert changed["inputs"]["tariff"]["content_hash"] != bundled.content_hash


def test_a_redelivered_shard_finds_the_tariffs_plan_and_writes_nothing_new(
    ready: Dependencies,
) -> None:
    register(ready, "d1", tariff_id=TARIFF)
    plan_id, written = plan_of(ready, "d1")

    (again,) = plan_shard(shard("d1"), ready)

    assert (again.status, again.plan_id) == ("unchanged", plan_id)
    stored = ready.store.get(plan_path("d1", plan_id))
    assert stored is not None
    assert stored.data == written
    assert count(ready, "plans") == 1


@pytest.mark.parametrize(
    ("tariff_id", "area_note"),
    [
        ("se3-nonexistent", "no tariff with id 'se3-nonexistent'"),
        ("dk1-n1", "tariff dk1-n1 is for price area DK1, not SE3"),
    ],
)
def test_an_unknown_tariff_or_one_of_another_area_plans_on_spot_and_says_so(
    ready: Dependencies, caplog: pytest.LogCaptureFixture, tariff_id: str, area_note: str
) -> None:
    register(ready, "d1", tariff_id=tariff_id)
    planner = RecordingPlanner()

    with caplog.at_level(logging.WARNING, logger="hpsteer.services.optimize"):
        _, document = plan_of(ready, "d1", planner)

    [problem] = planner.problems
    spot = [slot["price_eur_per_mwh"] for slot in document["slots"]]
    assert list(problem.prices_eur_per_mwh) == pytest.approx(spot)
    assert document["tariff_id"] == tariff_id
    assert area_note in document["tariff_note"]
    assert document["expected_bill_eur"] is None
    assert document["baseline_bill_eur"] is None
    assert "bill_price_eur_per_kwh" not in document["slots"][0]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("d1 planned on spot" in w and area_note in w for w in warnings)


def test_a_tariff_that_ends_inside_the_horizon_plans_the_whole_horizon_on_spot(
    ready: Dependencies, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tariff_copy(tmp_path, ("valid_until = 2025-01-01", "valid_until = 2023-01-16"))
    monkeypatch.setenv(ENV_DIRECTORY, str(folder))
    register(ready, "d1", tariff_id=TARIFF)
    planner = RecordingPlanner()

    _, document = plan_of(ready, "d1", planner)

    spot = [slot["price_eur_per_mwh"] for slot in document["slots"]]
    assert list(planner.problems[0].prices_eur_per_mwh) == pytest.approx(spot)
    assert "does not price the slot at 2023-01-15T23:00:00+00:00" in document["tariff_note"]
    assert document["expected_bill_eur"] is None


def test_loading_the_optimize_function_imports_no_tariff_code_until_a_device_has_one() -> None:
    probe = (
        "import sys; sys.path.insert(0, 'functions/optimize'); import main; "
        "import hpsteer.services.optimize; "
        "print(sorted(m for m in sys.modules if m.startswith(('hpsteer.tariffs', 'holidays'))))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == "[]"
