"""ViCare's feature table as data: which feature and command carry each generic action, and
where each reading lives, with the names of both feature generations (E3/One Base and legacy).

Model differences are rows, not branches: a table lists candidates in order of preference and the
first one that the device's own feature list shows *enabled* with an *executable* command wins.
The five recorded Vitocals (tests/fixtures/oem/viessmann_vicare) resolve like this:

============================  ==========  =============================  ===================
model                         circuit     set_mode_* lever               boost_dhw
============================  ==========  =============================  ===================
Vitocal 151-A, 222-S, 250-A   0           programs.normalHeating (E3)    oneTimeCharge/activate
Vitocal 200-S                 0           programs.normal (legacy)       oneTimeCharge/activate
Vitocal 300-G (CU401B)        1           programs.normal (legacy)       oneTimeCharge/activate
============================  ==========  =============================  ===================

**The mode mapping.** A :class:`~hpsteer.domain.actions.Mode` is a shift of the *room* comfort
setpoint by -2/0/+2 K. ViCare offers two levers (reference/manufacturer-apis.md §1.4, §5):

1. the comfort program's room setpoint, ``heating.circuits.N.operating.programs.normalHeating``
   (E3) or ``…programs.normal`` (legacy), command ``setTemperature {"targetTemperature": t}``:
   ``t = baseline + offset``. This *is* a room-setpoint offset around the comfort setpoint, the
   quantity the planner's controller model uses (target = setpoint + offset), so it is preferred.
   It acts while the comfort program runs; while the household's schedule runs the reduced
   program, the offset does not act (as the household's own setting would not).
2. the heating-curve level, ``heating.circuits.N.heating.curve`` / ``setCurve {"shift", "slope"}``
   (both required; the slope is re-sent unchanged). The usual weather-compensation curve is
   ``T_flow ≈ T_room_set + shift + slope · (T_room_set - T_outdoor)``, so a room-setpoint change
   of Δ K moves the flow temperature by about Δ · (1 + slope) K; the shift change standing for a
   room offset of Δ K is therefore ``round(Δ · (1 + slope))`` (integer shift steps). The linear
   form is an approximation of Viessmann's curve (its exact curve is **unconfirmed** here) and the
   effect on the room must be identified per house anyway. Used only where no comfort program
   offers an executable ``setTemperature``.

Offsets are relative to the household's **baseline**: the lever's value read from the device
before hpsteer's first write (see :mod:`hpsteer.adapters.viessmann.adapter`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

__all__ = [
    "CIRCUITS_FEATURE",
    "DHW_BOOST",
    "DHW_TEMPERATURE",
    "HEAT_PUMP_MODEL",
    "HEAT_PUMP_ROLE",
    "INDOOR_TEMPERATURE",
    "OUTDOOR_TEMPERATURE",
    "POWER",
    "SETPOINT_LEVERS",
    "SUPPLY_TEMPERATURE",
    "CommandChoice",
    "FeatureSet",
    "Reading",
    "SetpointLever",
]


@dataclass(frozen=True, slots=True)
class SetpointLever:
    """A feature whose command moves the comfort setpoint; ``{circuit}`` is the circuit index."""

    name: str
    feature: str
    command: str
    value_param: str
    """The command parameter that carries the new value."""
    value_property: str
    """The feature property that reports the current value (the baseline before steering)."""
    carried_params: tuple[str, ...] = ()
    """Other required parameters, re-sent with their current value (setCurve needs the slope)."""
    gain_property: str | None = None
    """None: one room kelvin is one unit of the value. Else the value moves by
    ``offset · (1 + property)`` (the curve's slope), rounded to the command's stepping."""
    family: str = ""

    def feature_for(self, circuit: str) -> str:
        return self.feature.format(circuit=circuit)


SETPOINT_LEVERS: Final[tuple[SetpointLever, ...]] = (
    SetpointLever(
        name="program_normalHeating",
        feature="heating.circuits.{circuit}.operating.programs.normalHeating",
        command="setTemperature",
        value_param="targetTemperature",
        value_property="temperature",
        family="E3/One Base",
    ),
    SetpointLever(
        name="program_normal",
        feature="heating.circuits.{circuit}.operating.programs.normal",
        command="setTemperature",
        value_param="targetTemperature",
        value_property="temperature",
        family="legacy",
    ),
    SetpointLever(
        name="curve_shift",
        feature="heating.circuits.{circuit}.heating.curve",
        command="setCurve",
        value_param="shift",
        value_property="shift",
        carried_params=("slope",),
        gain_property="slope",
        family="E3 and legacy (fallback)",
    ),
)
"""Candidates for set_mode_*, in order of preference (see the module docstring)."""


@dataclass(frozen=True, slots=True)
class CommandChoice:
    feature: str
    command: str
    params: Mapping[str, Any] = field(default_factory=dict)


DHW_BOOST: Final[tuple[CommandChoice, ...]] = (
    CommandChoice("heating.dhw.oneTimeCharge", "activate", {}),
    CommandChoice("heating.dhw.oneTimeCharge", "setActive", {"active": True}),  # E3 only
)
"""Candidates for boost_dhw: the one-time hot-water charge (PyViCare ``activateOneTimeCharge``)."""


@dataclass(frozen=True, slots=True)
class Reading:
    """Where a quantity is read: candidate features (first with a value wins) and a property."""

    features: tuple[str, ...]
    property: str = "value"
    scale_by_unit: Mapping[str, float] = field(default_factory=dict)
    """Unit → factor to hpsteer's unit; empty: take the number as it is."""


HEAT_PUMP_ROLE: Final = "type:heatpump"
HEAT_PUMP_MODEL: Final = re.compile(r"Vitocal|CU401B|VBC70|V200WO1A")
"""Discovery keeps a gateway's device when its ``roles`` name a heat pump or its ``modelId``
matches (openviess/PyViCare ``PyViCareDeviceConfig.py``, reference §1.2)."""

CIRCUITS_FEATURE: Final = "heating.circuits"
"""Its property ``enabled`` lists the circuits in use (Vitocal 300-G: only ``["1"]``)."""
OUTDOOR_TEMPERATURE: Final = Reading(("heating.sensors.temperature.outside",))
INDOOR_TEMPERATURE: Final = Reading(("heating.circuits.{circuit}.sensors.temperature.room",))
SUPPLY_TEMPERATURE: Final = Reading(
    (
        "heating.circuits.{circuit}.sensors.temperature.supply",
        "heating.secondaryCircuit.sensors.temperature.supply",
    )
)
DHW_TEMPERATURE: Final = Reading(
    (
        "heating.dhw.sensors.temperature.dhwCylinder",  # E3 / One Base
        "heating.dhw.sensors.temperature.hotWaterStorage",  # legacy (also present on E3)
    )
)
POWER: Final = Reading(
    ("heating.inverters.0.sensors.power.output",),
    scale_by_unit={"watt": 0.001, "kilowatt": 1.0},
)
"""Electric power into the compressor (E3). ``heating.compressors.0.power`` is the *nominal*
rating and ``…sensors.power`` a modulation percentage: neither is used as power."""


class FeatureSet:
    """A device's features by name, with the few readers the adapter needs. Pure."""

    def __init__(self, features: Iterable[Mapping[str, Any]]) -> None:
        self._by_name: dict[str, Mapping[str, Any]] = {}
        for feature in features:
            name = feature.get("feature")
            if isinstance(name, str):
                self._by_name[name] = feature

    def __len__(self) -> int:
        return len(self._by_name)

    def enabled(self, name: str) -> Mapping[str, Any] | None:
        feature = self._by_name.get(name)
        return feature if feature is not None and feature.get("isEnabled") is True else None

    def property_value(self, name: str, prop: str = "value") -> Any:
        feature = self.enabled(name)
        if feature is None:
            return None
        properties = feature.get("properties")
        entry = properties.get(prop) if isinstance(properties, Mapping) else None
        return entry.get("value") if isinstance(entry, Mapping) else None

    def number(self, name: str, prop: str = "value") -> float | None:
        value = self.property_value(name, prop)
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        return None

    def command(self, name: str, command: str) -> Mapping[str, Any] | None:
        """The command's description (``isExecutable``, ``params``), if the feature is enabled."""
        feature = self.enabled(name)
        commands = feature.get("commands") if feature is not None else None
        found = commands.get(command) if isinstance(commands, Mapping) else None
        return found if isinstance(found, Mapping) else None

    def executable(self, name: str, command: str) -> Mapping[str, Any] | None:
        found = self.command(name, command)
        return found if found is not None and found.get("isExecutable") is True else None

    def circuits(self) -> tuple[str, ...]:
        value = self.property_value(CIRCUITS_FEATURE, "enabled")
        if isinstance(value, list):
            return tuple(str(circuit) for circuit in value)
        return ()

    def read(self, reading: Reading, circuit: str) -> float | None:
        for template in reading.features:
            name = template.format(circuit=circuit)
            value = self.number(name, reading.property)
            if value is None:
                continue
            if not reading.scale_by_unit:
                return value
            feature = self.enabled(name) or {}
            unit = feature.get("properties", {}).get(reading.property, {}).get("unit")
            factor = reading.scale_by_unit.get(unit) if isinstance(unit, str) else None
            if factor is not None:
                return value * factor
        return None
