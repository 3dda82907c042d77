"""NIBE via myUplink: the adapter, its HTTP client and its point table.

``client`` speaks HTTP and OAuth2 (credentials from :mod:`hpsteer.adapters.credentials`),
``params`` holds the points per product family as data, ``adapter`` translates generic actions
and device state.
"""

from hpsteer.adapters.nibe_myuplink.adapter import (
    RATE_LIMITS,
    BaselineBook,
    MemoryBaselineBook,
    NibeMyUplinkAdapter,
)
from hpsteer.adapters.nibe_myuplink.client import (
    MyUplinkClient,
    client_id_secret_name,
    client_secret_secret_name,
)

__all__ = [
    "RATE_LIMITS",
    "BaselineBook",
    "MemoryBaselineBook",
    "MyUplinkClient",
    "NibeMyUplinkAdapter",
    "client_id_secret_name",
    "client_secret_secret_name",
]
