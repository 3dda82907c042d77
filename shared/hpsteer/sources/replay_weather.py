"""Historical weather from the bundled Open-Meteo CSV files, served as perfect-foresight forecasts.

For backtests and the local runtime: :meth:`ReplayWeatherSource.forecast` at issue time *t* (the
clock's hour) returns the **actual** series of the next ``horizon`` (48 h by default) from the
file, so the planner sees the weather that then happens. This is perfect foresight, not a
forecast: backtest savings measured with it are an upper bound on what real forecasts allow.

Files (see ``data/weather/PROVENANCE.md``): two metadata lines
(``latitude,longitude,elevation,utc_offset_seconds,…``), a blank line, a header, hourly rows.
Times are local labels with one *fixed* offset, ``utc_offset_seconds``, applied all year (no
daylight-saving gap or duplicate): the offset is subtracted to get UTC. Headers come in two
dialects, both understood: Open-Meteo's own (``temperature_2m (°C)``, ``wind_speed_10m (km/h)``,
``shortwave_radiation (W/m²)``) and the renamed Stockholm/Malmö one (``temperature``,
``wind_speed_10m``, no units: Open-Meteo's defaults, °C and km/h). Irradiance is
``shortwave_radiation_instant`` when present, else ``shortwave_radiation`` (the mean of the hour
ending at the label), else absent; wind is converted to m/s; ``NaN`` or empty irradiance/wind is
``None``, a row without temperature is skipped.

``path`` is one file or a folder of ``openmeteo_*_hourly.csv`` files; a location is served from
the file whose coordinates are nearest, if within ``max_distance_km``. A location too far from
every file, or an issue time whose horizon the file does not fully cover, raises
:class:`~hpsteer.errors.NotFound` naming what the files do cover. A file that cannot be read
raises :class:`~hpsteer.errors.FeedRejected` naming the file and line.
"""

from __future__ import annotations

import bisect
import csv
import math
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from pydantic import ValidationError

from hpsteer.domain.base import describe_validation_error
from hpsteer.domain.devices import Location
from hpsteer.domain.instants import ensure_utc
from hpsteer.domain.weather import WeatherPoint, WeatherSeries
from hpsteer.errors import FeedRejected, NotFound
from hpsteer.ports.clock import Clock, SystemClock

__all__ = ["ReplayWeatherSource", "WeatherFile", "bundled_weather_dir"]

SOURCE = "replay"
_HEADER_ALIASES = {"temperature": "temperature_2m"}
_IRRADIANCE_COLUMNS = ("shortwave_radiation_instant", "shortwave_radiation")
_WIND_UNITS = {"km/h": 1 / 3.6, "m/s": 1.0, "mph": 0.44704, "kn": 1852 / 3600}
_EARTH_RADIUS_KM = 6371.0


def bundled_weather_dir() -> Path:
    """The repository's ``data/weather`` folder (the package is installed from ``shared/``)."""
    return Path(__file__).resolve().parents[3] / "data" / "weather"


@dataclass(frozen=True, slots=True)
class _Series:
    name: str
    latitude: float
    longitude: float
    times: tuple[datetime, ...]
    points: tuple[WeatherPoint, ...]


@dataclass(frozen=True, slots=True)
class WeatherFile:
    """Where one bundled file's weather was taken and the hours it covers."""

    name: str
    latitude: float
    longitude: float
    first: datetime
    last: datetime


def _split_header(header: str) -> tuple[str, str | None]:
    """``'wind_speed_10m (km/h)'`` → ``('wind_speed_10m', 'km/h')``; aliases resolved."""
    name, _, unit = header.strip().partition(" (")
    name = _HEADER_ALIASES.get(name, name)
    return name, unit.removesuffix(")") if unit else None


def _optional(text: str) -> float | None:
    if not text or text.strip().lower() == "nan":
        return None
    value = float(text)
    return value if math.isfinite(value) else None


def _read(path: Path) -> _Series:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise FeedRejected(f"{path.name}: cannot be read ({err})") from err
    if len(lines) < 5 or lines[2].strip():
        raise FeedRejected(f"{path.name}: not an Open-Meteo CSV (metadata, blank line, header)")
    meta = dict(zip(lines[0].split(","), lines[1].split(","), strict=False))
    try:
        latitude, longitude = float(meta["latitude"]), float(meta["longitude"])
        offset = timedelta(seconds=int(meta["utc_offset_seconds"]))
    except (KeyError, ValueError) as err:
        raise FeedRejected(f"{path.name} line 2: unreadable location metadata ({err})") from err

    rows = csv.reader(lines[3:])
    columns = {_split_header(h)[0]: (i, _split_header(h)[1]) for i, h in enumerate(next(rows))}
    if "time" not in columns or "temperature_2m" not in columns:
        raise FeedRejected(f"{path.name} line 4: no time or temperature column")
    irradiance = next((columns[c][0] for c in _IRRADIANCE_COLUMNS if c in columns), None)
    wind = columns.get("wind_speed_10m")
    wind_unit = (wind[1] if wind else None) or "km/h"
    if wind_unit not in _WIND_UNITS:
        raise FeedRejected(f"{path.name} line 4: unknown wind unit {wind_unit!r}")
    time_at, temp_at = columns["time"][0], columns["temperature_2m"][0]

    times: list[datetime] = []
    points: list[WeatherPoint] = []
    for line, row in enumerate(rows, start=5):
        try:
            temp = _optional(row[temp_at])
            if temp is None:
                continue
            at = (datetime.fromisoformat(row[time_at]) - offset).replace(tzinfo=UTC)
            wind_speed = _optional(row[wind[0]]) if wind else None
            points.append(
                WeatherPoint(
                    at=at,
                    outdoor_temp_c=temp,
                    solar_irradiance_w_per_m2=_optional(row[irradiance]) if irradiance else None,
                    wind_speed_m_per_s=None
                    if wind_speed is None
                    else round(wind_speed * _WIND_UNITS[wind_unit], 3),
                )
            )
        except (IndexError, ValueError) as err:
            raise FeedRejected(f"{path.name} line {line}: unreadable row ({err})") from err
        except ValidationError as err:
            raise FeedRejected(
                f"{path.name} line {line}: {describe_validation_error(err)}"
            ) from err
        if times and at <= times[-1]:
            raise FeedRejected(f"{path.name} line {line}: {at:%Y-%m-%dT%H:%MZ} is out of order")
        times.append(at)
    if not points:
        raise FeedRejected(f"{path.name}: no rows")
    return _Series(path.name, latitude, longitude, tuple(times), tuple(points))


def _distance_km(a_lat: float, a_lon: float, b_lat: float, b_lon: float) -> float:
    """Great-circle distance (haversine)."""
    phi1, phi2 = math.radians(a_lat), math.radians(b_lat)
    dphi, dlambda = phi2 - phi1, math.radians(b_lon - a_lon)
    h = math.sin(dphi / 2) ** 2 + math.cos(phi1) * math.cos(phi2) * math.sin(dlambda / 2) ** 2
    return 2 * _EARTH_RADIUS_KM * math.asin(math.sqrt(h))


class ReplayWeatherSource:
    """:class:`~hpsteer.sources.weather.WeatherSource` replaying bundled hourly weather files."""

    def __init__(
        self,
        path: Path | str,
        *,
        clock: Clock | None = None,
        horizon: timedelta = timedelta(hours=48),
        max_distance_km: float = 200.0,
    ) -> None:
        self._path = Path(path)
        self._clock = clock or SystemClock()
        self._horizon = horizon
        self._max_distance_km = max_distance_km
        self._lock = threading.Lock()
        self._series: tuple[_Series, ...] | None = None

    @property
    def name(self) -> str:
        return SOURCE

    def _files(self) -> list[Path]:
        if self._path.is_dir():
            files = sorted(self._path.glob("openmeteo_*_hourly.csv"))
            if not files:
                raise NotFound(f"no openmeteo_*_hourly.csv files in {self._path}")
            return files
        if not self._path.exists():
            raise NotFound(f"no replay weather file {self._path}")
        return [self._path]

    def _loaded(self) -> tuple[_Series, ...]:
        with self._lock:
            if self._series is None:
                self._series = tuple(_read(path) for path in self._files())
            return self._series

    def _nearest(self, location: Location) -> _Series:
        distance, series = min(
            (
                (_distance_km(location.latitude, location.longitude, s.latitude, s.longitude), s)
                for s in self._loaded()
            ),
            key=lambda pair: pair[0],
        )
        if distance > self._max_distance_km:
            raise NotFound(
                f"no replay weather within {self._max_distance_km:g} km of {location.location_id} "
                f"({location.latitude:.2f}, {location.longitude:.2f}); nearest is {series.name} "
                f"at {distance:.0f} km"
            )
        return series

    def forecast(self, location: Location) -> WeatherSeries:
        return self.forecast_at(location, self._clock.now())

    def files(self) -> list[WeatherFile]:
        """Every file's place and the hours it covers."""
        return [
            WeatherFile(s.name, s.latitude, s.longitude, s.times[0], s.times[-1])
            for s in self._loaded()
        ]

    def outdoor_temperature(self, location: Location) -> Callable[[datetime], float]:
        """The actual outdoor temperature at ``location`` as a function of the instant, linear
        between the hourly values and held beyond the file's ends (the simulated homes' weather)."""
        series = self._nearest(location)
        stamps = [t.timestamp() for t in series.times]
        values = [p.outdoor_temp_c for p in series.points]

        def at(instant: datetime) -> float:
            x = instant.timestamp()
            i = bisect.bisect_right(stamps, x)
            if i == 0:
                return values[0]
            if i == len(stamps):
                return values[-1]
            x0, x1 = stamps[i - 1], stamps[i]
            return values[i - 1] + (values[i] - values[i - 1]) * (x - x0) / (x1 - x0)

        return at

    def forecast_at(self, location: Location, issued_at: datetime) -> WeatherSeries:
        """The actual weather of ``[issued hour, issued hour + horizon)`` at ``location``."""
        issued = ensure_utc(issued_at, field="issued_at").replace(minute=0, second=0, microsecond=0)
        until = issued + self._horizon
        series = self._nearest(location)
        hours = self._horizon.total_seconds() / 3600
        first, last = series.times[0], series.times[-1]
        if issued < first or until - timedelta(hours=1) > last:
            raise NotFound(
                f"replay weather {series.name} covers {first:%Y-%m-%dT%H:%MZ}.."
                f"{last:%Y-%m-%dT%H:%MZ}; a {hours:g} h forecast issued at "
                f"{issued:%Y-%m-%dT%H:%MZ} needs until {until:%Y-%m-%dT%H:%MZ}"
            )
        start = bisect.bisect_left(series.times, issued)
        end = bisect.bisect_left(series.times, until)
        return WeatherSeries(
            location_id=location.location_id,
            latitude=location.latitude,
            longitude=location.longitude,
            issued_at=issued,
            source=SOURCE,
            points=series.points[start:end],
        )
