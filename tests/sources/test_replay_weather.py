"""Replayed weather: the bundled Open-Meteo hourly files served as perfect-foresight forecasts.

Rows are local labels at a fixed UTC+1 (``utc_offset_seconds`` 3600 all year), so the row
labelled ``2023-01-01T01:00`` is 2023-01-01T00:00Z, in summer as in winter.
"""

from __future__ import annotations

import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from hpsteer.domain.devices import Location
from hpsteer.errors import FeedRejected, NotFound
from hpsteer.ports.clock import SimulatedClock
from hpsteer.sources.replay_weather import ReplayWeatherSource, bundled_weather_dir
from hpsteer.sources.weather import WeatherSource

WEATHER = bundled_weather_dir()
STOCKHOLM_FILE = WEATHER / "openmeteo_stockholm_SE3_2023_2024_hourly.csv"
STOCKHOLM = Location(location_id="lat59.30_lon18.16", latitude=59.30, longitude=18.16)
AARHUS = Location(location_id="lat56.13_lon10.19", latitude=56.13, longitude=10.19)


@pytest.fixture(scope="module")
def stockholm() -> ReplayWeatherSource:
    return ReplayWeatherSource(STOCKHOLM_FILE)


def test_a_known_winter_hour_has_the_files_temperature_one_hour_earlier_in_utc(
    stockholm: ReplayWeatherSource,
) -> None:
    # Rows "2023-01-01T01:00,2.4,…,14.8" and "2023-01-01T02:00,1.6,…,11.2" (local, UTC+1).
    series = stockholm.forecast_at(STOCKHOLM, datetime(2023, 1, 1, 0, 0, tzinfo=UTC))

    first, second = series.points[:2]
    assert first.at == datetime(2023, 1, 1, 0, 0, tzinfo=UTC)
    assert first.outdoor_temp_c == 2.4
    assert first.wind_speed_m_per_s == pytest.approx(14.8 / 3.6, abs=1e-3)  # km/h in the file
    assert first.solar_irradiance_w_per_m2 is None  # this file has no radiation column
    assert second.outdoor_temp_c == 1.6


def test_summer_rows_are_at_the_same_fixed_offset_not_daylight_saving_time(
    stockholm: ReplayWeatherSource,
) -> None:
    series = stockholm.forecast_at(STOCKHOLM, datetime(2023, 7, 1, 11, 0, tzinfo=UTC))
    row = next(
        line
        for line in STOCKHOLM_FILE.read_text().splitlines()
        if line.startswith("2023-07-01T12:00,")  # 12:00 at UTC+1 is 11:00Z
    )

    assert series.points[0].outdoor_temp_c == float(row.split(",")[1])


def test_a_forecast_is_the_next_48_hours_from_the_issue_hour(
    stockholm: ReplayWeatherSource,
) -> None:
    series = stockholm.forecast_at(STOCKHOLM, datetime(2024, 3, 30, 13, 42, tzinfo=UTC))

    assert series.issued_at == datetime(2024, 3, 30, 13, 0, tzinfo=UTC)
    assert len(series.points) == 48
    assert series.points[0].at == series.issued_at
    assert series.points[-1].at == series.issued_at + timedelta(hours=47)
    # The daylight-saving night (2024-03-31) changes nothing: hourly steps throughout.
    steps = {b.at - a.at for a, b in zip(series.points, series.points[1:], strict=False)}
    assert steps == {timedelta(hours=1)}
    assert (series.location_id, series.source) == ("lat59.30_lon18.16", "replay")


def test_forecast_uses_the_clock_and_keeps_the_weather_source_promise() -> None:
    clock = SimulatedClock(datetime(2023, 2, 1, 6, 30, tzinfo=UTC))
    source = ReplayWeatherSource(STOCKHOLM_FILE, clock=clock, horizon=timedelta(hours=24))

    assert isinstance(source, WeatherSource)
    series = source.forecast(STOCKHOLM)
    assert series.issued_at == datetime(2023, 2, 1, 6, 0, tzinfo=UTC)
    assert len(series.points) == 24


@pytest.mark.parametrize(
    "issued_at",
    [
        pytest.param(datetime(2022, 12, 31, 22, 0, tzinfo=UTC), id="before-the-first-row"),
        pytest.param(datetime(2024, 12, 31, 0, 0, tzinfo=UTC), id="horizon-past-the-last-row"),
        pytest.param(datetime(2026, 1, 1, 0, 0, tzinfo=UTC), id="years-later"),
    ],
)
def test_a_forecast_the_file_cannot_fully_cover_is_refused_naming_the_coverage(
    stockholm: ReplayWeatherSource, issued_at: datetime
) -> None:
    with pytest.raises(
        NotFound,
        match=r"openmeteo_stockholm_SE3_2023_2024_hourly\.csv covers "
        r"2022-12-31T23:00Z\.\.2025-01-01T22:00Z; a 48 h forecast issued at .* needs until",
    ):
        stockholm.forecast_at(STOCKHOLM, issued_at)


def test_the_last_full_horizon_of_the_file_is_served(stockholm: ReplayWeatherSource) -> None:
    series = stockholm.forecast_at(STOCKHOLM, datetime(2024, 12, 30, 23, 0, tzinfo=UTC))

    assert series.points[-1].at == datetime(2025, 1, 1, 22, 0, tzinfo=UTC)


def test_a_folder_serves_each_location_from_the_nearest_file() -> None:
    source = ReplayWeatherSource(WEATHER)
    issued = datetime(2024, 6, 1, 11, 0, tzinfo=UTC)

    aarhus = source.forecast_at(AARHUS, issued)
    stockholm = source.forecast_at(STOCKHOLM, issued)

    # Aarhus keeps Open-Meteo's own headers, radiation included.
    assert aarhus.points[0].solar_irradiance_w_per_m2 is not None
    assert aarhus.points[0].solar_irradiance_w_per_m2 > 0
    assert stockholm.points[0].solar_irradiance_w_per_m2 is None
    assert aarhus.points[0].outdoor_temp_c != stockholm.points[0].outdoor_temp_c


def test_a_location_far_from_every_file_is_refused(stockholm: ReplayWeatherSource) -> None:
    paris = Location(location_id="lat48.86_lon2.35", latitude=48.86, longitude=2.35)

    with pytest.raises(NotFound, match=r"no replay weather within 200 km of lat48\.86_lon2\.35"):
        stockholm.forecast_at(paris, datetime(2024, 1, 1, tzinfo=UTC))


def test_a_file_that_is_not_an_open_meteo_csv_is_rejected(tmp_path: Path) -> None:
    broken = tmp_path / "openmeteo_broken_hourly.csv"
    shutil.copy(STOCKHOLM_FILE, broken)
    lines = broken.read_text().splitlines()
    lines[10] = "2023-01-01T06:00,warm,0.00,100,10.0"
    broken.write_text("\n".join(lines) + "\n")

    with pytest.raises(FeedRejected, match=r"openmeteo_broken_hourly\.csv line 11: unreadable"):
        ReplayWeatherSource(broken).forecast_at(STOCKHOLM, datetime(2023, 1, 2, tzinfo=UTC))
