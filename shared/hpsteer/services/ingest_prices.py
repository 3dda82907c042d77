"""Ingest day-ahead prices: fetch from the area's sources in order, store, record, announce.

For each area of a :class:`~hpsteer.domain.messages.PriceIngestRequest`:

1. choose the day: the requested one, else tomorrow (market-local), and today as well when today
   is not stored yet (a missed run yesterday is caught up);
2. ask the area's sources in order; a source that is unavailable, or whose feed is rejected
   (malformed, incomplete), hands over to the next; ``None`` from every source means "not
   published yet", a normal outcome;
3. store the day idempotently on its content hash (:mod:`hpsteer.services.price_days`), append
   its slots to the analytics table ``spot_prices`` (insert ids make repeats harmless), and
   publish ``spot-price-updates`` for a version not yet announced; the announcement is recorded
   after publishing, so a crash in between announces again on redelivery rather than never.

A run at or after 15:00 market time (:data:`PRICES_DUE_BY`) that still finds no prices for
tomorrow counts ``prices_missing_total`` (label area) and logs an error: the alert policy
"prices missing for tomorrow" watches the counter, so the schedule must ask once after 15:00.

A transient failure of every source for some area does not stop the other areas; it is raised at
the end as :class:`~hpsteer.errors.ProviderUnavailable` so that Pub/Sub delivers again.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, time, timedelta
from typing import Literal

from hpsteer.domain.market import PriceArea, market_date_of
from hpsteer.domain.messages import PriceIngestRequest, SpotPricesUpdated, Topic
from hpsteer.domain.prices import MarketDayPrices
from hpsteer.errors import FeedRejected, InvalidInput, ProviderUnavailable
from hpsteer.messaging.envelope import PubSubMessage
from hpsteer.observability.logging import log_context
from hpsteer.observability.metrics import PRICES_MISSING_TOTAL, metrics
from hpsteer.ports.analytics import Column, TableSchema
from hpsteer.runtime.bootstrap import Dependencies
from hpsteer.services.price_days import load_day, mark_announced, store_day
from hpsteer.sources.prices import PriceSource

__all__ = [
    "SPOT_PRICES",
    "DayOutcome",
    "SourcesFor",
    "handle_price_ingest_request",
    "ingest_prices",
    "use_price_sources",
]

_log = logging.getLogger(__name__)

SourcesFor = Callable[[PriceArea, Dependencies], Sequence[PriceSource]]

PRICES_DUE_BY = time(15, 0)
"""Tomorrow's prices are overdue after this market-local time: a run that still finds none
counts ``prices_missing_total`` and logs an error (an alert policy watches the counter)."""

SPOT_PRICES = TableSchema(
    name="spot_prices",
    columns=(
        Column("area", "STRING", required=True),
        Column("market_date", "DATE", required=True),
        Column("slot_start_at", "TIMESTAMP", required=True),
        Column("resolution_minutes", "INT64", required=True),
        Column("price_eur_per_mwh", "FLOAT64", required=True),
        Column("source", "STRING", required=True),
        Column("content_hash", "STRING", required=True),
        Column("version", "INT64", required=True),
        Column("fetched_at", "TIMESTAMP", required=True),
    ),
    partition_by="slot_start_at",
    cluster_by=("area",),
    description="Day-ahead prices per slot, every stored version.",
)


@dataclass(frozen=True, slots=True)
class DayOutcome:
    area: PriceArea
    market_date: date
    status: Literal["stored", "unchanged", "not_published", "failed"]
    source: str | None = None
    version: int | None = None
    announced: bool = False
    unavailable: tuple[str, ...] = ()
    """Sources that failed transiently (they may answer later)."""
    rejected: tuple[str, ...] = ()
    """Sources whose feed was refused (malformed or incomplete)."""


@dataclass
class _Attempt:
    day: MarketDayPrices | None = None
    transient: list[str] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)


def _fetch(sources: Sequence[PriceSource], area: PriceArea, market_date: date) -> _Attempt:
    attempt = _Attempt()
    for source in sources:
        if not source.supports(area):
            continue
        try:
            day = source.fetch(area, market_date)
        except ProviderUnavailable as err:
            attempt.transient.append(f"{source.name}: {err}")
            _log.warning("price source unavailable: %s: %s", source.name, err)
            continue
        except (FeedRejected, InvalidInput) as err:
            attempt.rejected.append(f"{source.name}: {err}")
            _log.error("price feed rejected: %s: %s", source.name, err)
            continue
        if day is not None:
            attempt.day = day
            return attempt
    return attempt


def _record_and_announce(deps: Dependencies, day: MarketDayPrices) -> tuple[int, bool]:
    stored = store_day(deps.store, day, now=deps.clock.now())
    current = stored.prices
    rows = [
        {
            "area": current.area.value,
            "market_date": current.market_date,
            "slot_start_at": slot.start_at,
            "resolution_minutes": int(current.resolution),
            "price_eur_per_mwh": price,
            "source": current.source,
            "content_hash": current.content_hash,
            "version": stored.version,
            "fetched_at": current.fetched_at,
        }
        for slot, price in current.priced_slots()
    ]
    if stored.changed or not stored.announced:
        insert_ids = [
            f"{current.area.value}/{current.market_date}/{current.content_hash[:16]}/{i}"
            for i in range(len(rows))
        ]
        deps.analytics.ensure_table(SPOT_PRICES)
        deps.analytics.append(SPOT_PRICES.name, rows, insert_ids)
    if stored.announced:
        return stored.version, False
    event = SpotPricesUpdated(
        area=current.area,
        market_date=current.market_date,
        resolution=current.resolution,
        content_hash=current.content_hash,
        source=current.source,
        version=stored.version,
    )
    deps.bus.publish(
        Topic.SPOT_PRICE_UPDATES,
        event.model_dump_json().encode(),
        attributes={
            "area": current.area.value,
            "market_date": current.market_date.isoformat(),
            "content_hash": current.content_hash,
        },
        ordering_key=current.area.value,
    )
    mark_announced(deps.store, current)
    return stored.version, True


def _days_to_fetch(deps: Dependencies, area: PriceArea, requested: date | None) -> list[date]:
    if requested is not None:
        return [requested]
    today = market_date_of(area, deps.clock.now())
    days = [today + timedelta(days=1)]
    if load_day(deps.store, area, today) is None:
        days.append(today)
    return days


def _overdue(deps: Dependencies, area: PriceArea, market_date: date) -> bool:
    """Tomorrow's prices are missing at or after :data:`PRICES_DUE_BY` market time."""
    local = deps.clock.now().astimezone(area.timezone)
    return market_date == local.date() + timedelta(days=1) and local.time() >= PRICES_DUE_BY


def ingest_prices(
    request: PriceIngestRequest, deps: Dependencies, sources_for: SourcesFor
) -> list[DayOutcome]:
    outcomes: list[DayOutcome] = []
    for area in request.areas:
        sources = sources_for(area, deps)
        for market_date in _days_to_fetch(deps, area, request.market_date):
            with log_context(area=area.value, market_date=market_date.isoformat()):
                attempt = _fetch(sources, area, market_date)
                unavailable, rejected = tuple(attempt.transient), tuple(attempt.rejected)
                if attempt.day is None:
                    failed = attempt.transient or attempt.rejected
                    status: Literal["not_published", "failed"] = (
                        "failed" if failed else "not_published"
                    )
                    _log.info("no prices for %s %s (%s)", area.value, market_date, status)
                    if _overdue(deps, area, market_date):
                        metrics.inc(PRICES_MISSING_TOTAL, area=area.value)
                        _log.error(
                            "no prices for tomorrow (%s %s) after %s market time",
                            area.value,
                            market_date,
                            PRICES_DUE_BY.isoformat("minutes"),
                        )
                    outcomes.append(
                        DayOutcome(
                            area, market_date, status, unavailable=unavailable, rejected=rejected
                        )
                    )
                    continue
                version, announced = _record_and_announce(deps, attempt.day)
                outcomes.append(
                    DayOutcome(
                        area,
                        market_date,
                        "stored" if announced else "unchanged",
                        source=attempt.day.source,
                        version=version,
                        announced=announced,
                        unavailable=unavailable,
                        rejected=rejected,
                    )
                )
                _log.info(
                    "prices for %s %s from %s: version %d%s",
                    area.value,
                    market_date,
                    attempt.day.source,
                    version,
                    ", announced" if announced else ", unchanged",
                )
    # A day some source could not answer is worth a redelivery; a day whose every feed was
    # rejected is not (the same feeds would be rejected again; the next scheduled run asks anew).
    retry = [o for o in outcomes if o.status == "failed" and o.unavailable]
    if retry:
        names = ", ".join(f"{o.area.value} {o.market_date}" for o in retry)
        raise ProviderUnavailable(f"no price source could answer for {names}; try again later")
    return outcomes


_sources_override: SourcesFor | None = None


def use_price_sources(sources_for: SourcesFor | None) -> None:
    """Install the sources every handler in this process uses (None: back to configuration)."""
    global _sources_override
    _sources_override = sources_for


def configured_sources(area: PriceArea, deps: Dependencies) -> Sequence[PriceSource]:
    from hpsteer.sources.catalogue import price_sources_for

    return price_sources_for(area, deps)


def handle_price_ingest_request(message: PubSubMessage, deps: Dependencies) -> None:
    """The ingest_prices function's service: decode the request and ingest."""
    request = PriceIngestRequest.parse_json(message.data)
    ingest_prices(request, deps, _sources_override or configured_sources)
