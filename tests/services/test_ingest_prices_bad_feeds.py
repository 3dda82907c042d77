"""A bad feed from a real provider client leaves the store and the analytics untouched.

The Belgian ENTSO-E document (2024-10-08) is served, whole or damaged, through
``httpx.MockTransport`` to the real :class:`EntsoePriceSource`, which is the area's only source.
Whatever the damage, ingestion records nothing: no day document, no analytics row, no event.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import httpx
import pytest

from hpsteer.backends.local.bus import LocalMessageBus
from hpsteer.backends.local.secrets import FileSecretStore
from hpsteer.domain.market import PriceArea
from hpsteer.domain.messages import PriceIngestRequest, Topic
from hpsteer.errors import NotFound, ProviderUnavailable
from hpsteer.ports.clock import SimulatedClock
from hpsteer.runtime import bootstrap
from hpsteer.services.ingest_prices import ingest_prices
from hpsteer.services.price_days import load_day
from hpsteer.sources.entsoe import EntsoePriceSource

BE_XML = (
    Path(__file__).parents[1] / "fixtures/prices/entsoe/entsoe_A44_BE_2024-10-08_PT60M.xml"
).read_bytes()
DAY = date(2024, 10, 8)
NOW = datetime(2024, 10, 7, 13, 0, tzinfo=UTC)


def first_point(amount: bytes) -> bytes:
    """The document with the amount of its first point replaced."""
    start = BE_XML.index(b"<price.amount>") + len(b"<price.amount>")
    end = BE_XML.index(b"</price.amount>", start)
    return BE_XML[:start] + amount + BE_XML[end:]


BAD_FEEDS = {
    "truncated-xml": (200, BE_XML[: len(BE_XML) // 2]),
    "html-page-with-200": (200, b"<html><body>Maintenance</body></html>"),
    "empty-body": (200, b""),
    "nan-price": (200, first_point(b"NaN")),
    "price-out-of-range": (200, first_point(b"99999")),
    "wrong-currency": (200, BE_XML.replace(b">EUR<", b">SEK<")),
}


def run(tmp_path: Path, status: int, body: bytes):
    clock = SimulatedClock(NOW)
    deps = bootstrap.local(clock=clock, dispatcher=lambda request: 200)
    secrets = FileSecretStore(tmp_path / "secrets")
    secrets.add_version("entsoe-api-token", b"test-token")
    client = httpx.Client(
        transport=httpx.MockTransport(lambda request: httpx.Response(status, content=body))
    )
    source = EntsoePriceSource(secrets, client=client, clock=clock)
    request = PriceIngestRequest(areas=(PriceArea.BE,), market_date=DAY, scheduled_at=NOW)
    return deps, lambda: ingest_prices(request, deps, lambda area, _deps: [source])


def assert_nothing_recorded(deps) -> None:
    assert load_day(deps.store, PriceArea.BE, DAY) is None
    assert deps.store.query("price_areas/BE/days").documents == []
    with pytest.raises(NotFound):
        deps.analytics.query("SELECT COUNT(*) AS n FROM `spot_prices`")
    bus = deps.bus
    assert isinstance(bus, LocalMessageBus)
    assert bus.published(Topic.SPOT_PRICE_UPDATES) == []


@pytest.mark.parametrize(("status", "body"), BAD_FEEDS.values(), ids=BAD_FEEDS.keys())
def test_a_rejected_feed_records_nothing(tmp_path, status, body):
    deps, ingest = run(tmp_path, status, body)
    (outcome,) = ingest()
    assert outcome.status == "failed"
    assert outcome.rejected[0].startswith("entsoe: ")
    assert_nothing_recorded(deps)


def test_a_period_that_ends_an_hour_early_is_not_taken_for_the_day(tmp_path):
    # The source treats a series that does not cover the whole day as "not (yet) there", so the
    # next source in the order is asked; with no other source nothing is recorded.
    short = BE_XML.replace(b"2024-10-08T22:00Z</end>", b"2024-10-08T21:00Z</end>")
    assert short != BE_XML
    deps, ingest = run(tmp_path, 200, short)
    (outcome,) = ingest()
    assert outcome.status in {"failed", "not_published"}
    assert_nothing_recorded(deps)


@pytest.mark.parametrize("status", [429, 503])
def test_a_provider_that_is_down_records_nothing_and_asks_for_redelivery(tmp_path, status):
    deps, ingest = run(tmp_path, status, b"busy")
    with pytest.raises(ProviderUnavailable):
        ingest()
    assert_nothing_recorded(deps)


def test_the_whole_document_is_recorded_once(tmp_path):
    deps, ingest = run(tmp_path, 200, BE_XML)
    (outcome,) = ingest()
    assert outcome.status == "stored"
    stored = load_day(deps.store, PriceArea.BE, DAY)
    assert stored is not None
    assert len(stored.prices.prices_eur_per_mwh) == 24
