"""Delivery days of prices in the document store: ``price_areas/{area}/days/{market_date}``.

The document is readable in the Firestore console: the day's fields, one ``{start_at,
price_eur_per_mwh}`` entry per slot, the content hash, a version and whether the version has been
announced on ``spot-price-updates``. Storing is idempotent on the content hash: the same prices
again change nothing; different prices (a provider's correction) keep the old version under
``…/versions/{n}`` and become version n+1, not yet announced.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from hpsteer.domain.instants import format_instant
from hpsteer.domain.market import PriceArea
from hpsteer.domain.prices import MarketDayPrices
from hpsteer.ports.store import DocumentStore, Transaction

__all__ = ["StoredDay", "day_path", "load_day", "mark_announced", "store_day"]


def day_path(area: PriceArea, market_date: date) -> str:
    return f"price_areas/{area.value}/days/{market_date.isoformat()}"


@dataclass(frozen=True, slots=True)
class StoredDay:
    prices: MarketDayPrices
    version: int
    announced: bool
    changed: bool
    """True when this call stored a new version."""


def _to_document(day: MarketDayPrices, version: int, stored_at: datetime) -> dict[str, Any]:
    return {
        **day.to_document(),
        "content_hash": day.content_hash,
        "version": version,
        "announced": False,
        "stored_at": format_instant(stored_at),
        "slots": [
            {"start_at": format_instant(slot.start_at), "price_eur_per_mwh": price}
            for slot, price in day.priced_slots()
        ],
    }


def _from_document(data: dict[str, Any], *, changed: bool) -> StoredDay:
    fields = {
        key: value
        for key, value in data.items()
        if key not in {"content_hash", "version", "announced", "stored_at", "slots"}
    }
    return StoredDay(
        prices=MarketDayPrices.parse(fields),
        version=int(data["version"]),
        announced=bool(data["announced"]),
        changed=changed,
    )


def store_day(store: DocumentStore, day: MarketDayPrices, *, now: datetime) -> StoredDay:
    path = day_path(day.area, day.market_date)

    def run(tx: Transaction) -> StoredDay:
        existing = tx.get(path)
        if existing is not None and existing.data.get("content_hash") == day.content_hash:
            return _from_document(existing.data, changed=False)
        version = 1
        if existing is not None:
            version = int(existing.data["version"]) + 1
            tx.create(f"{path}/versions/{version - 1:04d}", existing.data)
        document = _to_document(day, version, now)
        tx.set(path, document)
        return _from_document(document, changed=True)

    return store.run_transaction(run)


def load_day(store: DocumentStore, area: PriceArea, market_date: date) -> StoredDay | None:
    snapshot = store.get(day_path(area, market_date))
    return None if snapshot is None else _from_document(snapshot.data, changed=False)


def mark_announced(store: DocumentStore, day: MarketDayPrices) -> None:
    """Record that this content was announced (unless a newer version replaced it meanwhile)."""
    path = day_path(day.area, day.market_date)

    def run(tx: Transaction) -> None:
        existing = tx.get(path)
        if existing is not None and existing.data.get("content_hash") == day.content_hash:
            tx.update(path, {"announced": True})

    store.run_transaction(run)
