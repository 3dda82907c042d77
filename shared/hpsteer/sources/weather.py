"""The weather source protocol: a forecast for one location, or a clear refusal.

A provider module has two halves, as for prices: a pure *parser* (payload bytes in,
:class:`~hpsteer.domain.weather.WeatherSeries` out, no I/O) and a *client* (httpx) that fetches the
payload and hands it to the parser. Clients and replays implement :class:`WeatherSource`:

- ``forecast`` returns the provider's current forecast for ``location``: points keyed by their
  valid instant (aware UTC), strictly increasing, each with an outdoor temperature; the series
  carries ``location.location_id`` and the instant the forecast was issued (the source says how
  it knows it);
- a provider that fails, times out or throttles raises
  :class:`~hpsteer.errors.ProviderUnavailable` (try again later);
- a payload that is malformed or fails validation raises :class:`~hpsteer.errors.FeedRejected`
  naming what is wrong; nothing of it is used.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from hpsteer.domain.devices import Location
from hpsteer.domain.weather import WeatherSeries

__all__ = ["WeatherSource"]


@runtime_checkable
class WeatherSource(Protocol):
    @property
    def name(self) -> str:
        """``openmeteo``, ``replay``…: stored as the forecast's ``source``."""
        ...

    def forecast(self, location: Location) -> WeatherSeries: ...
