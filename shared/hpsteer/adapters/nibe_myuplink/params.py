"""myUplink points as data: where each quantity lives, per NIBE product family, and how a point's
raw limits become display values.

A point is found by its ``smartHomeCategories`` first and by parameter id second
(reference/manufacturer-apis.md §2.3): parameter ids differ per product family, categories are
meant not to. When several points carry the category (the recorded F730 body has 47011 *and* a
test entry 47007 tagged ``sh-indoorSpOffsHeat``), the family's own id wins, else the first. The
F-series ids come from the recorded F730 points body (home-assistant/core fixture); the S-series
ids are from one S735 dump and are **unconfirmed**; a product of neither family is served by
categories alone.

**The mode lever.** ``set_mode_*`` moves the *heating offset* (F-series 47011, category
``sh-indoorSpOffsHeat``, -10…10): a parallel shift of the heating curve in "steps", not kelvin.
NIBE's manuals (F1155, F370, menu 1.9.1 "curve offset") say +2 steps raise the supply
temperature by 5 K at every outdoor temperature: one step ≈ 2.5 K of supply. How much room
temperature one step buys depends on the emitters and the curve; we take **one step ≈ 1 K of
room** (:data:`OFFSET_STEPS_PER_ROOM_K`), which is **unconfirmed** and must be identified per
house like every offset's effect. So min/mid/max = baseline -2/0/+2 steps.

**Display values.** ``value`` is already scaled; ``minValue``/``maxValue``/``stepValue`` are raw and
are multiplied by ``scaleValue`` (47398: raw 50…350 * 0.1 → 5…35 °C). A PATCH carries the display
value as a string (``{"47011": "-2"}``). ``-32768`` (raw or scaled) means "no sensor".
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

__all__ = [
    "DHW_BOOST",
    "DHW_BOOST_ON",
    "DHW_TEMPERATURE",
    "FAMILIES",
    "HEATING_OFFSET",
    "INDOOR_TEMPERATURE",
    "OFFSET_STEPS_PER_ROOM_K",
    "OUTDOOR_TEMPERATURE",
    "POWER",
    "PRIORITY",
    "RETURN_TEMPERATURE",
    "ROOM_SETPOINT",
    "SUPPLY_TEMPERATURE",
    "Family",
    "Point",
    "PointSet",
    "PointSpec",
    "display_text",
    "family_of",
]

OFFSET_STEPS_PER_ROOM_K: Final = 1.0
"""Heating-offset steps per kelvin of room setpoint shift (module docstring: unconfirmed)."""
DHW_BOOST_ON: Final = 1.0
"""The boost point's "on" value (F730 50004 "Temporary lux": 0 off, 1 on)."""
_ABSENT: Final = (-32768.0, -3276.8)


@dataclass(frozen=True, slots=True)
class Family:
    name: str
    product: re.Pattern[str]
    """Matched against the device's ``product.name`` (``"F730 CU 3x400V"``)."""
    confirmed: bool


FAMILIES: Final[tuple[Family, ...]] = (
    Family("S-series", re.compile(r"^(S\d{3,4}|SMO\s?S\d{2}|VVM\s?S\d{3})\b"), confirmed=False),
    Family("F-series", re.compile(r"^(F\d{3,4}|VVM\s?\d{3}|SMO\s?\d{2})\b"), confirmed=True),
)
"""S before F: ``SMO S40`` is S-series, ``SMO 40`` F-series. Only the F730 is recorded."""


@dataclass(frozen=True, slots=True)
class PointSpec:
    quantity: str
    categories: tuple[str, ...]
    ids_by_family: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    writable: bool = False
    """True: only a writable point qualifies (the levers)."""
    scale_by_unit: Mapping[str, float] = field(default_factory=dict)
    """Unit → factor to hpsteer's unit; empty: take the value as it is."""


OUTDOOR_TEMPERATURE: Final = PointSpec(
    "outdoor_temp_c", ("sh-outdoorTemp",), {"F-series": ("40004",), "S-series": ("4",)}
)
SUPPLY_TEMPERATURE: Final = PointSpec(
    "supply_temp_c", ("sh-supplyTemp",), {"F-series": ("40008",), "S-series": ("8",)}
)
RETURN_TEMPERATURE: Final = PointSpec(
    "return_temp_c", ("sh-returnTemp",), {"F-series": ("40012",), "S-series": ("10",)}
)
INDOOR_TEMPERATURE: Final = PointSpec(
    "indoor_temp_c", ("sh-indoorTemp",), {"F-series": ("40033",), "S-series": ("50660", "48351")}
)
DHW_TEMPERATURE: Final = PointSpec(
    "dhw_temp_c", ("sh-hwTemp",), {"F-series": ("40013", "40014"), "S-series": ("11", "12")}
)
PRIORITY: Final = PointSpec("priority", (), {"F-series": ("49994",), "S-series": ("55000",)})
"""What the heat pump works on now (F730 enum: 10 off, 20 hot water, 30 heating, 60 cooling)."""
POWER: Final = PointSpec(
    "power_kw", (), {"S-series": ("22130",)}, scale_by_unit={"W": 0.001, "kW": 1.0}
)
"""Electric power: S-series 22130 in W (unconfirmed); the F730 reports none."""
HEATING_OFFSET: Final = PointSpec(
    "heating_offset", ("sh-indoorSpOffsHeat",), {"F-series": ("47011",)}, writable=True
)
"""The set_mode_* lever; S-series id unconfirmed, so S-series relies on the category."""
ROOM_SETPOINT: Final = PointSpec(
    "room_setpoint_c", ("sh-indoorSpHeat",), {"F-series": ("47398",), "S-series": ("47751",)}
)
DHW_BOOST: Final = PointSpec(
    "dhw_boost",
    ("sh-hwBoost",),
    {"F-series": ("50004", "48132"), "S-series": ("7086",)},
    writable=True,
)
"""F730 50004 "Temporary lux" (recorded); 48132 other F firmware and S 7086: unconfirmed."""


@dataclass(frozen=True, slots=True)
class Point:
    """One myUplink point, its limits in display units (raw * scaleValue)."""

    parameter_id: str
    name: str
    unit: str
    writable: bool
    value: float | None
    """The scaled value, None when absent (-32768) or not a number."""
    min_value: float | None
    max_value: float | None
    step_value: float | None
    categories: tuple[str, ...]
    enum_values: tuple[float, ...]
    timestamp: str | None

    @staticmethod
    def parse(raw: Mapping[str, Any]) -> Point | None:
        parameter_id = raw.get("parameterId")
        if not isinstance(parameter_id, str | int) or isinstance(parameter_id, bool):
            return None
        scale = _number(raw.get("scaleValue")) or 1.0
        value = _number(raw.get("value"))
        if value is not None and value in _ABSENT:
            value = None
        categories = raw.get("smartHomeCategories")
        enums = raw.get("enumValues")
        enum_values = tuple(
            number
            for entry in (enums if isinstance(enums, list) else [])
            if isinstance(entry, Mapping) and (number := _number(entry.get("value"))) is not None
        )

        def scaled(key: str) -> float | None:
            number = _number(raw.get(key))
            return round(number * scale, 6) if number is not None else None

        return Point(
            parameter_id=str(parameter_id),
            name=str(raw.get("parameterName") or ""),
            unit=str(raw.get("parameterUnit") or ""),
            writable=raw.get("writable") is True,
            value=value,
            min_value=scaled("minValue"),
            max_value=scaled("maxValue"),
            step_value=scaled("stepValue"),
            categories=tuple(c for c in categories if isinstance(c, str))
            if isinstance(categories, list)
            else (),
            enum_values=enum_values,
            timestamp=raw.get("timestamp") if isinstance(raw.get("timestamp"), str) else None,
        )

    def check(self, value: float) -> str | None:
        """Why ``value`` (display units) does not fit this point, or None."""
        if not math.isfinite(value):
            return f"point {self.parameter_id}: value must be a finite number"
        if self.enum_values and value not in self.enum_values:
            allowed = ", ".join(display_text(v) for v in self.enum_values)
            return f"point {self.parameter_id}: {display_text(value)} is not one of {allowed}"
        if self.min_value is not None and value < self.min_value:
            return (
                f"point {self.parameter_id}: {display_text(value)} is below the minimum "
                f"{display_text(self.min_value)}"
            )
        if self.max_value is not None and value > self.max_value:
            return (
                f"point {self.parameter_id}: {display_text(value)} is above the maximum "
                f"{display_text(self.max_value)}"
            )
        step = self.step_value
        if step and not self.enum_values:
            origin = self.min_value if self.min_value is not None else 0.0
            steps = (value - origin) / step
            if abs(steps - round(steps)) > 1e-6:
                return (
                    f"point {self.parameter_id}: {display_text(value)} is not on the step "
                    f"{display_text(step)} from {display_text(origin)}"
                )
        return None


class PointSet:
    """A device's points, deduplicated by (id, name), with the lookups the adapter needs. Pure."""

    def __init__(self, points: Iterable[Mapping[str, Any]], family: Family | None) -> None:
        self.family = family
        self._points: list[Point] = []
        seen: set[tuple[str, str]] = set()
        for raw in points:
            point = Point.parse(raw)
            if point is None or (point.parameter_id, point.name) in seen:
                continue
            seen.add((point.parameter_id, point.name))
            self._points.append(point)

    def __len__(self) -> int:
        return len(self._points)

    def by_id(self, parameter_id: str) -> Point | None:
        return next((p for p in self._points if p.parameter_id == parameter_id), None)

    def find(self, spec: PointSpec) -> Point | None:
        """The point for ``spec``: by category (the family's id first among them), else by id."""
        family_ids = spec.ids_by_family.get(self.family.name, ()) if self.family else ()
        eligible = [p for p in self._points if p.writable or not spec.writable]
        tagged = [p for p in eligible if set(p.categories) & set(spec.categories)]
        for parameter_id in family_ids:
            found = next((p for p in tagged if p.parameter_id == parameter_id), None)
            if found is not None:
                return found
        if tagged:
            return tagged[0]
        for parameter_id in family_ids:
            found = next((p for p in eligible if p.parameter_id == parameter_id), None)
            if found is not None:
                return found
        return None

    def read(self, spec: PointSpec) -> float | None:
        point = self.find(spec)
        if point is None or point.value is None:
            return None
        if not spec.scale_by_unit:
            return point.value
        factor = spec.scale_by_unit.get(point.unit)
        return point.value * factor if factor is not None else None


def family_of(product_name: str) -> Family | None:
    return next((f for f in FAMILIES if f.product.search(product_name.strip())), None)


def display_text(value: float) -> str:
    """A display value as myUplink's PATCH body carries it: ``-2``, ``21.5``."""
    rounded = round(value, 6)
    return str(int(rounded)) if float(rounded).is_integer() else repr(rounded)


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None
