"""Household tariffs: what a kWh costs on the bill, not only on the exchange.

A household pays the spot price plus a supplier markup, the grid company's time-of-use tariff,
flat per-kWh fees and taxes, and VAT on the sum. In Denmark the rest is often larger than the
spot price and peaks in the winter evening, so planning on spot alone moves heat to hours that
are cheap on the exchange and dear on the bill. Tariffs are data files (``data/tariffs/``), each
component versioned by the local date it took effect, so a backtest prices each day with the
values then in force.

API (stable; the planner, plans, backtest and report build on it)::

    from hpsteer.tariffs import load_tariff, available_tariffs

    available_tariffs()                     # ['de-ew-wanfried-14a-modul3', 'dk1-dinel', ...]
    tariff = load_tariff("dk1-n1")          # from $HPSTEER_TARIFFS_DIR or data/tariffs
    cached_tariff("dk1-n1")                 # the same, kept per process (re-read if a file changed)
    tariff.covers(start_at)                 # can it price the slot starting at this instant?
    tariff.effective_price_eur_per_kwh(start_at, spot_eur_per_mwh)   # EUR/kWh incl. VAT
    tariff.effective_prices(starts, spots)  # the same for many slots (cached per local date)
    tariff.breakdown(start_at, spot)        # PriceBreakdown(spot, markup, grid, taxes, vat, total)
    tariff.with_markup(0.05)                # a copy with a supplier markup (tariff currency/kWh)
    tariff.content_hash                     # names the values that price a slot (plan inputs)
    tariff.version_on(local_date)           # latest valid_from of the versions in force that day

Effective price per slot, EUR/kWh = (spot + markup + grid + taxes) x (1 + VAT), where grid and
taxes are converted from the tariff's currency with the exchange rate in force on the slot's
local date, and the band is the one of the slot's local start hour in the tariff's time zone
(daylight-saving days included; a 15-minute slot takes the band of the hour it starts in).
``start_at`` must be timezone-aware. Every error (missing or unknown file, bad TOML, a missing or
invalid field, an instant outside the data) is a :class:`TariffError` naming the file and field.
Provenance travels with the tariff: ``sources``, ``retrieved``, ``unconfirmed``, ``estimated``.
"""

from hpsteer.tariffs.errors import TariffError, TariffNotInForce, UnknownTariff
from hpsteer.tariffs.files import (
    ENV_DIRECTORY,
    available_tariffs,
    cached_tariff,
    default_directory,
    load_tariff,
)
from hpsteer.tariffs.model import PriceBreakdown
from hpsteer.tariffs.tariff import Tariff

__all__ = [
    "ENV_DIRECTORY",
    "PriceBreakdown",
    "Tariff",
    "TariffError",
    "TariffNotInForce",
    "UnknownTariff",
    "available_tariffs",
    "cached_tariff",
    "default_directory",
    "load_tariff",
]
