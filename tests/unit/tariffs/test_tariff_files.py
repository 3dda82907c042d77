"""Loading tariff files: where they are found, and every way a bad one is refused.

Each refusal must name the file and the field at fault, so that whoever edits ``data/tariffs``
can fix the file from the message alone. The files here are small made-up tariffs written to a
temporary directory; the real ones are tested in ``test_bundled_tariffs.py``.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from hpsteer.errors import InvalidInput, NaiveDatetime
from hpsteer.tariffs import (
    ENV_DIRECTORY,
    TariffError,
    TariffNotInForce,
    UnknownTariff,
    available_tariffs,
    default_directory,
    load_tariff,
)
from hpsteer.tariffs.files import RATES_FILE, SHARED

RATES = """
sources = ["test"]
retrieved = 2024-01-01

[[rates]]
currency = "DKK"
valid_from = 2024-01-01
per_eur = 7.5
"""

SHARED_FEES = """
id = "national"
name = "test national fees"
currency = "DKK"
sources = ["test"]
retrieved = 2024-01-01
unconfirmed = []

[[vat]]
valid_from = 2024-01-01
rate = 0.25

[[fees]]
name = "tax"
category = "tax"
  [[fees.versions]]
  valid_from = 2024-01-01
  per_kwh = 0.75
  [[fees.versions]]
  valid_from = 2024-07-01
  per_kwh = 1.5
"""

TARIFF = """
id = "demo"
name = "demo tariff"
country = "DK"
price_areas = ["DK1"]
timezone = "Europe/Copenhagen"
currency = "DKK"
sources = ["test"]
retrieved = 2024-01-01
unconfirmed = ["everything: made up for a test"]
include = ["national"]

[[markup]]
valid_from = 2024-01-01
per_kwh = 0.0

[[grid]]
valid_from = 2024-01-01
  [[grid.seasons]]
  name = "all year"
  months = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]
  bands = [
      { hours = [0, 17], per_kwh = 0.15 },
      { hours = [17, 21], per_kwh = 1.5 },
      { hours = [21, 24], per_kwh = 0.15 },
  ]

[[grid]]
valid_from = 2024-04-01
  [[grid.seasons]]
  name = "all year"
  months = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]
  bands = [{ hours = [0, 24], per_kwh = 0.3 }]
"""

CPH = ZoneInfo("Europe/Copenhagen")


def write_set(folder: Path, tariff: str = TARIFF, name: str = "demo") -> Path:
    (folder / SHARED).mkdir(parents=True, exist_ok=True)
    (folder / SHARED / RATES_FILE).write_text(RATES, encoding="utf-8")
    (folder / SHARED / "national.toml").write_text(SHARED_FEES, encoding="utf-8")
    (folder / f"{name}.toml").write_text(tariff, encoding="utf-8")
    return folder


def refused(folder: Path, tariff: str) -> str:
    write_set(folder, tariff)
    with pytest.raises(TariffError) as caught:
        load_tariff("demo", folder)
    return str(caught.value)


# -- finding files ----------------------------------------------------------------------------


def test_a_valid_file_loads_with_its_included_fees_vat_and_rates(tmp_path: Path) -> None:
    tariff = load_tariff("demo", write_set(tmp_path))
    assert tariff.id == "demo"
    assert tariff.unconfirmed == ("everything: made up for a test",)
    # (0.1 spot + (1.5 grid + 0.75 tax) / 7.5 DKK per EUR) * 1.25 VAT
    evening = datetime(2024, 1, 17, 18, tzinfo=CPH)
    assert tariff.effective_price_eur_per_kwh(evening, 100.0) == pytest.approx(
        (0.1 + (1.5 + 0.75) / 7.5) * 1.25
    )


def test_the_default_directory_is_the_environment_variable_else_the_bundled_data(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(ENV_DIRECTORY, raising=False)
    assert default_directory().parts[-2:] == ("data", "tariffs")
    monkeypatch.setenv(ENV_DIRECTORY, str(write_set(tmp_path)))
    assert default_directory() == tmp_path
    assert available_tariffs() == ["demo"]
    assert load_tariff("demo").id == "demo"


def test_shared_files_are_not_tariffs(tmp_path: Path) -> None:
    assert available_tariffs(write_set(tmp_path)) == ["demo"]


def test_a_missing_directory_is_refused_naming_it(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    with pytest.raises(TariffError, match=r"nowhere: tariff directory does not exist"):
        load_tariff("demo", missing)


def test_an_unknown_id_is_refused_naming_the_file_and_the_known_ids(tmp_path: Path) -> None:
    write_set(tmp_path)
    with pytest.raises(UnknownTariff, match=r"nope\.toml: no tariff with id 'nope'; known: demo"):
        load_tariff("nope", tmp_path)


def test_an_id_that_is_a_path_is_refused(tmp_path: Path) -> None:
    write_set(tmp_path)
    with pytest.raises(UnknownTariff):
        load_tariff("../demo", tmp_path)


def test_every_refusal_is_invalid_input() -> None:
    assert issubclass(TariffError, InvalidInput)


# -- malformed files --------------------------------------------------------------------------


def test_malformed_toml_is_refused_naming_the_file(tmp_path: Path) -> None:
    message = refused(tmp_path, TARIFF + "\nthis is = = not toml\n")
    assert "demo.toml: not valid TOML" in message


def test_a_missing_field_is_refused_naming_it(tmp_path: Path) -> None:
    message = refused(tmp_path, TARIFF.replace('timezone = "Europe/Copenhagen"\n', ""))
    assert "demo.toml: timezone: Field required" in message


def test_a_missing_nested_field_is_refused_with_its_path(tmp_path: Path) -> None:
    message = refused(tmp_path, TARIFF.replace("[[grid]]\nvalid_from = 2024-04-01\n", "[[grid]]\n"))
    assert "demo.toml: grid[1].valid_from: Field required" in message


def test_an_unknown_field_is_refused(tmp_path: Path) -> None:
    message = refused(tmp_path, TARIFF.replace('name = "demo tariff"', 'name = "x"\ncolour = 3'))
    assert "demo.toml: colour: Extra inputs are not permitted" in message


def test_overlapping_bands_are_refused_naming_the_band(tmp_path: Path) -> None:
    message = refused(tmp_path, TARIFF.replace("hours = [17, 21]", "hours = [16, 21]"))
    assert (
        "demo.toml: grid[0].seasons[0].bands[1].hours: overlaps bands[0] on weekdays at hour 16"
        in message
    )


def test_hours_without_a_band_are_refused(tmp_path: Path) -> None:
    message = refused(tmp_path, TARIFF.replace("hours = [21, 24]", "hours = [21, 23]"))
    assert "demo.toml: grid[0].seasons[0].bands: weekday hours 23 have no band" in message


def test_weekday_only_bands_leave_weekends_uncovered(tmp_path: Path) -> None:
    weekday_only = TARIFF.replace(
        "[{ hours = [0, 24], per_kwh = 0.3 }]",
        '[{ days = "weekday", hours = [0, 24], per_kwh = 0.3 }]',
    )
    message = refused(tmp_path, weekday_only)
    assert "demo.toml: grid[1].seasons[0].bands: weekend hours 0, 1, 2" in message


def test_a_band_outside_the_day_is_refused(tmp_path: Path) -> None:
    message = refused(tmp_path, TARIFF.replace("hours = [21, 24]", "hours = [21, 25]"))
    assert "demo.toml: grid[0].seasons[0].bands[2].hours: [21, 25] is not a range" in message


def test_seasons_must_cover_the_twelve_months(tmp_path: Path) -> None:
    message = refused(
        tmp_path,
        TARIFF.replace(
            "months = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]\n  bands = [{",
            "months = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]\n  bands = [{",
        ),
    )
    assert "demo.toml: grid[1].seasons: months 12 have no season" in message


def test_a_month_in_two_seasons_is_refused(tmp_path: Path) -> None:
    twice = TARIFF + (
        '\n  [[grid.seasons]]\n  name = "again"\n  months = [12]\n'
        "  bands = [{ hours = [0, 24], per_kwh = 0.3 }]\n"
    )
    message = refused(tmp_path, twice)
    assert "demo.toml: grid[1].seasons[1].months: month 12 is also in seasons[0]" in message


def test_versions_must_be_in_ascending_order(tmp_path: Path) -> None:
    message = refused(
        tmp_path, TARIFF.replace("valid_from = 2024-04-01", "valid_from = 2023-12-01")
    )
    assert "demo.toml: grid[1].valid_from: 2023-12-01 is not after grid[0].valid_from" in message


def test_vat_must_be_a_fraction(tmp_path: Path) -> None:
    write_set(tmp_path)
    (tmp_path / SHARED / "national.toml").write_text(
        SHARED_FEES.replace("rate = 0.25", "rate = 25"), encoding="utf-8"
    )
    with pytest.raises(
        TariffError, match=r"national\.toml: vat\[0\]\.rate: 25\.0 is not a fraction"
    ):
        load_tariff("demo", tmp_path)


def test_a_currency_without_exchange_rates_is_refused(tmp_path: Path) -> None:
    nok = TARIFF.replace('currency = "DKK"', 'currency = "NOK"')
    nok = nok.replace('include = ["national"]\n', "")
    nok += "\n[[vat]]\nvalid_from = 2024-01-01\nrate = 0.25\n"
    message = refused(tmp_path, nok)
    assert "demo.toml: currency: unknown currency 'NOK'" in message
    assert "has rates for DKK" in message


def test_an_included_file_in_another_currency_is_refused(tmp_path: Path) -> None:
    message = refused(tmp_path, TARIFF.replace('currency = "DKK"', 'currency = "NOK"'))
    assert "demo.toml: include[0]: national is in DKK, the tariff in NOK" in message


def test_a_missing_shared_file_is_refused_naming_the_include(tmp_path: Path) -> None:
    message = refused(tmp_path, TARIFF.replace('include = ["national"]', 'include = ["gone"]'))
    assert "demo.toml: include[0]: no shared file" in message
    assert "gone.toml" in message


def test_the_id_must_match_the_file_name(tmp_path: Path) -> None:
    message = refused(tmp_path, TARIFF.replace('id = "demo"', 'id = "other"'))
    assert "demo.toml: id: 'other' differs from the file name 'demo'" in message


def test_an_unknown_time_zone_or_price_area_is_refused(tmp_path: Path) -> None:
    message = refused(tmp_path, TARIFF.replace("Europe/Copenhagen", "Europe/Atlantis"))
    assert "demo.toml: timezone: unknown time zone 'Europe/Atlantis'" in message
    message = refused(tmp_path, TARIFF.replace('["DK1"]', '["DK9"]'))
    assert "demo.toml: price_areas[0]: unknown price area 'DK9'" in message


def test_valid_until_must_leave_some_data(tmp_path: Path) -> None:
    message = refused(
        tmp_path,
        TARIFF.replace(
            'include = ["national"]', 'include = ["national"]\nvalid_until = 2023-06-01'
        ),
    )
    assert "demo.toml: valid_until: 2023-06-01 is not after" in message


# -- pricing behaviour ------------------------------------------------------------------------


def test_a_component_changes_on_its_valid_from_date(tmp_path: Path) -> None:
    tariff = load_tariff("demo", write_set(tmp_path))
    last_march = datetime(2024, 3, 31, 23, 45, tzinfo=CPH)
    first_april = datetime(2024, 4, 1, 0, 0, tzinfo=CPH)
    assert tariff.effective_price_eur_per_kwh(last_march, 0.0) == pytest.approx(
        (0.15 + 0.75) / 7.5 * 1.25
    )
    assert tariff.effective_price_eur_per_kwh(first_april, 0.0) == pytest.approx(
        (0.3 + 0.75) / 7.5 * 1.25
    )
    last_june = datetime(2024, 6, 30, 23, 0, tzinfo=CPH)
    first_july = datetime(2024, 7, 1, 0, 0, tzinfo=CPH)
    assert tariff.effective_price_eur_per_kwh(last_june, 0.0) == pytest.approx(
        (0.3 + 0.75) / 7.5 * 1.25
    )
    assert tariff.effective_price_eur_per_kwh(first_july, 0.0) == pytest.approx(
        (0.3 + 1.5) / 7.5 * 1.25
    )


def test_an_instant_before_the_first_values_is_refused(tmp_path: Path) -> None:
    tariff = load_tariff("demo", write_set(tmp_path))
    before = datetime(2023, 12, 31, 22, 59, tzinfo=UTC)  # 23:59 local on 31 December
    assert not tariff.covers(before)
    assert tariff.in_force_from == date(2024, 1, 1)
    with pytest.raises(TariffNotInForce, match=r"demo\.toml.*local date 2023-12-31.*2024-01-01"):
        tariff.effective_price_eur_per_kwh(before, 50.0)


def test_a_naive_instant_is_refused(tmp_path: Path) -> None:
    tariff = load_tariff("demo", write_set(tmp_path))
    with pytest.raises(NaiveDatetime):
        tariff.effective_price_eur_per_kwh(datetime(2024, 1, 17, 18), 50.0)  # noqa: DTZ001


def test_the_breakdown_adds_up_to_the_effective_price(tmp_path: Path) -> None:
    tariff = load_tariff("demo", write_set(tmp_path)).with_markup(0.375)
    evening = datetime(2024, 1, 17, 18, tzinfo=CPH)
    parts = tariff.breakdown(evening, 80.0)
    assert parts.spot == pytest.approx(0.08)
    assert parts.markup == pytest.approx(0.375 / 7.5)
    assert parts.grid == pytest.approx(1.5 / 7.5)
    assert parts.taxes == pytest.approx(0.75 / 7.5)
    assert parts.vat == pytest.approx((0.08 + (0.375 + 1.5 + 0.75) / 7.5) * 0.25)
    assert parts.total == pytest.approx(
        parts.spot + parts.markup + parts.grid + parts.taxes + parts.vat
    )
    assert parts.total == pytest.approx(tariff.effective_price_eur_per_kwh(evening, 80.0))


def test_many_slots_at_once_match_one_at_a_time(tmp_path: Path) -> None:
    tariff = load_tariff("demo", write_set(tmp_path))
    starts = [datetime(2024, 1, 17, hour, tzinfo=CPH) for hour in range(24)]
    spots = [float(hour * 10 - 50) for hour in range(24)]  # negative spot prices included
    assert tariff.effective_prices(starts, spots) == [
        tariff.effective_price_eur_per_kwh(start, spot)
        for start, spot in zip(starts, spots, strict=True)
    ]
    with pytest.raises(TariffError, match="24 slot starts but 23 spot prices"):
        tariff.effective_prices(starts, spots[:-1])


def test_a_markup_copy_prices_with_the_markup_even_after_the_original_was_used(
    tmp_path: Path,
) -> None:
    tariff = load_tariff("demo", write_set(tmp_path))
    night = datetime(2024, 1, 17, 3, tzinfo=CPH)
    plain = tariff.effective_price_eur_per_kwh(night, 50.0)
    marked_up = tariff.with_markup(0.75).effective_price_eur_per_kwh(night, 50.0)
    assert marked_up - plain == pytest.approx(0.75 / 7.5 * 1.25)
    assert tariff.effective_price_eur_per_kwh(night, 50.0) == plain
