"""Weather ingestion: fetch a forecast per location, store it once, announce it once.

:func:`ingest_weather` serves one :class:`~hpsteer.domain.messages.WeatherIngestRequest`:

1. **Locations.** The request's ``location_ids``, or, when empty, every distinct location of the
   steered devices (``devices`` where ``steering_enabled == True``, read in pages). Devices are
   grouped by their coordinates rounded to 2 decimals (about 1 km north-south, less east-west;
   weather models' grid cells are 1-11 km, so nearer homes share one forecast); the forecast's
   location id is derived from the rounded coordinates (``lat59.30_lon18.16``: see
   :func:`forecast_location_id`) and the provider is asked for those rounded coordinates. Each
   device keeps its own ``location.location_id``; a consumer finds its forecast with
   :func:`forecast_location`. A requested id in that form names its coordinates; any other id is
   looked up in ``locations/{id}`` and skipped (logged) when unknown.
2. **Store once.** Each forecast goes to ``locations/{location_id}/forecasts/{issued_at compact}``
   (``20250224T000000Z``) with ``create()`` and ``announced: false``. An existing document is the
   same forecast already stored (a redelivery): the stored version wins, nothing new is written.
3. **Analytics.** The stored points are appended to ``weather_forecasts`` with insert ids
   ``{location_id}/{issued_at}/{valid_at}``: appending again adds nothing.
4. **Latest.** ``locations/{location_id}`` gets ``latitude``, ``longitude`` and
   ``latest_forecast_issued_at``, moved forward only (an older forecast stored late never
   replaces a newer one), in a transaction.
5. **Announce once.** :class:`~hpsteer.domain.messages.WeatherUpdated` is published on
   ``weather-updates`` only for a forecast not yet announced, then the document gets
   ``announced: true``. A crash between store and publish leaves ``announced: false``, and the
   redelivery that finds it publishes it (steps 3-4 repeat harmlessly). A crash between publish and
   marking publishes twice on redelivery: at-least-once, as everywhere on the bus.

Failures are per location: a provider that fails transiently (:class:`ProviderUnavailable`) does
not stop the others; after all locations are done, :class:`ProviderUnavailable` is raised naming
the failed ones, so Pub/Sub delivers the request again (what was stored is idempotent). A
permanent failure for one location (a rejected feed, an unknown location) is logged and that
location skipped. Store, bus and analytics outages escape at once (they would fail every
location alike; the redelivery resumes idempotently).

The weather source is Open-Meteo by default; tests and the local runtime install another with
:func:`use_weather_source`.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from hpsteer.domain.base import describe_validation_error
from hpsteer.domain.devices import Location
from hpsteer.domain.instants import format_instant
from hpsteer.domain.messages import Topic, WeatherIngestRequest, WeatherUpdated, schedule_tick
from hpsteer.domain.weather import WeatherPoint, WeatherSeries
from hpsteer.errors import (
    ConcurrencyConflict,
    DocumentAlreadyExists,
    InvalidInput,
    NotFound,
    PermanentError,
    ProviderUnavailable,
)
from hpsteer.messaging.envelope import PubSubMessage, encode_json_message
from hpsteer.observability.logging import log_context
from hpsteer.ports.analytics import Column, TableSchema
from hpsteer.ports.store import DocumentStore, Filter, Transaction
from hpsteer.runtime.bootstrap import Dependencies
from hpsteer.sources.weather import WeatherSource

if TYPE_CHECKING:
    pass

__all__ = [
    "WEATHER_FORECASTS",
    "forecast_location",
    "forecast_location_id",
    "forecast_path",
    "handle_weather_ingest_request",
    "ingest_weather",
    "location_path",
    "series_from_document",
    "steered_locations",
    "use_weather_source",
    "weather_source",
]

_log = logging.getLogger(__name__)

WEATHER_FORECASTS = TableSchema(
    name="weather_forecasts",
    columns=(
        Column("location_id", "STRING", required=True),
        Column("issued_at", "TIMESTAMP", required=True, description="when the forecast was made"),
        Column("valid_at", "TIMESTAMP", required=True, description="the instant it forecasts"),
        Column("outdoor_temp_c", "FLOAT64", required=True),
        Column("solar_irradiance_w_per_m2", "FLOAT64"),
        Column("wind_speed_m_per_s", "FLOAT64"),
    ),
    partition_by="valid_at",
    cluster_by=("location_id",),
    description="Every stored weather forecast, one row per location, issue time and instant.",
)

DEVICE_PAGE_SIZE = 300
_LOCATION_ID = re.compile(r"lat(-?\d{1,2}\.\d{2})_lon(-?\d{1,3}\.\d{2})")


# -- locations -------------------------------------------------------------------------------


def _rounded(degrees: float) -> float:
    return round(degrees, 2) + 0.0  # + 0.0 turns -0.0 into 0.0, so one place has one id


def forecast_location_id(latitude: float, longitude: float) -> str:
    """``lat59.30_lon18.16``: the id of the forecast location covering these coordinates."""
    return f"lat{_rounded(latitude):.2f}_lon{_rounded(longitude):.2f}"


def forecast_location(latitude: float, longitude: float) -> Location:
    """The forecast location (coordinates rounded to 2 decimals) covering these coordinates."""
    return Location(
        location_id=forecast_location_id(latitude, longitude),
        latitude=_rounded(latitude),
        longitude=_rounded(longitude),
    )


def location_path(location_id: str) -> str:
    return f"locations/{location_id}"


def forecast_path(location_id: str, issued_at: datetime) -> str:
    """``locations/{location_id}/forecasts/20250224T000000Z``."""
    return f"{location_path(location_id)}/forecasts/{issued_at:%Y%m%dT%H%M%SZ}"


def _device_pages(store: DocumentStore) -> Iterator[Mapping[str, Any]]:
    cursor: str | None = None
    while True:
        page = store.query(
            "devices",
            [Filter("steering_enabled", "==", True)],
            limit=DEVICE_PAGE_SIZE,
            cursor=cursor,
        )
        for document in page.documents:
            yield {"path": document.path, **document.data}
        if page.next_cursor is None:
            return
        cursor = page.next_cursor


def steered_locations(store: DocumentStore) -> list[Location]:
    """The distinct forecast locations of every steered device, in order of first appearance."""
    found: dict[str, Location] = {}
    for device in _device_pages(store):
        try:
            where = Location.model_validate(device.get("location"))
        except ValidationError as err:
            _log.error(
                "device %s has no usable location, skipped: %s",
                device["path"],
                describe_validation_error(err),
            )
            continue
        location = forecast_location(where.latitude, where.longitude)
        found.setdefault(location.location_id, location)
    return list(found.values())


def _requested_locations(store: DocumentStore, location_ids: Iterable[str]) -> list[Location]:
    found: dict[str, Location] = {}
    for location_id in dict.fromkeys(location_ids):
        match = _LOCATION_ID.fullmatch(location_id)
        if match:
            found[location_id] = forecast_location(float(match[1]), float(match[2]))
            continue
        document = store.get(location_path(location_id))
        try:
            if document is None:
                raise NotFound(f"no location {location_id}")
            found[location_id] = Location(
                location_id=location_id,
                latitude=document.data["latitude"],
                longitude=document.data["longitude"],
            )
        except (NotFound, KeyError, ValidationError) as err:
            _log.error("unknown or unusable location %s, skipped: %s", location_id, err)
    return list(found.values())


# -- one forecast ----------------------------------------------------------------------------


def _forecast_document(series: WeatherSeries, stored_at: datetime) -> dict[str, Any]:
    return {
        "schema_version": 1,
        "location_id": series.location_id,
        "latitude": series.latitude,
        "longitude": series.longitude,
        "issued_at": series.issued_at,
        "source": series.source,
        "stored_at": stored_at,
        "announced": False,
        "points": [
            {
                "valid_at": point.at,
                "outdoor_temp_c": point.outdoor_temp_c,
                "solar_irradiance_w_per_m2": point.solar_irradiance_w_per_m2,
                "wind_speed_m_per_s": point.wind_speed_m_per_s,
            }
            for point in series.points
        ],
    }


def series_from_document(data: Mapping[str, Any]) -> WeatherSeries:
    try:
        return WeatherSeries(
            location_id=data["location_id"],
            latitude=data["latitude"],
            longitude=data["longitude"],
            issued_at=data["issued_at"],
            source=data["source"],
            points=tuple(
                WeatherPoint(
                    at=point["valid_at"],
                    outdoor_temp_c=point["outdoor_temp_c"],
                    solar_irradiance_w_per_m2=point.get("solar_irradiance_w_per_m2"),
                    wind_speed_m_per_s=point.get("wind_speed_m_per_s"),
                )
                for point in data["points"]
            ),
        )
    except (KeyError, TypeError) as err:
        raise InvalidInput(f"stored forecast lacks {err}") from err
    except ValidationError as err:
        raise InvalidInput(f"stored forecast: {describe_validation_error(err)}") from err


def _analytics_rows(series: WeatherSeries) -> tuple[list[dict[str, Any]], list[str]]:
    issued = format_instant(series.issued_at)
    rows = [
        {
            "location_id": series.location_id,
            "issued_at": series.issued_at,
            "valid_at": point.at,
            "outdoor_temp_c": point.outdoor_temp_c,
            "solar_irradiance_w_per_m2": point.solar_irradiance_w_per_m2,
            "wind_speed_m_per_s": point.wind_speed_m_per_s,
        }
        for point in series.points
    ]
    ids = [f"{series.location_id}/{issued}/{format_instant(point.at)}" for point in series.points]
    return rows, ids


def _advance_latest(store: DocumentStore, series: WeatherSeries) -> None:
    path = location_path(series.location_id)

    def advance(tx: Transaction) -> None:
        current = tx.get(path)
        latest = None if current is None else current.data.get("latest_forecast_issued_at")
        if isinstance(latest, datetime) and latest >= series.issued_at:
            return
        tx.set(
            path,
            {
                "location_id": series.location_id,
                "latitude": series.latitude,
                "longitude": series.longitude,
                "latest_forecast_issued_at": series.issued_at,
                "latest_forecast_source": series.source,
            },
            merge=True,
        )

    store.run_transaction(advance)


class _Run:
    """One request's work: the dependencies, and the analytics table ensured once, lazily."""

    def __init__(self, deps: Dependencies) -> None:
        self.deps = deps
        self._table_ready = False

    def append(self, series: WeatherSeries) -> None:
        analytics = self.deps.analytics
        if not self._table_ready:
            analytics.ensure_table(WEATHER_FORECASTS)
            self._table_ready = True
        rows, insert_ids = _analytics_rows(series)
        analytics.append(WEATHER_FORECASTS.name, rows, insert_ids)

    def ingest(self, location: Location, source: WeatherSource) -> WeatherUpdated | None:
        """Store, record and announce ``location``'s forecast; None if it was announced already."""
        store = self.deps.store
        series = source.forecast(location)
        path = forecast_path(series.location_id, series.issued_at)
        try:
            store.create(path, _forecast_document(series, self.deps.clock.now()))
        except DocumentAlreadyExists:
            existing = store.get(path)
            if existing is None:  # deleted between our create and get: let a retry decide
                raise ConcurrencyConflict(f"{path} vanished while being stored") from None
            if existing.data.get("announced") is True:
                _log.info("forecast %s is already stored and announced", path)
                return None
            _log.info("forecast %s was stored but not announced: announcing it now", path)
            series = series_from_document(existing.data)
        self.append(series)
        _advance_latest(store, series)
        event = WeatherUpdated(location_id=series.location_id, issued_at=series.issued_at)
        self.deps.bus.publish(
            Topic.WEATHER_UPDATES,
            encode_json_message(event),
            attributes={"location_id": series.location_id},
        )
        store.update(path, {"announced": True, "announced_at": self.deps.clock.now()})
        _log.info("stored and announced forecast %s (%d points)", path, len(series.points))
        return event


# -- the use case ----------------------------------------------------------------------------


def ingest_weather(
    request: WeatherIngestRequest, deps: Dependencies, source: WeatherSource
) -> list[WeatherUpdated]:
    """Ingest the forecasts ``request`` asks for; return the events published by this call.

    Raises :class:`ProviderUnavailable` after all locations were tried if any failed transiently.
    """
    locations: Sequence[Location] = (
        _requested_locations(deps.store, request.location_ids)
        if request.location_ids
        else steered_locations(deps.store)
    )
    run = _Run(deps)
    published: list[WeatherUpdated] = []
    failed: list[str] = []
    for location in locations:
        with log_context(location_id=location.location_id):
            try:
                event = run.ingest(location, source)
            except ProviderUnavailable as err:
                _log.warning(
                    "weather for %s not fetched, will retry: %s", location.location_id, err
                )
                failed.append(f"{location.location_id} ({err})")
                continue
            except PermanentError as err:
                _log.error(
                    "weather for %s refused for good: %s: %s",
                    location.location_id,
                    type(err).__name__,
                    err,
                )
                continue
        if event is not None:
            published.append(event)
    if failed:
        raise ProviderUnavailable(
            f"weather failed transiently for {len(failed)} of {len(locations)} locations: "
            + "; ".join(failed[:5])
            + (" …" if len(failed) > 5 else "")
        )
    return published


# -- the weather source of this process ------------------------------------------------------

_source_lock = threading.Lock()
_installed: WeatherSource | None = None


def use_weather_source(source: WeatherSource | None) -> None:
    """Install ``source`` for :func:`handle_weather_ingest_request` (None: back to settings)."""
    global _installed
    with _source_lock:
        _installed = source


def _configured_source(deps: Dependencies) -> WeatherSource:
    if deps.settings.weather_feed == "replay":
        from hpsteer.sources.replay_weather import ReplayWeatherSource, bundled_weather_dir

        return ReplayWeatherSource(bundled_weather_dir(), clock=deps.clock)
    from hpsteer.sources.openmeteo import OpenMeteoWeatherSource  # httpx: on first use

    return OpenMeteoWeatherSource(clock=deps.clock)


def weather_source(deps: Dependencies) -> WeatherSource:
    """The installed source, else the configured one (``HPSTEER_WEATHER_FEED``), built once per
    dependencies."""
    with _source_lock:
        installed = _installed
    if installed is not None:
        return installed
    return deps.singleton("weather-source", lambda: _configured_source(deps))


def handle_weather_ingest_request(message: PubSubMessage, deps: Dependencies) -> None:
    """The ``weather-ingest-requests`` handler: decode the request and ingest it."""
    request = WeatherIngestRequest.parse_json(message.data)
    published = ingest_weather(request, deps, weather_source(deps))
    _log.info(
        "weather ingest request handled: %d new forecasts announced",
        len(published),
        extra={
            "scheduled_at": format_instant(
                schedule_tick(request.scheduled_at, message.publish_time)
            )
        },
    )
