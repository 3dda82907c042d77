"""A finished (or interrupted) simulation's figures and files.

:func:`write_results` leaves in the output folder:

- ``summary.json``: the headline figures (below), what ``hpsteer simulate --json`` prints;
- ``run.json``: the :class:`~.record.RunRecord` the report is drawn from, with a few commands'
  timelines linked from ``traces.jsonl`` when the run wrote one (:mod:`.timelines`);
- ``report.html``: the report (:mod:`.report`);
- ``store.sqlite``: the document store as the run left it, for ``hpsteer inspect``;
- ``metrics.json``: every declared metric and its series as the run counted them
  (:func:`run_metrics`; ``docs/operations.md`` lists the metrics);
- ``hpsteer.log``: every log line of the run, one JSON object per line (written while running).

Headline figures: ``devices``, ``days``, ``cost_eur`` and ``baseline_cost_eur`` (every home,
the simulated days, at the real prices; the baseline is each home's never-steered twin),
``savings_pct``, ``tariff_id`` (the tariff every home paid, :mod:`.tariffs`; None: none) with
``bill_eur``, ``baseline_bill_eur`` and ``bill_savings_pct`` (what the households and their twins
paid for the same electricity on it, incl. grid, taxes and VAT; None without a tariff),
``comfort_kh_below_per_home_day`` (kelvin-hours below the comfort floor per home
and day, and the twin's), ``mode_changes_per_day`` (commands the heat pumps received, per home and
day), ``commands`` (by final state), ``commands_lost``, ``forked_histories``,
``duplicate_side_effects``, ``drift_corrected_within_interval_pct`` with the episodes behind it,
``household_changes``, ``remediations_against_override`` and ``overrides_respected``
(household changes no remediation fought), ``alerts`` (by kind), ``messages_dead_lettered``,
``interrupted``, timings.
"""

from __future__ import annotations

import json
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from hpsteer.backends.local.store import LocalDocumentStore
from hpsteer.domain.instants import instant_or_none
from hpsteer.observability.metrics import METRICS, metrics
from hpsteer.ports.store import every_page
from hpsteer.runtime.simulation.audit import CommandAudit, CountingGateway, audit_commands
from hpsteer.runtime.simulation.engine import Simulation
from hpsteer.runtime.simulation.observer import drift_figures, drift_verdict
from hpsteer.runtime.simulation.record import (
    FUNNEL_STAGES,
    ActivityPoint,
    HomeRecord,
    PricePoint,
    RunOptions,
    RunRecord,
)
from hpsteer.runtime.simulation.timelines import command_timelines

__all__ = ["build_record", "write_results"]


def _pct(part: float, whole: float) -> float | None:
    return round(100.0 * part / whole, 2) if whole > 0 else None


def _alerts(sim: Simulation) -> list[dict[str, Any]]:
    store = sim.local.deps.store
    pages = every_page(lambda cursor: store.query("alerts", limit=300, cursor=cursor))
    return [doc.data for doc in pages]


def _remediations_against_override(sim: Simulation, audit: CommandAudit) -> int:
    changes = sim.observer.changes
    return sum(
        1
        for device_id, at in audit.remediations
        if any(c.device_id == device_id and c.at <= at < c.pause_until for c in changes)
    )


def _summary(sim: Simulation, audit: CommandAudit, alerts: list[dict[str, Any]]) -> dict[str, Any]:
    options, figures = sim.options, sim.home_figures
    device_days = max(1e-9, len(figures) * sim.simulated_days)
    cost = sum(f["cost_eur"] for f in figures.values())
    baseline = sum(f["baseline_cost_eur"] for f in figures.values())
    billed = sim.tariff_id is not None
    bill = sum(f.get("bill_eur", 0.0) for f in figures.values())
    baseline_bill = sum(f.get("baseline_bill_eur", 0.0) for f in figures.values())
    drifts = drift_figures(sim.observer.finish(), sim.interval)
    against = _remediations_against_override(sim, audit)
    changes = sim.observer.changes
    fought = {
        (c.device_id, c.at)
        for c in changes
        for device_id, at in audit.remediations
        if device_id == c.device_id and c.at <= at < c.pause_until
    }
    gateway = sim.local.gateway
    duplicates = gateway.duplicate_side_effects() if isinstance(gateway, CountingGateway) else 0
    planning_s = sim.planning_s
    return {
        "devices": options.devices,
        "days": options.days if not sim.interrupted else round(sim.simulated_days, 3),
        "area": options.area.value,
        "start": options.start.isoformat(),
        "faults": options.faults,
        "seed": options.seed,
        "cost_eur": round(cost, 2),
        "baseline_cost_eur": round(baseline, 2),
        "savings_pct": _pct(baseline - cost, baseline),
        "tariff_id": sim.tariff_id,
        "bill_eur": round(bill, 2) if billed else None,
        "baseline_bill_eur": round(baseline_bill, 2) if billed else None,
        "bill_savings_pct": _pct(baseline_bill - bill, baseline_bill) if billed else None,
        "energy_kwh": round(sum(f["electricity_kwh"] for f in figures.values()), 1),
        "baseline_energy_kwh": round(
            sum(f["baseline_electricity_kwh"] for f in figures.values()), 1
        ),
        "comfort_kh_below_per_home_day": round(
            sum(f["kh_below"] for f in figures.values()) / device_days, 3
        ),
        "baseline_comfort_kh_below_per_home_day": round(
            sum(f["baseline_kh_below"] for f in figures.values()) / device_days, 3
        ),
        "mode_changes_per_day": round(
            sum(f["commands_received"] for f in figures.values()) / device_days, 2
        ),
        "commands": dict(sorted(audit.by_state.items())),
        "commands_lost": len(audit.lost),
        "lost_examples": audit.lost[:10],
        "forked_histories": len(audit.forked),
        "forked_examples": audit.forked[:10],
        "duplicate_side_effects": duplicates,
        "drift_corrected_within_interval_pct": drifts["pct"],
        "drift": drifts,
        "household_changes": len(changes),
        "remediations": len(audit.remediations),
        "remediations_against_override": against,
        "overrides_respected": len(changes) - len(fought),
        "alerts": dict(sorted(Counter(str(a.get("kind")) for a in alerts).items())),
        "messages_dead_lettered": len(sim.bus.dead_letters()),
        "interrupted": sim.interrupted,
        "wall_s": round(sim.wall_s, 2),
        "planning_s": round(planning_s, 2),
        "overhead_ms_per_device_day": round(
            1000.0 * max(0.0, sim.wall_s - planning_s) / device_days, 2
        ),
    }


def _hour(at: datetime) -> str:
    return at.replace(minute=0, second=0, microsecond=0).isoformat()


def _activity(
    sim: Simulation, audit: CommandAudit, alerts: list[dict[str, Any]]
) -> list[ActivityPoint]:
    start, end = sim.options.start_at, sim.options.end_at
    hours: dict[str, Counter[str]] = {}
    at = start
    while at < end:
        hours[_hour(at)] = Counter()
        at += timedelta(hours=1)

    def count(kind: str, when: datetime | None) -> None:
        if when is not None and _hour(when) in hours:
            hours[_hour(when)][kind] += 1

    for drift in sim.observer.closed:
        if drift_verdict(drift, sim.interval) != "not_visible" or drift.ended != "corrected":
            count("drifts", drift.first_seen_at)
    for change in sim.observer.changes:
        count("overrides", change.at)
    for _, created in audit.remediations:
        count("remediations", created)
    for alert in alerts:
        count("alerts", instant_or_none(alert.get("raised_at")))
    return [
        ActivityPoint(
            at=hour,
            drifts=c["drifts"],
            overrides=c["overrides"],
            remediations=c["remediations"],
            alerts=c["alerts"],
        )
        for hour, c in hours.items()
    ]


def _prices(sim: Simulation) -> list[PricePoint]:
    """The price in force at each quarter hour where it changes (a step line needs no more)."""
    price_at = sim.data.prices.price_at(sim.options.area)
    points: list[PricePoint] = []
    at = sim.options.start_at
    while at < sim.options.end_at:
        price = round(price_at(at), 2)
        if not points or points[-1]["eur_per_mwh"] != price:
            points.append(PricePoint(at=at.isoformat(), eur_per_mwh=price))
        at += timedelta(minutes=15)
    return points


def _homes(sim: Simulation) -> list[HomeRecord]:
    records: list[HomeRecord] = []
    for home in sim.local.fleet:
        figures = sim.home_figures.get(home.home_id, {})
        cost = figures.get("cost_eur", 0.0)
        baseline = figures.get("baseline_cost_eur", 0.0)
        record = HomeRecord(
            device_id=home.home_id,
            manufacturer=home.manufacturer,
            archetype=home.archetype,
            comfort_min_c=home.comfort_min_c,
            comfort_max_c=home.comfort_min_c + 3.0,
            setpoint_c=home.comfort_min_c + 1.0,
            cost_eur=round(cost, 4),
            baseline_cost_eur=round(baseline, 4),
            savings_pct=_pct(baseline - cost, baseline),
            comfort_kh_below=round(figures.get("kh_below", 0.0), 3),
            baseline_comfort_kh_below=round(figures.get("baseline_kh_below", 0.0), 3),
            samples=sim.observer.samples.get(home.home_id, []),
        )
        if "bill_eur" in figures:
            bill, baseline_bill = figures["bill_eur"], figures["baseline_bill_eur"]
            record["bill_eur"] = round(bill, 4)
            record["baseline_bill_eur"] = round(baseline_bill, 4)
            record["bill_savings_pct"] = _pct(baseline_bill - bill, baseline_bill)
        records.append(record)
    return records


def build_record(sim: Simulation) -> RunRecord:
    store = sim.local.deps.store
    audit = audit_commands(store, sim.judged_until)
    alerts = _alerts(sim)
    summary = _summary(sim, audit, alerts)
    options = sim.options
    funnel = {
        manufacturer: {stage: stages[stage] for stage in FUNNEL_STAGES}
        for manufacturer, stages in sorted(audit.funnel.items())
    }
    return RunRecord(
        options=RunOptions(
            area=options.area.value,
            start=options.start.isoformat(),
            days=options.days,
            devices=options.devices,
            seed=options.seed,
            faults=options.faults,
            backend=options.backend,
        ),
        summary=summary,
        prices=_prices(sim),
        fleet_load=sim.observer.load,
        homes=_homes(sim),
        funnel=funnel,
        activity=_activity(sim, audit, alerts),
        timelines=command_timelines(options.out / "traces.jsonl", audit.listed),
    )


def _merged(points: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One point per label set: counters added, histograms' counts and sums added (a series
    counted in both registries), gauges as the last registry saw them."""
    by_labels: dict[tuple[tuple[str, Any], ...], dict[str, Any]] = {}
    for point in points:
        key = tuple(sorted(point["labels"].items()))
        seen = by_labels.get(key)
        if seen is None:
            by_labels[key] = json.loads(json.dumps(point))
        elif "buckets" in point:
            seen["count"] += point["count"]
            seen["sum"] += point["sum"]
            for bucket, count in point["buckets"].items():
                seen["buckets"][bucket] += count
        else:
            seen["value"] += point["value"]
    return [by_labels[key] for key in sorted(by_labels)]


def run_metrics(sim: Simulation, summary: dict[str, Any]) -> dict[str, Any]:
    """Every declared metric (:data:`~hpsteer.observability.metrics.METRICS`: kind, unit,
    labels, buckets) and its series as the run counted them, in the dispatch path's registry and
    the process-wide one the Pub/Sub handlers, the gateway and the breakers use: what the
    log-based metrics in Cloud Monitoring would show, per label set. ``simulated_by_oem`` adds
    the simulation's own truth per manufacturer (electricity the homes used, and what they
    saved against their never-steered twins), which the code cannot observe."""
    gathered: dict[str, list[dict[str, Any]]] = {name: [] for name in METRICS}
    for registry in (sim.local.metrics, metrics):
        for name, points in registry.snapshot().items():
            gathered.setdefault(name, []).extend(points)
    by_oem: dict[str, dict[str, float]] = {}
    for home in sim.local.fleet:
        figures = sim.home_figures.get(home.home_id, {})
        totals = by_oem.setdefault(home.manufacturer, {"electricity_kwh": 0.0, "savings_eur": 0.0})
        totals["electricity_kwh"] += figures.get("electricity_kwh", 0.0)
        totals["savings_eur"] += figures.get("baseline_cost_eur", 0.0) - figures.get(
            "cost_eur", 0.0
        )
    return {
        "simulated_days": summary["days"],
        "metrics": {
            spec.name: {
                "kind": spec.kind,
                "unit": spec.unit,
                "labels": list(spec.labels),
                "buckets": list(spec.buckets),
                "description": spec.description,
            }
            for spec in METRICS.values()
        },
        "series": {name: _merged(points) for name, points in sorted(gathered.items())},
        "simulated_by_oem": {
            oem: {figure: round(value, 4) for figure, value in totals.items()}
            for oem, totals in sorted(by_oem.items())
        },
    }


def write_results(
    sim: Simulation, out: Path, *, store_copy: LocalDocumentStore | None = None
) -> RunRecord:
    """Write the run's files into ``out`` (see the module docstring); return the record.
    ``store_copy`` is saved as ``store.sqlite`` when the run's store is not a local one."""
    from hpsteer.runtime.simulation.report import render_report

    record = build_record(sim)
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.json").write_text(json.dumps(record["summary"], indent=2) + "\n")
    (out / "run.json").write_text(json.dumps(record, separators=(",", ":")) + "\n")
    (out / "metrics.json").write_text(
        json.dumps(run_metrics(sim, record["summary"]), indent=2) + "\n"
    )
    store = sim.local.deps.store
    saved = store if isinstance(store, LocalDocumentStore) else store_copy
    if saved is not None:
        saved.save_to(out / "store.sqlite")
    render_report(record, out)
    return record
