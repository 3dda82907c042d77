"""Errors as the API answers them: ``{"error": {"code", "message", "field", "details"}}``.

:class:`ApiError` carries an HTTP status and the body's fields; :func:`from_validation` turns
pydantic's errors into one naming the field (its location joined with dots, e.g.
``comfort.min_indoor_temp_c``), with every problem in ``details``.
"""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import ValidationError

from hpsteer.domain.operator_views import ErrorBody, ErrorDetail, ErrorInfo

__all__ = ["ApiError", "from_validation"]

_MAX_MESSAGE = 2000


class ApiError(Exception):
    """An answer other than success: status, stable code, a sentence, the field at fault."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        field: str | None = None,
        details: list[ErrorDetail] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message[:_MAX_MESSAGE]
        self.field = field
        self.details = details or []
        self.headers = dict(headers or {})

    def body(self) -> ErrorBody:
        return ErrorBody(
            error=ErrorInfo(
                code=self.code, message=self.message, field=self.field, details=self.details
            )
        )


def _field(loc: tuple[int | str, ...], prefix: str | None) -> str | None:
    parts = [str(part) for part in loc]
    if prefix:
        parts.insert(0, prefix)
    return ".".join(parts) or None


def from_validation(
    err: ValidationError, *, status: int, code: str, prefix: str | None = None
) -> ApiError:
    """One error naming the first problem's field; every problem in ``details``."""
    details = [
        ErrorDetail(field=_field(problem["loc"], prefix), message=problem["msg"])
        for problem in err.errors(include_url=False, include_input=False)
    ]
    first = details[0] if details else ErrorDetail(message="invalid")
    message = "; ".join(f"{d.field or '(body)'}: {d.message}" for d in details) or "invalid"
    return ApiError(status, code, message, field=first.field, details=details)
