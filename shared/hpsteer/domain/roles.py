"""Who may do what in the operator API: three roles, ordered, and the role each operation needs.

``viewer`` reads; ``operator`` also changes devices (register, comfort, steering), acknowledges
alerts and asks for re-plans; ``admin`` also deletes devices and imports them in bulk. A role
allows every operation its rank reaches (:meth:`Role.allows`). The caller's role comes from
configuration (``Settings.api_roles``), never from the request.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final

__all__ = ["REQUIRED_ROLE", "Operation", "Role"]


class Role(StrEnum):
    VIEWER = "viewer"
    OPERATOR = "operator"
    ADMIN = "admin"

    @property
    def rank(self) -> int:
        return _RANKS[self]

    def allows(self, operation: Operation) -> bool:
        return self.rank >= REQUIRED_ROLE[operation].rank


_RANKS: Final[dict[Role, int]] = {Role.VIEWER: 0, Role.OPERATOR: 1, Role.ADMIN: 2}


class Operation(StrEnum):
    """What a request does; also the ``operation`` of the audit event a change writes."""

    READ = "read"
    REGISTER_DEVICE = "register_device"
    UPDATE_DEVICE = "update_device"
    ENABLE_STEERING = "enable_steering"
    DISABLE_STEERING = "disable_steering"
    DELETE_DEVICE = "delete_device"
    IMPORT_DEVICES = "import_devices"
    ACKNOWLEDGE_ALERT = "acknowledge_alert"
    REPLAN = "replan"


REQUIRED_ROLE: Final[dict[Operation, Role]] = {
    Operation.READ: Role.VIEWER,
    Operation.REGISTER_DEVICE: Role.OPERATOR,
    Operation.UPDATE_DEVICE: Role.OPERATOR,
    Operation.ENABLE_STEERING: Role.OPERATOR,
    Operation.DISABLE_STEERING: Role.OPERATOR,
    Operation.ACKNOWLEDGE_ALERT: Role.OPERATOR,
    Operation.REPLAN: Role.OPERATOR,
    Operation.DELETE_DEVICE: Role.ADMIN,
    Operation.IMPORT_DEVICES: Role.ADMIN,
}
"""The least role each operation needs."""
