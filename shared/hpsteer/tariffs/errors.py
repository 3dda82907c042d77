"""Why a tariff could not be used: one exception type, so callers catch one thing.

Every message names the file and the field (``data/tariffs/dk1-n1.toml: grid[2].seasons[0]
.bands[1].hours: ...``) so that whoever maintains the data files can fix them without reading
code. A tariff that is valid but asked about an instant outside the period its data covers raises
the subclass :class:`TariffNotInForce`.
"""

from __future__ import annotations

from hpsteer.errors import InvalidInput

__all__ = ["TariffError", "TariffNotInForce", "UnknownTariff"]


class TariffError(InvalidInput):
    """A tariff file is missing, unreadable or invalid, or a tariff cannot price an instant."""


class UnknownTariff(TariffError):
    """No tariff file has the id asked for."""


class TariffNotInForce(TariffError):
    """The tariff's data does not cover the instant asked about (before its first values, or
    after the date its data runs to)."""
