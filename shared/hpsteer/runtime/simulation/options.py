"""What ``hpsteer simulate`` is asked to run, checked before anything starts.

:func:`check_options` refuses, with one line naming the problem, what the bundled data cannot
replay: an area without both prices and weather in ``data/``, days outside the files, a fleet of
zero or fewer devices, an output folder that cannot be written. A run needs the prices of every
simulated day and of the day after the last (planning at 13:00 of the last day reaches into it),
and weather until two days after the last (the forecasts span 48 hours).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Literal

from hpsteer.domain.devices import Location
from hpsteer.domain.market import PriceArea, delivery_day_bounds
from hpsteer.sources.replay_prices import ReplayPriceSource
from hpsteer.sources.replay_weather import ReplayWeatherSource, bundled_weather_dir

__all__ = [
    "BACKENDS",
    "FAULT_PROFILES",
    "AreaData",
    "SimulationError",
    "SimulationOptions",
    "area_data",
    "check_options",
]

FaultProfile = Literal["none", "realistic", "heavy"]
Backend = Literal["local", "emulators"]
FAULT_PROFILES: tuple[FaultProfile, ...] = ("none", "realistic", "heavy")
BACKENDS: tuple[Backend, ...] = ("local", "emulators")

WEATHER_NEEDED_AFTER = timedelta(days=2)
"""How far past the last simulated day the weather files must reach (48 h forecasts)."""
MAX_DEVICES = 100_000


class SimulationError(Exception):
    """A simulation that cannot run as asked; its message is the one line the user sees."""


@dataclass(frozen=True, slots=True)
class SimulationOptions:
    area: PriceArea = PriceArea.SE3
    start: date = date(2023, 1, 9)
    """The first market day (the area's calendar); the run starts at its local midnight."""
    days: int = 2
    devices: int = 30
    seed: int = 0
    faults: FaultProfile = "realistic"
    backend: Backend = "local"
    out: Path = Path("hpsteer-report")
    sample_homes: int = 4
    """How many homes the report draws in detail."""
    planning_processes: int = 0
    """Processes the planner runs on (0: one per core; 1: in the simulation's own process)."""

    @property
    def start_at(self) -> datetime:
        return delivery_day_bounds(self.area, self.start)[0]

    @property
    def end_at(self) -> datetime:
        return delivery_day_bounds(self.area, self.start + timedelta(days=self.days - 1))[1]


@dataclass(frozen=True, slots=True)
class AreaData:
    """The bundled real data an area's run replays."""

    prices: ReplayPriceSource
    weather: ReplayWeatherSource
    location: Location
    """Where the area's weather file was taken; every simulated home of the area sits there."""


def area_data(area: PriceArea) -> AreaData:
    """The bundled prices and the weather file of ``area``; :class:`SimulationError` if the
    bundled data lack either."""
    prices = ReplayPriceSource()
    if not prices.supports(area):
        raise SimulationError(f"no bundled prices for area {area.value}")
    weather = ReplayWeatherSource(bundled_weather_dir())
    tag = f"_{area.value}_"
    files = [f for f in weather.files() if tag in f.name]
    if not files:
        raise SimulationError(f"no bundled weather for area {area.value}")
    chosen = files[0]
    location = Location(
        location_id=f"{area.value.lower()}-{chosen.name.split('_')[1]}",
        latitude=chosen.latitude,
        longitude=chosen.longitude,
    )
    return AreaData(prices, weather, location)


def simulatable_areas() -> list[str]:
    """The areas whose prices and weather are both bundled."""
    found = []
    for area in PriceArea:
        try:
            area_data(area)
        except SimulationError:
            continue
        found.append(area.value)
    return found


def check_options(options: SimulationOptions) -> AreaData:
    """The area's data if ``options`` can run; else :class:`SimulationError` naming why."""
    if options.devices < 1:
        raise SimulationError(f"--devices must be at least 1, got {options.devices}")
    if options.devices > MAX_DEVICES:
        raise SimulationError(f"--devices must be at most {MAX_DEVICES}, got {options.devices}")
    if options.days < 1:
        raise SimulationError(f"--days must be at least 1, got {options.days}")
    if options.faults not in FAULT_PROFILES:
        raise SimulationError(f"--faults must be one of {', '.join(FAULT_PROFILES)}")
    if options.backend not in BACKENDS:
        raise SimulationError(f"--backend must be one of {', '.join(BACKENDS)}")
    try:
        data = area_data(options.area)
    except SimulationError as err:
        raise SimulationError(
            f"{err}; areas that can be simulated: {', '.join(simulatable_areas())}"
        ) from None
    covered = data.prices.covered_days(options.area)
    last_day = options.start + timedelta(days=options.days - 1)
    needed = (options.start, last_day + timedelta(days=1))
    if covered is None or needed[0] < covered[0] or needed[1] > covered[1]:
        span = f"{covered[0]}..{covered[1] - timedelta(days=1)}" if covered else "nothing"
        raise SimulationError(
            f"bundled {options.area.value} prices cover start days {span}; "
            f"{options.start} + {options.days} days needs prices {needed[0]}..{needed[1]}"
        )
    weather = next(f for f in data.weather.files() if f.latitude == data.location.latitude)
    if options.start_at < weather.first or options.end_at + WEATHER_NEEDED_AFTER > weather.last:
        raise SimulationError(
            f"bundled weather for {options.area.value} covers {weather.first:%Y-%m-%d}.."
            f"{weather.last:%Y-%m-%d}; {options.start} + {options.days} days needs it until "
            f"{options.end_at + WEATHER_NEEDED_AFTER:%Y-%m-%d}"
        )
    _check_writable(options.out)
    return data


def _check_writable(out: Path) -> None:
    """Create ``out`` and write a probe file in it (permission bits alone do not tell: root
    ignores them, a read-only mount does not show in them)."""
    probe = out / ".hpsteer-write-probe"
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as err:
        reason = err.strerror or type(err).__name__
        raise SimulationError(f"output folder {out} cannot be written: {reason}") from None
