"""What a backtest reports: per house, their average, as JSON and as a table.

Savings are ``100 * (baseline - cost) / baseline`` on the energy cost at real spot prices (no
penalties). Comfort is K·h below ``setpoint - comfort_below_k`` per day on the true air
temperature (slot means). Mean indoor temperatures stand beside the baseline's so that a colder
home is not mistaken for a saving. With several houses the top-level figures are those of the
average house: every quantity averaged, savings computed from the averaged costs (so the formula
holds at the top level too), the worst day's changes the maximum over houses.
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

    @property
    def savings_pct(self) -> float:
        return _savings_pct(self.baseline_cost_eur, self.cost_eur)

    @property
    def perfect_model_savings_pct(self) -> float:
        return _savings_pct(self.baseline_cost_eur, self.perfect_model_cost_eur)

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


def format_table(result: BacktestResult) -> str:
    """The figures as a plain-text table, one row per house (and the average)."""
    lines = [
        f"backtest {result.area.value} from {result.start.isoformat()}, {result.days} day(s), "
        f"planner {result.planner}, seed {result.seed}, weather {result.weather_site}, "
        f"band {result.comfort_band_c[0]:g}..{result.comfort_band_c[1]:g} °C",
    ]
    if result.weather_note:
        lines.append(f"note: {result.weather_note}")
    widths = [len(fmt.format(0.0 if i else "")) for i, (_, fmt, _) in enumerate(_COLUMNS)]
    lines.append(
        " ".join(
            f"{title:<{w}}" if i == 0 else f"{title:>{w}}"
            for i, ((title, _, _), w) in enumerate(zip(_COLUMNS, widths, strict=True))
        )
    )
    rows = list(result.houses)
    if len(rows) > 1:
        rows.append(result.summary)
    for house in rows:
        lines.append(" ".join(fmt.format(getattr(house, attr)) for _, fmt, attr in _COLUMNS))
    return "\n".join(lines)
