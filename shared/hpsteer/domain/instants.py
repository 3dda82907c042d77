"""Instants: every datetime inside hpsteer is timezone-aware and in UTC.

Values from outside (messages, documents, provider feeds) pass through :func:`ensure_utc`, which
refuses naive datetimes instead of guessing their zone, and :func:`parse_instant`, which accepts
ISO 8601 with an offset or ``Z``. :func:`format_instant` writes the canonical form stored in
documents (``2024-01-15T23:00:00Z``): fixed width for whole seconds, so that ISO strings of
instants sort in time order.
"""

from __future__ import annotations

from datetime import UTC, datetime

from hpsteer.errors import InvalidInput, NaiveDatetime

__all__ = ["UTC", "ensure_utc", "format_instant", "instant_or_none", "parse_instant"]


def ensure_utc(value: datetime, *, field: str = "datetime") -> datetime:
    """Return ``value`` converted to UTC; raise :class:`NaiveDatetime` if it has no zone."""
    if value.tzinfo is None or value.tzinfo.utcoffset(value) is None:
        raise NaiveDatetime(f"{field} must be timezone-aware, got naive {value.isoformat()}")
    return value.astimezone(UTC)


def parse_instant(text: str, *, field: str = "datetime") -> datetime:
    """Parse an ISO 8601 instant that carries an offset (``Z`` allowed)."""
    try:
        parsed = datetime.fromisoformat(text)
    except (TypeError, ValueError) as err:
        raise InvalidInput(f"{field} is not an ISO 8601 instant: {text!r}") from err
    return ensure_utc(parsed, field=field)


def format_instant(value: datetime) -> str:
    """Canonical ISO form in UTC with a ``Z`` suffix; microseconds only when present."""
    utc = ensure_utc(value)
    spec = "microseconds" if utc.microsecond else "seconds"
    return utc.replace(tzinfo=None).isoformat(timespec=spec) + "Z"


def instant_or_none(value: object) -> datetime | None:
    """A stored instant as an aware UTC datetime: a timestamp, or an ISO string with an offset;
    ``None`` for anything else (a missing, naive or malformed value is no instant)."""
    if isinstance(value, datetime):
        return None if value.tzinfo is None else value.astimezone(UTC)
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
        return None if parsed.tzinfo is None else parsed.astimezone(UTC)
    return None
