"""What the operator's use cases refuse, by what the caller can do about it.

- :class:`UnknownTarget` (a :class:`~hpsteer.errors.NotFound`): the device or alert does not
  exist (or the device was deleted): HTTP 404.
- :class:`Conflict`: the request contradicts what is stored (a registration that differs from
  the one of the same manufacturer device, an id taken by another device, a re-plan of a device
  whose steering is off): HTTP 409.
- :class:`Refused` (an :class:`~hpsteer.errors.InvalidInput`): a well-formed request naming
  something hpsteer cannot use, e.g. an account whose credentials it does not hold: HTTP 422,
  with the field at fault.
"""

from __future__ import annotations

from hpsteer.errors import InvalidInput, NotFound, PermanentError

__all__ = ["Conflict", "Refused", "UnknownTarget"]


class UnknownTarget(NotFound):
    def __init__(self, message: str, *, code: str = "not_found") -> None:
        super().__init__(message)
        self.code = code


class Conflict(PermanentError):
    def __init__(self, message: str, *, code: str = "conflict", field: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.field = field


class Refused(InvalidInput):
    def __init__(self, message: str, *, code: str, field: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.field = field
