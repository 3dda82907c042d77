"""What ``hpsteer devices …`` and ``hpsteer alerts …`` ask, whichever backend answers.

The operator's commands talk to one interface, :class:`OperatorClient`, with two transports:

- :class:`~hpsteer.runtime.operator_local.LocalClient` runs the operator's services
  (:mod:`hpsteer.services.operator`) in-process on a local run's store, as the fixed local admin;
- :class:`~hpsteer.runtime.operator_http.ApiClient` calls the deployed operator API over HTTP
  with the caller's Google ID token.

Both take the API's request models and answer its read models (:mod:`hpsteer.domain.
operator_requests`, :mod:`hpsteer.domain.operator_views`), and both refuse with an
:class:`ApiRefusal` carrying what the API would answer (status, code, field), so a command
prints the same line whichever transport it used. What the command line cannot do at all (no
store, no token, an unreachable API) is a :class:`ClientError`: one line, no HTTP status.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:  # the command line's parser imports this module: it stays light
    from hpsteer.domain.operator_requests import (
        AlertListQuery,
        DeviceListQuery,
        DeviceRegistration,
        DeviceUpdate,
    )
    from hpsteer.domain.operator_views import (
        AlertsPage,
        AlertView,
        DeletedDevice,
        DevicesPage,
        DeviceStatus,
        DeviceView,
        ImportReport,
    )

__all__ = [
    "TOKEN_ENV",
    "ApiRefusal",
    "ClientError",
    "OperatorClient",
    "Registration",
    "one_line",
]

TOKEN_ENV = "HPSTEER_ID_TOKEN"
"""The environment variable that may hold the caller's Google ID token (``--api``)."""


def one_line(text: str, limit: int = 600) -> str:
    """``text`` on one line (whitespace runs joined), cut to ``limit`` characters."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


class ClientError(Exception):
    """The command cannot be carried out; ``line`` says why in one line."""

    def __init__(self, line: str) -> None:
        super().__init__(line)
        self.line = one_line(line)


class ApiRefusal(ClientError):
    """A refusal as the API answers it: the HTTP status, the error's stable code, its sentence
    and the field at fault (dotted, e.g. ``comfort.min_indoor_temp_c``) when there is one."""

    def __init__(self, status: int, code: str, message: str, field: str | None = None) -> None:
        self.status = status
        self.code = code
        self.message = one_line(message)
        self.field = field
        named = field is None or self.message.startswith(f"{field}:")
        where = "" if named else f" ({field})"
        super().__init__(f"{status} {code}{where}: {self.message}")


@dataclass(frozen=True, slots=True)
class Registration:
    device: DeviceView
    created: bool
    """False: the same registration was stored before (the API answers 200, not 201)."""


class OperatorClient(Protocol):
    """The operator's operations (the API's routes of the same names)."""

    def list_devices(self, query: DeviceListQuery) -> DevicesPage: ...

    def register_device(self, registration: DeviceRegistration) -> Registration: ...

    def import_devices(self, csv: bytes) -> ImportReport:
        """Register the rows of a UTF-8 CSV file (``POST /v1/device-imports``)."""
        ...

    def device_status(self, device_id: str) -> DeviceStatus: ...

    def set_steering(self, device_id: str, enabled: bool) -> DeviceView: ...

    def update_device(self, device_id: str, update: DeviceUpdate) -> DeviceView: ...

    def delete_device(self, device_id: str) -> DeletedDevice: ...

    def list_alerts(self, query: AlertListQuery) -> AlertsPage: ...

    def acknowledge_alert(self, alert_id: str, note: str | None) -> AlertView: ...

    def take_notes(self) -> list[str]:
        """What the caller should be told about the last operations beyond their answers (the
        local transport: work it recorded but could not deliver); emptied by the call."""
        ...

    def close(self) -> None: ...
