"""What hpsteer can ask of a heat pump, before any manufacturer's vocabulary.

A cloud API cannot set compressor power; it can move the heat pump's own controller. The three
modes shift the comfort setpoint the controller regulates to (``min`` lets the home run cooler,
``max`` stores heat), and ``boost_dhw`` asks for a one-time hot-water charge. Each manufacturer
adapter translates a :class:`GenericAction` into its own payload.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = ["GenericAction", "Mode"]


class Mode(StrEnum):
    MIN = "min"
    MID = "mid"
    MAX = "max"

    @property
    def setpoint_offset_k(self) -> float:
        """The shift of the comfort setpoint this mode stands for, in kelvin."""
        return _OFFSETS_K[self]

    @property
    def action(self) -> GenericAction:
        return _ACTIONS[self]


_OFFSETS_K: dict[Mode, float] = {Mode.MIN: -2.0, Mode.MID: 0.0, Mode.MAX: 2.0}


class GenericAction(StrEnum):
    SET_MODE_MIN = "set_mode_min"
    SET_MODE_MID = "set_mode_mid"
    SET_MODE_MAX = "set_mode_max"
    BOOST_DHW = "boost_dhw"

    @property
    def mode(self) -> Mode | None:
        """The mode this action sets, or None for hot-water boost."""
        return _MODES.get(self)


_ACTIONS: dict[Mode, GenericAction] = {
    Mode.MIN: GenericAction.SET_MODE_MIN,
    Mode.MID: GenericAction.SET_MODE_MID,
    Mode.MAX: GenericAction.SET_MODE_MAX,
}
_MODES: dict[GenericAction, Mode] = {action: mode for mode, action in _ACTIONS.items()}
