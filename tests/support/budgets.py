"""Rate limits the budget specs share.

``VICARE``: ViCare's basic plan (120 calls per 10 minutes, 1,450 a day, per account), 30 % of it
the read share: 36 reads per 10 minutes and 435 a day; the command share is 84 per 10 minutes
and 1,015 a day. No ``block_for``: these specs are about shares and bookings, not about blocks.
"""

from __future__ import annotations

from datetime import timedelta

from hpsteer.adapters.protocol import RateLimitConfig, RateWindow

__all__ = ["VICARE"]

VICARE = RateLimitConfig(
    windows=(
        RateWindow(limit=120, window=timedelta(minutes=10)),
        RateWindow(limit=1450, window=timedelta(hours=24)),
    ),
    read_share=0.3,
)
