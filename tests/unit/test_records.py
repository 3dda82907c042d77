"""Messages and documents: frozen, versioned, and strict about what they accept."""

import json
from datetime import UTC, datetime, timedelta, timezone

import pydantic
import pytest

from hpsteer.domain.devices import ComfortBand, Device, Location, ThermalParameters
from hpsteer.domain.market import PriceArea
from hpsteer.domain.messages import PriceIngestRequest, SpotPricesUpdated
from hpsteer.domain.telemetry import TelemetrySample, TelemetrySource
from hpsteer.errors import MalformedMessage

NOW = datetime(2024, 1, 15, 12, tzinfo=UTC)


def a_device(**changes: object) -> Device:
    fields: dict[str, object] = {
        "device_id": "dev-1",
        "manufacturer": "viessmann",
        "external_id": "gw-7633107/0",
        "account_id": "acct-1",
        "price_area": "SE3",
        "location": {"location_id": "sthlm", "latitude": 59.33, "longitude": 18.07},
        "comfort": {"min_indoor_temp_c": 20, "setpoint_c": 21, "max_indoor_temp_c": 23},
        "thermal": {"heat_loss_w_per_k": 180, "air_capacity_kwh_per_k": 3.5, "hp_max_heat_kw": 8},
        "registered_at": NOW,
    }
    fields.update(changes)
    return Device.model_validate(fields)


def test_a_record_round_trips_through_its_document_form():
    device = a_device()
    document = device.to_document()
    assert document["schema_version"] == 1
    assert document["registered_at"] == "2024-01-15T12:00:00Z"
    assert document["price_area"] == "SE3"
    assert Device.parse(document) == device


def test_records_are_frozen():
    device = a_device()
    with pytest.raises(pydantic.ValidationError, match="frozen"):
        device.steering_enabled = False  # type: ignore[misc]


def test_instants_are_converted_to_utc_and_naive_ones_refused():
    cet = timezone(timedelta(hours=1))
    device = a_device(registered_at=datetime(2024, 1, 15, 13, tzinfo=cet))
    assert device.registered_at == NOW
    assert device.registered_at.tzinfo is UTC
    with pytest.raises(MalformedMessage, match="registered_at: Input should have timezone info"):
        Device.parse({**a_device().to_document(), "registered_at": "2024-01-15T12:00:00"})


def test_parse_json_names_what_is_wrong():
    with pytest.raises(MalformedMessage, match="not JSON"):
        SpotPricesUpdated.parse_json(b"{not json")
    with pytest.raises(MalformedMessage, match="expected an object"):
        SpotPricesUpdated.parse_json(b"[1, 2]")
    with pytest.raises(MalformedMessage, match="schema_version is missing"):
        SpotPricesUpdated.parse_json(b"{}")
    with pytest.raises(MalformedMessage, match="unsupported schema_version 2, expected 1"):
        SpotPricesUpdated.parse_json(json.dumps({"schema_version": 2}))
    with pytest.raises(
        MalformedMessage, match=r"area: Field required.*content_hash: Field required"
    ):
        SpotPricesUpdated.parse_json(json.dumps({"schema_version": 1, "market_date": "2024-01-15"}))


def test_unknown_fields_are_refused_rather_than_dropped():
    document = {**a_device().to_document(), "colour": "red"}
    with pytest.raises(MalformedMessage, match="colour: Extra inputs are not permitted"):
        Device.parse(document)


def test_a_comfort_band_must_be_ordered():
    with pytest.raises(pydantic.ValidationError, match="min <= setpoint <= max"):
        ComfortBand(min_indoor_temp_c=22, setpoint_c=21, max_indoor_temp_c=23)


def test_a_two_mass_building_needs_both_of_its_parameters():
    with pytest.raises(pydantic.ValidationError, match="two-mass"):
        ThermalParameters(
            heat_loss_w_per_k=150,
            air_capacity_kwh_per_k=2,
            envelope_capacity_kwh_per_k=20,
            hp_max_heat_kw=6,
        )


def test_steering_pauses_while_a_household_override_lasts():
    device = a_device(override_until=NOW + timedelta(hours=3))
    assert not device.is_steerable(NOW)
    assert device.is_steerable(NOW + timedelta(hours=3))
    assert not a_device(steering_enabled=False).is_steerable(NOW)


def test_a_message_names_the_areas_it_asks_for():
    request = PriceIngestRequest.parse(
        {"schema_version": 1, "areas": ["SE3", "DK1"], "scheduled_at": "2024-01-14T12:15:00Z"}
    )
    assert request.areas == (PriceArea.SE3, PriceArea.DK1)
    with pytest.raises(MalformedMessage, match=r"areas\.0"):
        PriceIngestRequest.parse(
            {"schema_version": 1, "areas": ["XX"], "scheduled_at": "2024-01-14T12:15:00Z"}
        )


def test_only_a_newer_telemetry_sample_moves_state():
    def sample(minute: int) -> TelemetrySample:
        return TelemetrySample(
            sample_id=f"s{minute}",
            device_id="dev-1",
            observed_at=NOW + timedelta(minutes=minute),
            source=TelemetrySource.WEBHOOK,
            indoor_temp_c=21.0,
        )

    assert sample(5).is_newer_than(None)
    assert sample(5).is_newer_than(sample(4))
    assert not sample(4).is_newer_than(sample(5))
    assert not sample(5).is_newer_than(sample(5))


def test_location_ids_are_safe_for_document_paths():
    with pytest.raises(pydantic.ValidationError):
        Location(location_id="a/b", latitude=1, longitude=1)
