"""Heat Pump Keymark certified points, and the Carnot fraction fitted to them.

The rows are those of hplib's ``database_reduced.csv`` (FZJ-IEK3-VSA/hplib, MIT; Keymark data):
COP at outdoor -7 / 2 / 7 / 12 °C for the low-temperature (``_l``) and medium-temperature (``_h``)
application. Those are EN 14825 part-load points of the "average" climate, measured with a
weather-compensated (variable) outlet, so the flow temperature is not 35 / 55 °C at every point
but (*unconfirmed* here, from EN 14825:2018 Table 5/6 as commonly quoted)::

    outdoor °C         -7   2   7  12
    low (W35 app.)     34  30  27  24
    medium (W55 app.)  52  42  36  30

Using the nominal 35 / 55 °C instead fits far worse (median error ~18 % against ~6 %). Parsing is
pure (mappings in, points out); the caller reads the file.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from hpsteer.thermal.heat_pump import HeatPump

__all__ = ["CarnotFit", "KeymarkPoint", "fit_carnot_fraction", "keymark_points"]

_OUTDOOR_COLUMNS: tuple[tuple[float, str], ...] = (
    (-7.0, "minus7"),
    (2.0, "2"),
    (7.0, "7"),
    (12.0, "12"),
)
EN14825_FLOW_TEMP_C: dict[str, tuple[float, ...]] = {
    "l": (34.0, 30.0, 27.0, 24.0),
    "h": (52.0, 42.0, 36.0, 30.0),
}


@dataclass(frozen=True, slots=True)
class KeymarkPoint:
    manufacturer: str
    model: str
    outdoor_temp_c: float
    flow_temp_c: float
    cop: float


@dataclass(frozen=True, slots=True)
class CarnotFit:
    carnot_fraction: float
    median_abs_relative_error: float
    points: int


def keymark_points(rows: Iterable[Mapping[str, str]]) -> list[KeymarkPoint]:
    """Every positive COP of the outdoor-air/water rows at its EN 14825 flow temperature."""
    points: list[KeymarkPoint] = []
    for row in rows:
        if row["types"].strip() != "Outdoor Air/Water":
            continue
        for application, flows in EN14825_FLOW_TEMP_C.items():
            for (outdoor, key), flow in zip(_OUTDOOR_COLUMNS, flows, strict=True):
                raw = row[f"cop_{key}_{application}"].strip()
                cop = float(raw) if raw else float("nan")
                if np.isfinite(cop) and cop > 0:
                    points.append(
                        KeymarkPoint(row["manufacturers"].strip(), row["titel"], outdoor, flow, cop)
                    )
    return points


def fit_carnot_fraction(points: Sequence[KeymarkPoint], min_lift_k: float = 15.0) -> CarnotFit:
    """η = median of COP / (T_flow,K / max(lift, min_lift_k)); error = median |model/cert - 1|."""
    if not points:
        raise ValueError("points is empty: nothing to fit")
    unit = HeatPump(rated_heat_kw=1.0, carnot_fraction=0.5, min_lift_k=min_lift_k)
    carnot = np.array([float(unit.cop(p.outdoor_temp_c, p.flow_temp_c)) / 0.5 for p in points])
    cops = np.array([p.cop for p in points])
    fraction = float(np.median(cops / carnot))
    errors = np.abs(fraction * carnot / cops - 1.0)
    return CarnotFit(fraction, float(np.median(errors)), len(points))
