"""Weather at a location: a forecast (or observation) as a regular series of points."""

from __future__ import annotations

from datetime import datetime
from itertools import pairwise
from typing import Self

from pydantic import Field, model_validator

from hpsteer.domain.base import FrozenModel, Record, UtcDatetime

__all__ = ["WeatherPoint", "WeatherSeries"]


class WeatherPoint(FrozenModel):
    at: UtcDatetime
    outdoor_temp_c: float = Field(ge=-80, le=60)
    solar_irradiance_w_per_m2: float | None = Field(default=None, ge=0, le=1500)
    wind_speed_m_per_s: float | None = Field(default=None, ge=0, le=100)


class WeatherSeries(Record):
    location_id: str = Field(min_length=1)
    latitude: float = Field(ge=-90, le=90)
    longitude: float = Field(ge=-180, le=180)
    issued_at: UtcDatetime
    source: str = Field(min_length=1)
    points: tuple[WeatherPoint, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _strictly_increasing(self) -> Self:
        for before, after in pairwise(self.points):
            if after.at <= before.at:
                raise ValueError(
                    f"points must be in strictly increasing time: {after.at.isoformat()} "
                    f"follows {before.at.isoformat()}"
                )
        return self

    def temperature_at(self, instant: datetime) -> float:
        """Outdoor temperature at ``instant``, linear between points, held at the ends."""
        points = self.points
        if instant <= points[0].at:
            return points[0].outdoor_temp_c
        for before, after in pairwise(points):
            if before.at <= instant <= after.at:
                span = (after.at - before.at).total_seconds()
                weight = (instant - before.at).total_seconds() / span
                rise = after.outdoor_temp_c - before.outdoor_temp_c
                return before.outdoor_temp_c + weight * rise
        return points[-1].outdoor_temp_c
