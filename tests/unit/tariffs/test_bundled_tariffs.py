"""The bundled tariff files, priced at known hours against arithmetic done by hand.

Each expected value is written out as the tariff would be read off the source: (spot + grid band
+ flat fees + taxes) in the tariff's currency, divided by the exchange rate of that month, times
(1 + VAT). Spot is 100 EUR/MWh = 0.1 EUR/kWh unless stated. Instants are given in local time of
the tariff's zone, except on daylight-saving days, where UTC makes the repeated or missing hour
explicit.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from hpsteer.tariffs import Tariff, TariffNotInForce, available_tariffs, load_tariff

CPH = ZoneInfo("Europe/Copenhagen")
STO = ZoneInfo("Europe/Stockholm")
BER = ZoneInfo("Europe/Berlin")
SPOT = 100.0  # EUR/MWh
SPOT_KWH = 0.1  # EUR/kWh

# Danish national per-kWh charges (shared/dk-national.toml), DKK excl. VAT.
DK_2024 = 0.074 + 0.051 + 0.761  # Energinet transmission + system + elafgift
DK_2023_H1 = 0.058 + 0.054 + 0.008
DK_2023_H2 = 0.058 + 0.054 + 0.697
DKK_2024_01 = 7.4575
DKK_2024_03 = 7.4570
DKK_2024_07 = 7.4611
DKK_2024_10 = 7.4586


def price(tariff: Tariff, when: datetime, spot: float = SPOT) -> float:
    return tariff.effective_price_eur_per_kwh(when, spot)


def day_prices(tariff: Tariff, local_day: datetime, minutes: int) -> list[float]:
    """Prices of every slot of one local day, built from UTC so DST days have 23/25 hours."""
    start = local_day.astimezone(UTC)
    end = (local_day + timedelta(days=1)).replace(tzinfo=local_day.tzinfo).astimezone(UTC)
    starts = []
    current = start
    while current < end:
        starts.append(current)
        current += timedelta(minutes=minutes)
    return tariff.effective_prices(starts, [SPOT] * len(starts))


def test_every_bundled_tariff_loads_and_prices_its_first_day() -> None:
    ids = available_tariffs()
    assert {"dk1-n1", "dk1-dinel", "dk2-radius", "se3-vattenfall-t4"} <= set(ids)
    for tariff_id in ids:
        tariff = load_tariff(tariff_id)
        first = datetime.combine(
            tariff.in_force_from, datetime.min.time(), ZoneInfo(tariff.timezone)
        )
        assert tariff.covers(first), tariff_id
        assert tariff.sources, tariff_id
        assert tariff.retrieved, tariff_id
        assert 0.0 < price(tariff, first) < 2.0, tariff_id


def test_every_bundled_tariff_states_what_is_unconfirmed_and_flags_estimates() -> None:
    for tariff_id in available_tariffs():
        tariff = load_tariff(tariff_id)
        assert tariff.unconfirmed, tariff_id
        if tariff.estimated:
            assert any("estimate" in line.lower() for line in tariff.unconfirmed), tariff_id


# -- N1 (DK1) ---------------------------------------------------------------------------------


class TestN1:
    tariff = load_tariff("dk1-n1")

    def test_winter_weekday_peak_and_night_2024(self) -> None:
        peak = (SPOT_KWH + (0.9910 + DK_2024) / DKK_2024_01) * 1.25
        night = (SPOT_KWH + (0.1101 + DK_2024) / DKK_2024_01) * 1.25
        assert price(self.tariff, datetime(2024, 1, 17, 18, tzinfo=CPH)) == pytest.approx(peak)
        assert price(self.tariff, datetime(2024, 1, 17, 3, tzinfo=CPH)) == pytest.approx(night)
        high = (SPOT_KWH + (0.3303 + DK_2024) / DKK_2024_01) * 1.25
        assert price(self.tariff, datetime(2024, 1, 17, 21, tzinfo=CPH)) == pytest.approx(high)

    def test_weekends_and_public_holidays_cost_the_same_as_weekdays(self) -> None:
        weekday = price(self.tariff, datetime(2024, 1, 17, 18, tzinfo=CPH))
        saturday = price(self.tariff, datetime(2024, 1, 20, 18, tzinfo=CPH))
        assert saturday == pytest.approx(weekday)
        good_friday = datetime(2024, 3, 29, 18, tzinfo=CPH)
        assert price(self.tariff, good_friday) == pytest.approx(
            (SPOT_KWH + (0.9910 + DK_2024) / DKK_2024_03) * 1.25
        )

    def test_summer_peak_2024(self) -> None:
        expected = (SPOT_KWH + (0.4295 + DK_2024) / DKK_2024_07) * 1.25
        assert price(self.tariff, datetime(2024, 7, 10, 18, tzinfo=CPH)) == pytest.approx(expected)

    def test_spring_daylight_saving_day_has_23_hours_with_the_right_bands(self) -> None:
        hourly = day_prices(self.tariff, datetime(2024, 3, 31, tzinfo=CPH), 60)
        assert len(hourly) == 23
        night = (SPOT_KWH + (0.1101 + DK_2024) / DKK_2024_03) * 1.25
        high = (SPOT_KWH + (0.3303 + DK_2024) / DKK_2024_03) * 1.25
        peak = (SPOT_KWH + (0.9910 + DK_2024) / DKK_2024_03) * 1.25
        # local 00, 01, 03, 04, 05 (02 does not exist) are night; 06..16 high; 17..20 peak.
        assert hourly[:5] == pytest.approx([night] * 5)
        assert hourly[5:16] == pytest.approx([high] * 11)
        assert hourly[16:20] == pytest.approx([peak] * 4)
        # 01:00 UTC is 03:00 CEST, the first hour after the jump.
        assert price(self.tariff, datetime(2024, 3, 31, 1, tzinfo=UTC)) == pytest.approx(night)

    def test_autumn_daylight_saving_day_has_25_hours_and_100_quarter_hours(self) -> None:
        hourly = day_prices(self.tariff, datetime(2024, 10, 27, tzinfo=CPH), 60)
        quarters = day_prices(self.tariff, datetime(2024, 10, 27, tzinfo=CPH), 15)
        assert len(hourly) == 25
        assert len(quarters) == 100
        night = (SPOT_KWH + (0.1101 + DK_2024) / DKK_2024_10) * 1.25
        peak = (SPOT_KWH + (0.9910 + DK_2024) / DKK_2024_10) * 1.25
        # 02:00 local happens twice: 00:00 UTC (CEST) and 01:00 UTC (CET); both are night.
        assert price(self.tariff, datetime(2024, 10, 27, 0, tzinfo=UTC)) == pytest.approx(night)
        assert price(self.tariff, datetime(2024, 10, 27, 1, tzinfo=UTC)) == pytest.approx(night)
        assert hourly[:7] == pytest.approx([night] * 7)
        # 16:00 UTC is 17:00 CET: the peak starts; quarter 16:45 UTC (17:45) is still peak.
        assert price(self.tariff, datetime(2024, 10, 27, 16, tzinfo=UTC)) == pytest.approx(peak)
        assert price(self.tariff, datetime(2024, 10, 27, 16, 45, tzinfo=UTC)) == pytest.approx(peak)
        assert hourly[18:22] == pytest.approx([peak] * 4)

    def test_a_quarter_hour_takes_the_band_of_its_local_start(self) -> None:
        high = (SPOT_KWH + (0.3303 + DK_2024) / DKK_2024_01) * 1.25
        peak = (SPOT_KWH + (0.9910 + DK_2024) / DKK_2024_01) * 1.25
        assert price(self.tariff, datetime(2024, 1, 17, 16, 45, tzinfo=CPH)) == pytest.approx(high)
        assert price(self.tariff, datetime(2024, 1, 17, 17, 0, tzinfo=CPH)) == pytest.approx(peak)
        assert price(self.tariff, datetime(2024, 1, 17, 20, 45, tzinfo=CPH)) == pytest.approx(peak)
        assert price(self.tariff, datetime(2024, 1, 17, 21, 0, tzinfo=CPH)) == pytest.approx(high)

    def test_2023_winter_peak_is_17_to_20_under_tarifmodel_2(self) -> None:
        rate = 7.4379  # January 2023
        peak = (SPOT_KWH + (1.05619 + DK_2023_H1) / rate) * 1.25
        low = (SPOT_KWH + (0.432225 + DK_2023_H1) / rate) * 1.25
        assert price(self.tariff, datetime(2023, 1, 18, 19, tzinfo=CPH)) == pytest.approx(peak)
        assert price(self.tariff, datetime(2023, 1, 18, 20, tzinfo=CPH)) == pytest.approx(low)

    def test_elafgift_changes_on_1_july_2023(self) -> None:
        before = (SPOT_KWH + (0.326799 + DK_2023_H1) / 7.4495) * 1.25  # June rate
        after = (SPOT_KWH + (0.326799 + DK_2023_H2) / 7.4509) * 1.25  # July rate
        last_slot = datetime(2023, 6, 30, 23, 45, tzinfo=CPH)
        first_slot = datetime(2023, 7, 1, 0, 0, tzinfo=CPH)
        assert price(self.tariff, last_slot) == pytest.approx(before)
        assert price(self.tariff, first_slot) == pytest.approx(after)

    def test_the_2023_rebate_makes_the_grid_tariff_zero_from_august(self) -> None:
        rebated = (SPOT_KWH + (0.0 + DK_2023_H2) / 7.4626) * 1.25  # October rate
        assert price(self.tariff, datetime(2023, 10, 11, 18, tzinfo=CPH)) == pytest.approx(rebated)

    def test_the_december_2024_prices_start_on_1_december(self) -> None:
        last_november = datetime(2024, 11, 30, 23, 0, tzinfo=CPH)
        first_december = datetime(2024, 12, 1, 0, 0, tzinfo=CPH)
        assert price(self.tariff, last_november) == pytest.approx(
            (SPOT_KWH + (0.3303 + DK_2024) / 7.4583) * 1.25
        )
        assert price(self.tariff, first_december) == pytest.approx(
            (SPOT_KWH + (0.0446 + DK_2024) / 7.4590) * 1.25
        )

    def test_the_data_ends_at_valid_until(self) -> None:
        last = datetime(2024, 12, 31, 23, 45, tzinfo=CPH)
        after = datetime(2025, 1, 1, 0, 0, tzinfo=CPH)
        assert self.tariff.covers(last)
        assert not self.tariff.covers(after)
        with pytest.raises(TariffNotInForce, match=r"dk1-n1\.toml.*2025-01-01"):
            price(self.tariff, after)


# -- Dinel (DK1) ------------------------------------------------------------------------------


class TestDinel:
    tariff = load_tariff("dk1-dinel")

    def test_winter_weekday_peak_and_night(self) -> None:
        peak = (SPOT_KWH + (0.7936 + DK_2024) / DKK_2024_01) * 1.25
        night = (SPOT_KWH + (0.0882 + DK_2024) / DKK_2024_01) * 1.25
        assert price(self.tariff, datetime(2024, 1, 17, 18, tzinfo=CPH)) == pytest.approx(peak)
        assert price(self.tariff, datetime(2024, 1, 17, 3, tzinfo=CPH)) == pytest.approx(night)

    def test_weekend_holiday_and_summer(self) -> None:
        sunday = (SPOT_KWH + (0.2645 + DK_2024) / DKK_2024_01) * 1.25
        assert price(self.tariff, datetime(2024, 1, 21, 12, tzinfo=CPH)) == pytest.approx(sunday)
        ascension = datetime(2024, 5, 9, 18, tzinfo=CPH)  # a Thursday public holiday in May
        assert price(self.tariff, ascension) == pytest.approx(
            (SPOT_KWH + (0.3439 + DK_2024) / 7.4607) * 1.25
        )

    def test_both_daylight_saving_days_of_2024(self) -> None:
        assert len(day_prices(self.tariff, datetime(2024, 3, 31, tzinfo=CPH), 15)) == 92
        assert len(day_prices(self.tariff, datetime(2024, 10, 27, tzinfo=CPH), 60)) == 25
        night = (SPOT_KWH + (0.0882 + DK_2024) / DKK_2024_10) * 1.25
        assert price(self.tariff, datetime(2024, 10, 27, 1, tzinfo=UTC)) == pytest.approx(night)
        night_march = (SPOT_KWH + (0.0882 + DK_2024) / DKK_2024_03) * 1.25
        assert price(self.tariff, datetime(2024, 3, 31, 1, tzinfo=UTC)) == pytest.approx(
            night_march
        )

    def test_nothing_before_2024(self) -> None:
        assert not self.tariff.covers(datetime(2023, 12, 31, 23, 0, tzinfo=CPH))


# -- Radius (DK2, estimated values) -----------------------------------------------------------


class TestRadius:
    tariff = load_tariff("dk2-radius")

    def test_winter_weekday_peak_and_night(self) -> None:
        peak = (SPOT_KWH + (1.0 + DK_2024) / DKK_2024_01) * 1.25
        night = (SPOT_KWH + (0.112 + DK_2024) / DKK_2024_01) * 1.25
        assert price(self.tariff, datetime(2024, 1, 17, 18, tzinfo=CPH)) == pytest.approx(peak)
        assert price(self.tariff, datetime(2024, 1, 17, 3, tzinfo=CPH)) == pytest.approx(night)

    def test_summer_and_daylight_saving_days(self) -> None:
        summer_peak = (SPOT_KWH + (0.437 + DK_2024) / DKK_2024_07) * 1.25
        assert price(self.tariff, datetime(2024, 7, 10, 20, tzinfo=CPH)) == pytest.approx(
            summer_peak
        )
        assert len(day_prices(self.tariff, datetime(2024, 3, 31, tzinfo=CPH), 60)) == 23
        assert len(day_prices(self.tariff, datetime(2024, 10, 27, tzinfo=CPH), 15)) == 100

    def test_the_2023_winter_uses_2023_fees(self) -> None:
        expected = (SPOT_KWH + (1.0 + DK_2023_H2) / 7.4581) * 1.25  # November 2023
        assert price(self.tariff, datetime(2023, 11, 15, 18, tzinfo=CPH)) == pytest.approx(expected)

    def test_it_is_flagged_as_estimated(self) -> None:
        assert self.tariff.estimated
        assert "ESTIMATED" in self.tariff.name


# -- Vattenfall T4 (SE3) ----------------------------------------------------------------------

SE_TAX_2023 = 0.392
SEK_2023 = 11.4788


class TestVattenfallT4:
    tariff = load_tariff("se3-vattenfall-t4")
    high = (SPOT_KWH + (0.5360 + SE_TAX_2023) / SEK_2023) * 1.25
    low = (SPOT_KWH + (0.2144 + SE_TAX_2023) / SEK_2023) * 1.25

    def test_winter_weekday_high_load_and_night(self) -> None:
        assert price(self.tariff, datetime(2023, 1, 18, 18, tzinfo=STO)) == pytest.approx(self.high)
        assert price(self.tariff, datetime(2023, 1, 18, 3, tzinfo=STO)) == pytest.approx(self.low)

    def test_high_load_is_06_to_22_on_weekdays_only(self) -> None:
        wednesday = datetime(2023, 11, 1, tzinfo=STO)
        assert price(self.tariff, wednesday.replace(hour=5, minute=45)) == pytest.approx(self.low)
        assert price(self.tariff, wednesday.replace(hour=6)) == pytest.approx(self.high)
        assert price(self.tariff, wednesday.replace(hour=21, minute=45)) == pytest.approx(self.high)
        assert price(self.tariff, wednesday.replace(hour=22)) == pytest.approx(self.low)
        saturday = datetime(2023, 1, 21, 18, tzinfo=STO)
        assert price(self.tariff, saturday) == pytest.approx(self.low)

    def test_a_weekday_public_holiday_is_priced_like_a_weekend(self) -> None:
        epiphany = datetime(2023, 1, 6, 12, tzinfo=STO)  # Friday, Trettondedag jul
        assert price(self.tariff, epiphany) == pytest.approx(self.low)

    def test_no_high_load_from_april_to_october(self) -> None:
        assert price(self.tariff, datetime(2023, 10, 18, 18, tzinfo=STO)) == pytest.approx(self.low)

    def test_both_daylight_saving_days_of_2023(self) -> None:
        spring = day_prices(self.tariff, datetime(2023, 3, 26, tzinfo=STO), 60)  # a Sunday
        autumn = day_prices(self.tariff, datetime(2023, 10, 29, tzinfo=STO), 15)  # a Sunday
        assert spring == pytest.approx([self.low] * 23)
        assert autumn == pytest.approx([self.low] * 100)

    def test_energy_tax_and_rate_change_on_1_january_2024(self) -> None:
        last_2023 = datetime(2023, 12, 31, 23, 0, tzinfo=STO)
        first_2024 = datetime(2024, 1, 1, 0, 0, tzinfo=STO)
        assert price(self.tariff, last_2023) == pytest.approx(self.low)
        assert price(self.tariff, first_2024) == pytest.approx(
            (SPOT_KWH + (0.2144 + 0.428) / 11.4325) * 1.25
        )


# -- EW Wanfried § 14a module 3 (DE) ----------------------------------------------------------

DE_TAXES = 0.0205 + 0.00277 + 0.01558 + 0.00816 + 0.0132  # incl. estimated Konzessionsabgabe


class TestWanfriedModule3:
    tariff = load_tariff("de-ew-wanfried-14a-modul3")

    def test_fourth_quarter_high_standard_and_low_windows(self) -> None:
        day = datetime(2025, 11, 19, tzinfo=BER)
        assert price(self.tariff, day.replace(hour=18)) == pytest.approx(
            (SPOT_KWH + 0.1084 + DE_TAXES) * 1.19
        )
        assert price(self.tariff, day.replace(hour=3)) == pytest.approx(
            (SPOT_KWH + 0.0345 + DE_TAXES) * 1.19
        )
        assert price(self.tariff, day.replace(hour=12)) == pytest.approx(
            (SPOT_KWH + 0.0862 + DE_TAXES) * 1.19
        )

    def test_second_quarter_is_standard_all_day_and_holidays_change_nothing(self) -> None:
        standard = (SPOT_KWH + 0.0862 + DE_TAXES) * 1.19
        assert price(self.tariff, datetime(2025, 6, 10, 18, tzinfo=BER)) == pytest.approx(standard)
        christmas = datetime(2025, 12, 25, 18, tzinfo=BER)
        assert price(self.tariff, christmas) == pytest.approx((SPOT_KWH + 0.1084 + DE_TAXES) * 1.19)

    def test_autumn_daylight_saving_day_repeats_a_low_hour(self) -> None:
        low = (SPOT_KWH + 0.0345 + DE_TAXES) * 1.19
        # 2025-10-26: 02:00 local twice, at 00:00 UTC (CEST) and 01:00 UTC (CET).
        assert price(self.tariff, datetime(2025, 10, 26, 0, tzinfo=UTC)) == pytest.approx(low)
        assert price(self.tariff, datetime(2025, 10, 26, 1, tzinfo=UTC)) == pytest.approx(low)
        hourly = day_prices(self.tariff, datetime(2025, 10, 26, tzinfo=BER), 60)
        assert len(hourly) == 25
        assert hourly[1:5] == pytest.approx([low] * 4)  # local 01, 02, 02, 03

    def test_module_3_starts_on_1_april_2025(self) -> None:
        assert not self.tariff.covers(datetime(2025, 3, 31, 23, 45, tzinfo=BER))
        assert self.tariff.covers(datetime(2025, 4, 1, 0, 0, tzinfo=BER))
        with pytest.raises(TariffNotInForce, match="2025-04-01"):
            price(self.tariff, datetime(2025, 3, 30, 12, tzinfo=BER))
