"""Weather ingestion with the local backends: which locations, stored once, announced once.

The weather source is a small working fake: it serves the real Open-Meteo fixture for any
location (stamped with the clock's hour, as Open-Meteo's client does) and can be told to fail.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from hpsteer.backends.local.bus import LocalMessageBus
from hpsteer.domain.devices import ComfortBand, Device, Location, ThermalParameters
from hpsteer.domain.market import PriceArea
from hpsteer.domain.messages import Topic, WeatherIngestRequest, WeatherUpdated
from hpsteer.domain.weather import WeatherSeries
from hpsteer.errors import (
    BusUnavailable,
    FeedRejected,
    HpsteerError,
    MalformedMessage,
    ProviderUnavailable,
)
from hpsteer.messaging.envelope import PubSubMessage, encode_json_message
from hpsteer.ports.clock import SimulatedClock
from hpsteer.ports.store import Page
from hpsteer.runtime import bootstrap
from hpsteer.runtime.bootstrap import Dependencies
from hpsteer.services import ingest_weather as service
from hpsteer.services.ingest_weather import (
    forecast_location_id,
    forecast_path,
    handle_weather_ingest_request,
    ingest_weather,
    past_weather_path,
    past_weather_series,
    use_weather_source,
    weather_source,
)
from hpsteer.sources.openmeteo import OpenMeteoWeatherSource, parse_forecast

FIXTURE = (
    Path(__file__).parents[1]
    / "fixtures/weather/openmeteo/openmeteo_forecast_minutely15_45.84N_6.86E_2025-02-24.json"
)
RAW = FIXTURE.read_bytes()
NOW = datetime(2025, 2, 24, 5, 37, tzinfo=UTC)
ISSUED = datetime(2025, 2, 24, 5, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)
STOCKHOLM = "lat59.30_lon18.16"
MALMO = "lat55.57_lon12.94"


@dataclass
class FakeWeatherSource:
    """Serves the fixture's points for any location; ``failing`` ids raise what they map to."""

    clock: SimulatedClock
    failing: dict[str, HpsteerError] = field(default_factory=dict)
    issued_at: datetime | None = None
    temperature_shift_c: float = 0.0
    calls: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return "fake"

    def forecast(self, location: Location) -> WeatherSeries:
        self.calls.append(location.location_id)
        if location.location_id in self.failing:
            raise self.failing[location.location_id]
        issued = self.issued_at or self.clock.now().replace(minute=0, second=0, microsecond=0)
        series = parse_forecast(RAW, location, issued_at=issued)
        points = tuple(
            p.model_copy(update={"outdoor_temp_c": p.outdoor_temp_c + self.temperature_shift_c})
            for p in series.points
        )
        return series.model_copy(update={"points": points, "source": self.name})


@dataclass
class FlakyBus:
    """A bus whose first ``failures`` publishes fail, as a crash before publishing would."""

    inner: LocalMessageBus
    failures: int = 1

    def publish(
        self,
        topic: str,
        data: bytes,
        *,
        attributes: Mapping[str, str] | None = None,
        ordering_key: str | None = None,
    ) -> str:
        if self.failures > 0:
            self.failures -= 1
            raise BusUnavailable("induced: the instance died before publishing")
        return self.inner.publish(topic, data, attributes=attributes, ordering_key=ordering_key)


@pytest.fixture
def clock() -> SimulatedClock:
    return SimulatedClock(NOW)


@pytest.fixture
def deps(clock: SimulatedClock) -> Dependencies:
    return bootstrap.local(clock=clock)


@pytest.fixture
def source(clock: SimulatedClock) -> FakeWeatherSource:
    return FakeWeatherSource(clock)


@pytest.fixture(autouse=True)
def no_installed_source() -> Iterator[None]:
    yield
    use_weather_source(None)


def register(
    deps: Dependencies,
    device_id: str,
    latitude: float,
    longitude: float,
    *,
    steered: bool = True,
    location_id: str | None = None,
) -> None:
    device = Device(
        device_id=device_id,
        manufacturer="viessmann",
        external_id=f"ext-{device_id}",
        account_id="acct-1",
        price_area=PriceArea.SE3,
        location=Location(
            location_id=location_id or f"home-{device_id}", latitude=latitude, longitude=longitude
        ),
        comfort=ComfortBand(min_indoor_temp_c=20, setpoint_c=21, max_indoor_temp_c=23),
        thermal=ThermalParameters(
            heat_loss_w_per_k=150, air_capacity_kwh_per_k=5, hp_max_heat_kw=8
        ),
        steering_enabled=steered,
        registered_at=NOW - timedelta(days=30),
    )
    deps.store.set(f"devices/{device_id}", device.to_document())


def register_fleet(deps: Dependencies) -> None:
    register(deps, "d1", 59.2970, 18.1633)  # Stockholm
    register(deps, "d2", 59.3012, 18.1571)  # 600 m away: same rounded cell
    register(deps, "d3", 55.5712, 12.9352)  # Malmö
    register(deps, "d4", 56.1336, 10.1852, steered=False)  # Aarhus, steering off


def request(*location_ids: str) -> WeatherIngestRequest:
    return WeatherIngestRequest(location_ids=location_ids, scheduled_at=NOW)


def announced(deps: Dependencies) -> list[WeatherUpdated]:
    bus = deps.bus
    assert isinstance(bus, LocalMessageBus)
    return [
        WeatherUpdated.parse_json(message.data) for message in bus.published(Topic.WEATHER_UPDATES)
    ]


def analytics_rows(deps: Dependencies) -> int:
    try:
        rows = deps.analytics.query("SELECT COUNT(*) AS n FROM `weather_forecasts`")
    except HpsteerError:  # the table does not exist yet
        return 0
    return int(rows[0]["n"])


# Which locations


def test_forecast_location_ids_come_from_coordinates_rounded_to_two_decimals() -> None:
    assert forecast_location_id(59.297012, 18.163265) == "lat59.30_lon18.16"
    assert forecast_location_id(-33.8688, 151.2093) == "lat-33.87_lon151.21"
    assert forecast_location_id(-0.001, -0.004) == "lat0.00_lon0.00"  # no "-0.00"


def test_every_steered_location_is_fetched_once_with_devices_sharing_a_rounded_cell(
    deps: Dependencies, source: FakeWeatherSource
) -> None:
    register_fleet(deps)

    events = ingest_weather(request(), deps, source)

    assert source.calls == [STOCKHOLM, MALMO]  # d1 and d2 share one; Aarhus is not steered
    assert [(e.location_id, e.issued_at) for e in events] == [(STOCKHOLM, ISSUED), (MALMO, ISSUED)]
    assert announced(deps) == events


def test_devices_are_read_in_pages(
    deps: Dependencies, source: FakeWeatherSource, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(service, "DEVICE_PAGE_SIZE", 2)
    for i in range(5):
        register(deps, f"p{i}", 60.0 + i, 15.0)

    ingest_weather(request(), deps, source)

    assert source.calls == [f"lat{60 + i}.00_lon15.00" for i in range(5)]


def test_a_device_without_a_usable_location_is_skipped(
    deps: Dependencies, source: FakeWeatherSource
) -> None:
    register_fleet(deps)
    deps.store.set("devices/broken", {"steering_enabled": True, "location": {"latitude": 91.0}})

    ingest_weather(request(), deps, source)

    assert source.calls == [STOCKHOLM, MALMO]


def test_each_device_keeps_its_own_location_id(
    deps: Dependencies, source: FakeWeatherSource
) -> None:
    register_fleet(deps)

    ingest_weather(request(), deps, source)

    device = deps.store.get("devices/d2")
    assert device is not None
    assert device.data["location"]["location_id"] == "home-d2"


def test_requested_location_ids_are_served_by_their_coordinates_and_unknown_ones_skipped(
    deps: Dependencies, source: FakeWeatherSource
) -> None:
    deps.store.set("locations/cabin", {"latitude": 61.5, "longitude": 14.2})

    events = ingest_weather(request(STOCKHOLM, "cabin", "nowhere"), deps, source)

    assert source.calls == [STOCKHOLM, "cabin"]
    assert [e.location_id for e in events] == [STOCKHOLM, "cabin"]


# What is stored


def test_the_forecast_is_stored_under_its_location_and_compact_issue_time(
    deps: Dependencies, source: FakeWeatherSource
) -> None:
    register_fleet(deps)

    ingest_weather(request(), deps, source)

    path = forecast_path(STOCKHOLM, ISSUED)
    assert path == "locations/lat59.30_lon18.16/forecasts/20250224T050000Z"
    stored = deps.store.get(path)
    assert stored is not None
    assert stored.data["announced"] is True
    assert stored.data["issued_at"] == ISSUED
    assert (stored.data["latitude"], stored.data["longitude"]) == (59.3, 18.16)
    assert len(stored.data["points"]) == 288
    assert stored.data["points"][0] == {
        "valid_at": datetime(2025, 2, 23, 23, 0, tzinfo=UTC),
        "outdoor_temp_c": -15.4,
        "solar_irradiance_w_per_m2": 0.0,
        "wind_speed_m_per_s": pytest.approx(13.0 / 3.6, abs=1e-3),
    }
    location = deps.store.get(f"locations/{STOCKHOLM}")
    assert location is not None
    assert location.data["latest_forecast_issued_at"] == ISSUED
    assert (location.data["latitude"], location.data["longitude"]) == (59.3, 18.16)


def test_every_point_is_appended_to_the_weather_forecasts_table(
    deps: Dependencies, source: FakeWeatherSource
) -> None:
    register_fleet(deps)

    ingest_weather(request(), deps, source)

    assert analytics_rows(deps) == 2 * 288
    (first,) = deps.analytics.query(
        "SELECT location_id, issued_at, valid_at, outdoor_temp_c, wind_speed_m_per_s "
        "FROM `weather_forecasts` WHERE location_id = @id ORDER BY valid_at LIMIT 1",
        {"id": MALMO},
    )
    assert first["issued_at"] == ISSUED
    assert first["valid_at"] == datetime(2025, 2, 23, 23, 0, tzinfo=UTC)
    assert first["outdoor_temp_c"] == -15.4


def test_the_latest_forecast_only_moves_forward(
    deps: Dependencies, source: FakeWeatherSource, clock: SimulatedClock
) -> None:
    clock.advance(timedelta(hours=1))
    ingest_weather(request(STOCKHOLM), deps, source)
    source.issued_at = ISSUED  # an older forecast arrives late

    events = ingest_weather(request(STOCKHOLM), deps, source)

    assert [e.issued_at for e in events] == [ISSUED]  # stored and announced: it is new
    location = deps.store.get(f"locations/{STOCKHOLM}")
    assert location is not None
    assert location.data["latest_forecast_issued_at"] == ISSUED + timedelta(hours=1)


def past_weather(deps: Dependencies, location_id: str = STOCKHOLM) -> list[WeatherSeries]:
    digest = deps.store.get(past_weather_path(location_id))
    assert digest is not None
    return past_weather_series(digest.data)


def test_each_forecast_joins_its_locations_past_weather_cut_to_what_a_slot_can_read(
    deps: Dependencies, source: FakeWeatherSource, clock: SimulatedClock
) -> None:
    for _ in range(3):
        ingest_weather(request(STOCKHOLM), deps, source)
        clock.advance(timedelta(hours=3))

    first, middle, latest = past_weather(deps)

    issued = ISSUED + timedelta(hours=3)
    assert [f.issued_at for f in (first, middle, latest)] == [ISSUED, issued, issued + 3 * HOUR]
    assert middle.location_id == STOCKHOLM
    whole = deps.store.get(forecast_path(STOCKHOLM, issued))
    assert whole is not None
    points = {p["valid_at"]: p for p in whole.data["points"]}
    # from the last point before its issue to an hour past the next one's: what a slot reads
    assert [p.at for p in middle.points] == [
        at for at in points if issued - timedelta(minutes=15) <= at <= issued + 4 * HOUR
    ]
    assert [(p.outdoor_temp_c, p.solar_irradiance_w_per_m2) for p in middle.points] == [
        (points[p.at]["outdoor_temp_c"], points[p.at]["solar_irradiance_w_per_m2"])
        for p in middle.points
    ]
    # the first stands in before its issue for none: kept from its start; the latest until its end
    assert first.points[0].at == datetime(2025, 2, 23, 23, 0, tzinfo=UTC)
    assert latest.points[-1].at == datetime(2025, 2, 26, 22, 45, tzinfo=UTC)


def test_an_older_forecast_stored_late_takes_its_place_in_the_past_weather(
    deps: Dependencies, source: FakeWeatherSource, clock: SimulatedClock
) -> None:
    clock.advance(timedelta(hours=3))
    ingest_weather(request(STOCKHOLM), deps, source)
    [alone] = past_weather(deps)
    source.issued_at = ISSUED  # an older forecast arrives late

    ingest_weather(request(STOCKHOLM), deps, source)

    earlier, latest = past_weather(deps)
    assert earlier.issued_at == ISSUED
    assert earlier.points[-1].at == ISSUED + 4 * HOUR  # cut by the newer one
    # the newer one is cut before its issue: the older one covers there now
    newer = alone.issued_at
    assert latest.points == tuple(p for p in alone.points if p.at >= newer - timedelta(minutes=15))
    location = deps.store.get(f"locations/{STOCKHOLM}")
    assert location is not None
    assert location.data["latest_forecast_issued_at"] == newer


def test_forecasts_issued_before_the_history_and_two_days_leave_the_past_weather(
    deps: Dependencies, source: FakeWeatherSource, clock: SimulatedClock
) -> None:
    ingest_weather(request(STOCKHOLM), deps, source)
    clock.advance(timedelta(days=deps.settings.identify_history_days + 2, hours=1))
    source.issued_at = ISSUED + timedelta(days=deps.settings.identify_history_days + 2)

    ingest_weather(request(STOCKHOLM), deps, source)

    assert [f.issued_at for f in past_weather(deps)] == [source.issued_at]


def test_a_location_without_past_weather_gets_it_from_its_stored_forecasts_once(
    deps: Dependencies, source: FakeWeatherSource, clock: SimulatedClock
) -> None:
    ingest_weather(request(STOCKHOLM), deps, source)
    deps.store.delete(past_weather_path(STOCKHOLM))  # stored before the digest existed
    clock.advance(timedelta(hours=3))
    store = deps.store
    original = store.query
    queried: list[str] = []

    def counting(collection: str, *args: Any, **kwargs: Any) -> Page:
        queried.append(collection)
        return original(collection, *args, **kwargs)

    monkeypatch = pytest.MonkeyPatch()
    monkeypatch.setattr(store, "query", counting)
    try:
        ingest_weather(request(STOCKHOLM), deps, source)
        clock.advance(timedelta(hours=3))
        ingest_weather(request(STOCKHOLM), deps, source)
    finally:
        monkeypatch.undo()

    assert queried == [f"locations/{STOCKHOLM}/forecasts"]
    assert [f.issued_at for f in past_weather(deps)] == [
        ISSUED + timedelta(hours=h) for h in (0, 3, 6)
    ]


# Idempotence and failures


def test_a_redelivered_request_stores_announces_and_appends_nothing_again(
    deps: Dependencies, source: FakeWeatherSource
) -> None:
    register_fleet(deps)
    ingest_weather(request(), deps, source)
    source.temperature_shift_c = 1.5  # the provider's numbers moved within the hour

    again = ingest_weather(request(), deps, source)

    assert again == []
    assert len(announced(deps)) == 2
    assert analytics_rows(deps) == 2 * 288
    stored = deps.store.get(forecast_path(STOCKHOLM, ISSUED))
    assert stored is not None
    assert stored.data["points"][0]["outdoor_temp_c"] == -15.4  # the first stored version
    assert past_weather(deps)[0].points[0].outdoor_temp_c == -15.4


def test_a_crash_between_store_and_publish_is_announced_by_the_redelivery(
    clock: SimulatedClock, source: FakeWeatherSource
) -> None:
    healthy = bootstrap.local(clock=clock)
    assert isinstance(healthy.bus, LocalMessageBus)
    flaky_bus = FlakyBus(healthy.bus)
    crashing = Dependencies(
        healthy.settings,
        clock,
        store=lambda: healthy.store,
        bus=lambda: flaky_bus,
        tasks=lambda: healthy.tasks,
        analytics=lambda: healthy.analytics,
        secrets=lambda: healthy.secrets,
    )
    register(healthy, "d1", 59.2970, 18.1633)

    with pytest.raises(BusUnavailable):
        ingest_weather(request(), crashing, source)
    stored = healthy.store.get(forecast_path(STOCKHOLM, ISSUED))
    assert stored is not None
    assert stored.data["announced"] is False
    assert announced(healthy) == []

    source.temperature_shift_c = 1.5
    events = ingest_weather(request(), crashing, source)

    assert events == [WeatherUpdated(location_id=STOCKHOLM, issued_at=ISSUED)]
    assert announced(healthy) == events
    stored = healthy.store.get(forecast_path(STOCKHOLM, ISSUED))
    assert stored is not None
    assert stored.data["announced"] is True
    assert stored.data["points"][0]["outdoor_temp_c"] == -15.4
    assert analytics_rows(healthy) == 288
    assert ingest_weather(request(), crashing, source) == []


def test_one_location_failing_transiently_does_not_lose_the_others(
    deps: Dependencies, source: FakeWeatherSource
) -> None:
    register_fleet(deps)
    source.failing[STOCKHOLM] = ProviderUnavailable("Open-Meteo forecast: HTTP 503")

    with pytest.raises(ProviderUnavailable, match=rf"1 of 2 locations: {STOCKHOLM} \(.*503\)"):
        ingest_weather(request(), deps, source)

    assert source.calls == [STOCKHOLM, MALMO]
    assert [e.location_id for e in announced(deps)] == [MALMO]
    assert deps.store.get(forecast_path(STOCKHOLM, ISSUED)) is None

    source.failing.clear()
    events = ingest_weather(request(), deps, source)

    assert [e.location_id for e in events] == [STOCKHOLM]
    assert sorted(e.location_id for e in announced(deps)) == [MALMO, STOCKHOLM]


def test_a_rejected_feed_for_one_location_is_skipped_for_good(
    deps: Dependencies, source: FakeWeatherSource
) -> None:
    register_fleet(deps)
    source.failing[MALMO] = FeedRejected("Open-Meteo forecast: the body is empty")

    events = ingest_weather(request(), deps, source)

    assert [e.location_id for e in events] == [STOCKHOLM]


# The Pub/Sub handler


def message(data: bytes) -> PubSubMessage:
    return PubSubMessage(message_id="m-1", data=data, attributes={}, publish_time=NOW)


def test_the_handler_decodes_the_request_and_uses_the_installed_source(
    deps: Dependencies, source: FakeWeatherSource
) -> None:
    register_fleet(deps)
    use_weather_source(source)

    handle_weather_ingest_request(message(encode_json_message(request())), deps)

    assert source.calls == [STOCKHOLM, MALMO]
    assert len(announced(deps)) == 2


def test_the_handler_refuses_a_malformed_request_for_good(deps: Dependencies) -> None:
    bad = json.dumps({"schema_version": 1, "location_ids": "everywhere"}).encode()

    with pytest.raises(MalformedMessage, match="location_ids"):
        handle_weather_ingest_request(message(bad), deps)


def test_open_meteo_on_the_dependencies_clock_is_the_default_source(deps: Dependencies) -> None:
    default = weather_source(deps)

    assert isinstance(default, OpenMeteoWeatherSource)
    assert weather_source(deps) is default
