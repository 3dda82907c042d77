"""Real prices and weather for a backtest, as per-slot arrays, and the forecasts the planner sees.

:func:`load_inputs` reads the bundled prices (:class:`~hpsteer.sources.replay_prices.
ReplayPriceSource`, every day validated) for the simulated days plus the day after (the planner
sees it from 13:00 on the last day, as in production; left out when not bundled), and the bundled
hourly weather (:class:`~hpsteer.sources.replay_weather.ReplayWeatherSource`), linearly
interpolated to each slot's midpoint. Missing irradiance (the Stockholm and Malmö files carry
none) is 0 W/m². A period without bundled prices or weather raises :class:`~hpsteer.errors.
NotFound` naming what is missing; a period that mixes 15- and 60-minute days is refused.

:class:`ForecastErrors` is the forecast: the real weather plus an error that is a seeded random
walk in lead time (zero at issue, standard deviation ``sigma * sqrt(lead / 24 h)``), drawn afresh
for each issue time from ``(seed, issue hour)`` alone, so every house and every planner of one
scenario sees the same forecasts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import numpy as np
from numpy.typing import NDArray

from hpsteer.domain.prices import MarketDayPrices
from hpsteer.errors import InvalidInput, NotFound
from hpsteer.optimizer.backtest.scenario import BacktestScenario
from hpsteer.sources.replay_prices import ReplayPriceSource
from hpsteer.sources.replay_weather import ReplayWeatherSource, bundled_weather_dir

__all__ = ["ForecastErrors", "MarketInputs", "load_inputs"]

FloatArray = NDArray[np.float64]
_FORECAST_HOURS = 64
_FORECAST_STREAM = 1


@dataclass(frozen=True)
class MarketInputs:
    """Slots of the simulated period followed by those of the day after, when it is bundled."""

    start_at: datetime
    slot_hours: float
    period_slots: int
    day_ends: tuple[int, ...]
    """Index one past each known price day's last slot (simulated days, then the day after)."""
    prices_eur_per_mwh: FloatArray
    outdoor_temp_c: FloatArray
    solar_irradiance_w_per_m2: FloatArray

    @property
    def slots(self) -> int:
        return len(self.prices_eur_per_mwh)

    def slot_start(self, index: int) -> datetime:
        return self.start_at + timedelta(hours=self.slot_hours * index)


def _price_days(scenario: BacktestScenario, source: ReplayPriceSource) -> list[MarketDayPrices]:
    if not source.supports(scenario.area):
        raise NotFound(f"no bundled prices for {scenario.area.value}")
    days: list[MarketDayPrices] = []
    for offset in range(scenario.days + 1):
        market_date = scenario.start + timedelta(days=offset)
        day = source.fetch(scenario.area, market_date)
        if day is None:
            if offset == scenario.days:
                break  # the day after the period is a bonus, not a need
            raise NotFound(
                f"no bundled prices for {scenario.area.value} on {market_date.isoformat()}"
            )
        days.append(day)
    if len({day.resolution for day in days}) > 1:
        raise InvalidInput("the period mixes 15- and 60-minute price days; pick one side")
    return days


def _weather(
    scenario: BacktestScenario, start_at: datetime, end_at: datetime
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """(epoch hours, outdoor °C, irradiance W/m²) covering [start_at, end_at] hourly."""
    site = scenario.weather_site
    hours = int((end_at - start_at).total_seconds() // 3600) + 2
    source = ReplayWeatherSource(
        bundled_weather_dir() / site.file_name, horizon=timedelta(hours=hours)
    )
    series = source.forecast_at(site.location, start_at)
    at = np.array([p.at.timestamp() / 3600.0 for p in series.points])
    temp = np.array([p.outdoor_temp_c for p in series.points])
    solar = np.array([p.solar_irradiance_w_per_m2 or 0.0 for p in series.points])
    return at, temp, solar


def load_inputs(
    scenario: BacktestScenario, prices: ReplayPriceSource | None = None
) -> MarketInputs:
    days = _price_days(scenario, prices or ReplayPriceSource())
    slot_hours = int(days[0].resolution) / 60.0
    start_at = days[0].slots()[0].start_at
    ends: list[int] = []
    values: list[float] = []
    for day in days:
        values.extend(day.prices_eur_per_mwh)
        ends.append(len(values))
    try:
        at, temp, solar = _weather(scenario, start_at, days[-1].slots()[-1].end_at)
    except NotFound:
        if len(days) == scenario.days:
            raise
        del values[ends[-2] :]
        days, ends = days[:-1], ends[:-1]
        try:
            at, temp, solar = _weather(scenario, start_at, days[-1].slots()[-1].end_at)
        except NotFound as err:
            raise NotFound(f"no bundled weather for the period: {err}") from err
    midpoints = np.array(
        [(start_at.timestamp() / 3600.0) + slot_hours * (i + 0.5) for i in range(len(values))]
    )
    return MarketInputs(
        start_at=start_at,
        slot_hours=slot_hours,
        period_slots=ends[scenario.days - 1],
        day_ends=tuple(ends),
        prices_eur_per_mwh=np.array(values, dtype=np.float64),
        outdoor_temp_c=np.interp(midpoints, at, temp),
        solar_irradiance_w_per_m2=np.interp(midpoints, at, solar),
    )


@dataclass
class ForecastErrors:
    """Seeded forecast errors per issue time (module docstring); ``sigma`` 0 means perfect."""

    seed: int
    temp_sigma_k: float
    solar_sigma: float
    _cache: dict[int, tuple[FloatArray, FloatArray]] = field(default_factory=dict)

    def _walks(self, issued_at: datetime) -> tuple[FloatArray, FloatArray]:
        hour = int(issued_at.astimezone(UTC).timestamp() // 3600)
        if hour not in self._cache:
            rng = np.random.default_rng([self.seed, _FORECAST_STREAM, hour])
            steps = rng.standard_normal((2, _FORECAST_HOURS)) / np.sqrt(24.0)
            walks = np.concatenate([np.zeros((2, 1)), np.cumsum(steps, axis=1)], axis=1)
            self._cache[hour] = (walks[0] * self.temp_sigma_k, walks[1] * self.solar_sigma)
        return self._cache[hour]

    def forecast(
        self, inputs: MarketInputs, issued_at: datetime, first: int, end: int
    ) -> tuple[FloatArray, FloatArray]:
        """(outdoor °C, irradiance W/m²) the forecast issued at ``issued_at`` gives slots
        ``first..end-1``."""
        temp = inputs.outdoor_temp_c[first:end]
        solar = inputs.solar_irradiance_w_per_m2[first:end]
        if self.temp_sigma_k == 0 and self.solar_sigma == 0:
            return temp, solar
        temp_walk, solar_walk = self._walks(issued_at)
        offset_h = (inputs.slot_start(first) - issued_at).total_seconds() / 3600.0
        lead_h = offset_h + inputs.slot_hours * (np.arange(end - first) + 0.5)
        grid = np.arange(_FORECAST_HOURS + 1, dtype=np.float64)
        return (
            temp + np.interp(lead_h, grid, temp_walk),
            solar * np.maximum(0.0, 1.0 + np.interp(lead_h, grid, solar_walk)),
        )
