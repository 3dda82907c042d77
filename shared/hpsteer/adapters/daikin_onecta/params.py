"""Onecta's management points and characteristics as data: which characteristic carries each
generic action, where each reading lives, and a pure reader of one gateway device's document.

A unit (``GET /v1/gateway-devices`` element) has management points, each ``{embeddedId,
managementPointType, <characteristic>: {settable, value, …}}``. Heating lives on the point of type
``climateControl`` (embedded id ``climateControlMainZone`` on an Altherma), hot water on
``domesticHotWaterTank`` (or ``domesticHotWaterFlowThrough``). Setpoints are nested inside the
``temperatureControl`` characteristic: ``value.operationModes.<mode>.setpoints.<setpoint>`` with
``settable``, ``value``, ``minValue``, ``maxValue``, ``stepValue``; a PATCH names that nesting as
``path`` (``/operationModes/heating/setpoints/roomTemperature``).

**The mode rule** (model differences are rows, not branches). A :class:`Mode` is a shift of the
room comfort setpoint by -2/0/+2 K. The operation mode steered is the unit's own
``operationMode`` if it is in :data:`STEERED_OPERATION_MODES` (``heating``, ``auto``); a unit that
is cooling is not steered (the planner models heating: in cooling the same shift spends energy
the other way). Within it, the first row of :data:`SETPOINT_LEVERS` whose conditions hold and
whose setpoint is ``settable`` wins:

1. ``roomTemperature`` when the unit is room-controlled (``controlMode`` ``roomTemperature`` or
   ``externalRoomTemperature``): target = baseline + offset, the very quantity the planner's
   controller model uses.
2. ``leavingWaterOffset`` when the unit runs weather-dependent (``setpointMode``
   ``weatherDependent`` or ``weatherDependentHeatingFixedCooling``): the shift of the heating
   curve, target = baseline + offset · ``k_per_room_k``. With ``k_per_room_k`` = 1 this is the
   reference's "base ± 2" (reference/manufacturer-apis.md §5); how far a room moves per kelvin of
   curve shift is **uncalibrated** and must be identified per house.

The recorded units resolve like this (tests/fixtures/oem/daikin_onecta):

========================  ================  ==========================  ====================
file                      operationMode     set_mode_* lever            boost_dhw
========================  ================  ==========================  ====================
altherma.json             cooling           none (cooling not steered)  powerfulMode "on"
altherma3m.json           heating           leavingWaterOffset          powerfulMode "on"
altherma_boost.json       heating           roomTemperature             powerfulMode "on"
altherma_schedule.json    heating           roomTemperature             powerfulMode "on"
========================  ================  ==========================  ====================

Targets are snapped to ``stepValue`` (counted from ``minValue``) and clamped to
``[minValue, maxValue]``: a household whose own setting sits at the bottom of the range gets the
nearest value the unit accepts, and :meth:`offset_range` tells the planner the real reach.
Unconfirmed: that ``leavingWaterTemperature`` setpoints (fixed leaving-water control) should be
steered, and with which gain: such units are left unsteered.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

__all__ = [
    "CLIMATE_POINT_TYPE",
    "DHW_BOOST",
    "DHW_POINT_TYPES",
    "DHW_TEMPERATURE",
    "HEAT_PUMP_MODELS",
    "HEAT_PUMP_POINT_TYPES",
    "INDOOR_TEMPERATURE",
    "MAIN_ZONE_SUBTYPE",
    "ON_OFF",
    "OUTDOOR_TEMPERATURE",
    "SETPOINT_LEVERS",
    "STEERED_OPERATION_MODES",
    "SUPPLY_TEMPERATURE",
    "TEMPERATURE_CONTROL",
    "EnumChoice",
    "GatewayDevice",
    "Reading",
    "SetpointLever",
    "setpoint_path",
]

CLIMATE_POINT_TYPE: Final = "climateControl"
MAIN_ZONE_SUBTYPE: Final = "mainZone"
"""``managementPointSubType`` of the main zone (``climateControlMainZone``), preferred."""
DHW_POINT_TYPES: Final = ("domesticHotWaterTank", "domesticHotWaterFlowThrough")
HEAT_PUMP_POINT_TYPES: Final = frozenset({"indoorUnitHydro", *DHW_POINT_TYPES})
HEAT_PUMP_MODELS: Final = frozenset({"Altherma"})
"""Discovery keeps a unit whose ``deviceModel`` is here or that has a hydro/hot-water point (the
dx4 air conditioners of altherma.json have neither)."""

TEMPERATURE_CONTROL: Final = "temperatureControl"
OPERATION_MODE: Final = "operationMode"
CONTROL_MODE: Final = "controlMode"
SETPOINT_MODE: Final = "setpointMode"
ON_OFF: Final = "onOffMode"
STEERED_OPERATION_MODES: Final = ("heating", "auto")


@dataclass(frozen=True, slots=True)
class SetpointLever:
    """A setpoint inside ``temperatureControl`` that carries set_mode_*, and when it applies."""

    name: str
    setpoint: str
    control_modes: frozenset[str] | None
    """The unit's ``controlMode`` values for which this lever applies (None: any)."""
    setpoint_modes: frozenset[str] | None
    """The unit's ``setpointMode`` values for which this lever applies (None: any)."""
    k_per_room_k: float = 1.0
    """Units of the setpoint that stand for one kelvin of room offset."""
    is_room_setpoint: bool = False


SETPOINT_LEVERS: Final[tuple[SetpointLever, ...]] = (
    SetpointLever(
        name="room_temperature",
        setpoint="roomTemperature",
        control_modes=frozenset({"roomTemperature", "externalRoomTemperature"}),
        setpoint_modes=None,
        is_room_setpoint=True,
    ),
    SetpointLever(
        name="leaving_water_offset",
        setpoint="leavingWaterOffset",
        control_modes=None,
        setpoint_modes=frozenset({"weatherDependent", "weatherDependentHeatingFixedCooling"}),
    ),
)
"""Candidates for set_mode_*, in order of preference (see the module docstring)."""


@dataclass(frozen=True, slots=True)
class EnumChoice:
    """A characteristic set to one of its ``values`` on points of the given types."""

    point_types: tuple[str, ...]
    characteristic: str
    value: str


DHW_BOOST: Final = EnumChoice(DHW_POINT_TYPES, "powerfulMode", "on")
"""boost_dhw: the hot-water "powerful" mode (``isPowerfulModeActive`` reports it running)."""


@dataclass(frozen=True, slots=True)
class Reading:
    """A number inside ``sensoryData.value`` of the first point of one of ``point_types``."""

    point_types: tuple[str, ...]
    key: str
    characteristic: str = "sensoryData"


OUTDOOR_TEMPERATURE: Final = Reading((CLIMATE_POINT_TYPE,), "outdoorTemperature")
INDOOR_TEMPERATURE: Final = Reading((CLIMATE_POINT_TYPE,), "roomTemperature")
"""Only on room-controlled units (altherma3m.json has none)."""
SUPPLY_TEMPERATURE: Final = Reading((CLIMATE_POINT_TYPE,), "leavingWaterTemperature")
DHW_TEMPERATURE: Final = Reading(DHW_POINT_TYPES, "tankTemperature")


def setpoint_path(operation_mode: str, setpoint: str) -> str:
    """The PATCH ``path`` of a setpoint inside ``temperatureControl``."""
    return f"/operationModes/{operation_mode}/setpoints/{setpoint}"


def number(value: Any) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


class GatewayDevice:
    """One unit's document, with the few readers the adapter needs. Pure."""

    def __init__(self, document: Mapping[str, Any]) -> None:
        self.document = document
        points = document.get("managementPoints")
        self._points: list[Mapping[str, Any]] = [
            p for p in (points if isinstance(points, list) else []) if isinstance(p, Mapping)
        ]

    @property
    def device_id(self) -> str:
        return str(self.document.get("id", ""))

    @property
    def model(self) -> str:
        return str(self.document.get("deviceModel", "unknown"))

    @property
    def online(self) -> bool:
        connection = self.document.get("isCloudConnectionUp")
        return isinstance(connection, Mapping) and connection.get("value") is True

    def is_heat_pump(self) -> bool:
        return self.model in HEAT_PUMP_MODELS or any(
            p.get("managementPointType") in HEAT_PUMP_POINT_TYPES for p in self._points
        )

    def point(self, embedded_id: str) -> Mapping[str, Any] | None:
        return next((p for p in self._points if p.get("embeddedId") == embedded_id), None)

    def point_of_types(self, types: tuple[str, ...]) -> Mapping[str, Any] | None:
        return next((p for p in self._points if p.get("managementPointType") in types), None)

    def climate_point(self, embedded_id: str | None = None) -> Mapping[str, Any] | None:
        """The named point, else the main-zone climateControl point, else the first one."""
        if embedded_id:
            found = self.point(embedded_id)
            return found if _type(found) == CLIMATE_POINT_TYPE else None
        climate = [p for p in self._points if _type(p) == CLIMATE_POINT_TYPE]
        main = [p for p in climate if p.get("managementPointSubType") == MAIN_ZONE_SUBTYPE]
        candidates = main or climate
        return candidates[0] if candidates else None

    @staticmethod
    def characteristic(point: Mapping[str, Any] | None, name: str) -> Mapping[str, Any] | None:
        found = point.get(name) if point is not None else None
        return found if isinstance(found, Mapping) else None

    @classmethod
    def plain(cls, point: Mapping[str, Any] | None, name: str) -> Any:
        """A characteristic's ``value`` (``operationMode`` → ``"heating"``)."""
        found = cls.characteristic(point, name)
        return found.get("value") if found is not None else None

    @classmethod
    def setpoint(
        cls, point: Mapping[str, Any] | None, operation_mode: str, setpoint: str
    ) -> Mapping[str, Any] | None:
        control = cls.plain(point, TEMPERATURE_CONTROL)
        found: Any = control
        for key in ("operationModes", operation_mode, "setpoints", setpoint):
            found = found.get(key) if isinstance(found, Mapping) else None
        return found if isinstance(found, Mapping) else None

    def read(self, reading: Reading, point: Mapping[str, Any] | None = None) -> float | None:
        source = point if point is not None else self.point_of_types(reading.point_types)
        values = self.plain(source, reading.characteristic)
        entry = values.get(reading.key) if isinstance(values, Mapping) else None
        return number(entry.get("value")) if isinstance(entry, Mapping) else None


def _type(point: Mapping[str, Any] | None) -> Any:
    return point.get("managementPointType") if point is not None else None
