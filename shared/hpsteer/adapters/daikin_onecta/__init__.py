"""Daikin Onecta: the adapter, its HTTP client and its management-point table.

``client`` speaks HTTP and OAuth2 (credentials from :mod:`hpsteer.adapters.credentials`),
``params`` holds the management points and characteristics as data, ``adapter`` translates
generic actions and unit state.
"""

from hpsteer.adapters.daikin_onecta.adapter import RATE_LIMITS, DaikinOnectaAdapter
from hpsteer.adapters.daikin_onecta.client import (
    OnectaClient,
    client_id_secret_name,
    client_secret_secret_name,
)

__all__ = [
    "RATE_LIMITS",
    "DaikinOnectaAdapter",
    "OnectaClient",
    "client_id_secret_name",
    "client_secret_secret_name",
]
