"""ENTSO-E Transparency Platform day-ahead prices (documentType A44), parser and client.

The parser, :func:`parse_a44`, is pure (bytes in, :class:`A44Document` out) and promises:

- only a ``Publication_MarketDocument`` of the IEC 62325-451-3 publication namespace is read,
  matched on local element names so that the 7:0 and 7:3 schema versions both parse; an
  ``Acknowledgement_MarketDocument`` with reason code 999 "No matching data found" is "no data"
  (:attr:`A44Document.no_data_reason`), any other acknowledgement, HTML page, empty body,
  unrelated document or XML with a DOCTYPE/ENTITY declaration raises
  :class:`~hpsteer.errors.FeedRejected` with a one-line reason;
- every TimeSeries and every Period is read; instants come from each Period's ``timeInterval``
  (never from the document header, which may cover less than the Periods);
- curveType A03 (a position is omitted when its price equals the previous one) is forward-filled
  over the whole grid ``(end - start) / resolution``, the last price holding until the Period
  ends; curveType A01 keeps only the positions present, so a missing one is a gap that
  :func:`~hpsteer.sources.price_validation.normalize_day` names;
- PT15M and PT60M Periods, mixed in one document too; a repeated position is kept as a repeated
  point (validation names it); a position outside the grid or a price that is not a decimal
  number is refused, naming the position;
- only the SDAC day-ahead auction is kept: ``contract_MarketAgreement.type`` A01 (or absent) and
  ``classificationSequence_AttributeInstanceComponent.position`` 1 (or absent); sequence 2 (EXAA
  for DE-LU and AT) is skipped and recorded in :attr:`A44Document.skipped`;
- every TimeSeries must be for the requested area (``in_Domain`` equal to its EIC code).

The client, :class:`EntsoePriceSource`, asks for one delivery day (UTC bounds), picks the series
that covers the whole day at the finest resolution and hands it to ``normalize_day``. The
security token comes from the secrets port and never appears in an error message: httpx errors
carry the request URL, so they are replaced by messages that name the endpoint without its query.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Final
from xml.etree import ElementTree
from xml.parsers import expat

import httpx

from hpsteer.domain.instants import UTC
from hpsteer.domain.market import PriceArea, Resolution, delivery_day_bounds
from hpsteer.domain.prices import MarketDayPrices
from hpsteer.errors import FeedRejected, InvalidInput, ProviderUnavailable
from hpsteer.ports.clock import Clock, SystemClock
from hpsteer.ports.secrets import SecretStore
from hpsteer.sources import http
from hpsteer.sources.price_validation import normalize_day
from hpsteer.sources.prices import RawPriceSeries

__all__ = [
    "EIC_CODES",
    "A44Document",
    "A44Series",
    "EntsoePriceSource",
    "choose_series",
    "parse_a44",
]

SOURCE_NAME: Final = "entsoe"
DEFAULT_BASE_URL: Final = "https://web-api.tp.entsoe.eu/api"

# Bidding-zone EIC codes (EnergieID/entsoe-py ``entsoe/mappings.py``, as in
# reference/provider-apis.md §1; EE, LV, LT from the same mapping).
EIC_CODES: Final[dict[PriceArea, str]] = {
    PriceArea.SE1: "10Y1001A1001A44P",
    PriceArea.SE2: "10Y1001A1001A45N",
    PriceArea.SE3: "10Y1001A1001A46L",
    PriceArea.SE4: "10Y1001A1001A47J",
    PriceArea.DK1: "10YDK-1--------W",
    PriceArea.DK2: "10YDK-2--------M",
    PriceArea.NO1: "10YNO-1--------2",
    PriceArea.NO2: "10YNO-2--------T",
    PriceArea.NO3: "10YNO-3--------J",
    PriceArea.NO4: "10YNO-4--------9",
    PriceArea.NO5: "10Y1001A1001A48H",
    PriceArea.FI: "10YFI-1--------U",
    PriceArea.EE: "10Y1001A1001A39I",
    PriceArea.LV: "10YLV-1001A00074",
    PriceArea.LT: "10YLT-1001A0008Q",
    PriceArea.DE_LU: "10Y1001A1001A82H",
    PriceArea.AT: "10YAT-APG------L",
    PriceArea.NL: "10YNL----------L",
    PriceArea.BE: "10YBE----------2",
    PriceArea.FR: "10YFR-RTE------C",
    PriceArea.PL: "10YPL-AREA-----S",
}

_PUBLICATION_ROOT: Final = "Publication_MarketDocument"
_PUBLICATION_NAMESPACE: Final = "urn:iec62325.351:tc57wg16:451-3:publicationdocument:"
_ACKNOWLEDGEMENT_ROOT: Final = "Acknowledgement_MarketDocument"
_NO_DATA_REASON: Final = "999"
_NO_DATA_TEXT: Final = "no matching data found"
_RESOLUTIONS: Final[dict[str, Resolution]] = {"PT15M": Resolution.PT15M, "PT60M": Resolution.PT60M}
_UNITS: Final[dict[str, str]] = {"MWH": "MWh", "KWH": "kWh"}
_CURVE_TYPES: Final = frozenset({"A01", "A03"})
_DAY_AHEAD_CONTRACT: Final = "A01"
_SDAC_SEQUENCES: Final = frozenset({None, 1})
_DECIMAL: Final = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)")
_INTEGER: Final = re.compile(r"\d+")
_URL_QUERY: Final = re.compile(r"(\w+://[^\s?#]+)[?#]\S*")

_Point = tuple[datetime, float]
_Interval = tuple[datetime, datetime]


@dataclass(frozen=True, slots=True)
class A44Series:
    """One SDAC TimeSeries at one resolution, with the intervals its Periods cover."""

    raw: RawPriceSeries
    periods: tuple[tuple[datetime, datetime], ...]
    time_series: str
    classification_sequence: int | None

    def covers(self, start_at: datetime, end_at: datetime) -> bool:
        """Whether the Periods together cover ``[start_at, end_at)`` without a hole."""
        reached = start_at
        for period_start, period_end in sorted(self.periods):
            if period_start > reached:
                break
            reached = max(reached, period_end)
        return reached >= end_at


@dataclass(frozen=True, slots=True)
class A44Document:
    """What an A44 answer says: SDAC series, or "no data" with the platform's reason."""

    series: tuple[A44Series, ...]
    skipped: tuple[str, ...] = ()
    no_data_reason: str | None = None


class _Declaration(Exception):
    """Raised from inside expat when the document declares a DOCTYPE or an entity."""


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _namespace(tag: str) -> str:
    return tag[1:].split("}", 1)[0] if tag.startswith("{") else ""


def _children(element: ElementTree.Element, name: str) -> list[ElementTree.Element]:
    return [child for child in element if _local(child.tag) == name]


def _text(element: ElementTree.Element, name: str) -> str | None:
    for child in element:
        if _local(child.tag) == name:
            return (child.text or "").strip()
    return None


def _load(body: bytes, label: str) -> ElementTree.Element:
    """The root element of an XML body; FeedRejected for empty, HTML or unsafe bodies."""
    head = body.lstrip()[:100].lower()
    if not head:
        raise FeedRejected(f"{label}: empty body")
    if head.startswith((b"<!doctype html", b"<html")):
        raise FeedRejected(f"{label}: an HTML page, not an A44 XML document")
    _refuse_declarations(body, label)
    return ElementTree.fromstring(body)  # well-formed and declaration-free: checked above


def _refuse_declarations(body: bytes, label: str) -> None:
    """Check well-formedness with expat and refuse DOCTYPE/ENTITY before anything expands."""

    def refuse(*_: object) -> None:
        raise _Declaration

    scanner = expat.ParserCreate()
    scanner.StartDoctypeDeclHandler = refuse
    scanner.EntityDeclHandler = refuse
    try:
        scanner.Parse(body, True)
    except _Declaration:
        raise FeedRejected(
            f"{label}: the document declares a DOCTYPE or entities; refused"
        ) from None
    except expat.ExpatError as err:
        raise FeedRejected(f"{label}: not well-formed XML ({err})") from None


def _parse_instant(text: str | None, where: str) -> datetime:
    if not text:
        raise FeedRejected(f"{where}: timeInterval has no start or end")
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise FeedRejected(f"{where}: {text!r} is not an ISO 8601 instant") from None
    if parsed.tzinfo is None:
        raise FeedRejected(f"{where}: {text!r} has no time zone")
    return parsed.astimezone(UTC)


def _acknowledgement(root: ElementTree.Element, label: str) -> A44Document:
    """No data for reason 999 without text or with "No matching data found"; else refused.

    The platform uses code 999 for every refusal, not only for "no data": an invalid area
    answers 999 "Delivered Area EIC … is not valid." (github.com/EnergieID/entsoe-py/issues/311).
    So the text decides, as entsoe-py does; any other reason is FeedRejected quoting it.
    """
    reasons = _children(root, "Reason")
    code = _text(reasons[0], "code") if reasons else None
    text = _text(reasons[0], "text") if reasons else None
    if code == _NO_DATA_REASON and (not text or text.lower().startswith(_NO_DATA_TEXT)):
        return A44Document(series=(), no_data_reason=text or "reason 999")
    raise FeedRejected(f"{label}: acknowledgement with reason {code or '?'}: {text or '(no text)'}")


def parse_a44(body: bytes, area: PriceArea) -> A44Document:
    """The SDAC price series of an A44 answer for ``area``; FeedRejected if it is not one."""
    label = f"{SOURCE_NAME} {area}"
    root = _load(body, label)
    name = _local(root.tag)
    if name == _ACKNOWLEDGEMENT_ROOT:
        return _acknowledgement(root, label)
    if name != _PUBLICATION_ROOT:
        raise FeedRejected(f"{label}: root element is {name}, expected {_PUBLICATION_ROOT}")
    namespace = _namespace(root.tag)
    if not namespace.startswith(_PUBLICATION_NAMESPACE):
        raise FeedRejected(
            f"{label}: namespace {namespace!r} is not an IEC 62325-451-3 publication document"
        )
    document_type = _text(root, "type")
    if document_type not in (None, "A44"):
        raise FeedRejected(f"{label}: document type {document_type}, expected A44")
    all_series = _children(root, "TimeSeries")
    if not all_series:
        raise FeedRejected(f"{label}: the document has no TimeSeries")
    kept: list[A44Series] = []
    skipped: list[str] = []
    for number, element in enumerate(all_series, start=1):
        where = f"{label}: TimeSeries {number}"
        reason = _skip_reason(element, area, where)
        if reason:
            skipped.append(f"TimeSeries {number}: {reason}")
        else:
            kept.extend(_time_series(element, area, where))
    return A44Document(series=tuple(kept), skipped=tuple(skipped))


def _skip_reason(element: ElementTree.Element, area: PriceArea, where: str) -> str | None:
    """Refuse a TimeSeries of another area; say why one of another auction is skipped."""
    eic = EIC_CODES[area]
    for field in ("in_Domain.mRID", "out_Domain.mRID"):
        domain = _text(element, field)
        if domain is not None and domain != eic:
            raise FeedRejected(f"{where}: {field} is {domain}, expected {eic} ({area})")
    if _text(element, "in_Domain.mRID") is None:
        raise FeedRejected(f"{where}: no in_Domain.mRID")
    contract = _text(element, "contract_MarketAgreement.type")
    if contract not in (None, _DAY_AHEAD_CONTRACT):
        return f"contract_MarketAgreement.type {contract} (not day-ahead)"
    sequence_text = _text(element, "classificationSequence_AttributeInstanceComponent.position")
    if sequence_text is not None and not _INTEGER.fullmatch(sequence_text):
        raise FeedRejected(f"{where}: classificationSequence {sequence_text!r} is not a number")
    sequence = int(sequence_text) if sequence_text is not None else None
    if sequence not in _SDAC_SEQUENCES:
        return f"classificationSequence {sequence} (not the SDAC auction)"
    return None


def _time_series(element: ElementTree.Element, area: PriceArea, where: str) -> list[A44Series]:
    """One :class:`A44Series` per resolution found among the TimeSeries' Periods."""
    currency = _text(element, "currency_Unit.name")
    unit = _text(element, "price_Measure_Unit.name")
    if not currency:
        raise FeedRejected(f"{where}: no currency_Unit.name")
    if not unit:
        raise FeedRejected(f"{where}: no price_Measure_Unit.name")
    # Absent curveType read as A01 (every position present): the stricter reading, since a gap
    # is then named by validation rather than filled. [unconfirmed: the XSD's default]
    curve_type = _text(element, "curveType") or "A01"
    if curve_type not in _CURVE_TYPES:
        raise FeedRejected(f"{where}: curveType {curve_type!r} is neither A01 nor A03")
    periods = _children(element, "Period")
    if not periods:
        raise FeedRejected(f"{where}: no Period")
    sequence_text = _text(element, "classificationSequence_AttributeInstanceComponent.position")
    by_resolution: dict[Resolution, tuple[list[_Point], list[_Interval]]] = {}
    for number, period in enumerate(periods, start=1):
        resolution, start_at, end_at, points = _period(
            period, curve_type, f"{where} Period {number}"
        )
        bucket = by_resolution.setdefault(resolution, ([], []))
        bucket[0].extend(points)
        bucket[1].append((start_at, end_at))
    return [
        A44Series(
            raw=RawPriceSeries(
                area=area,
                resolution=resolution,
                currency=currency,
                unit=_UNITS.get(unit.upper(), unit),
                points=tuple(points),
                source=SOURCE_NAME,
            ),
            periods=tuple(intervals),
            time_series=_text(element, "mRID") or where.rsplit(" ", 1)[-1],
            classification_sequence=int(sequence_text) if sequence_text is not None else None,
        )
        for resolution, (points, intervals) in by_resolution.items()
    ]


def _period(
    period: ElementTree.Element, curve_type: str, where: str
) -> tuple[Resolution, datetime, datetime, list[tuple[datetime, float]]]:
    interval = next(iter(_children(period, "timeInterval")), None)
    if interval is None:
        raise FeedRejected(f"{where}: no timeInterval")
    start_at = _parse_instant(_text(interval, "start"), where)
    end_at = _parse_instant(_text(interval, "end"), where)
    resolution_text = _text(period, "resolution")
    if not resolution_text:
        raise FeedRejected(f"{where}: no resolution")
    resolution = _RESOLUTIONS.get(resolution_text)
    if resolution is None:
        raise FeedRejected(
            f"{where}: unknown resolution {resolution_text!r}; expected PT15M or PT60M"
        )
    step = resolution.duration
    if end_at <= start_at or (end_at - start_at) % step:
        raise FeedRejected(
            f"{where}: timeInterval {start_at:%Y-%m-%dT%H:%MZ}..{end_at:%Y-%m-%dT%H:%MZ} is not "
            f"a whole number of {resolution_text} steps"
        )
    count = (end_at - start_at) // step
    where = f"{where} ({start_at:%Y-%m-%dT%H:%MZ}, {resolution_text})"
    present: dict[int, list[float]] = {}
    for point in _children(period, "Point"):
        position, price = _point(point, count, where)
        present.setdefault(position, []).append(price)
    return resolution, start_at, end_at, list(_expand(present, count, start_at, step, curve_type))


def _point(point: ElementTree.Element, count: int, where: str) -> tuple[int, float]:
    position_text = _text(point, "position") or ""
    if not _INTEGER.fullmatch(position_text):
        raise FeedRejected(f"{where}: a Point has position {position_text!r}, not a number")
    position = int(position_text)
    if not 1 <= position <= count:
        raise FeedRejected(f"{where}: position {position} is outside 1..{count}")
    amount = _text(point, "price.amount")
    if amount is None:
        raise FeedRejected(f"{where}: position {position} has no price.amount")
    if not _DECIMAL.fullmatch(amount):
        raise FeedRejected(
            f"{where}: position {position} has price.amount {amount!r}, not a number"
        )
    return position, float(amount)


def _expand(
    present: dict[int, list[float]],
    count: int,
    start_at: datetime,
    step: timedelta,
    curve_type: str,
) -> Iterable[tuple[datetime, float]]:
    """Points on the grid; A03 repeats the previous price where a position is omitted."""
    previous: float | None = None
    for position in range(1, count + 1):
        at = start_at + (position - 1) * step
        prices = present.get(position)
        if prices:
            yield from ((at, price) for price in prices)
            previous = prices[-1]
        elif curve_type == "A03" and previous is not None:
            yield at, previous


def _without_queries(text: str, token: str) -> str:
    """``text`` with every URL's query cut off and the token, should it remain, masked."""
    text = _URL_QUERY.sub(r"\1", text)
    return text.replace(token, "***") if token else text


def choose_series(document: A44Document, start_at: datetime, end_at: datetime) -> A44Series | None:
    """The series covering ``[start_at, end_at)`` at the finest resolution; None if none does.

    Two series at that resolution that disagree on the day cannot be told apart (the auction
    labels have been unreliable): FeedRejected rather than a guess.
    """
    covering = [s for s in document.series if s.covers(start_at, end_at)]
    if not covering:
        return None
    finest = min(int(s.raw.resolution) for s in covering)
    candidates = [s for s in covering if int(s.raw.resolution) == finest]
    first = candidates[0]

    def day_points(series: A44Series) -> list[tuple[datetime, float]]:
        return [(at, price) for at, price in series.raw.points if start_at <= at < end_at]

    for other in candidates[1:]:
        if day_points(other) != day_points(first):
            raise FeedRejected(
                f"{SOURCE_NAME} {first.raw.area}: TimeSeries {first.time_series} and "
                f"{other.time_series} both cover the day at PT{finest}M with different prices"
            )
    return first


class EntsoePriceSource:
    """Day-ahead prices from the ENTSO-E Transparency Platform RESTful API."""

    def __init__(
        self,
        secrets: SecretStore,
        *,
        client: httpx.Client | None = None,
        token_secret: str = "entsoe-api-token",
        base_url: str = DEFAULT_BASE_URL,
        clock: Clock | None = None,
        timeout: httpx.Timeout | None = None,
    ) -> None:
        self._secrets = secrets
        # Requests over 300 s time out on the platform's side; ours give up much earlier.
        self._timeout = timeout or httpx.Timeout(30.0, connect=10.0)
        self._client = client or httpx.Client(timeout=self._timeout)
        self._token_secret = token_secret
        self._base_url = base_url
        self._clock = clock or SystemClock()

    def __repr__(self) -> str:
        return (
            f"EntsoePriceSource(base_url={self._base_url!r}, token_secret={self._token_secret!r})"
        )

    @property
    def name(self) -> str:
        return SOURCE_NAME

    def supports(self, area: PriceArea) -> bool:
        return area in EIC_CODES

    def fetch(self, area: PriceArea, market_date: date) -> MarketDayPrices | None:
        if not self.supports(area):
            raise InvalidInput(f"{SOURCE_NAME}: no EIC code known for price area {area}")
        start_at, end_at = delivery_day_bounds(area, market_date)
        where = f"{SOURCE_NAME} {area} {market_date}"
        response = self._get(area, start_at, end_at, where)
        if not response.is_success:
            self._refusal(response, area, where)
            return None
        document = parse_a44(response.content, area)
        if document.no_data_reason is not None:
            return None
        chosen = choose_series(document, start_at, end_at)
        if chosen is None:
            return None
        return normalize_day(chosen.raw, market_date, fetched_at=self._clock.now())

    def _get(
        self, area: PriceArea, start_at: datetime, end_at: datetime, where: str
    ) -> httpx.Response:
        """The answer; ProviderUnavailable when ENTSO-E fails, throttles or does not answer."""
        eic = EIC_CODES[area]
        params = {
            "documentType": "A44",
            "in_Domain": eic,
            "out_Domain": eic,
            "periodStart": f"{start_at:%Y%m%d%H%M}",
            "periodEnd": f"{end_at:%Y%m%d%H%M}",
            "contract_MarketAgreement.type": _DAY_AHEAD_CONTRACT,
        }
        token = self._secrets.get(self._token_secret).reveal_text().strip()
        try:
            response = self._client.get(
                self._base_url,
                params={**params, "securityToken": token},
                timeout=self._timeout,
            )
        except httpx.TimeoutException as err:
            # httpx errors carry the request and its URL, token included: never chain them.
            raise ProviderUnavailable(
                f"{where}: {self._base_url} timed out ({type(err).__name__})"
            ) from None
        except httpx.RequestError as err:
            message = _without_queries(str(err), token)
            raise ProviderUnavailable(
                f"{where}: request to {self._base_url} failed ({type(err).__name__}: {message})"
            ) from None
        status = response.status_code
        if status == 401:
            raise InvalidInput(f"ENTSO-E refused the security token (HTTP 401) for {where}")
        http.raise_if_unavailable(response, where)
        return response

    @staticmethod
    def _refusal(response: httpx.Response, area: PriceArea, where: str) -> None:
        """A 3xx/4xx answer: None if it is the "no data" acknowledgement, else FeedRejected.

        "No data" used to come as HTTP 400 with the acknowledgement before it moved to 200; a
        400 also carries the reason of a refused query, which FeedRejected then quotes.
        """
        try:
            root = _load(response.content, f"{SOURCE_NAME} {area}")
        except FeedRejected:
            root = None
        if root is not None and _local(root.tag) == _ACKNOWLEDGEMENT_ROOT:
            _acknowledgement(root, f"{where} (HTTP {response.status_code})")  # raises unless 999
            return
        raise FeedRejected(f"{where}: ENTSO-E answered HTTP {response.status_code}")
