"""Handing a heat pump back to its own control: one final ``set_mode_mid`` command.

When steering is disabled (or the device deleted), hpsteer sends the device back to the
household's own setting with one command through the normal command path. Its id names the
change that asked for it (``handback-r{revision}``, the device's revision after the change), so
a repeated disable finds the same command and creates no second one, while disabling again
after a re-enable hands back anew.

Dispatch supersedes every command of a device whose steering is off, since such a command would
steer; the hand-back is the one exception it must make, and :func:`is_hand_back` is how it knows.
"""

from __future__ import annotations

from typing import Final

from hpsteer.domain.actions import GenericAction

__all__ = ["HAND_BACK_ACTION", "HAND_BACK_PREFIX", "hand_back_command_id", "is_hand_back"]

HAND_BACK_PREFIX: Final = "handback-"
HAND_BACK_ACTION: Final = GenericAction.SET_MODE_MID
"""``mid``: the household's own setpoint, no offset (the heat pump's own control)."""


def hand_back_command_id(revision: int) -> str:
    return f"{HAND_BACK_PREFIX}r{revision:06d}"


def is_hand_back(command_id: str) -> bool:
    return command_id.startswith(HAND_BACK_PREFIX)
