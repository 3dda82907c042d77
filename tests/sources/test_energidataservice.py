"""Energi Data Service: Elspotprices and DayAheadPrices bodies in, validated delivery days out.

Hourly days are the real CSV rows of ``eds_elspotprices_DK1_2024_excerpt.csv`` turned into API
JSON records. No real ``DayAheadPrices`` payload exists in our data, so the 15-minute days are
synthesised from real Energy-Charts AT quarter-hour prices (same CET/CEST delivery day),
labelled DK1, with DKK = EUR x 7.46: the shape is the documented one, the values are real.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from hpsteer.domain.market import PriceArea, Resolution
from hpsteer.errors import FeedRejected, InvalidInput, ProviderUnavailable
from hpsteer.ports.clock import SimulatedClock
from hpsteer.sources.energidataservice import (
    DAY_AHEAD_PRICES_FIRST_DAY,
    EnergiDataServicePriceSource,
    parse_day_ahead_prices,
    parse_elspotprices,
)
from hpsteer.sources.prices import PriceSource

FIXTURES = Path(__file__).parent.parent / "fixtures" / "prices"
EDS = FIXTURES / "energidataservice"
CSV_EXCERPT = EDS / "eds_elspotprices_DK1_2024_excerpt.csv"
RECORDS_FIXTURE = EDS / "eds_Elspotprices_records_2024-08-26.json"
ENERGYCHARTS = FIXTURES / "energycharts"
NOW = datetime(2026, 4, 1, 12, 0, tzinfo=UTC)
WINTER_DAY = date(2024, 1, 15)
COPENHAGEN = ZoneInfo("Europe/Copenhagen")

Handler = Callable[[httpx.Request], httpx.Response]


def _number(text: str) -> float:
    return float(text.replace(",", "."))


def csv_records(market_date: date) -> list[dict[str, Any]]:
    """The real CSV rows of one Danish day as Elspotprices API records, oldest first."""
    with CSV_EXCERPT.open(newline="") as handle:
        rows = [
            r for r in csv.DictReader(handle, delimiter=";") if r["HourDK"][:10] == str(market_date)
        ]
    records = [
        {
            "HourUTC": row["HourUTC"].replace(" ", "T"),
            "HourDK": row["HourDK"].replace(" ", "T"),
            "PriceArea": row["PriceArea"],
            "SpotPriceDKK": _number(row["SpotPriceDKK"]),
            "SpotPriceEUR": _number(row["SpotPriceEUR"]),
        }
        for row in rows
    ]
    return sorted(records, key=lambda record: record["HourUTC"])


def _energycharts_quarter_hours(market_date: date) -> list[tuple[int, float]]:
    """(start in Unix seconds, EUR/MWh) of a real Energy-Charts AT 15-minute day."""
    normalized = ENERGYCHARTS / f"energycharts_AT_price_normalized_{market_date}.json"
    if normalized.exists():
        data = json.loads(normalized.read_bytes())["data"]
        return [(item["start_timestamp"] // 1000, item["marketprice"]) for item in data]
    excerpt = ENERGYCHARTS / f"energycharts_AT_15min_{market_date}_excerpt.csv"
    with excerpt.open(newline="") as handle:
        return [
            (int(row["start_timestamp_ms"]) // 1000, float(row["marketprice_eur_mwh"]))
            for row in csv.DictReader(handle)
        ]


def day_ahead_records(market_date: date) -> list[dict[str, Any]]:
    """DayAheadPrices records for DK1 built from real AT quarter-hour prices (see module doc)."""
    records = []
    for seconds, price in _energycharts_quarter_hours(market_date):
        start = datetime.fromtimestamp(seconds, tz=UTC)
        records.append(
            {
                "TimeUTC": start.strftime("%Y-%m-%dT%H:%M:%S"),
                "TimeDK": start.astimezone(COPENHAGEN).strftime("%Y-%m-%dT%H:%M:%S"),
                "PriceArea": "DK1",
                "DayAheadPriceEUR": price,
                "DayAheadPriceDKK": round(price * 7.46, 6),
            }
        )
    return records


def envelope(dataset: str, records: list[dict[str, Any]], area: str = "DK1") -> dict[str, Any]:
    return {
        "total": len(records),
        "filters": json.dumps({"PriceArea": [area]}),
        "limit": 200,
        "dataset": dataset,
        "records": records,
    }


def body(document: Any) -> bytes:
    return json.dumps(document).encode()


def source_with(handler: Handler) -> tuple[EnergiDataServicePriceSource, list[httpx.Request]]:
    seen: list[httpx.Request] = []

    def recording(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return handler(request)

    client = httpx.Client(transport=httpx.MockTransport(recording))
    return EnergiDataServicePriceSource(client=client, clock=SimulatedClock(NOW)), seen


def replying(content: bytes, status: int = 200, headers: dict[str, str] | None = None) -> Handler:
    return lambda request: httpx.Response(status, content=content, headers=headers)


# --- hourly days (Elspotprices) ----------------------------------------------------------------


def test_an_ordinary_winter_day_gives_24_hourly_eur_prices_in_the_rows_order_of_time() -> None:
    records = csv_records(WINTER_DAY)
    source, _ = source_with(replying(body(envelope("Elspotprices", records))))

    day = source.fetch(PriceArea.DK1, WINTER_DAY)

    assert day is not None
    assert day.resolution is Resolution.PT60M
    assert day.prices_eur_per_mwh == tuple(r["SpotPriceEUR"] for r in records)
    assert (day.source, day.original_currency, day.original_unit) == (
        "energidataservice",
        "EUR",
        "MWh",
    )
    assert day.fetched_at == NOW


@pytest.mark.parametrize(
    ("market_date", "hours"),
    [(date(2024, 3, 31), 23), (date(2024, 10, 27), 25)],
    ids=["spring-forward-23h", "fall-back-25h"],
)
def test_daylight_saving_days_have_23_or_25_hours_taken_from_the_utc_column(
    market_date: date, hours: int
) -> None:
    records = csv_records(market_date)
    source, _ = source_with(replying(body(envelope("Elspotprices", records))))

    day = source.fetch(PriceArea.DK1, market_date)

    assert day is not None
    assert len(day.prices_eur_per_mwh) == hours
    assert day.prices_eur_per_mwh == tuple(r["SpotPriceEUR"] for r in records)


def test_the_repeated_autumn_hour_is_two_distinct_utc_slots() -> None:
    day = parse_elspotprices(body(csv_records(date(2024, 10, 27))), PriceArea.DK1)

    two_oclock = [start for start, _ in day.points if start.astimezone(COPENHAGEN).hour == 2]

    assert two_oclock == [
        datetime(2024, 10, 27, 0, 0, tzinfo=UTC),
        datetime(2024, 10, 27, 1, 0, tzinfo=UTC),
    ]


def test_negative_prices_are_kept_as_they_are() -> None:
    records = csv_records(date(2024, 7, 7))
    source, _ = source_with(replying(body(envelope("Elspotprices", records))))

    day = source.fetch(PriceArea.DK1, date(2024, 7, 7))

    assert day is not None
    assert sum(price < 0 for price in day.prices_eur_per_mwh) == 18
    assert min(day.prices_eur_per_mwh) == min(r["SpotPriceEUR"] for r in records)


def test_the_danish_wall_clock_column_is_never_used_for_instants() -> None:
    records = csv_records(WINTER_DAY)
    scrambled = [{**record, "HourDK": "1999-01-01T00:00:00"} for record in records]

    assert parse_elspotprices(body(scrambled), PriceArea.DK1) == parse_elspotprices(
        body(records), PriceArea.DK1
    )


@pytest.mark.parametrize("suffix", ["Z", "+00:00"])
def test_an_explicit_zero_offset_on_the_utc_column_is_accepted(suffix: str) -> None:
    records = [{**r, "HourUTC": r["HourUTC"] + suffix} for r in csv_records(WINTER_DAY)]

    series = parse_elspotprices(body(records), PriceArea.DK1)

    assert series.points[0][0] == datetime(2024, 1, 14, 23, 0, tzinfo=UTC)


def test_rows_of_other_areas_are_ignored() -> None:
    dk1 = csv_records(WINTER_DAY)
    dk2 = [{**r, "PriceArea": "DK2", "SpotPriceEUR": 1.0, "SpotPriceDKK": 7.46} for r in dk1]

    series = parse_elspotprices(body(envelope("Elspotprices", dk2 + dk1)), PriceArea.DK1)

    assert [price for _, price in series.points] == [r["SpotPriceEUR"] for r in dk1]


def test_a_bare_records_array_reads_like_the_envelope() -> None:
    records = csv_records(WINTER_DAY)

    assert parse_elspotprices(body(records), PriceArea.DK1) == parse_elspotprices(
        body(envelope("Elspotprices", records)), PriceArea.DK1
    )


# --- the real records fixture (2024-08-26 evening) ------------------------------------------


def _fixture_records() -> list[dict[str, Any]]:
    loaded: list[dict[str, Any]] = json.loads(RECORDS_FIXTURE.read_bytes())
    return loaded


def _with_eur_from_csv(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Adds to each DK1 row the SpotPriceEUR of the same hour from the real CSV export."""
    eur_by_hour = {r["HourUTC"]: r["SpotPriceEUR"] for r in csv_records(date(2024, 8, 26))}
    return [
        {**r, "SpotPriceEUR": eur_by_hour[r["HourUTC"]]} if r["PriceArea"] == "DK1" else r
        for r in records
    ]


def test_the_stored_records_fixture_is_refused_because_it_has_no_eur_column() -> None:
    with pytest.raises(FeedRejected, match=r"no DK1 row has a SpotPriceEUR column"):
        parse_elspotprices(RECORDS_FIXTURE.read_bytes(), PriceArea.DK1)


def test_the_records_fixture_agrees_with_the_csv_export_on_dkk() -> None:
    dkk_by_hour = {r["HourUTC"]: r["SpotPriceDKK"] for r in csv_records(date(2024, 8, 26))}

    for record in _fixture_records():
        if record["PriceArea"] == "DK1":
            assert record["SpotPriceDKK"] == dkk_by_hour[record["HourUTC"]]


def test_the_fixture_evening_rows_are_a_partial_day_and_validation_names_the_missing_slots() -> (
    None
):
    first_copy = _with_eur_from_csv(_fixture_records()[:10])
    source, _ = source_with(replying(body(first_copy)))

    with pytest.raises(
        FeedRejected,
        match=r"2 of 24 slots have a price; 22 missing, the first slot 0 "
        r"\(2024-08-25T22:00Z, 00:00 \w+\)",
    ):
        source.fetch(PriceArea.DK1, date(2024, 8, 26))


def test_the_fixture_as_stored_repeats_its_rows_and_validation_names_the_repeat() -> None:
    source, _ = source_with(replying(body(_with_eur_from_csv(_fixture_records()))))

    with pytest.raises(
        FeedRejected, match=r"slot 23 \(2024-08-26T21:00Z, 23:00 \w+\) has more than one price"
    ):
        source.fetch(PriceArea.DK1, date(2024, 8, 26))


# --- quarter-hour days (DayAheadPrices) ---------------------------------------------------


@pytest.mark.parametrize(
    ("market_date", "quarter_hours"),
    [(date(2025, 11, 12), 96), (date(2025, 10, 26), 100), (date(2026, 3, 29), 92)],
    ids=["ordinary-96", "fall-back-100", "spring-forward-92"],
)
def test_day_ahead_prices_give_96_or_on_dst_days_100_and_92_quarter_hours(
    market_date: date, quarter_hours: int
) -> None:
    records = day_ahead_records(market_date)
    source, _ = source_with(replying(body(envelope("DayAheadPrices", records))))

    day = source.fetch(PriceArea.DK1, market_date)

    assert day is not None
    assert day.resolution is Resolution.PT15M
    assert len(day.prices_eur_per_mwh) == quarter_hours
    assert day.prices_eur_per_mwh == tuple(r["DayAheadPriceEUR"] for r in records)


def test_the_day_ahead_parser_reads_the_bare_records_array_too() -> None:
    records = day_ahead_records(date(2025, 10, 26))

    series = parse_day_ahead_prices(body(records), PriceArea.DK1)

    assert len(series.points) == 100
    assert series.points[0] == (datetime(2025, 10, 25, 22, 0, tzinfo=UTC), 104.96)


# --- requests ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("area", "market_date", "path", "eds_area", "sort"),
    [
        (PriceArea.DK1, date(2024, 1, 15), "/dataset/Elspotprices", "DK1", "HourUTC asc"),
        (PriceArea.DK2, date(2025, 9, 30), "/dataset/Elspotprices", "DK2", "HourUTC asc"),
        (
            PriceArea.DK1,
            DAY_AHEAD_PRICES_FIRST_DAY,
            "/dataset/DayAheadPrices",
            "DK1",
            "TimeUTC asc",
        ),
        (PriceArea.DE_LU, date(2026, 3, 29), "/dataset/DayAheadPrices", "DE", "TimeUTC asc"),
    ],
    ids=["elspot-dk1", "last-elspot-day", "first-day-ahead-day", "de-lu-is-eds-de"],
)
def test_the_request_names_dataset_danish_dates_area_filter_sort_and_an_explicit_limit(
    area: PriceArea, market_date: date, path: str, eds_area: str, sort: str
) -> None:
    source, seen = source_with(replying(body(envelope(path.rsplit("/", 1)[1], []))))

    assert source.fetch(area, market_date) is None

    (request,) = seen
    assert request.method == "GET"
    assert f"{request.url.scheme}://{request.url.host}{request.url.path}" == (
        f"https://api.energidataservice.dk{path}"
    )
    params = dict(request.url.params)
    assert params == {
        "start": market_date.isoformat(),
        "end": date.fromordinal(market_date.toordinal() + 1).isoformat(),
        "filter": json.dumps({"PriceArea": [eds_area]}, separators=(",", ":")),
        "sort": sort,
        "limit": "200",
    }


def test_every_request_carries_a_timeout() -> None:
    source, seen = source_with(replying(body(envelope("Elspotprices", []))))

    source.fetch(PriceArea.DK1, WINTER_DAY)

    timeouts = seen[0].extensions["timeout"]
    assert all(timeouts[kind] is not None for kind in ("connect", "read", "write", "pool"))


def test_a_day_without_rows_is_not_published_yet() -> None:
    yesterday_only = csv_records(date(2024, 1, 15))
    source, _ = source_with(replying(body(envelope("Elspotprices", yesterday_only))))

    assert source.fetch(PriceArea.DK1, date(2024, 1, 16)) is None


def test_it_is_a_price_source_for_the_areas_of_its_table_only() -> None:
    source, _ = source_with(replying(b"[]"))

    assert isinstance(source, PriceSource)
    assert source.name == "energidataservice"
    assert [a for a in PriceArea if source.supports(a)] == [
        PriceArea.SE3,
        PriceArea.SE4,
        PriceArea.DK1,
        PriceArea.DK2,
        PriceArea.NO2,
        PriceArea.DE_LU,
    ]
    with pytest.raises(InvalidInput, match="no price area for AT"):
        source.fetch(PriceArea.AT, WINTER_DAY)


# --- malformed feeds and failing providers ----------------------------------------------


def _winter(mutate: Callable[[list[dict[str, Any]]], Any]) -> Callable[[], bytes]:
    return lambda: body(mutate(csv_records(WINTER_DAY)))


def _set(index: int, **fields: Any) -> Callable[[list[dict[str, Any]]], Any]:
    def mutate(records: list[dict[str, Any]]) -> Any:
        records[index] = {**records[index], **fields}
        return envelope("Elspotprices", records)

    return mutate


def _raw(text: str) -> Callable[[], bytes]:
    return lambda: text.encode()


def _day_ahead_95() -> bytes:
    records = day_ahead_records(date(2025, 11, 12))
    del records[40]
    return body(envelope("DayAheadPrices", records))


MALFORMED: list[Any] = [
    pytest.param(_raw(""), WINTER_DAY, FeedRejected, r"empty body", id="empty-body"),
    pytest.param(
        _raw("<!DOCTYPE html><html><body>Service Unavailable</body></html>"),
        WINTER_DAY,
        FeedRejected,
        r"HTML/XML page, not JSON",
        id="html-page-with-200",
    ),
    pytest.param(
        _raw('{"total": 24, "records": [{"HourUTC"'),
        WINTER_DAY,
        FeedRejected,
        r"not JSON",
        id="truncated-json",
    ),
    pytest.param(_raw('"ok"'), WINTER_DAY, FeedRejected, r"got str", id="json-of-the-wrong-shape"),
    pytest.param(
        _winter(
            lambda rs: {k: v for k, v in envelope("Elspotprices", rs).items() if k != "records"}
        ),
        WINTER_DAY,
        FeedRejected,
        r"no 'records' list \(keys: dataset, filters, limit, total\)",
        id="missing-records-key",
    ),
    pytest.param(
        _winter(lambda rs: envelope("DayAheadPrices", rs)),
        WINTER_DAY,
        FeedRejected,
        r"dataset 'DayAheadPrices', expected 'Elspotprices'",
        id="wrong-dataset-in-envelope",
    ),
    pytest.param(
        _winter(lambda rs: envelope("Elspotprices", [*rs, "DK1"])),
        WINTER_DAY,
        FeedRejected,
        r"record 24 is str, not an object",
        id="record-not-an-object",
    ),
    pytest.param(
        _winter(_set(3, HourUTC="2024-01-15 25:00")),
        WINTER_DAY,
        FeedRejected,
        r"record 3 HourUTC '2024-01-15 25:00' is not ISO 8601",
        id="unparseable-timestamp",
    ),
    pytest.param(
        _winter(_set(3, HourUTC="2024-01-15T03:00:00+01:00")),
        WINTER_DAY,
        FeedRejected,
        r"record 3 HourUTC .* carries offset 1:00:00; the column is UTC without offset",
        id="timestamp-with-a-non-zero-offset",
    ),
    pytest.param(
        _winter(lambda rs: envelope("Elspotprices", [*rs, rs[5]])),
        WINTER_DAY,
        FeedRejected,
        r"slot 5 \(2024-01-15T04:00Z, 05:00 \w+\) has more than one price",
        id="duplicated-row",
    ),
    pytest.param(
        _winter(_set(5, SpotPriceEUR="NaN")),
        WINTER_DAY,
        FeedRejected,
        r"record 5 \(2024-01-15T04:00Z\) SpotPriceEUR 'NaN' is not a number",
        id="nan-as-a-string",
    ),
    pytest.param(
        _winter(_set(5, SpotPriceEUR=float("nan"))),
        WINTER_DAY,
        FeedRejected,
        r"slot 5 \(2024-01-15T04:00Z, 05:00 \w+\) has no finite price \(nan\)",
        id="nan-literal",
    ),
    pytest.param(
        _winter(_set(5, SpotPriceEUR=None)),
        WINTER_DAY,
        FeedRejected,
        r"23 of 24 slots have a price; 1 missing, the first slot 5 \(2024-01-15T04:00Z",
        id="null-price",
    ),
    pytest.param(
        _winter(_set(5, SpotPriceEUR=5000.0, SpotPriceDKK=37300.0)),
        WINTER_DAY,
        FeedRejected,
        r"slot 5 .* price 5000 EUR/MWh is outside \[-500, 4000\]",
        id="out-of-range-price",
    ),
    pytest.param(
        _winter(
            lambda rs: envelope(
                "Elspotprices", [{**r, "SpotPriceEUR": r["SpotPriceDKK"]} for r in rs]
            )
        ),
        WINTER_DAY,
        FeedRejected,
        r"record 0 \(2024-01-14T23:00Z\) DKK/EUR ratio 1 is far outside the ERM II band",
        id="dkk-in-the-eur-column",
    ),
    pytest.param(
        _winter(_set(7, SpotPriceDKK=0.5)),
        WINTER_DAY,
        FeedRejected,
        r"record 7 .* DKK/EUR ratio .* currency or unit mix-up",
        id="dkk-eur-ratio-mismatch",
    ),
    pytest.param(
        _day_ahead_95,
        date(2025, 11, 12),
        FeedRejected,
        r"95 of 96 slots have a price; 1 missing, "
        r"the first slot 40 \(2025-11-12T09:00Z, 10:00 \w+\)",
        id="95-quarter-hours",
    ),
    pytest.param(
        _winter(
            lambda rs: envelope(
                "Elspotprices", [{k: v for k, v in r.items() if k != "SpotPriceEUR"} for r in rs]
            )
        ),
        WINTER_DAY,
        FeedRejected,
        r"no DK1 row has a SpotPriceEUR column",
        id="dkk-only-payload",
    ),
]


@pytest.mark.parametrize(("make_body", "market_date", "error", "message"), MALFORMED)
def test_a_malformed_feed_is_refused_with_a_message_that_names_the_problem(
    make_body: Callable[[], bytes], market_date: date, error: type[Exception], message: str
) -> None:
    source, _ = source_with(replying(make_body()))

    with pytest.raises(error, match=message):
        source.fetch(PriceArea.DK1, market_date)


def _raise(exc: Exception) -> Handler:
    def handler(request: httpx.Request) -> httpx.Response:
        raise exc

    return handler


FAILURES: list[Any] = [
    pytest.param(
        replying(b'{"message": "Too many requests"}', 429, {"Retry-After": "120"}),
        ProviderUnavailable,
        r"rate limited \(HTTP 429, Retry-After 120 s\)",
        id="429-with-retry-after",
    ),
    pytest.param(
        replying(b"<html>Service Unavailable</html>", 503),
        ProviderUnavailable,
        r"HTTP 503",
        id="503",
    ),
    pytest.param(
        replying(b'{"statusCode": 500, "message": "Internal error"}', 500),
        ProviderUnavailable,
        r"HTTP 500 'Internal error'",
        id="500-json",
    ),
    pytest.param(
        _raise(httpx.ReadTimeout("read timed out")),
        ProviderUnavailable,
        r"timed out \(ReadTimeout\)",
        id="timeout",
    ),
    pytest.param(
        _raise(httpx.ConnectError("connection refused")),
        ProviderUnavailable,
        r"connection failed \(ConnectError\)",
        id="connection-refused",
    ),
    pytest.param(
        replying(b'{"statusCode": 400, "error": "Bad Request", "message": "Invalid filter"}', 400),
        InvalidInput,
        r"request refused, HTTP 400 'Invalid filter'",
        id="400-json",
    ),
    pytest.param(
        replying(b'{"message": "Forbidden"}', 403),
        InvalidInput,
        r"request refused, HTTP 403 'Forbidden'",
        id="403-json",
    ),
    pytest.param(
        replying(b"", 411),
        InvalidInput,
        r"request refused, HTTP 411 no body",
        id="411-empty",
    ),
]


@pytest.mark.parametrize(("handler", "error", "message"), FAILURES)
def test_a_failing_provider_raises_the_error_its_caller_can_act_on(
    handler: Handler, error: type[Exception], message: str
) -> None:
    source, _ = source_with(handler)

    with pytest.raises(error, match=message):
        source.fetch(PriceArea.DK1, WINTER_DAY)
