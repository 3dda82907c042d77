"""Price ingestion: sources in order, idempotent storage, analytics, and one announcement."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from cloudevents.http import CloudEvent

from hpsteer.backends.local.bus import LocalMessageBus
from hpsteer.domain.market import PriceArea
from hpsteer.domain.messages import PriceIngestRequest, SpotPricesUpdated, Topic
from hpsteer.domain.prices import MarketDayPrices
from hpsteer.errors import BusUnavailable, FeedRejected, MalformedMessage, ProviderUnavailable
from hpsteer.messaging.envelope import PubSubMessage, pubsub_cloudevent, read_pubsub_message
from hpsteer.ports.clock import SimulatedClock
from hpsteer.runtime import bootstrap
from hpsteer.runtime.bootstrap import Dependencies
from hpsteer.runtime.entrypoint import run_pubsub, use_dependencies
from hpsteer.services.ingest_prices import (
    handle_price_ingest_request,
    ingest_prices,
    use_price_sources,
)
from hpsteer.services.price_days import load_day
from hpsteer.sources.prices import PriceSource
from hpsteer.sources.replay_prices import ReplayPriceSource

# 2023-03-25 13:00 Stockholm: tomorrow (2023-03-26) is the 23-hour spring day.
NOW = datetime(2023, 3, 25, 12, 0, tzinfo=UTC)
TODAY, TOMORROW = date(2023, 3, 25), date(2023, 3, 26)


class Scripted:
    """A price source that answers from a script: a day, None (not published), or an error."""

    def __init__(self, name: str, answers: dict[date, MarketDayPrices | Exception | None]):
        self._name = name
        self.answers = answers
        self.asked: list[tuple[PriceArea, date]] = []

    @property
    def name(self) -> str:
        return self._name

    def supports(self, area: PriceArea) -> bool:
        return area in (PriceArea.SE3, PriceArea.SE4)

    def fetch(self, area: PriceArea, market_date: date) -> MarketDayPrices | None:
        self.asked.append((area, market_date))
        answer = self.answers.get(market_date)
        if isinstance(answer, Exception):
            raise answer
        if answer is None:
            return None
        return answer.model_copy(update={"area": area, "source": self._name})


@pytest.fixture
def clock() -> SimulatedClock:
    return SimulatedClock(NOW)


@pytest.fixture
def deps(clock: SimulatedClock) -> Dependencies:
    return bootstrap.local(clock=clock, dispatcher=lambda request: 200)


@pytest.fixture
def replay(clock: SimulatedClock) -> ReplayPriceSource:
    return ReplayPriceSource(clock=clock)


@pytest.fixture
def announced(deps: Dependencies) -> list[SpotPricesUpdated]:
    bus = deps.bus
    assert isinstance(bus, LocalMessageBus)
    events: list[SpotPricesUpdated] = []

    def collect(event: CloudEvent) -> None:
        events.append(SpotPricesUpdated.parse_json(read_pubsub_message(event).data))

    bus.subscribe(Topic.SPOT_PRICE_UPDATES, collect)
    return events


def request(*areas: PriceArea, market_date: date | None = None) -> PriceIngestRequest:
    return PriceIngestRequest(areas=areas, market_date=market_date, scheduled_at=NOW)


def sources(*chain: PriceSource):
    return lambda area, deps: list(chain)


def deliver(deps: Dependencies) -> None:
    bus = deps.bus
    assert isinstance(bus, LocalMessageBus)
    bus.drain()


def spot_rows(deps: Dependencies) -> int:
    rows = deps.analytics.query("SELECT COUNT(*) AS n FROM `spot_prices`")
    return int(rows[0]["n"])


def test_tomorrow_and_a_missing_today_are_stored_recorded_and_announced(deps, replay, announced):
    outcomes = ingest_prices(request(PriceArea.SE3), deps, sources(replay))
    deliver(deps)

    assert [(o.market_date, o.status, o.version) for o in outcomes] == [
        (TOMORROW, "stored", 1),
        (TODAY, "stored", 1),
    ]
    spring = load_day(deps.store, PriceArea.SE3, TOMORROW)
    assert spring is not None
    assert len(spring.prices.prices_eur_per_mwh) == 23  # the spring-forward day
    assert spring.announced
    assert spot_rows(deps) == 23 + 24
    assert sorted(e.market_date for e in announced) == [TODAY, TOMORROW]
    assert all(e.source == "replay" and e.version == 1 for e in announced)


def test_a_redelivered_request_stores_nothing_new_and_announces_nothing(deps, replay, announced):
    ingest_prices(request(PriceArea.SE3), deps, sources(replay))
    again = ingest_prices(request(PriceArea.SE3), deps, sources(replay))
    deliver(deps)

    assert [o.status for o in again] == ["unchanged"]  # today is stored now: only tomorrow asked
    assert spot_rows(deps) == 23 + 24
    assert len(announced) == 2


def test_corrected_prices_become_a_new_version_and_are_announced(deps, replay, announced):
    first = replay.fetch(PriceArea.SE3, TOMORROW)
    assert first is not None
    prices = first.prices_eur_per_mwh
    corrected = first.model_copy(update={"prices_eur_per_mwh": (prices[0] + 1, *prices[1:])})
    ingest_prices(request(PriceArea.SE3, market_date=TOMORROW), deps, sources(replay))
    outcome = ingest_prices(
        request(PriceArea.SE3, market_date=TOMORROW),
        deps,
        sources(Scripted("replay", {TOMORROW: corrected})),
    )
    deliver(deps)

    assert [(o.status, o.version) for o in outcome] == [("stored", 2)]
    assert [e.version for e in announced] == [1, 2]
    assert deps.store.get(f"price_areas/SE3/days/{TOMORROW}/versions/0001") is not None
    assert spot_rows(deps) == 2 * 23


def test_an_unavailable_first_source_hands_over_to_the_next(deps, replay):
    down = Scripted("entsoe", {TOMORROW: ProviderUnavailable("ENTSO-E answered 503")})
    (outcome,) = ingest_prices(
        request(PriceArea.SE3, market_date=TOMORROW), deps, sources(down, replay)
    )
    assert outcome.status == "stored"
    assert outcome.source == "replay"
    assert outcome.unavailable == ("entsoe: ENTSO-E answered 503",)
    stored = load_day(deps.store, PriceArea.SE3, TOMORROW)
    assert stored is not None
    assert stored.prices.source == "replay"


def test_an_incomplete_feed_is_rejected_and_the_next_source_tried(deps, replay):
    partial = Scripted("energycharts", {TOMORROW: FeedRejected("22 of 23 slots have a price")})
    (outcome,) = ingest_prices(
        request(PriceArea.SE3, market_date=TOMORROW), deps, sources(partial, replay)
    )
    assert outcome.status == "stored"
    assert outcome.rejected == ("energycharts: 22 of 23 slots have a price",)


def test_prices_not_yet_published_are_a_normal_outcome(deps, announced):
    silent = Scripted("entsoe", {})
    outcomes = ingest_prices(request(PriceArea.SE3), deps, sources(silent))
    deliver(deps)
    assert {o.status for o in outcomes} == {"not_published"}
    assert announced == []
    assert load_day(deps.store, PriceArea.SE3, TOMORROW) is None


def test_every_source_down_raises_for_redelivery_after_the_other_areas_are_done(deps, replay):
    class OnlySe4:
        name = "replay"

        def supports(self, area: PriceArea) -> bool:
            return area is PriceArea.SE4

        def fetch(self, area: PriceArea, market_date: date) -> MarketDayPrices | None:
            return replay.fetch(area, market_date)

    down = Scripted("entsoe", {TOMORROW: ProviderUnavailable("timeout")})
    with pytest.raises(ProviderUnavailable, match="SE3 2023-03-26"):
        ingest_prices(
            request(PriceArea.SE3, PriceArea.SE4, market_date=TOMORROW),
            deps,
            sources(down, OnlySe4()),
        )
    assert load_day(deps.store, PriceArea.SE4, TOMORROW) is not None


def test_rejected_feeds_everywhere_are_not_redelivered(deps):
    bad = Scripted("entsoe", {TOMORROW: FeedRejected("slot 3: price nan")})
    (outcome,) = ingest_prices(request(PriceArea.SE3, market_date=TOMORROW), deps, sources(bad))
    assert outcome.status == "failed"
    assert load_day(deps.store, PriceArea.SE3, TOMORROW) is None


def test_a_crash_between_storing_and_announcing_announces_on_redelivery(deps, replay, announced):
    bus = deps.bus
    assert isinstance(bus, LocalMessageBus)
    publish = bus.publish
    calls = {"n": 0}

    def flaky_publish(*args, **kwargs):  # the first publish never reaches Pub/Sub
        calls["n"] += 1
        if calls["n"] == 1:
            raise BusUnavailable("Pub/Sub did not answer")
        return publish(*args, **kwargs)

    bus.publish = flaky_publish  # type: ignore[method-assign]
    with pytest.raises(BusUnavailable):
        ingest_prices(request(PriceArea.SE3, market_date=TOMORROW), deps, sources(replay))
    stored = load_day(deps.store, PriceArea.SE3, TOMORROW)
    assert stored is not None
    assert not stored.announced

    (outcome,) = ingest_prices(request(PriceArea.SE3, market_date=TOMORROW), deps, sources(replay))
    deliver(deps)
    assert outcome.announced
    assert [e.market_date for e in announced] == [TOMORROW]
    assert spot_rows(deps) == 23  # analytics rows were not doubled by the second attempt


def pubsub_event(payload: bytes, published_at: datetime) -> CloudEvent:
    return pubsub_cloudevent(
        topic=Topic.PRICE_INGEST_REQUESTS,
        project="hpsteer-local",
        message_id="42",
        data=payload,
        attributes={},
        publish_time=published_at,
    )


@pytest.fixture
def installed(deps: Dependencies, replay: ReplayPriceSource):
    use_dependencies(deps)
    use_price_sources(sources(replay))
    yield deps
    use_dependencies(None)
    use_price_sources(None)


def test_the_handler_decodes_the_request_and_ingests(installed):
    message = PubSubMessage(
        message_id="1",
        data=request(PriceArea.SE4, market_date=TODAY).model_dump_json().encode(),
        attributes={},
        publish_time=NOW,
        ordering_key=None,
    )
    handle_price_ingest_request(message, installed)
    assert load_day(installed.store, PriceArea.SE4, TODAY) is not None


def test_a_malformed_request_is_a_permanent_error(installed):
    data = b'{"areas": ["SE3"]}'
    message = PubSubMessage(
        message_id="1", data=data, attributes={}, publish_time=NOW, ordering_key=None
    )
    with pytest.raises(MalformedMessage, match="schema_version is missing"):
        handle_price_ingest_request(message, installed)


def test_the_entry_point_acknowledges_a_malformed_request_and_drops_a_stale_one(installed, clock):
    run_pubsub(pubsub_event(b"not json", NOW), handle_price_ingest_request)  # logged, acked
    stale = request(PriceArea.SE3, market_date=TODAY).model_dump_json().encode()
    clock.advance(timedelta(hours=4))
    run_pubsub(pubsub_event(stale, NOW), handle_price_ingest_request, max_age=timedelta(hours=3))
    assert load_day(installed.store, PriceArea.SE3, TODAY) is None
