"""Viessmann ViCare: the adapter, its HTTP client and its feature table.

``client`` speaks HTTP and OAuth2 (credentials from :mod:`hpsteer.adapters.credentials`),
``params`` holds the feature table as data, ``adapter`` translates generic actions and device
state.
"""

from hpsteer.adapters.viessmann.adapter import (
    RATE_LIMITS,
    BaselineBook,
    MemoryBaselineBook,
    ViessmannAdapter,
)
from hpsteer.adapters.viessmann.client import (
    ViCareClient,
    client_id_secret_name,
)

__all__ = [
    "RATE_LIMITS",
    "BaselineBook",
    "MemoryBaselineBook",
    "ViCareClient",
    "ViessmannAdapter",
    "client_id_secret_name",
]
