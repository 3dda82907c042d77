"""Energy-Charts: ``/price`` bodies in, validated delivery days out.

The fixtures are Energy-Charts AT prices as re-serialised by awattar-backtesting (see
``tests/fixtures/prices/energycharts/PROVENANCE.md``); :func:`api_body` turns each back into the
API's own shape ``{license_info, unix_seconds, price, unit, deprecated}`` before replaying it.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from hpsteer.domain.market import PriceArea, Resolution
from hpsteer.errors import FeedRejected, InvalidInput, ProviderUnavailable
from hpsteer.ports.clock import SimulatedClock
from hpsteer.sources.energycharts import BIDDING_ZONES, EnergyChartsPriceSource, parse_price
from hpsteer.sources.prices import PriceSource

FIXTURES = Path(__file__).parent.parent / "fixtures" / "prices" / "energycharts"
NOW = datetime(2026, 4, 1, 12, 0, tzinfo=UTC)
ORDINARY_DAY = date(2025, 11, 12)
LICENSE = "CC BY 4.0 (creativecommons.org/licenses/by/4.0) from Bundesnetzagentur | SMARD.de"

Handler = Callable[[httpx.Request], httpx.Response]


def api_document(market_date: date) -> dict[str, Any]:
    """A fixture day in the API's shape (the conversion PROVENANCE.md describes)."""
    normalized = FIXTURES / f"energycharts_AT_price_normalized_{market_date}.json"
    if normalized.exists():
        stored = json.loads(normalized.read_bytes())
        (unit,) = {item["unit"] for item in stored["data"]}
        return {
            "license_info": stored["license_info"],
            "unix_seconds": [item["start_timestamp"] // 1000 for item in stored["data"]],
            "price": [item["marketprice"] for item in stored["data"]],
            "unit": unit,
            "deprecated": False,
        }
    with (FIXTURES / f"energycharts_AT_15min_{market_date}_excerpt.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    return {
        "license_info": LICENSE,
        "unix_seconds": [int(row["start_timestamp_ms"]) // 1000 for row in rows],
        "price": [float(row["marketprice_eur_mwh"]) for row in rows],
        "unit": "EUR / MWh",
        "deprecated": False,
    }


def api_body(market_date: date) -> bytes:
    return json.dumps(api_document(market_date)).encode()


def source_with(handler: Handler) -> tuple[EnergyChartsPriceSource, list[httpx.Request]]:
    seen: list[httpx.Request] = []

    def recording(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return handler(request)

    client = httpx.Client(transport=httpx.MockTransport(recording))
    return EnergyChartsPriceSource(client=client, clock=SimulatedClock(NOW)), seen


def replying(content: bytes, status: int = 200, headers: dict[str, str] | None = None) -> Handler:
    return lambda request: httpx.Response(status, content=content, headers=headers)


# --- days ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("market_date", "resolution", "slots"),
    [
        (date(2025, 9, 30), Resolution.PT60M, 24),
        (ORDINARY_DAY, Resolution.PT15M, 96),
        (date(2025, 10, 26), Resolution.PT15M, 100),
        (date(2026, 3, 29), Resolution.PT15M, 92),
    ],
    ids=["last-hourly-day-24", "ordinary-quarter-hours-96", "fall-back-100", "spring-forward-92"],
)
def test_a_day_comes_at_the_resolution_its_spacing_shows_with_every_slot_priced(
    market_date: date, resolution: Resolution, slots: int
) -> None:
    document = api_document(market_date)
    source, _ = source_with(replying(json.dumps(document).encode()))

    day = source.fetch(PriceArea.AT, market_date)

    assert day is not None
    assert day.resolution is resolution
    assert len(day.prices_eur_per_mwh) == slots
    assert day.prices_eur_per_mwh == tuple(document["price"])
    assert (day.source, day.original_currency, day.original_unit) == ("energycharts", "EUR", "MWh")
    assert day.fetched_at == NOW


def test_negative_prices_are_kept_as_they_are() -> None:
    document = api_document(ORDINARY_DAY)
    document["price"][10:14] = [-0.01, -5.2, -498.65, -12.0]
    source, _ = source_with(replying(json.dumps(document).encode()))

    day = source.fetch(PriceArea.AT, ORDINARY_DAY)

    assert day is not None
    assert day.prices_eur_per_mwh[10:14] == (-0.01, -5.2, -498.65, -12.0)


@pytest.mark.parametrize(
    ("unit", "expected"),
    [
        ("EUR / MWh", ("EUR", "MWh")),
        ("EUR/MWh", ("EUR", "MWh")),
        ("No Unit", ("EUR", "MWh")),
        ("EUR / kWh", ("EUR", "kWh")),
        ("EUR/KWH", ("EUR", "kWh")),
    ],
)
def test_the_unit_string_gives_currency_and_unit(unit: str, expected: tuple[str, str]) -> None:
    document = {**api_document(ORDINARY_DAY), "unit": unit}

    series = parse_price(json.dumps(document), PriceArea.AT)

    assert (series.currency, series.unit) == expected


def test_kwh_prices_are_scaled_to_mwh_by_validation() -> None:
    document = api_document(ORDINARY_DAY)
    document["unit"] = "EUR / kWh"
    document["price"] = [price / 1000 for price in document["price"]]
    source, _ = source_with(replying(json.dumps(document).encode()))

    day = source.fetch(PriceArea.AT, ORDINARY_DAY)

    assert day is not None
    assert day.original_unit == "kWh"
    assert day.prices_eur_per_mwh == pytest.approx(api_document(ORDINARY_DAY)["price"])


def test_the_resolution_hint_decides_only_when_the_spacing_cannot() -> None:
    one_point = {**api_document(ORDINARY_DAY)}
    one_point["unix_seconds"] = one_point["unix_seconds"][:1]
    one_point["price"] = one_point["price"][:1]

    assert parse_price(json.dumps(one_point), PriceArea.AT, Resolution.PT15M).resolution is (
        Resolution.PT15M
    )
    assert parse_price(api_body(date(2025, 9, 30)), PriceArea.AT, Resolution.PT15M).resolution is (
        Resolution.PT60M
    )


def test_points_of_neighbouring_days_are_ignored() -> None:
    document = api_document(ORDINARY_DAY)
    document["unix_seconds"] = [document["unix_seconds"][0] - 900, *document["unix_seconds"]]
    document["price"] = [9999.0, *document["price"]]  # the previous day's last quarter-hour
    source, _ = source_with(replying(json.dumps(document).encode()))

    day = source.fetch(PriceArea.AT, ORDINARY_DAY)

    assert day is not None
    assert day.prices_eur_per_mwh == tuple(api_document(ORDINARY_DAY)["price"])


def test_a_body_with_only_other_days_means_not_published_yet() -> None:
    source, _ = source_with(replying(api_body(date(2025, 10, 26))))

    assert source.fetch(PriceArea.AT, date(2025, 10, 27)) is None


# --- requests ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("area", "market_date", "bzn", "start", "end"),
    [
        (PriceArea.AT, date(2025, 10, 26), "AT", "2025-10-25T22:00Z", "2025-10-26T23:00Z"),
        (PriceArea.DE_LU, date(2026, 3, 29), "DE-LU", "2026-03-28T23:00Z", "2026-03-29T22:00Z"),
        (PriceArea.DK1, date(2024, 1, 15), "DK1", "2024-01-14T23:00Z", "2024-01-15T23:00Z"),
    ],
    ids=["at-fall-back", "de-lu-spring-forward", "dk1-winter"],
)
def test_the_request_names_the_zone_and_the_utc_bounds_of_the_delivery_day(
    area: PriceArea, market_date: date, bzn: str, start: str, end: str
) -> None:
    source, seen = source_with(replying(b"", 404))

    assert source.fetch(area, market_date) is None

    (request,) = seen
    assert request.method == "GET"
    assert f"{request.url.scheme}://{request.url.host}{request.url.path}" == (
        "https://api.energy-charts.info/price"
    )
    assert dict(request.url.params) == {"bzn": bzn, "start": start, "end": end}
    timeouts = request.extensions["timeout"]
    assert all(timeouts[kind] is not None for kind in ("connect", "read", "write", "pool"))


def test_it_is_a_price_source_for_every_zone_of_its_table() -> None:
    source, _ = source_with(replying(b""))

    assert isinstance(source, PriceSource)
    assert source.name == "energycharts"
    assert all(source.supports(area) for area in BIDDING_ZONES)
    assert BIDDING_ZONES[PriceArea.DE_LU] == "DE-LU"


# --- not published yet -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "handler",
    [
        replying(b'{"detail": "No data for the requested range"}', 404),
        replying(b"Not Found", 404),
        replying(
            json.dumps(
                {"license_info": LICENSE, "unix_seconds": [], "price": [], "unit": "EUR / MWh"}
            ).encode()
        ),
    ],
    ids=["404-no-data", "404-plain", "empty-arrays"],
)
def test_no_point_in_the_day_means_not_published_yet(handler: Handler) -> None:
    source, _ = source_with(handler)

    assert source.fetch(PriceArea.AT, ORDINARY_DAY) is None


# --- malformed feeds and failing providers ------------------------------------------------


def _mutated(change: Callable[[dict[str, Any]], object]) -> Callable[[], bytes]:
    """The ordinary day's body after ``change`` edited the document in place."""

    def make() -> bytes:
        document = api_document(ORDINARY_DAY)
        change(document)
        return json.dumps(document).encode()

    return make


def _replaced(build: Callable[[dict[str, Any]], object]) -> Callable[[], bytes]:
    """The body ``build`` makes out of the ordinary day's document."""
    return lambda: json.dumps(build(api_document(ORDINARY_DAY))).encode()


def _raw(text: str) -> Callable[[], bytes]:
    return lambda: text.encode()


def _set_price(index: int, value: Any) -> Callable[[dict[str, Any]], None]:
    def change(document: dict[str, Any]) -> None:
        document["price"][index] = value

    return change


def _drop_last(document: dict[str, Any]) -> None:
    del document["unix_seconds"][-1]
    del document["price"][-1]


def _drop_point(index: int) -> Callable[[dict[str, Any]], None]:
    def change(document: dict[str, Any]) -> None:
        del document["unix_seconds"][index]
        del document["price"][index]

    return change


def _duplicate_point(index: int) -> Callable[[dict[str, Any]], None]:
    def change(document: dict[str, Any]) -> None:
        document["unix_seconds"].insert(index, document["unix_seconds"][index])
        document["price"].insert(index, document["price"][index])

    return change


def _hourly_then_quarter_hours(document: dict[str, Any]) -> None:
    # the first 16 quarter-hours replaced by their 4 hours: 60-minute steps, then 15-minute
    document["unix_seconds"][:16] = document["unix_seconds"][0:16:4]
    document["price"][:16] = document["price"][0:16:4]


def _swap_points(document: dict[str, Any]) -> None:
    starts = document["unix_seconds"]
    starts[3], starts[4] = starts[4], starts[3]


MALFORMED: list[Any] = [
    pytest.param(_raw(""), FeedRejected, r"empty body", id="empty-body"),
    pytest.param(
        _raw("<html><head><title>502 Bad Gateway</title></head></html>"),
        FeedRejected,
        r"HTML/XML page, not JSON",
        id="html-page-with-200",
    ),
    pytest.param(_raw('{"unix_seconds": [1762902000'), FeedRejected, r"not JSON", id="truncated"),
    pytest.param(
        _replaced(lambda d: [d]),
        FeedRejected,
        r"expected a JSON object, got list",
        id="wrong-shape",
    ),
    pytest.param(
        _mutated(lambda d: d.pop("price")),
        FeedRejected,
        r"no 'price' array in the body \(keys: deprecated, license_info, unit, unix_seconds\)",
        id="missing-price-array",
    ),
    pytest.param(
        _mutated(lambda d: d["price"].pop()),
        FeedRejected,
        r"96 unix_seconds but 95 prices",
        id="arrays-of-different-length",
    ),
    pytest.param(
        _mutated(lambda d: d["unix_seconds"].__setitem__(5, "2025-11-12T00:15:00Z")),
        FeedRejected,
        r"unix_seconds\[5\] '2025-11-12T00:15:00Z' is not whole seconds",
        id="timestamp-as-text",
    ),
    pytest.param(
        _mutated(_swap_points),
        FeedRejected,
        r"unix_seconds\[4\] \(2025-11-11T23:45Z\) is earlier than the point before it",
        id="points-out-of-order",
    ),
    pytest.param(
        _mutated(_duplicate_point(20)),
        FeedRejected,
        r"slot 20 \(2025-11-12T04:00Z, 05:00 \w+\) has more than one price",
        id="duplicated-point",
    ),
    pytest.param(
        _mutated(_set_price(7, None)),
        FeedRejected,
        r"95 of 96 slots have a price; 1 missing, the first slot 7 \(2025-11-12T00:45Z",
        id="null-price",
    ),
    pytest.param(
        _mutated(_set_price(7, "NaN")),
        FeedRejected,
        r"price 7 \(2025-11-12T00:45Z\) 'NaN' is not a number",
        id="nan-as-a-string",
    ),
    pytest.param(
        _mutated(_set_price(7, float("nan"))),
        FeedRejected,
        r"slot 7 \(2025-11-12T00:45Z, 01:45 \w+\) has no finite price \(nan\)",
        id="nan-literal",
    ),
    pytest.param(
        _mutated(_set_price(7, 4500.0)),
        FeedRejected,
        r"slot 7 .* price 4500 EUR/MWh is outside \[-500, 4000\]",
        id="out-of-range-price",
    ),
    pytest.param(
        _mutated(lambda d: d.__setitem__("unit", "EUR / kWh")),
        FeedRejected,
        r"slot 0 .* price 112580 EUR/MWh is outside",
        id="kwh-unit-with-mwh-sized-values",
    ),
    pytest.param(
        _mutated(lambda d: d.__setitem__("unit", "CHF / MWh")),
        FeedRejected,
        r"prices are in 'CHF', expected EUR",
        id="other-currency",
    ),
    pytest.param(
        _mutated(lambda d: d.__setitem__("unit", "ct / Wh / 2")),
        FeedRejected,
        r"unit 'ct / Wh / 2' is not a price per MWh or kWh",
        id="unknown-unit",
    ),
    pytest.param(
        _mutated(_drop_last),
        FeedRejected,
        r"95 of 96 slots have a price; 1 missing, the first slot 95 \(2025-11-12T22:45Z",
        id="95-quarter-hours",
    ),
    pytest.param(
        _mutated(_hourly_then_quarter_hours),
        FeedRejected,
        r"mixed 15- and 60-minute spacing \(steps of 15, 60 minutes; the first odd one ends at "
        r"unix_seconds\[1\], 2025-11-12T00:00Z\)",
        id="mixed-15-and-60-minute-spacing",
    ),
    pytest.param(
        _mutated(_drop_point(30)),
        FeedRejected,
        r"uneven spacing \(steps of 15, 30 minutes; the first odd one ends at unix_seconds\[30\]",
        id="a-point-left-out",
    ),
    pytest.param(
        _mutated(lambda d: d.__setitem__("unix_seconds", [s + 300 for s in d["unix_seconds"]])),
        FeedRejected,
        r"a price starts at 2025-11-11T23:05Z, which is not on the 15-minute grid",
        id="off-grid-starts",
    ),
]


@pytest.mark.parametrize(("make_body", "error", "message"), MALFORMED)
def test_a_malformed_feed_is_refused_with_a_message_that_names_the_problem(
    make_body: Callable[[], bytes], error: type[Exception], message: str
) -> None:
    source, _ = source_with(replying(make_body()))

    with pytest.raises(error, match=message):
        source.fetch(PriceArea.AT, ORDINARY_DAY)


def _raise(exc: Exception) -> Handler:
    def handler(request: httpx.Request) -> httpx.Response:
        raise exc

    return handler


FAILURES: list[Any] = [
    pytest.param(
        replying(b"Too Many Requests", 429, {"Retry-After": "60"}),
        ProviderUnavailable,
        r"rate limited \(HTTP 429, Retry-After 60 s\)",
        id="429-with-retry-after",
    ),
    pytest.param(
        replying(b"", 429), ProviderUnavailable, r"rate limited \(HTTP 429\)", id="429-bare"
    ),
    pytest.param(
        replying(b"Internal Server Error", 500), ProviderUnavailable, r"HTTP 500", id="500"
    ),
    pytest.param(
        replying(b"<html>Service Unavailable</html>", 503),
        ProviderUnavailable,
        r"HTTP 503",
        id="503",
    ),
    pytest.param(
        _raise(httpx.ConnectTimeout("connect timed out")),
        ProviderUnavailable,
        r"timed out \(ConnectTimeout\)",
        id="timeout",
    ),
    pytest.param(
        _raise(httpx.ConnectError("name resolution failed")),
        ProviderUnavailable,
        r"connection failed \(ConnectError\)",
        id="connection-error",
    ),
    pytest.param(
        replying(b'{"detail": "Invalid bidding zone"}', 400),
        InvalidInput,
        r"request refused, HTTP 400 'Invalid bidding zone'",
        id="400-json",
    ),
    pytest.param(
        replying(b'{"detail": [{"msg": "value is not a valid date"}]}', 422),
        InvalidInput,
        r"request refused, HTTP 422",
        id="422-validation",
    ),
]


@pytest.mark.parametrize(("handler", "error", "message"), FAILURES)
def test_a_failing_provider_raises_the_error_its_caller_can_act_on(
    handler: Handler, error: type[Exception], message: str
) -> None:
    source, _ = source_with(handler)

    with pytest.raises(error, match=message):
        source.fetch(PriceArea.AT, ORDINARY_DAY)


def test_an_unsupported_area_is_refused_before_any_request() -> None:
    source, seen = source_with(replying(b""))
    unsupported = [area for area in PriceArea if area not in BIDDING_ZONES]

    for area in unsupported:
        with pytest.raises(InvalidInput, match="no bidding zone"):
            source.fetch(area, ORDINARY_DAY)
    assert seen == []
