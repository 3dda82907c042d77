"""Construction-time checks shared by the thermal dataclasses.

Every check raises :class:`ValueError` with a message that names the offending field, so an absurd
parameter (negative capacity, zero conductance, NaN) is refused where it is built, not discovered
as a NaN temperature hours later.
"""

from __future__ import annotations

import math

__all__ = ["require_finite", "require_fraction", "require_non_negative", "require_positive"]


def require_finite(name: str, value: float) -> None:
    if not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")


def require_positive(name: str, value: float) -> None:
    require_finite(name, value)
    if value <= 0:
        raise ValueError(f"{name} must be > 0, got {value!r}")


def require_non_negative(name: str, value: float) -> None:
    require_finite(name, value)
    if value < 0:
        raise ValueError(f"{name} must be >= 0, got {value!r}")


def require_fraction(name: str, value: float) -> None:
    require_finite(name, value)
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must lie in [0, 1], got {value!r}")
