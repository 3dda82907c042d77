"""Document values as JSON: for the local store's SQLite file and both stores' query cursors.

Datetimes become ``{"$dt": "<ISO UTC>"}``; a map that has keys starting with ``$`` is wrapped as
``{"$map": {...}}`` so that it can never be mistaken for an encoded datetime.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from hpsteer.domain.instants import format_instant, parse_instant

__all__ = ["decode_value", "encode_value"]


def encode_value(value: Any) -> Any:
    """JSON-ready form: datetimes become ``{"$dt": iso}``; maps with ``$`` keys are wrapped."""
    if isinstance(value, datetime):
        return {"$dt": format_instant(value)}
    if isinstance(value, list):
        return [encode_value(v) for v in value]
    if isinstance(value, dict):
        encoded = {k: encode_value(v) for k, v in value.items()}
        return {"$map": encoded} if any(k.startswith("$") for k in value) else encoded
    return value


def decode_value(value: Any) -> Any:
    """The inverse of :func:`encode_value`."""
    if isinstance(value, list):
        return [decode_value(v) for v in value]
    if isinstance(value, dict):
        if len(value) == 1 and "$dt" in value:
            return parse_instant(value["$dt"])
        if len(value) == 1 and "$map" in value:
            value = value["$map"]
        return {k: decode_value(v) for k, v in value.items()}
    return value
