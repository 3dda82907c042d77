"""What a backtest reports: per house, their average, as JSON and as a table.

Savings are ``100 * (baseline - cost) / baseline`` on the energy cost at real spot prices (no
penalties). Comfort is K·h below ``setpoint - comfort_below_k`` per day on the true air
temperature (slot means). Mean indoor temperatures stand beside the baseline's so that a colder
home is not mistaken for a saving. With several houses the top-level figures are those of the
average house: every quantity averaged, savings computed from the averaged costs (so the formula
holds at the top level too), the worst day's changes the maximum over houses.

With a tariff the planner plans on the effective price; ``cost_eur`` and ``savings_pct`` stay at
spot (the same kWh at the exchange price), and four figures are added: ``bill_eur`` and
``baseline_bill_eur`` (the household's bill for the energy, incl. VAT), ``bill_savings_pct``, and
``bill_savings_if_planned_on_spot_pct`` (the same house and period planned on spot alone, then
billed on the tariff), with that run's comfort and mean temperature beside it, and the bound's
``perfect_model_bill_savings_pct``.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from datetime import date
from typing import Any

from hpsteer.domain.market import PriceArea

__all__ = ["BacktestResult", "HouseResult", "format_table"]


def _savings_pct(baseline_eur: float, cost_eur: float) -> float:
    return 0.0 if baseline_eur == 0 else 100.0 * (baseline_eur - cost_eur) / baseline_eur


@dataclass(frozen=True)
class HouseResult:
    archetype: str
    cost_eur: float
    baseline_cost_eur: float
    perfect_model_cost_eur: float
    heat_pump_kwh: float
    baseline_kwh: float
    perfect_model_kwh: float
    comfort_kh_below_per_day: float
    baseline_comfort_kh_below_per_day: float
    perfect_model_comfort_kh_below_per_day: float
    mode_changes_per_day: float
    max_mode_changes_in_a_day: int
    mean_indoor_temp_c: float
    baseline_mean_indoor_temp_c: float
    perfect_model_mean_indoor_temp_c: float
    replans: dict[str, int]
    bill_eur: float | None = None
    baseline_bill_eur: float | None = None
    perfect_model_bill_eur: float | None = None
    spot_planned_bill_eur: float | None = None
    spot_planned_cost_eur: float | None = None
    spot_planned_comfort_kh_below_per_day: float | None = None
    spot_planned_mean_indoor_temp_c: float | None = None

    @property
    def savings_pct(self) -> float:
        return _savings_pct(self.baseline_cost_eur, self.cost_eur)

    @property
    def perfect_model_savings_pct(self) -> float:
        return _savings_pct(self.baseline_cost_eur, self.perfect_model_cost_eur)

    def _bill_savings_pct(self, bill: float | None) -> float | None:
        baseline = self.baseline_bill_eur
        return None if bill is None or baseline is None else _savings_pct(baseline, bill)

    @property
    def bill_savings_pct(self) -> float | None:
        """Bill savings of the run planned on the tariff (None without a tariff)."""
        return self._bill_savings_pct(self.bill_eur)

    @property
    def bill_savings_if_planned_on_spot_pct(self) -> float | None:
        """Bill savings of the same house and period planned on spot alone."""
        return self._bill_savings_pct(self.spot_planned_bill_eur)

    @property
    def perfect_model_bill_savings_pct(self) -> float | None:
        return self._bill_savings_pct(self.perfect_model_bill_eur)

    def bill_figures(self) -> dict[str, Any]:
        """The figures of the bill (empty without a tariff)."""
        if self.bill_eur is None:
            return {}
        values: dict[str, tuple[float | None, int]] = {
            "bill_eur": (self.bill_eur, 4),
            "baseline_bill_eur": (self.baseline_bill_eur, 4),
            "bill_savings_pct": (self.bill_savings_pct, 3),
            "bill_savings_if_planned_on_spot_pct": (self.bill_savings_if_planned_on_spot_pct, 3),
            "perfect_model_bill_savings_pct": (self.perfect_model_bill_savings_pct, 3),
            "spot_planned_bill_eur": (self.spot_planned_bill_eur, 4),
            "spot_planned_cost_eur": (self.spot_planned_cost_eur, 4),
            "spot_planned_comfort_kh_below_per_day": (
                self.spot_planned_comfort_kh_below_per_day,
                4,
            ),
            "spot_planned_mean_indoor_temp_c": (self.spot_planned_mean_indoor_temp_c, 3),
        }
        return {k: None if v is None else round(v, d) for k, (v, d) in values.items()}

    def figures(self) -> dict[str, Any]:
        def r(value: float, digits: int) -> float:
            return round(value, digits)

        return {
            "cost_eur": r(self.cost_eur, 4),
            "baseline_cost_eur": r(self.baseline_cost_eur, 4),
            "savings_pct": r(self.savings_pct, 3),
            "perfect_model_cost_eur": r(self.perfect_model_cost_eur, 4),
            "perfect_model_savings_pct": r(self.perfect_model_savings_pct, 3),
            "heat_pump_kwh": r(self.heat_pump_kwh, 3),
            "baseline_kwh": r(self.baseline_kwh, 3),
            "perfect_model_kwh": r(self.perfect_model_kwh, 3),
            "comfort_kh_below_per_day": r(self.comfort_kh_below_per_day, 4),
            "baseline_comfort_kh_below_per_day": r(self.baseline_comfort_kh_below_per_day, 4),
            "perfect_model_comfort_kh_below_per_day": r(
                self.perfect_model_comfort_kh_below_per_day, 4
            ),
            "mode_changes_per_day": r(self.mode_changes_per_day, 3),
            "max_mode_changes_in_a_day": self.max_mode_changes_in_a_day,
            "mean_indoor_temp_c": r(self.mean_indoor_temp_c, 3),
            "baseline_mean_indoor_temp_c": r(self.baseline_mean_indoor_temp_c, 3),
            "perfect_model_mean_indoor_temp_c": r(self.perfect_model_mean_indoor_temp_c, 3),
            "replans": dict(sorted(self.replans.items())),
            **self.bill_figures(),
        }


def _average(houses: tuple[HouseResult, ...]) -> HouseResult:
    if len(houses) == 1:
        return houses[0]
    numbers: dict[str, Any] = {}
    for f in fields(HouseResult):
        values = [getattr(house, f.name) for house in houses]
        if isinstance(values[0], float):
            numbers[f.name] = sum(values) / len(values)
    replans: dict[str, int] = {}
    for house in houses:
        for reason, count in house.replans.items():
            replans[reason] = replans.get(reason, 0) + count
    return replace(
        houses[0],
        archetype="average",
        max_mode_changes_in_a_day=max(h.max_mode_changes_in_a_day for h in houses),
        replans=replans,
        **numbers,
    )


@dataclass(frozen=True)
class BacktestResult:
    area: PriceArea
    start: date
    days: int
    planner: str
    seed: int
    archetype: str
    slot_minutes: int
    setpoint_c: float
    comfort_band_c: tuple[float, float]
    weather_site: str
    weather_note: str
    houses: tuple[HouseResult, ...]
    tariff: str | None = None

    @property
    def summary(self) -> HouseResult:
        """The house, or the average house when there are several."""
        return _average(self.houses)

    def to_dict(self) -> dict[str, Any]:
        head: dict[str, Any] = {
            "area": self.area.value,
            "start": self.start.isoformat(),
            "days": self.days,
            "planner": self.planner,
            "seed": self.seed,
            "archetype": self.archetype,
            "slot_minutes": self.slot_minutes,
            "setpoint_c": self.setpoint_c,
            "comfort_band_c": list(self.comfort_band_c),
            "weather": self.weather_site,
        }
        if self.weather_note:
            head["weather_note"] = self.weather_note
        if self.tariff is not None:
            head["tariff"] = self.tariff
        return {
            **head,
            **self.summary.figures(),
            "archetypes": {house.archetype: house.figures() for house in self.houses},
        }


_COLUMNS = (
    ("archetype", "{:<20}", "archetype"),
    ("cost €", "{:>8.2f}", "cost_eur"),
    ("base €", "{:>8.2f}", "baseline_cost_eur"),
    ("save %", "{:>7.1f}", "savings_pct"),
    ("perf %", "{:>7.1f}", "perfect_model_savings_pct"),
    ("kWh", "{:>7.1f}", "heat_pump_kwh"),
    ("base kWh", "{:>8.1f}", "baseline_kwh"),
    ("T °C", "{:>6.2f}", "mean_indoor_temp_c"),
    ("base T", "{:>6.2f}", "baseline_mean_indoor_temp_c"),
    ("K·h<min/d", "{:>9.3f}", "comfort_kh_below_per_day"),
    ("chg/d", "{:>6.1f}", "mode_changes_per_day"),
)
_BILL_COLUMNS = (
    ("bill €", "{:>8.2f}", "bill_eur"),
    ("base bill", "{:>9.2f}", "baseline_bill_eur"),
    ("bill %", "{:>7.1f}", "bill_savings_pct"),
    ("on spot %", "{:>9.1f}", "bill_savings_if_planned_on_spot_pct"),
)


def format_table(result: BacktestResult) -> str:
    """The figures as a plain-text table, one row per house (and the average); with a tariff,
    the bill's columns too ("on spot %": the bill savings had the house been planned on spot)."""
    columns = _COLUMNS if result.tariff is None else _COLUMNS + _BILL_COLUMNS
    lines = [
        f"backtest {result.area.value} from {result.start.isoformat()}, {result.days} day(s), "
        f"planner {result.planner}, seed {result.seed}, weather {result.weather_site}, "
        f"band {result.comfort_band_c[0]:g}..{result.comfort_band_c[1]:g} °C"
        + ("" if result.tariff is None else f", tariff {result.tariff}"),
    ]
    if result.weather_note:
        lines.append(f"note: {result.weather_note}")
    widths = [len(fmt.format(0.0 if i else "")) for i, (_, fmt, _) in enumerate(columns)]
    lines.append(
        " ".join(
            f"{title:<{w}}" if i == 0 else f"{title:>{w}}"
            for i, ((title, _, _), w) in enumerate(zip(columns, widths, strict=True))
        )
    )
    rows = list(result.houses)
    if len(rows) > 1:
        rows.append(result.summary)
    for house in rows:
        lines.append(" ".join(fmt.format(getattr(house, attr)) for _, fmt, attr in columns))
    return "\n".join(lines)
