"""Reading tariff files and refusing bad ones with a message that names the file and the field.

Tariffs are data, not code: one TOML file per grid company or product in ``data/tariffs/`` (or
``$HPSTEER_TARIFFS_DIR``), named ``<id>.toml``. A deployed function's folder carries its own copy
in ``data/tariffs/`` beside the ``hpsteer`` package (``deploy/stage.py`` puts it there), so
:func:`default_directory` finds the files in the repository and in a staged function alike.
Components shared by several tariffs (national fees and taxes, VAT) live in ``shared/<name>.toml``
and are pulled in with ``include``; exchange rates live in ``shared/exchange_rates.toml``. See
``data/tariffs/PROVENANCE.md`` for the format.

Checks beyond the field types: the id matches the file name; the time zone, price areas and
currency are known; every list of versions is non-empty and strictly ascending by ``valid_from``;
VAT is a fraction below 1; the seasons of a grid version cover the twelve months exactly once and
the bands of a season cover every hour of weekdays and of weekends exactly once. The first problem
found is reported as ``<file>: <field path>: <what is wrong>``.
"""

from __future__ import annotations

import os
import re
import threading
import tomllib
from collections.abc import Iterable, Sequence
from datetime import date
from itertools import pairwise
from pathlib import Path
from typing import Any, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import holidays
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from hpsteer.domain.market import PriceArea
from hpsteer.tariffs.errors import TariffError, UnknownTariff
from hpsteer.tariffs.model import (
    DayKind,
    Fee,
    FlatVersion,
    GridVersion,
    HolidayRule,
    RateVersion,
    Season,
    VatVersion,
)
from hpsteer.tariffs.tariff import Tariff

__all__ = [
    "ENV_DIRECTORY",
    "available_tariffs",
    "cached_tariff",
    "default_directory",
    "load_tariff",
]

ENV_DIRECTORY = "HPSTEER_TARIFFS_DIR"
_PACKAGE_PARENT = Path(__file__).resolve().parents[2]
"""``shared/`` in the repository; the function's root folder when staged."""
_STAGED_DIRECTORY = _PACKAGE_PARENT / "data" / "tariffs"
_REPOSITORY_DIRECTORY = _PACKAGE_PARENT.parent / "data" / "tariffs"
SHARED = "shared"
RATES_FILE = "exchange_rates.toml"
_ID = re.compile(r"^[a-z0-9][a-z0-9-]*$")
_MONTHS = frozenset(range(1, 13))
_HOURS = 24
_D = TypeVar("_D", bound=BaseModel)


class _Document(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class TariffDocument(_Document):
    """A tariff file as written."""

    id: str
    name: str
    country: str = Field(pattern=r"^[A-Z]{2}$")
    price_areas: tuple[str, ...] = Field(min_length=1)
    timezone: str
    currency: str = Field(pattern=r"^[A-Z]{3}$")
    sources: tuple[str, ...] = Field(min_length=1)
    retrieved: date
    unconfirmed: tuple[str, ...]
    estimated: bool = False
    valid_until: date | None = None
    include: tuple[str, ...] = ()
    public_holidays: HolidayRule = HolidayRule.AS_WEEKDAY
    holiday_subdivision: str | None = None
    markup: tuple[FlatVersion, ...]
    vat: tuple[VatVersion, ...] = ()
    grid: tuple[GridVersion, ...]
    fees: tuple[Fee, ...] = ()


class SharedDocument(_Document):
    """A file of components shared by several tariffs (``shared/<name>.toml``)."""

    id: str
    name: str
    currency: str = Field(pattern=r"^[A-Z]{3}$")
    sources: tuple[str, ...] = Field(min_length=1)
    retrieved: date
    unconfirmed: tuple[str, ...]
    vat: tuple[VatVersion, ...] = ()
    fees: tuple[Fee, ...] = ()


class _Rate(_Document):
    currency: str = Field(pattern=r"^[A-Z]{3}$")
    valid_from: date
    per_eur: float = Field(gt=0, allow_inf_nan=False)
    source: str = ""


class RatesDocument(_Document):
    """``shared/exchange_rates.toml``: units of each currency per euro, versioned."""

    sources: tuple[str, ...] = Field(min_length=1)
    retrieved: date
    rates: tuple[_Rate, ...]


def default_directory() -> Path:
    """``$HPSTEER_TARIFFS_DIR`` if set; else ``data/tariffs`` beside the ``hpsteer`` package (a
    staged function's copy) if it exists; else the repository's ``data/tariffs``."""
    configured = os.environ.get(ENV_DIRECTORY)
    if configured:
        return Path(configured)
    return _STAGED_DIRECTORY if _STAGED_DIRECTORY.is_dir() else _REPOSITORY_DIRECTORY


def available_tariffs(directory: Path | None = None) -> list[str]:
    """The ids of the tariff files in ``directory`` (default :func:`default_directory`)."""
    folder = directory if directory is not None else default_directory()
    if not folder.is_dir():
        raise TariffError(f"{_display(folder)}: tariff directory does not exist")
    return sorted(path.stem for path in folder.glob("*.toml") if path.is_file())


def load_tariff(tariff_id: str, directory: Path | None = None) -> Tariff:
    """Read, check and return the tariff ``<directory>/<tariff_id>.toml``.

    Raises :class:`TariffError` (or its subclass :class:`UnknownTariff` for an id without a
    file) whose message names the file and the field at fault.
    """
    folder = directory if directory is not None else default_directory()
    known = available_tariffs(folder)
    path = folder / f"{tariff_id}.toml"
    if not _ID.match(tariff_id) or tariff_id not in known:
        raise UnknownTariff(
            f"{_display(path)}: no tariff with id {tariff_id!r}; known: {', '.join(known)}"
        )
    document = _parse(path, TariffDocument)
    _check(path, _check_document(document, tariff_id))
    rates = _load_rates(folder)
    shared = [
        _load_shared(folder, path, index, name) for index, name in enumerate(document.include)
    ]
    _check(path, _check_includes(document, shared))
    _check(path, _check_currency(document.currency, rates, folder))
    vat = document.vat or next(item.vat for item in shared if item.vat)
    fees = document.fees + tuple(fee for item in shared for fee in item.fees)
    tariff = Tariff(
        id=document.id,
        name=document.name,
        country=document.country,
        price_areas=document.price_areas,
        timezone=document.timezone,
        currency=document.currency,
        sources=document.sources + tuple(s for item in shared for s in item.sources),
        retrieved=document.retrieved,
        unconfirmed=document.unconfirmed + tuple(u for item in shared for u in item.unconfirmed),
        estimated=document.estimated,
        source_file=_display(path),
        in_force_until=document.valid_until,
        public_holidays=document.public_holidays,
        holiday_subdivision=document.holiday_subdivision,
        markup=document.markup,
        vat=vat,
        grid=document.grid,
        fees=fees,
        rates=rates.get(document.currency, ()),
    )
    if tariff.in_force_until is not None and tariff.in_force_until <= tariff.in_force_from:
        raise TariffError(
            f"{_display(path)}: valid_until: {tariff.in_force_until.isoformat()} is not after the "
            f"first date every component has a value ({tariff.in_force_from.isoformat()})"
        )
    return tariff


_CACHE: dict[tuple[Path, str], tuple[tuple[int, ...], Tariff]] = {}
_CACHE_LOCK = threading.Lock()


def cached_tariff(tariff_id: str, directory: Path | None = None) -> Tariff:
    """:func:`load_tariff`, kept per process: the same tariff again costs a few ``stat`` calls.

    The planner, the API's checks and a CSV import ask for the same few tariffs over and over;
    a cached :class:`Tariff` also keeps its per-day price tables. An entry is read afresh when
    the modification time of the tariff's file or of any shared file changed (a test, or a
    person editing the data, sees the new values at once). Refusals are not cached.
    """
    folder = (directory if directory is not None else default_directory()).resolve()
    key = (folder, tariff_id)
    stamp = _stamp(folder, tariff_id)
    with _CACHE_LOCK:
        cached = _CACHE.get(key)
    if stamp is not None and cached is not None and cached[0] == stamp:
        return cached[1]
    tariff = load_tariff(tariff_id, folder)
    if stamp is not None:
        with _CACHE_LOCK:
            _CACHE[key] = (stamp, tariff)
    return tariff


def _stamp(folder: Path, tariff_id: str) -> tuple[int, ...] | None:
    """The modification times and sizes of the files a tariff is read from (None: not all
    there)."""
    if not _ID.match(tariff_id):
        return None
    try:
        paths = [folder / f"{tariff_id}.toml", *sorted((folder / SHARED).glob("*.toml"))]
        stats = [path.stat() for path in paths]
    except OSError:
        return None
    return tuple(value for stat in stats for value in (stat.st_mtime_ns, stat.st_size))


# -- reading ---------------------------------------------------------------------------------


def _display(path: Path) -> str:
    """A path relative to the repository (or the staged function) when it is inside it
    (``data/tariffs/x.toml``)."""
    resolved = path.resolve()
    for root in (_STAGED_DIRECTORY.parents[1], _REPOSITORY_DIRECTORY.parents[1]):
        if resolved.is_relative_to(root / "data"):
            return str(resolved.relative_to(root))
    return str(path)


def _read(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as err:
        raise TariffError(f"{_display(path)}: file does not exist") from err
    except (OSError, UnicodeDecodeError) as err:
        raise TariffError(f"{_display(path)}: cannot be read ({err})") from err
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise TariffError(f"{_display(path)}: not valid TOML: {err}") from err


def _field_path(location: Sequence[int | str]) -> str:
    text = ""
    for part in location:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text or "(file)"


def _parse(path: Path, model: type[_D]) -> _D:
    raw = _read(path)
    try:
        return model.model_validate(raw)
    except ValidationError as err:
        first = err.errors()[0]
        raise TariffError(f"{_display(path)}: {_field_path(first['loc'])}: {first['msg']}") from err


def _check(path: Path, problems: Iterable[tuple[str, str]]) -> None:
    for field, message in problems:
        raise TariffError(f"{_display(path)}: {field}: {message}")


def _load_shared(folder: Path, tariff_path: Path, index: int, name: str) -> SharedDocument:
    path = folder / SHARED / f"{name}.toml"
    if not _ID.match(name) or not path.is_file():
        raise TariffError(
            f"{_display(tariff_path)}: include[{index}]: no shared file {_display(path)}"
        )
    shared = _parse(path, SharedDocument)
    _check(path, _check_shared(shared, name))
    return shared


def _load_rates(folder: Path) -> dict[str, tuple[RateVersion, ...]]:
    path = folder / SHARED / RATES_FILE
    document = _parse(path, RatesDocument)
    by_currency: dict[str, list[tuple[int, _Rate]]] = {}
    for index, rate in enumerate(document.rates):
        by_currency.setdefault(rate.currency, []).append((index, rate))
    for entries in by_currency.values():
        for (_, before), (index, after) in pairwise(entries):
            if after.valid_from <= before.valid_from:
                raise TariffError(
                    f"{_display(path)}: rates[{index}].valid_from: {after.valid_from} is not "
                    f"after {before.valid_from}, the previous {after.currency} rate"
                )
    return {
        currency: tuple(
            RateVersion(valid_from=rate.valid_from, per_eur=rate.per_eur, source=rate.source)
            for _, rate in entries
        )
        for currency, entries in by_currency.items()
    }


# -- checks: each yields (field path, problem) ------------------------------------------------


def _check_document(document: TariffDocument, tariff_id: str) -> Iterable[tuple[str, str]]:
    if document.id != tariff_id:
        yield "id", f"{document.id!r} differs from the file name {tariff_id!r}"
    try:
        ZoneInfo(document.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        yield "timezone", f"unknown time zone {document.timezone!r}"
    known_areas = {area.value for area in PriceArea}
    for index, area in enumerate(document.price_areas):
        if area not in known_areas:
            yield f"price_areas[{index}]", f"unknown price area {area!r}"
    if document.public_holidays is HolidayRule.AS_WEEKEND:
        try:
            holidays.country_holidays(document.country, subdiv=document.holiday_subdivision)
        except NotImplementedError:
            yield "country", f"no public-holiday calendar for {document.country!r}"
    if not document.markup:
        yield "markup", "needs at least one version (per_kwh = 0.0 if there is none)"
    if not document.grid:
        yield "grid", "needs at least one version"
    yield from _ascending("markup", document.markup)
    yield from _check_vat("vat", document.vat)
    yield from _check_fees("fees", document.fees)
    for index, version in enumerate(document.grid):
        yield from _check_grid_version(f"grid[{index}]", version)
    yield from _ascending("grid", document.grid)


def _check_shared(document: SharedDocument, name: str) -> Iterable[tuple[str, str]]:
    if document.id != name:
        yield "id", f"{document.id!r} differs from the file name {name!r}"
    yield from _check_vat("vat", document.vat)
    yield from _check_fees("fees", document.fees)


def _check_includes(
    document: TariffDocument, shared: Sequence[SharedDocument]
) -> Iterable[tuple[str, str]]:
    for index, item in enumerate(shared):
        if item.currency != document.currency:
            yield (
                f"include[{index}]",
                f"{item.id} is in {item.currency}, the tariff in {document.currency}",
            )
    with_vat = [item.id for item in shared if item.vat]
    if document.vat and with_vat:
        yield "vat", f"defined here and in include {with_vat[0]}; keep one"
    if not document.vat and not with_vat:
        yield "vat", "needs at least one version (here or in an included shared file)"
    if len(with_vat) > 1:
        yield "include", f"VAT is defined by more than one shared file: {', '.join(with_vat)}"


def _check_currency(
    currency: str, rates: dict[str, tuple[RateVersion, ...]], folder: Path
) -> Iterable[tuple[str, str]]:
    if currency != "EUR" and currency not in rates:
        yield (
            "currency",
            f"unknown currency {currency!r}: {_display(folder / SHARED / RATES_FILE)} has rates "
            f"for {', '.join(sorted(rates)) or 'none'} (and EUR needs none)",
        )


def _check_vat(field: str, versions: Sequence[VatVersion]) -> Iterable[tuple[str, str]]:
    for index, version in enumerate(versions):
        if not 0.0 <= version.rate < 1.0:
            yield f"{field}[{index}].rate", f"{version.rate} is not a fraction in [0, 1)"
    yield from _ascending(field, versions)


def _check_fees(field: str, fees: Sequence[Fee]) -> Iterable[tuple[str, str]]:
    for index, fee in enumerate(fees):
        if not fee.versions:
            yield f"{field}[{index}].versions", "needs at least one version"
        yield from _ascending(f"{field}[{index}].versions", fee.versions)


def _ascending(
    field: str, versions: Sequence[FlatVersion | VatVersion | GridVersion]
) -> Iterable[tuple[str, str]]:
    for index in range(1, len(versions)):
        before, after = versions[index - 1].valid_from, versions[index].valid_from
        if after <= before:
            yield (
                f"{field}[{index}].valid_from",
                f"{after.isoformat()} is not after {field}[{index - 1}].valid_from "
                f"({before.isoformat()}); versions must be in ascending order",
            )


def _check_grid_version(field: str, version: GridVersion) -> Iterable[tuple[str, str]]:
    seen: dict[int, int] = {}
    for index, season in enumerate(version.seasons):
        for month in season.months:
            if month not in _MONTHS:
                yield f"{field}.seasons[{index}].months", f"{month} is not a month 1..12"
            elif month in seen:
                yield (
                    f"{field}.seasons[{index}].months",
                    f"month {month} is also in seasons[{seen[month]}]",
                )
            else:
                seen[month] = index
        yield from _check_bands(f"{field}.seasons[{index}]", season)
    missing = sorted(_MONTHS - set(seen))
    if missing:
        yield f"{field}.seasons", f"months {', '.join(map(str, missing))} have no season"


def _check_bands(field: str, season: Season) -> Iterable[tuple[str, str]]:
    for index, band in enumerate(season.bands):
        start, end = band.hours
        if not 0 <= start < end <= _HOURS:
            yield (
                f"{field}.bands[{index}].hours",
                f"[{start}, {end}] is not a range of local hours with 0 <= start < end <= 24",
            )
            return
    for kind in (DayKind.WEEKDAY, DayKind.WEEKEND):
        owner: dict[int, int] = {}
        for index, band in enumerate(season.bands):
            if band.days not in (DayKind.ALL, kind):
                continue
            for hour in range(*band.hours):
                if hour in owner:
                    yield (
                        f"{field}.bands[{index}].hours",
                        f"overlaps bands[{owner[hour]}] on {kind.value}s at hour {hour}",
                    )
                    return
                owner[hour] = index
        uncovered = [hour for hour in range(_HOURS) if hour not in owner]
        if uncovered:
            yield (
                f"{field}.bands",
                f"{kind.value} hours {', '.join(map(str, uncovered))} have no band",
            )
