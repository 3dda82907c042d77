"""What a backtest simulates: the area, the period, the houses, the planner, and the noise.

A :class:`BacktestScenario` is checked where it is built (unknown area or archetype, days < 1,
absurd noise all raise :class:`~hpsteer.errors.InvalidInput` with a one-line message).

Weather per price area (:data:`WEATHER_SITES`): the bundled Open-Meteo file nearest the area's
main load. DK2 has no file of its own; it is served Malmö's (about 30 km across the Øresund from
Copenhagen, the same coastal climate), and every report names the site used. Areas not in the
table are refused: nothing nearby is bundled.

Defaults (comfort band, forecast error, plant spread, re-plan rules, cheapest-hours counts) were
chosen looking only at SE3 and SE4 2023; DK1 2024 (Aarhus weather) is held out for checking.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from hpsteer.domain.devices import Location
from hpsteer.domain.market import PriceArea
from hpsteer.errors import InvalidInput
from hpsteer.thermal import ARCHETYPES

__all__ = [
    "ARCHETYPE_ALIASES",
    "WEATHER_SITES",
    "BacktestScenario",
    "WeatherSite",
    "resolve_archetypes",
]

ARCHETYPE_ALIASES: dict[str, str] = {
    "old": "old_radiators",
    "renovated": "renovated_radiators",
    "new": "new_floor_heating",
}
ALL = "all"


@dataclass(frozen=True, slots=True)
class WeatherSite:
    file_name: str
    location: Location
    note: str


def _site(file_name: str, name: str, latitude: float, longitude: float, note: str) -> WeatherSite:
    location = Location(location_id=name, latitude=latitude, longitude=longitude)
    return WeatherSite(file_name=file_name, location=location, note=note)


_STOCKHOLM = _site("openmeteo_stockholm_SE3_2023_2024_hourly.csv", "stockholm", 59.297, 18.163, "")
_MALMO = _site("openmeteo_malmo_SE4_2023_2024_hourly.csv", "malmo", 55.571, 12.935, "")
WEATHER_SITES: dict[PriceArea, WeatherSite] = {
    PriceArea.SE3: _STOCKHOLM,
    PriceArea.SE4: _MALMO,
    PriceArea.DK1: _site("openmeteo_aarhus_DK1_2024_hourly.csv", "aarhus", 56.134, 10.185, ""),
    PriceArea.DK2: WeatherSite(
        file_name=_MALMO.file_name,
        location=_MALMO.location,
        note="DK2 has no bundled weather; Malmö's, ~30 km from Copenhagen, stands in",
    ),
}


def resolve_archetypes(name: str) -> tuple[str, ...]:
    """``all``, a full archetype name or a short alias → the archetype names it stands for."""
    if name == ALL:
        return tuple(ARCHETYPES)
    full = ARCHETYPE_ALIASES.get(name, name)
    if full not in ARCHETYPES:
        known = ", ".join([*ARCHETYPES, *ARCHETYPE_ALIASES, ALL])
        raise InvalidInput(f"unknown archetype {name!r}; known: {known}")
    return (full,)


@dataclass(frozen=True, slots=True)
class BacktestScenario:
    """One backtest. ``archetype`` may be ``all`` or a short alias (``old``/``renovated``/``new``).

    ``forecast_sigma_k`` is the standard deviation of the outdoor-temperature forecast error at
    24 h lead; the error is a random walk in lead time, so it grows as sqrt(lead / 24 h) from 0
    at issue. ``solar_forecast_sigma`` is the same for the relative error of irradiance.
    ``tariff`` (an id of ``data/tariffs``): plan on what the household pays and report its bill
    too (:mod:`.run`); it must be meant for ``area`` and price every day of the period.
    """

    area: PriceArea
    start: date
    days: int
    archetype: str = "renovated_radiators"
    planner: str = "ortools"
    seed: int = 0
    forecast_sigma_k: float = 1.5
    solar_forecast_sigma: float = 0.3
    plant_spread: float = 0.15
    setpoint_c: float = 21.0
    comfort_below_k: float = 1.0
    comfort_above_k: float = 2.0
    replan_band_k: float = 0.5
    weather_every_h: int = 3
    price_publication_hour: int = 13
    max_horizon_h: float = 48.0
    min_dwell_h: float = 1.0
    max_changes_per_day: int = 6
    tariff: str | None = None

    def __post_init__(self) -> None:
        if self.days < 1:
            raise InvalidInput(f"days must be >= 1, got {self.days}")
        resolve_archetypes(self.archetype)
        if self.area not in WEATHER_SITES:
            covered = ", ".join(area.value for area in WEATHER_SITES)
            raise InvalidInput(
                f"no bundled weather for {self.area.value}; backtests cover {covered}"
            )
        if not 0.0 <= self.plant_spread < 0.5:
            raise InvalidInput(f"plant_spread must lie in [0, 0.5), got {self.plant_spread}")
        if self.forecast_sigma_k < 0 or self.solar_forecast_sigma < 0:
            raise InvalidInput("forecast error sigmas must be >= 0")
        if self.comfort_below_k < 0 or self.comfort_above_k < 0 or self.replan_band_k <= 0:
            raise InvalidInput("comfort margins must be >= 0 and the re-plan band > 0")
        if self.weather_every_h < 1 or not 0 <= self.price_publication_hour < 24:
            raise InvalidInput("weather_every_h >= 1 and 0 <= price_publication_hour < 24")
        if self.max_horizon_h <= 0 or self.min_dwell_h <= 0 or self.max_changes_per_day < 0:
            raise InvalidInput("max_horizon_h > 0, min_dwell_h > 0, max_changes_per_day >= 0")

    @property
    def archetypes(self) -> tuple[str, ...]:
        return resolve_archetypes(self.archetype)

    @property
    def weather_site(self) -> WeatherSite:
        return WEATHER_SITES[self.area]

    @property
    def comfort_min_c(self) -> float:
        return self.setpoint_c - self.comfort_below_k

    @property
    def comfort_max_c(self) -> float:
        return self.setpoint_c + self.comfort_above_k
