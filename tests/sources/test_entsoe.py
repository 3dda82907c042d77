"""ENTSO-E A44 prices: the parser on real documents, the client through a fake transport.

Real payloads live in tests/fixtures/prices/entsoe (see PROVENANCE.md there). Synthesized
documents reuse a real document's header, namespace and TimeSeries head and only change the
Periods; malformed feeds are built by mutating the real documents.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from hpsteer.backends.local.secrets import EnvSecretStore, FileSecretStore
from hpsteer.domain.market import PriceArea, Resolution, delivery_day_bounds
from hpsteer.errors import FeedRejected, InvalidInput, ProviderUnavailable
from hpsteer.ports.clock import SimulatedClock
from hpsteer.sources.entsoe import (
    EIC_CODES,
    A44Document,
    EntsoePriceSource,
    choose_series,
    parse_a44,
)
from hpsteer.sources.prices import PriceSource

FIXTURES = Path(__file__).parent.parent / "fixtures" / "prices" / "entsoe"
BE_XML = (FIXTURES / "entsoe_A44_BE_2024-10-08_PT60M.xml").read_bytes()
DE_XML = (FIXTURES / "entsoe_A44_DE-LU_2024-10-06_07_PT60M_PT15M.xml").read_bytes()

TOKEN = "5c1e0b9a-7f3d-4e21-9a6b-entsoe-test-token"
FETCHED_AT = datetime(2024, 10, 7, 14, 0, tzinfo=UTC)
SEQUENCE = "classificationSequence_AttributeInstanceComponent.position"

Handler = Callable[[httpx.Request], httpx.Response]


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


# --- building A44 documents from a real one ------------------------------------------------


def _template_parts(template: bytes) -> tuple[str, str]:
    """The document head (up to the first TimeSeries) and the TimeSeries head (up to Period)."""
    text = template.decode("utf-8")
    first = text.index("<TimeSeries>")
    return text[:first], text[first : text.index("<Period>", first)]


def period_xml(start: str, end: str, resolution: str, prices: Sequence[float | str | None]) -> str:
    """A Period; ``prices[i]`` is position ``i + 1``, None leaves the position out."""
    points = "".join(
        f"<Point><position>{i}</position><price.amount>{price}</price.amount></Point>\n"
        for i, price in enumerate(prices, start=1)
        if price is not None
    )
    return (
        f"<Period><timeInterval><start>{start}</start><end>{end}</end></timeInterval>\n"
        f"<resolution>{resolution}</resolution>\n{points}</Period>\n"
    )


def series_xml(
    *periods: str,
    template: bytes = BE_XML,
    sequence: int | None = None,
    curve_type: str = "A01",
    currency: str = "EUR",
    unit: str = "MWH",
) -> str:
    """A TimeSeries with the template's head (mRID, domains, contract) and these Periods."""
    _, head = _template_parts(template)
    head = re.sub(rf"\s*<{SEQUENCE}>\d+</{SEQUENCE}>", "", head)
    head = re.sub(r"<curveType>\w+</curveType>", f"<curveType>{curve_type}</curveType>", head)
    head = re.sub(r"<currency_Unit.name>\w+<", f"<currency_Unit.name>{currency}<", head)
    head = re.sub(r"<price_Measure_Unit.name>\w+<", f"<price_Measure_Unit.name>{unit}<", head)
    if sequence is not None:
        head = head.replace("<curveType>", f"<{SEQUENCE}>{sequence}</{SEQUENCE}>\n<curveType>")
    return head + "".join(periods) + "</TimeSeries>\n"


def a44_document(*series: str, template: bytes = BE_XML) -> bytes:
    head, _ = _template_parts(template)
    return (head + "".join(series) + "</Publication_MarketDocument>\n").encode("utf-8")


def day_period(
    area: PriceArea, market_date: date, resolution: Resolution, prices: Sequence[float | None]
) -> str:
    start_at, end_at = delivery_day_bounds(area, market_date)
    return period_xml(
        f"{start_at:%Y-%m-%dT%H:%MZ}", f"{end_at:%Y-%m-%dT%H:%MZ}", resolution.name, prices
    )


def mutate(old: bytes, new: bytes, body: bytes = BE_XML) -> bytes:
    assert body.count(old) == 1, f"{old!r} must occur once in the real document"
    return body.replace(old, new)


def be_point(position: int, amount: str) -> bytes:
    return (
        f"<Point><position>{position}</position><price.amount>{amount}</price.amount></Point>"
    ).encode()


def acknowledgement(code: str, text: str) -> bytes:
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<Acknowledgement_MarketDocument xmlns="urn:iec62325.351:tc57wg16:451-1:'
        'acknowledgementdocument:7:0">\n'
        "  <mRID>0985f391-49af-4</mRID>\n"
        "  <createdDateTime>2024-10-07T10:00:00Z</createdDateTime>\n"
        f"  <Reason>\n    <code>{code}</code>\n    <text>{text}</text>\n  </Reason>\n"
        "</Acknowledgement_MarketDocument>\n"
    ).encode()


NO_DATA = acknowledgement(
    "999",
    "No matching data found for Data item ENERGY_PRICES [12.1.D] (10YBE----------2, "
    "10YBE----------2) and interval 2024-10-08T22:00:00.000Z/2024-10-09T22:00:00.000Z.",
)


# --- the client through a fake transport ---------------------------------------------------


@pytest.fixture
def secrets(tmp_path: Path) -> FileSecretStore:
    store = FileSecretStore(tmp_path / "secrets")
    store.add_version("entsoe-api-token", TOKEN.encode())
    return store


@pytest.fixture
def make_source(secrets: FileSecretStore) -> Iterator[Callable[[Handler], EntsoePriceSource]]:
    clients: list[httpx.Client] = []

    def make(handler: Handler) -> EntsoePriceSource:
        client = httpx.Client(transport=httpx.MockTransport(handler))
        clients.append(client)
        return EntsoePriceSource(secrets, client=client, clock=SimulatedClock(FETCHED_AT))

    yield make
    for client in clients:
        client.close()


def answering(body: bytes, status: int = 200, headers: dict[str, str] | None = None) -> Handler:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, content=body, headers=headers or {})

    return handler


# --- the parser on the real documents ------------------------------------------------------


def test_the_belgian_document_gives_24_hourly_euro_prices_from_its_period() -> None:
    document = parse_a44(BE_XML, PriceArea.BE)

    assert document.no_data_reason is None
    (series,) = document.series
    raw = series.raw
    assert (raw.area, raw.resolution, raw.currency, raw.unit) == (
        PriceArea.BE,
        Resolution.PT60M,
        "EUR",
        "MWh",
    )
    assert len(raw.points) == 24
    assert raw.points[0] == (utc("2024-10-07T22:00Z"), 64.98)
    assert raw.points[8] == (utc("2024-10-08T06:00Z"), 100.0)
    assert raw.points[-1] == (utc("2024-10-08T21:00Z"), 50.0)
    assert series.classification_sequence is None


def test_the_pt15m_series_of_the_german_document_is_labelled_exaa_sequence_2() -> None:
    text = DE_XML.decode()
    series = text.split("<TimeSeries>")[1:]
    labels = [
        (re.search(rf"<{SEQUENCE}>(\d)<", s), re.search(r"<resolution>(\w+)<", s)) for s in series
    ]
    assert [(seq.group(1), res.group(1)) for seq, res in labels if seq and res] == [
        ("1", "PT60M"),
        ("2", "PT15M"),
    ]


def test_the_german_document_keeps_the_sdac_hourly_series_and_skips_exaa() -> None:
    document = parse_a44(DE_XML, PriceArea.DE_LU)

    (series,) = document.series
    assert series.raw.resolution is Resolution.PT60M
    assert series.classification_sequence == 1
    assert document.skipped == ("TimeSeries 2: classificationSequence 2 (not the SDAC auction)",)


def test_an_omitted_a03_position_repeats_the_previous_price() -> None:
    (series,) = parse_a44(DE_XML, PriceArea.DE_LU).series
    prices = dict(series.raw.points)

    assert prices[utc("2024-10-06T11:00Z")] == -0.01  # position 14
    assert prices[utc("2024-10-06T12:00Z")] == -0.01  # position 15, omitted: same as 14
    assert prices[utc("2024-10-06T13:00Z")] == 0.2  # position 16


def test_both_days_parse_although_the_document_header_spans_only_the_first() -> None:
    assert b"<end>2024-10-06T22:00Z</end>\n    </period.timeInterval>" in DE_XML
    (series,) = parse_a44(DE_XML, PriceArea.DE_LU).series

    starts = [at for at, _ in series.raw.points]
    assert len(starts) == 48
    assert starts == [utc("2024-10-05T22:00Z") + timedelta(hours=i) for i in range(48)]
    assert series.raw.points[24] == (utc("2024-10-06T22:00Z"), 34.58)
    assert series.raw.points[-1] == (utc("2024-10-07T21:00Z"), 79.12)
    assert series.covers(utc("2024-10-05T22:00Z"), utc("2024-10-07T22:00Z"))


def test_real_quarter_hours_fill_their_omitted_positions_on_both_days() -> None:
    # Keep only the PT15M TimeSeries of the real document and label it as the SDAC auction.
    text = DE_XML.decode()
    head, hourly_and_quarter = text.split("<TimeSeries>", 1)
    quarter = "<TimeSeries>" + hourly_and_quarter.split("<TimeSeries>", 1)[1]
    body = (head + quarter).replace(f"<{SEQUENCE}>2<", f"<{SEQUENCE}>1<").encode()

    (series,) = parse_a44(body, PriceArea.DE_LU).series
    prices = dict(series.raw.points)

    assert series.raw.resolution is Resolution.PT15M
    assert len(series.raw.points) == 192
    assert prices[utc("2024-10-06T03:15Z")] == 68.2  # day 1 position 22
    assert prices[utc("2024-10-06T03:30Z")] == 68.2  # position 23, omitted
    assert prices[utc("2024-10-06T23:00Z")] == 64.91  # day 2 position 5
    assert prices[utc("2024-10-06T23:15Z")] == 64.91  # position 6, omitted
    assert prices[utc("2024-10-06T21:45Z")] == 25.09  # day 1 position 96


def test_the_7_0_namespace_parses_like_the_7_3_namespace() -> None:
    older = mutate(b"publicationdocument:7:3", b"publicationdocument:7:0")

    assert parse_a44(older, PriceArea.BE) == parse_a44(BE_XML, PriceArea.BE)


def test_the_last_a03_price_holds_until_the_period_ends() -> None:
    body = mutate(
        b"<Point>\n                <position>24</position>\n"
        b"                 <price.amount>50</price.amount>\n              </Point>",
        b"",
    )

    (series,) = parse_a44(body, PriceArea.BE).series

    assert len(series.raw.points) == 24
    assert series.raw.points[-1] == (utc("2024-10-08T21:00Z"), 57.42)  # position 23's price


def test_an_a01_gap_stays_a_gap_for_validation_to_name() -> None:
    prices: list[float | None] = [50.0] * 24
    prices[5] = None
    body = a44_document(
        series_xml(day_period(PriceArea.BE, date(2024, 10, 8), Resolution.PT60M, prices))
    )

    (series,) = parse_a44(body, PriceArea.BE).series

    assert len(series.raw.points) == 23
    assert utc("2024-10-08T03:00Z") not in dict(series.raw.points)


def test_a_repeated_position_is_kept_as_a_repeated_point() -> None:
    body = mutate(b"<position>3</position>", b"<position>2</position>")

    (series,) = parse_a44(body, PriceArea.BE).series
    starts = [at for at, _ in series.raw.points]

    assert starts.count(utc("2024-10-07T23:00Z")) == 2
    assert utc("2024-10-08T00:00Z") in starts  # position 3 omitted under A03: filled


def test_every_price_area_has_an_eic_code_and_the_real_documents_agree() -> None:
    assert set(EIC_CODES) == set(PriceArea)
    assert f">{EIC_CODES[PriceArea.BE]}</in_Domain.mRID>".encode() in BE_XML
    assert f">{EIC_CODES[PriceArea.DE_LU]}</in_Domain.mRID>".encode() in DE_XML


# --- choosing the series of a day ----------------------------------------------------------

BE_DAY = date(2024, 10, 8)
HOURLY_BE = [float(i) for i in range(24)]
QUARTERS_BE = [100.0 + i for i in range(96)]


def test_quarter_hours_are_preferred_when_they_cover_the_whole_day(
    make_source: Callable[[Handler], EntsoePriceSource],
) -> None:
    body = a44_document(
        series_xml(
            day_period(PriceArea.BE, BE_DAY, Resolution.PT60M, HOURLY_BE),
            day_period(PriceArea.BE, BE_DAY, Resolution.PT15M, QUARTERS_BE),
        )
    )
    start_at, end_at = delivery_day_bounds(PriceArea.BE, BE_DAY)

    chosen = choose_series(parse_a44(body, PriceArea.BE), start_at, end_at)
    day = make_source(answering(body)).fetch(PriceArea.BE, BE_DAY)

    assert chosen is not None
    assert chosen.raw.resolution is Resolution.PT15M
    assert day is not None
    assert day.resolution is Resolution.PT15M
    assert day.prices_eur_per_mwh == tuple(QUARTERS_BE)


def test_hours_are_chosen_when_the_quarter_hours_cover_only_part_of_the_day() -> None:
    body = a44_document(
        series_xml(day_period(PriceArea.BE, BE_DAY, Resolution.PT60M, HOURLY_BE)),
        series_xml(period_xml("2024-10-07T22:00Z", "2024-10-08T10:00Z", "PT15M", QUARTERS_BE[:48])),
    )
    start_at, end_at = delivery_day_bounds(PriceArea.BE, BE_DAY)

    chosen = choose_series(parse_a44(body, PriceArea.BE), start_at, end_at)

    assert chosen is not None
    assert chosen.raw.resolution is Resolution.PT60M


def test_two_sdac_series_that_disagree_on_the_day_are_refused() -> None:
    other = [p + 1 for p in HOURLY_BE]
    body = a44_document(
        series_xml(day_period(PriceArea.BE, BE_DAY, Resolution.PT60M, HOURLY_BE)),
        series_xml(day_period(PriceArea.BE, BE_DAY, Resolution.PT60M, other)),
    )
    start_at, end_at = delivery_day_bounds(PriceArea.BE, BE_DAY)

    with pytest.raises(FeedRejected, match=r"both cover the day at PT60M with different prices"):
        choose_series(parse_a44(body, PriceArea.BE), start_at, end_at)


# --- the client ----------------------------------------------------------------------------


def test_the_client_asks_for_one_delivery_day_with_the_token_from_the_secret_store(
    make_source: Callable[[Handler], EntsoePriceSource],
) -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, content=BE_XML)

    source = make_source(handler)
    day = source.fetch(PriceArea.BE, BE_DAY)

    (request,) = seen
    assert request.method == "GET"
    assert f"{request.url.scheme}://{request.url.host}{request.url.path}" == (
        "https://web-api.tp.entsoe.eu/api"
    )
    assert dict(request.url.params) == {
        "documentType": "A44",
        "in_Domain": "10YBE----------2",
        "out_Domain": "10YBE----------2",
        "periodStart": "202410072200",
        "periodEnd": "202410082200",
        "contract_MarketAgreement.type": "A01",
        "securityToken": TOKEN,
    }
    assert day is not None
    assert day.prices_eur_per_mwh[:3] == (64.98, 57.86, 53.73)
    assert (day.source, day.original_currency, day.original_unit) == ("entsoe", "EUR", "MWh")
    assert day.fetched_at == FETCHED_AT
    assert isinstance(source, PriceSource)
    assert TOKEN not in repr(source)


def test_the_token_may_come_from_the_environment_store() -> None:
    environ = {"HPSTEER_SECRET_ENTSOE_API_TOKEN": TOKEN}
    tokens: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        tokens.append(request.url.params["securityToken"])
        return httpx.Response(200, content=BE_XML)

    with httpx.Client(transport=httpx.MockTransport(handler)) as client:
        source = EntsoePriceSource(EnvSecretStore(environ), client=client)
        assert source.fetch(PriceArea.BE, BE_DAY) is not None

    assert tokens == [TOKEN]


@pytest.mark.parametrize(
    ("market_date", "first", "position_15", "last"),
    [
        pytest.param(date(2024, 10, 6), 67.04, -0.01, 51.71, id="first-day-a03-gap"),
        pytest.param(date(2024, 10, 7), 34.58, 55.0, 79.12, id="second-day-beyond-header"),
    ],
)
def test_both_german_days_come_from_the_same_document(
    make_source: Callable[[Handler], EntsoePriceSource],
    market_date: date,
    first: float,
    position_15: float,
    last: float,
) -> None:
    day = make_source(answering(DE_XML)).fetch(PriceArea.DE_LU, market_date)

    assert day is not None
    assert day.resolution is Resolution.PT60M  # the PT15M series is EXAA, not SDAC
    assert len(day.prices_eur_per_mwh) == 24
    assert day.prices_eur_per_mwh[0] == first
    assert day.prices_eur_per_mwh[14] == position_15
    assert day.prices_eur_per_mwh[-1] == last


@pytest.mark.parametrize(
    ("area", "market_date", "resolution", "slots"),
    [
        pytest.param(PriceArea.BE, date(2024, 3, 31), Resolution.PT60M, 23, id="23-hour-day"),
        pytest.param(PriceArea.BE, date(2024, 10, 27), Resolution.PT60M, 25, id="25-hour-day"),
        pytest.param(PriceArea.DE_LU, date(2025, 3, 30), Resolution.PT15M, 92, id="92-quarters"),
        pytest.param(PriceArea.DE_LU, date(2025, 10, 26), Resolution.PT15M, 100, id="100-quarters"),
        pytest.param(PriceArea.DE_LU, date(2025, 10, 1), Resolution.PT15M, 96, id="96-quarters"),
    ],
)
def test_daylight_saving_days_have_as_many_prices_as_slots(
    make_source: Callable[[Handler], EntsoePriceSource],
    area: PriceArea,
    market_date: date,
    resolution: Resolution,
    slots: int,
) -> None:
    template = BE_XML if area is PriceArea.BE else DE_XML
    prices = [round(40.0 + 0.25 * i, 2) for i in range(slots)]
    body = a44_document(
        series_xml(
            day_period(area, market_date, resolution, prices), template=template, sequence=1
        ),
        series_xml(
            day_period(area, market_date, resolution, [999.0] * slots),
            template=template,
            sequence=2,
        ),
        template=template,
    )

    day = make_source(answering(body)).fetch(area, market_date)

    assert day is not None
    assert day.resolution is resolution
    assert day.prices_eur_per_mwh == tuple(prices)
    assert [slot.start_at for slot in day.slots()][-1] + resolution.duration == (
        delivery_day_bounds(area, market_date)[1]
    )


def test_a_price_of_minus_500_is_accepted(
    make_source: Callable[[Handler], EntsoePriceSource],
) -> None:
    body = mutate(b"<price.amount>47.05</price.amount>", b"<price.amount>-500</price.amount>")

    day = make_source(answering(body)).fetch(PriceArea.BE, BE_DAY)

    assert day is not None
    assert day.prices_eur_per_mwh[4] == -500.0


@pytest.mark.parametrize(
    ("body", "status", "market_date"),
    [
        pytest.param(NO_DATA, 200, date(2024, 10, 9), id="acknowledgement-999-http-200"),
        pytest.param(NO_DATA, 400, date(2024, 10, 9), id="acknowledgement-999-http-400"),
        pytest.param(acknowledgement("999", ""), 200, date(2024, 10, 9), id="999-without-text"),
        pytest.param(BE_XML, 200, date(2024, 10, 9), id="document-without-the-day"),
        pytest.param(
            mutate(b"<curveType>", f"<{SEQUENCE}>2</{SEQUENCE}><curveType>".encode()),
            200,
            BE_DAY,
            id="only-the-exaa-auction",
        ),
        pytest.param(
            a44_document(
                series_xml(period_xml("2024-10-07T22:00Z", "2024-10-08T10:00Z", "PT60M", [1] * 12))
            ),
            200,
            BE_DAY,
            id="period-covering-half-the-day",
        ),
    ],
)
def test_no_data_yet_is_none_not_an_error(
    make_source: Callable[[Handler], EntsoePriceSource],
    body: bytes,
    status: int,
    market_date: date,
) -> None:
    assert make_source(answering(body, status)).fetch(PriceArea.BE, market_date) is None


def test_the_parser_reports_the_no_data_reason() -> None:
    document = parse_a44(NO_DATA, PriceArea.BE)

    assert document == A44Document(series=(), no_data_reason=document.no_data_reason)
    assert document.no_data_reason is not None
    assert document.no_data_reason.startswith("No matching data found")


def test_the_default_http_client_has_timeouts(secrets: FileSecretStore) -> None:
    source = EntsoePriceSource(secrets)
    timeout = source._client.timeout  # the client the source built for itself

    assert timeout.connect is not None
    assert timeout.read is not None
    source._client.close()


def test_the_source_is_named_entsoe_and_supports_every_price_area(
    make_source: Callable[[Handler], EntsoePriceSource],
) -> None:
    source = make_source(answering(BE_XML))
    assert source.name == "entsoe"
    assert all(source.supports(area) for area in PriceArea)


# --- the malformed-feed corpus -------------------------------------------------------------

HTML_401 = (
    b"<html><head><title>401</title></head><body>Unauthorized. Missing or invalid security "
    b"token</body></html>"
)
HTML_200 = (
    b"<!DOCTYPE html>\n<html><head><title>Maintenance</title></head>"
    b"<body><h1>The Transparency Platform is under maintenance</h1></body></html>"
)
ENTITY_BOMB = mutate(
    b'<?xml version="1.0" encoding="utf-8"?>\n',
    b'<?xml version="1.0" encoding="utf-8"?>\n<!DOCTYPE Publication_MarketDocument ['
    b'<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]>\n',
).replace(b"<mRID>c3891474d3014008b9c6036658010b88</mRID>", b"<mRID>&b;</mRID>")
QUARTERS_95: list[float | None] = [50.0 + i for i in range(96)]
QUARTERS_95[39] = None


def _timeout(request: httpx.Request) -> httpx.Response:
    raise httpx.ReadTimeout("The read operation timed out", request=request)


def _refused_connection(request: httpx.Request) -> httpx.Response:
    # httpx messages may quote the URL, query and token included.
    raise httpx.ConnectError(f"All connection attempts failed: {request.url}", request=request)


Answer = tuple[bytes, int, dict[str, str]] | Handler


def _ok(body: bytes) -> Answer:
    return (body, 200, {})


MALFORMED: list[tuple[str, Answer, PriceArea, date, type[Exception], str]] = [
    (
        "truncated-xml",
        _ok(BE_XML[: len(BE_XML) // 2]),
        PriceArea.BE,
        BE_DAY,
        FeedRejected,
        r"entsoe BE: not well-formed XML \(.*line \d+",
    ),
    (
        "unrelated-document",
        _ok(
            BE_XML.replace(b"Publication_MarketDocument", b"GL_MarketDocument").replace(
                b"451-3:publicationdocument:7:3", b"451-6:generationloaddocument:3:0"
            )
        ),
        PriceArea.BE,
        BE_DAY,
        FeedRejected,
        r"root element is GL_MarketDocument, expected Publication_MarketDocument",
    ),
    (
        "wrong-namespace",
        _ok(mutate(b"451-3:publicationdocument:7:3", b"451-6:generationloaddocument:3:0")),
        PriceArea.BE,
        BE_DAY,
        FeedRejected,
        r"namespace '.*generationloaddocument:3:0' is not an IEC 62325-451-3 publication",
    ),
    (
        "no-timeseries",
        _ok(a44_document()),
        PriceArea.BE,
        BE_DAY,
        FeedRejected,
        r"the document has no TimeSeries",
    ),
    (
        "missing-period",
        _ok(a44_document(series_xml())),
        PriceArea.BE,
        BE_DAY,
        FeedRejected,
        r"entsoe BE: TimeSeries 1: no Period",
    ),
    (
        "missing-resolution",
        _ok(mutate(b"<resolution>PT60M</resolution>", b"")),
        PriceArea.BE,
        BE_DAY,
        FeedRejected,
        r"TimeSeries 1 Period 1: no resolution",
    ),
    (
        "unknown-resolution-pt30m",
        _ok(mutate(b"<resolution>PT60M</resolution>", b"<resolution>PT30M</resolution>")),
        PriceArea.BE,
        BE_DAY,
        FeedRejected,
        r"unknown resolution 'PT30M'; expected PT15M or PT60M",
    ),
    (
        "duplicated-position",
        _ok(
            mutate(
                b"<Point>\n                <position>2</position>",
                be_point(2, "57.86") + b"<Point>\n                <position>2</position>",
            )
        ),
        PriceArea.BE,
        BE_DAY,
        FeedRejected,
        r"entsoe BE 2024-10-08: slot 1 \(2024-10-07T23:00Z, 01:00 CEST\) has more than one price",
    ),
    (
        "position-0",
        _ok(mutate(b"<position>1</position>", b"<position>0</position>")),
        PriceArea.BE,
        BE_DAY,
        FeedRejected,
        r"\(2024-10-07T22:00Z, PT60M\): position 0 is outside 1\.\.24",
    ),
    (
        "position-beyond-grid",
        _ok(mutate(b"<position>24</position>", b"<position>25</position>")),
        PriceArea.BE,
        BE_DAY,
        FeedRejected,
        r"position 25 is outside 1\.\.24",
    ),
    (
        "nan-price",
        _ok(mutate(b"<price.amount>57.86<", b"<price.amount>NaN<")),
        PriceArea.BE,
        BE_DAY,
        FeedRejected,
        r"position 2 has price.amount 'NaN', not a number",
    ),
    (
        "decimal-comma-price",
        _ok(mutate(b"<price.amount>57.86<", b"<price.amount>57,86<")),
        PriceArea.BE,
        BE_DAY,
        FeedRejected,
        r"position 2 has price.amount '57,86', not a number",
    ),
    (
        "empty-price",
        _ok(mutate(b"<price.amount>57.86</price.amount>", b"")),
        PriceArea.BE,
        BE_DAY,
        FeedRejected,
        r"position 2 has no price.amount",
    ),
    (
        "price-5000",
        _ok(mutate(b"<price.amount>100<", b"<price.amount>5000<")),
        PriceArea.BE,
        BE_DAY,
        FeedRejected,
        r"slot 8 \(2024-10-08T06:00Z, 08:00 CEST\) price 5000 EUR/MWh is outside \[-500, 4000\]",
    ),
    (
        "currency-sek",
        _ok(mutate(b">EUR<", b">SEK<")),
        PriceArea.BE,
        BE_DAY,
        FeedRejected,
        r"prices are in 'SEK', expected EUR",
    ),
    (
        "unit-kwh-with-mwh-values",
        _ok(mutate(b">MWH<", b">KWH<")),
        PriceArea.BE,
        BE_DAY,
        FeedRejected,
        r"slot 0 .* price 64980 EUR/MWh is outside",
    ),
    (
        "unknown-unit",
        _ok(mutate(b">MWH<", b">MAW<")),
        PriceArea.BE,
        BE_DAY,
        FeedRejected,
        r"unit 'MAW' is neither MWh nor kWh",
    ),
    (
        "in-domain-of-another-zone",
        _ok(BE_XML.replace(b"10YBE----------2", b"10YNL----------L")),
        PriceArea.BE,
        BE_DAY,
        FeedRejected,
        r"in_Domain.mRID is 10YNL----------L, expected 10YBE----------2 \(BE\)",
    ),
    (
        "95-quarter-hours",
        _ok(
            a44_document(
                series_xml(
                    day_period(PriceArea.DE_LU, date(2025, 10, 8), Resolution.PT15M, QUARTERS_95),
                    template=DE_XML,
                    sequence=1,
                ),
                template=DE_XML,
            )
        ),
        PriceArea.DE_LU,
        date(2025, 10, 8),
        FeedRejected,
        r"95 of 96 slots have a price; 1 missing, the first slot 39 "
        r"\(2025-10-08T07:45Z, 09:45 CEST\)",
    ),
    (
        "misaligned-period",
        _ok(
            mutate(
                b"<start>2024-10-07T22:00Z</start>\n              <end>",
                b"<start>2024-10-07T22:30Z</start>\n              <end>",
            )
        ),
        PriceArea.BE,
        BE_DAY,
        FeedRejected,
        r"is not a whole number of PT60M steps",
    ),
    (
        "curve-type-a02",
        _ok(mutate(b"<curveType>A03<", b"<curveType>A02<")),
        PriceArea.BE,
        BE_DAY,
        FeedRejected,
        r"curveType 'A02' is neither A01 nor A03",
    ),
    (
        "html-page-with-200",
        _ok(HTML_200),
        PriceArea.BE,
        BE_DAY,
        FeedRejected,
        r"an HTML page, not an A44 XML document",
    ),
    ("empty-body", _ok(b""), PriceArea.BE, BE_DAY, FeedRejected, r"entsoe BE: empty body"),
    (
        "doctype-entity-declaration",
        _ok(ENTITY_BOMB),
        PriceArea.BE,
        BE_DAY,
        FeedRejected,
        r"declares a DOCTYPE or entities; refused",
    ),
    (
        "acknowledgement-invalid-area",
        _ok(acknowledgement("999", "Delivered Area EIC 10YBE----------2 is not valid.")),
        PriceArea.BE,
        BE_DAY,
        FeedRejected,
        r"acknowledgement with reason 999: Delivered Area EIC 10YBE----------2 is not valid\.",
    ),
    (
        "acknowledgement-http-400",
        (acknowledgement("999", "The combination of [DOCUMENT_TYPE=A65] is not valid"), 400, {}),
        PriceArea.BE,
        BE_DAY,
        FeedRejected,
        r"\(HTTP 400\): acknowledgement with reason 999: The combination",
    ),
    (
        "http-404-html",
        (HTML_200, 404, {}),
        PriceArea.BE,
        BE_DAY,
        FeedRejected,
        r"entsoe BE 2024-10-08: ENTSO-E answered HTTP 404",
    ),
    (
        "http-401-bad-token",
        (HTML_401, 401, {"content-type": "text/html"}),
        PriceArea.BE,
        BE_DAY,
        InvalidInput,
        r"^ENTSO-E refused the security token \(HTTP 401\)",
    ),
    (
        "http-429-retry-after",
        (
            b"Max allowed requests per minute from each unique IP is max up to 400 only",
            429,
            {"Retry-After": "600"},
        ),
        PriceArea.BE,
        BE_DAY,
        ProviderUnavailable,
        r"rate limited \(HTTP 429, Retry-After 600 s\)",
    ),
    (
        "http-503",
        (b"Service Unavailable", 503, {}),
        PriceArea.BE,
        BE_DAY,
        ProviderUnavailable,
        r"entsoe BE 2024-10-08: HTTP 503",
    ),
    (
        "read-timeout",
        _timeout,
        PriceArea.BE,
        BE_DAY,
        ProviderUnavailable,
        r"https://web-api.tp.entsoe.eu/api timed out \(ReadTimeout\)",
    ),
    (
        "connection-refused",
        _refused_connection,
        PriceArea.BE,
        BE_DAY,
        ProviderUnavailable,
        r"failed \(ConnectError: All connection attempts failed: .*web-api.tp.entsoe.eu/api\)$",
    ),
]


@pytest.mark.parametrize(
    ("answer", "area", "market_date", "error", "pattern"),
    [pytest.param(*case[1:], id=case[0]) for case in MALFORMED],
)
def test_a_malformed_or_failing_feed_is_refused_with_a_reason_and_without_the_token(
    make_source: Callable[[Handler], EntsoePriceSource],
    answer: Answer,
    area: PriceArea,
    market_date: date,
    error: type[Exception],
    pattern: str,
) -> None:
    handler = answering(answer[0], answer[1], answer[2]) if isinstance(answer, tuple) else answer
    source = make_source(handler)

    with pytest.raises(error, match=pattern) as raised:
        source.fetch(area, market_date)

    assert type(raised.value) is error
    message = str(raised.value)
    assert "\n" not in message
    assert TOKEN not in message
    assert TOKEN not in repr(raised.value)
    assert raised.value.__cause__ is None or TOKEN not in str(raised.value.__cause__)


def test_the_malformed_corpus_has_at_least_fifteen_cases() -> None:
    ids = [case[0] for case in MALFORMED]
    assert len(ids) == len(set(ids)) >= 15
