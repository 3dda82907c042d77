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
4. **Latest, and the past weather.** ``locations/{location_id}`` gets ``latitude``,
   ``longitude`` and ``latest_forecast_issued_at``, moved forward only (an older forecast stored
   late never replaces a newer one); in the same transaction the forecast joins the location's
   past weather digest ``locations/{location_id}/past_weather/digest``
   (:func:`past_weather_document`): every forecast issued over ``identify_history_days`` and
   two days before, each cut to the points identification can read of it, so that a shard
   reads the history's weather in one document
   (:func:`~hpsteer.services.plan_inputs.past_forecasts`) and gets what all of them give.
   Adding a forecast the digest holds changes nothing (a redelivery), and a forecast stored
   late takes its place among the others: the digest depends on which forecasts were stored,
   not on their order. A location without a digest (its forecasts stored before the digest
   existed) gets one from its stored forecasts, once.
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

import bisect
import logging
import re
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import pairwise
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
from hpsteer.ports.store import DocumentStore, Filter, Order, Transaction, every_page
from hpsteer.runtime.bootstrap import Dependencies
from hpsteer.sources.weather import WeatherSource

if TYPE_CHECKING:
    pass

__all__ = [
    "PAST_WEATHER_LEAD",
    "PAST_WEATHER_REACH",
    "PAST_WEATHER_SLACK",
    "WEATHER_FORECASTS",
    "forecast_location",
    "forecast_location_id",
    "forecast_path",
    "handle_weather_ingest_request",
    "ingest_weather",
    "location_path",
    "past_weather_document",
    "past_weather_path",
    "past_weather_series",
    "series_from_document",
    "steered_locations",
    "stored_forecasts",
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


def stored_forecasts(
    store: DocumentStore, location_id: str, *, since: datetime, until: datetime
) -> list[WeatherSeries]:
    """The location's stored forecasts issued from ``since`` to ``until``, oldest first: one
    query on ``locations/{id}/forecasts`` (single-field range on ``issued_at``: no composite
    index), one read per forecast. A stored forecast that cannot be read, or has no points, is
    left out. Raises what the store raises."""
    found: list[WeatherSeries] = []
    documents = every_page(
        lambda cursor: store.query(
            f"{location_path(location_id)}/forecasts",
            [Filter("issued_at", ">=", since), Filter("issued_at", "<=", until)],
            [Order("issued_at")],
            cursor=cursor,
        )
    )
    for document in documents:
        try:
            series = series_from_document(document.data)
        except InvalidInput:
            continue
        if series.points:
            found.append(series)
    found.sort(key=lambda series: series.issued_at)
    return found


# -- the past weather digest -------------------------------------------------------------------

PAST_WEATHER_REACH = timedelta(hours=1)
"""How far after a measured slot's start identification reads its weather (at the slot's middle):
a slot runs between the indoor samples nearest two consecutive clock hours, each within 30
minutes of its hour (:mod:`hpsteer.services.plan_inputs`), so it lasts at most 2 hours."""
PAST_WEATHER_LEAD = timedelta(hours=12)
"""An earlier forecast issued at most this long before another one stands in for it before its
issue; at most the day before the history from which shards read forecasts."""
PAST_WEATHER_SLACK = timedelta(days=2)
"""The digest keeps the forecasts issued over ``identify_history_days`` and this much before (a
shard reads them from a day before its history)."""


def past_weather_path(location_id: str) -> str:
    """``locations/{location_id}/past_weather/digest``."""
    return f"{location_path(location_id)}/past_weather/digest"


@dataclass(frozen=True, slots=True)
class _Issue:
    """One forecast in the digest: what it covered when issued, and the points it keeps."""

    issued_at: datetime
    source: str
    first_at: datetime
    last_at: datetime
    points: tuple[WeatherPoint, ...]

    @classmethod
    def of(cls, series: WeatherSeries) -> _Issue:
        points = series.points
        return cls(series.issued_at, series.source, points[0].at, points[-1].at, points)

    def cut(self, keep_from: datetime, keep_until: datetime) -> _Issue:
        """Only the points interpolation over ``keep_from``..``keep_until`` reads: from the last
        before ``keep_from`` (strictly: an instant on a point is found on the pair it ends, as on
        the whole forecast) to the first at or after ``keep_until``."""
        times = [p.at for p in self.points]
        start = max(0, bisect.bisect_left(times, keep_from) - 1)
        end = bisect.bisect_left(times, keep_until) + 1
        return _Issue(
            self.issued_at, self.source, self.first_at, self.last_at, self.points[start:end]
        )

    def recorded(self) -> dict[str, Any]:
        return {
            "issued_at": self.issued_at,
            "source": self.source,
            "first_at": self.first_at,
            "last_at": self.last_at,
            "at": [p.at for p in self.points],
            "outdoor_temp_c": [p.outdoor_temp_c for p in self.points],
            "solar_irradiance_w_per_m2": [p.solar_irradiance_w_per_m2 for p in self.points],
        }

    @classmethod
    def from_recorded(cls, data: Mapping[str, Any]) -> _Issue:
        """The entry ``data`` (:meth:`recorded`); :class:`InvalidInput` when malformed."""
        try:
            at, temps, solar = data["at"], data["outdoor_temp_c"], data["solar_irradiance_w_per_m2"]
            times = (data["issued_at"], data["first_at"], data["last_at"])
            source = data["source"]
            points = tuple(
                WeatherPoint(at=t, outdoor_temp_c=c, solar_irradiance_w_per_m2=s)
                for t, c, s in zip(at, temps, solar, strict=True)
            )
        except (KeyError, TypeError, ValueError) as err:  # ValueError: zip's ragged arrays
            if isinstance(err, ValidationError):
                raise InvalidInput(f"past weather: {describe_validation_error(err)}") from err
            raise InvalidInput(f"past weather entry unreadable: {err}") from err
        if not all(isinstance(t, datetime) and t.tzinfo is not None for t in times):
            raise InvalidInput("past weather entry without aware issue and cover times")
        if not isinstance(source, str) or not source:
            raise InvalidInput("past weather entry without a source")
        if not points or any(b.at <= a.at for a, b in pairwise(points)):
            raise InvalidInput("past weather entry: no points, or not in increasing time")
        return cls(times[0], source, times[1], times[2], points)


def _needed(issues: Sequence[_Issue]) -> list[_Issue]:
    """``issues`` (oldest first) each cut to what identification can read of it
    (:func:`past_weather_document`)."""
    kept: list[_Issue] = []
    for i, issue in enumerate(issues):
        t = issue.issued_at
        stood_in = issue.first_at >= t or any(
            t - PAST_WEATHER_LEAD <= earlier.issued_at
            and earlier.first_at <= issue.first_at
            and earlier.last_at >= t
            for earlier in issues[:i]
        )
        keep_from = t if stood_in else issue.first_at
        keep_until = min(
            [issue.last_at]
            + [
                max(later.issued_at + PAST_WEATHER_REACH, later.first_at)
                for later in issues[i + 1 :]
                if later.last_at >= issue.last_at
            ]
        )
        kept.append(issue.cut(keep_from, keep_until))
    return kept


def past_weather_document(
    location: Location,
    current: Mapping[str, Any] | None,
    forecasts: Sequence[WeatherSeries],
    *,
    keep_since: datetime,
) -> dict[str, Any]:
    """The digest ``locations/{id}/past_weather/digest`` of ``location`` with ``forecasts`` (its
    own, each with points) added to ``current`` (the stored digest; None: none yet), from which
    :func:`past_weather_series` gives what the stored forecasts give identification.

    Each forecast issued from ``keep_since`` on is kept (older ones are dropped; a forecast
    already in the digest stays as it is: ingestion stores a forecast once), with what it
    covered (its first and last instant) and only the points identification can read of it.
    Identification reads a slot's weather at its middle, at most :data:`PAST_WEATHER_REACH`
    after its start, from the forecast issued last at or before the start that covers the
    middle (:mod:`hpsteer.services.plan_inputs`). So a forecast keeps the points that
    interpolate it:

    - from its issue on; before its issue too, only when no forecast issued up to
      :data:`PAST_WEATHER_LEAD` before it covers from its first instant to its issue (only then
      can it stand in for an earlier one there);
    - until :data:`PAST_WEATHER_REACH` after the issue of the first later forecast that covers
      until it does (from then on every slot finds that one, or a later one, first).

    The result depends on the set of forecasts only, not on the order they arrive in: a late
    forecast only ever cuts the others further, and a cut forecast keeps what the new cut
    needs. A malformed stored entry is dropped (its forecast is left to the fallback: none)."""
    issues: dict[datetime, _Issue] = {}
    recorded = None if current is None else current.get("forecasts")
    for key, data in recorded.items() if isinstance(recorded, Mapping) else ():
        try:
            issue = _Issue.from_recorded(data)
        except InvalidInput as err:
            _log.warning("past weather entry %s dropped: %s", key, err)
            continue
        issues[issue.issued_at] = issue
    for series in forecasts:
        if series.issued_at not in issues:
            issues[series.issued_at] = _Issue.of(series)
    ordered = sorted((i for i in issues.values() if i.issued_at >= keep_since), key=_issued)
    return {
        "schema_version": 1,
        "location_id": location.location_id,
        "latitude": location.latitude,
        "longitude": location.longitude,
        "forecasts": {
            f"{issue.issued_at:%Y%m%dT%H%M%SZ}": issue.recorded() for issue in _needed(ordered)
        },
    }


def _issued(issue: _Issue) -> datetime:
    return issue.issued_at


def past_weather_series(data: Mapping[str, Any]) -> list[WeatherSeries]:
    """The forecasts of a digest (:func:`past_weather_document`), oldest first, each with the
    points it keeps (no wind). Raises :class:`InvalidInput` when the digest or an entry is
    malformed."""
    recorded = data.get("forecasts")
    if not isinstance(recorded, Mapping):
        raise InvalidInput("past weather lacks its forecasts")
    issues = sorted(map(_Issue.from_recorded, recorded.values()), key=_issued)
    try:
        return [
            WeatherSeries(
                location_id=data["location_id"],
                latitude=data["latitude"],
                longitude=data["longitude"],
                issued_at=issue.issued_at,
                source=issue.source,
                points=issue.points,
            )
            for issue in issues
        ]
    except (KeyError, TypeError) as err:
        raise InvalidInput(f"past weather lacks {err}") from err
    except ValidationError as err:
        raise InvalidInput(f"past weather: {describe_validation_error(err)}") from err


def _advance_latest(
    store: DocumentStore, series: WeatherSeries, *, keep_since: datetime, now: datetime
) -> None:
    """Move ``locations/{id}`` to ``series`` if it is newer, and add it to the location's past
    weather digest, in one transaction. A location without a digest yet (its forecasts stored
    before the digest existed) gets one built from its stored forecasts since ``keep_since``
    (one query, once per location) and ``series``."""
    path = location_path(series.location_id)
    digest_path = past_weather_path(series.location_id)

    def advance(tx: Transaction, stored: Sequence[WeatherSeries] | None) -> bool:
        current = tx.get(path)
        digest = tx.get(digest_path)
        if digest is None and stored is None:
            return False  # the stored forecasts are read first, outside the transaction
        before = None if digest is None else digest.data
        location = Location(
            location_id=series.location_id, latitude=series.latitude, longitude=series.longitude
        )
        forecasts = [*(stored or ()), series]
        after = past_weather_document(location, before, forecasts, keep_since=keep_since)
        latest = None if current is None else current.data.get("latest_forecast_issued_at")
        if not (isinstance(latest, datetime) and latest >= series.issued_at):
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
        if after != before:
            tx.set(digest_path, after)
        return True

    if store.run_transaction(lambda tx: advance(tx, None)):
        return
    stored = stored_forecasts(store, series.location_id, since=keep_since, until=now)
    store.run_transaction(lambda tx: advance(tx, stored))


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
        history = timedelta(days=self.deps.settings.identify_history_days)
        now = self.deps.clock.now()
        _advance_latest(store, series, keep_since=now - history - PAST_WEATHER_SLACK, now=now)
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
