"""A provider's payload read from a file: every complete delivery day in it, validated.

This is what ``hpsteer prices parse`` runs. The area comes from the caller or, where the payload
names it, from the payload (ENTSO-E's ``in_Domain`` EIC code; Energi Data Service's
``PriceArea``); Energy-Charts bodies do not name their zone, so the caller must. A payload is
refused as a whole: if any day in it fails validation, nothing is returned.
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Literal

from hpsteer.domain.market import PriceArea, delivery_day_bounds, market_date_of
from hpsteer.domain.prices import MarketDayPrices
from hpsteer.errors import FeedRejected, InvalidInput
from hpsteer.sources.prices import RawPriceSeries

__all__ = ["FeedKind", "parse_feed"]

FeedKind = Literal["entsoe", "energidataservice", "energycharts"]

_IN_DOMAIN = re.compile(rb"<(?:\w+:)?in_Domain\.mRID[^>]*>\s*([^<\s]+)\s*<")


def _entsoe_area(body: bytes) -> PriceArea:
    from hpsteer.sources.entsoe import EIC_CODES

    found = _IN_DOMAIN.search(body)
    if found is None:
        raise FeedRejected("entsoe: the document names no in_Domain; pass --area")
    eic = found.group(1).decode(errors="replace")
    for area, code in EIC_CODES.items():
        if code == eic:
            return area
    raise FeedRejected(f"entsoe: in_Domain {eic!r} is no price area hpsteer knows")


def _eds_areas(body: bytes) -> list[PriceArea]:
    from hpsteer.sources.energidataservice import EDS_AREA_NAMES

    try:
        data = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise FeedRejected(f"energidataservice: not JSON ({err})") from err
    records = data.get("records") if isinstance(data, dict) else data
    names = {r.get("PriceArea") for r in records or [] if isinstance(r, dict)}
    areas = [area for area, name in EDS_AREA_NAMES.items() if name in names]
    if not areas:
        raise FeedRejected("energidataservice: no record names a price area hpsteer knows")
    return areas


def _days(series: RawPriceSeries, fetched_at: datetime) -> list[MarketDayPrices]:
    from hpsteer.sources.price_validation import normalize_day

    days = sorted({market_date_of(series.area, start) for start, _ in series.points})
    return [normalize_day(series, day, fetched_at=fetched_at) for day in days]


def _entsoe_days(body: bytes, area: PriceArea, fetched_at: datetime) -> list[MarketDayPrices]:
    from hpsteer.sources.entsoe import choose_series, parse_a44
    from hpsteer.sources.price_validation import normalize_day

    document = parse_a44(body, area)
    if document.no_data_reason is not None:
        raise FeedRejected(f"entsoe: no data ({document.no_data_reason})")
    candidates = {
        market_date_of(area, period_start)
        for series in document.series
        for period_start, _ in series.periods
    }
    days = []
    for day in sorted(candidates):
        start_at, end_at = delivery_day_bounds(area, day)
        chosen = choose_series(document, start_at, end_at)
        if chosen is not None:
            days.append(normalize_day(chosen.raw, day, fetched_at=fetched_at))
    if not days:
        raise FeedRejected(f"entsoe: no complete {area} delivery day in the document")
    return days


def parse_feed(
    kind: FeedKind, body: bytes, area: PriceArea | None, *, fetched_at: datetime
) -> list[MarketDayPrices]:
    """Every delivery day in ``body``; FeedRejected (one line) for a bad payload."""
    if not body.strip():
        raise FeedRejected(f"{kind}: the file is empty")
    if kind == "entsoe":
        return _entsoe_days(body, area or _entsoe_area(body), fetched_at)
    if kind == "energidataservice":
        from hpsteer.sources.energidataservice import parse_day_ahead_prices, parse_elspotprices

        parse = parse_day_ahead_prices if b"DayAheadPrice" in body else parse_elspotprices
        areas = [area] if area else _eds_areas(body)
        return [day for a in areas for day in _days(parse(body, a), fetched_at)]
    if kind == "energycharts":
        from hpsteer.sources.energycharts import parse_price

        if area is None:
            raise InvalidInput("energycharts: the body does not name its zone; pass --area")
        return _days(parse_price(body, area), fetched_at)
    raise InvalidInput(f"unknown feed kind {kind!r}")
