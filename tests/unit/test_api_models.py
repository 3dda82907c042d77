"""The operator API's pure parts: what a request may say, who may do what, how requests are
routed, and the OpenAPI document the code generates."""

from __future__ import annotations

import json
from typing import Any, get_args

import pytest
from pydantic import ValidationError

from hpsteer.adapters.registry import DEFAULT_FACTORIES
from hpsteer.api import openapi
from hpsteer.api.errors import ApiError, from_validation
from hpsteer.api.routes import ROUTER, ROUTES
from hpsteer.domain.archetype_parameters import ARCHETYPE_PARAMETERS
from hpsteer.domain.hand_back import hand_back_command_id, is_hand_back
from hpsteer.domain.operator_requests import (
    MANUFACTURERS,
    AlertListQuery,
    DeviceListQuery,
    DeviceRegistration,
    DeviceUpdate,
    SteeringChange,
)
from hpsteer.domain.roles import REQUIRED_ROLE, Operation, Role
from hpsteer.thermal import ARCHETYPES

BODY: dict[str, Any] = {
    "manufacturer": "viessmann",
    "external_id": "7571381681420106",
    "account_id": "acct-1",
    "price_area": "SE3",
    "location": {"latitude": 59.33, "longitude": 18.07},
    "archetype": "old_radiators",
    "comfort": {"min_indoor_temp_c": 20, "setpoint_c": 21, "max_indoor_temp_c": 23},
}


def parse(body: dict[str, Any]) -> DeviceRegistration:
    """As the API parses a body: JSON, strict."""
    return DeviceRegistration.model_validate_json(json.dumps(body), strict=True)


def fields_refused(body: dict[str, Any]) -> list[str]:
    with pytest.raises(ValidationError) as refused:
        parse(body)
    return [".".join(map(str, e["loc"])) for e in refused.value.errors()]


def with_comfort(**band: float) -> dict[str, Any]:
    return {**BODY, "comfort": {**BODY["comfort"], **band}}


# -- the copies the API keeps so as not to load the physics or the adapters -----------------------


def test_the_archetype_parameters_are_the_thermal_archetypes_own() -> None:
    computed = {name: a.parameters for name, a in ARCHETYPES.items()}
    assert computed == ARCHETYPE_PARAMETERS, (
        "hpsteer/domain/archetype_parameters.py is stale; paste: "
        + repr({n: p.model_dump() for n, p in computed.items()})
    )
    archetype = DeviceRegistration.model_fields["archetype"].annotation
    assert set(get_args(get_args(archetype)[0])) == set(ARCHETYPES)


def test_the_manufacturers_the_api_takes_are_the_adapter_registrys() -> None:
    assert set(MANUFACTURERS) == set(DEFAULT_FACTORIES)


# -- registrations --------------------------------------------------------------------------------


def test_a_registration_by_archetype_takes_the_archetypes_parameters() -> None:
    registration = parse(BODY)

    assert registration.thermal_parameters() == ARCHETYPES["old_radiators"].parameters
    assert registration.comfort.band().setpoint_c == 21.0
    assert registration.steering_enabled is True
    assert registration.device_id is None


@pytest.mark.parametrize(
    ("band", "field"),
    [
        ({"min_indoor_temp_c": 20.5, "setpoint_c": 21, "max_indoor_temp_c": 21.4}, "comfort"),
        ({"min_indoor_temp_c": 9.5}, "comfort.min_indoor_temp_c"),
        ({"max_indoor_temp_c": 28.5}, "comfort.max_indoor_temp_c"),
        ({"setpoint_c": 30}, "comfort.setpoint_c"),
        ({"min_indoor_temp_c": 22, "setpoint_c": 21}, "comfort"),
    ],
)
def test_a_comfort_band_narrower_than_1_k_or_outside_10_to_28_c_is_refused(
    band: dict[str, float], field: str
) -> None:
    assert field in fields_refused(with_comfort(**band))


def test_a_band_exactly_1_k_wide_at_the_limits_is_accepted() -> None:
    parse(with_comfort(min_indoor_temp_c=10, setpoint_c=10.5, max_indoor_temp_c=11))
    parse(with_comfort(min_indoor_temp_c=27, setpoint_c=28, max_indoor_temp_c=28))


@pytest.mark.parametrize(
    ("latitude", "longitude", "field"),
    [
        (90.01, 18, "location.latitude"),
        (-91, 18, "location.latitude"),
        (59, 180.5, "location.longitude"),
        (59, -181, "location.longitude"),
    ],
)
def test_coordinates_off_the_globe_are_refused(
    latitude: float, longitude: float, field: str
) -> None:
    location = {"latitude": latitude, "longitude": longitude}
    assert fields_refused({**BODY, "location": location}) == [field]


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"manufacturer": "acme_heat"}, "manufacturer"),
        ({"price_area": "SE9"}, "price_area"),
        ({"account_id": "../etc"}, "account_id"),
        ({"device_id": "/devices/x"}, "device_id"),
        ({"archetype": "igloo"}, "archetype"),
        ({"colour": "red"}, "colour"),
        ({"location": {"latitude": 59, "longitude": 18, "altitude": 30}}, "location.altitude"),
        ({"steering_enabled": "yes"}, "steering_enabled"),
        (
            {"comfort": {"min_indoor_temp_c": "20", "setpoint_c": 21, "max_indoor_temp_c": 23}},
            "comfort.min_indoor_temp_c",
        ),
        ({"external_id": 1234}, "external_id"),
    ],
)
def test_unknown_names_fields_and_wrong_types_are_refused_naming_the_field(
    changes: dict[str, Any], field: str
) -> None:
    assert field in fields_refused({**BODY, **changes})


def test_a_building_is_an_archetype_or_thermal_parameters_never_both_nor_neither() -> None:
    thermal = ARCHETYPES["new_floor_heating"].parameters.model_dump()
    assert parse({**BODY, "archetype": None, "thermal": thermal}).thermal_parameters().floor_heating
    assert fields_refused({**BODY, "thermal": thermal}) == [""]
    assert fields_refused({k: v for k, v in BODY.items() if k != "archetype"}) == [""]


def test_an_update_names_something_to_change_and_cannot_remove_the_comfort_band() -> None:
    assert DeviceUpdate.model_validate({"tariff_id": None}).model_fields_set == {"tariff_id"}
    with pytest.raises(ValidationError, match="at least one field"):
        DeviceUpdate.model_validate({})
    with pytest.raises(ValidationError, match="cannot be removed"):
        DeviceUpdate.model_validate({"comfort": None})


def test_steering_takes_a_boolean_only() -> None:
    assert SteeringChange.model_validate_json('{"enabled": false}', strict=True).enabled is False
    with pytest.raises(ValidationError):
        SteeringChange.model_validate_json('{"enabled": "false"}', strict=True)


def test_queries_take_their_values_from_strings_within_bounds() -> None:
    query = DeviceListQuery.model_validate({"steering_enabled": "true", "page_size": "10"})
    assert (query.steering_enabled, query.page_size) == (True, 10)
    for bad in ({"page_size": "0"}, {"page_size": "201"}, {"manufacturer": "acme_heat"}):
        with pytest.raises(ValidationError):
            DeviceListQuery.model_validate(bad)
    assert AlertListQuery.model_validate({}).state == "unresolved"


def test_a_validation_error_names_its_first_field_dotted_and_lists_every_problem() -> None:
    try:
        parse({**with_comfort(min_indoor_temp_c=5), "price_area": "XX"})
    except ValidationError as err:
        error = from_validation(err, status=422, code="invalid_body")
    body = error.body().model_dump()
    assert body["error"]["code"] == "invalid_body"
    assert body["error"]["field"] == "price_area"
    fields = [d["field"] for d in body["error"]["details"]]
    assert fields == ["price_area", "comfort.min_indoor_temp_c"]


# -- roles ----------------------------------------------------------------------------------------


def test_viewers_read_operators_change_admins_also_delete_and_import() -> None:
    assert {op for op in Operation if Role.VIEWER.allows(op)} == {Operation.READ}
    assert {op for op in Operation if not Role.OPERATOR.allows(op)} == {
        Operation.DELETE_DEVICE,
        Operation.IMPORT_DEVICES,
    }
    assert all(Role.ADMIN.allows(op) for op in Operation)
    assert set(REQUIRED_ROLE) == set(Operation)


def test_hand_back_commands_are_told_apart_by_their_id() -> None:
    assert is_hand_back(hand_back_command_id(7))
    assert hand_back_command_id(7) == "handback-r000007"
    assert not is_hand_back("20250115T0700Z-abc-s004")
    assert not is_hand_back("remedy-20250115T0700Z")


# -- routing --------------------------------------------------------------------------------------


def test_a_path_reaches_its_route_with_its_parameters() -> None:
    route, params = ROUTER.resolve("PUT", "/v1/devices/home-1/steering")
    assert (route.operation_id, params) == ("setSteering", {"device_id": "home-1"})
    route, params = ROUTER.resolve("GET", "/v1/devices/")
    assert route.operation_id == "listDevices"


def test_an_unknown_path_is_404_and_a_known_one_with_another_method_405_listing_allowed() -> None:
    with pytest.raises(ApiError) as unknown:
        ROUTER.resolve("GET", "/v1/devices/a/b/c")
    assert unknown.value.status == 404
    with pytest.raises(ApiError) as wrong:
        ROUTER.resolve("POST", "/v1/devices/home-1")
    assert wrong.value.status == 405
    assert wrong.value.headers == {"Allow": "DELETE, GET, PATCH"}


def test_every_route_has_an_operation_id_of_its_own() -> None:
    ids = [route.operation_id for route in ROUTES]
    assert len(ids) == len(set(ids))


# -- the OpenAPI document -------------------------------------------------------------------------


def test_docs_openapi_json_is_what_the_code_generates() -> None:
    assert openapi.main(["--check"]) == 0, "run: python -m hpsteer.api.openapi"


def test_the_check_fails_on_a_stale_file(tmp_path: Any) -> None:
    stale = tmp_path / "openapi.json"
    stale.write_text("{}\n")
    assert openapi.main(["--check", "--out", str(stale)]) == 1
    assert openapi.main(["--out", str(stale)]) == 0
    assert openapi.main(["--check", "--out", str(stale)]) == 0


def test_the_document_describes_every_route_with_its_role_and_json_errors() -> None:
    document = openapi.document()
    assert document["openapi"] == "3.1.0"
    for route in ROUTES:
        operation = document["paths"][route.template][route.method.lower()]
        assert operation["x-hpsteer-role"] == REQUIRED_ROLE[route.operation].value
        for status, response in operation["responses"].items():
            if int(status) >= 400:
                schema = response["content"]["application/json"]["schema"]
                assert schema == {"$ref": "#/components/schemas/ErrorBody"}
    register = document["paths"]["/v1/devices"]["post"]
    assert set(register["responses"]) >= {"200", "201", "409", "415", "422"}
    registration = document["components"]["schemas"]["DeviceRegistration"]
    assert registration["additionalProperties"] is False
    comfort = document["components"]["schemas"]["ComfortSettings"]["properties"]
    assert (comfort["setpoint_c"]["minimum"], comfort["setpoint_c"]["maximum"]) == (10.0, 28.0)


# -- settings -------------------------------------------------------------------------------------


def test_the_api_roles_come_from_a_json_environment_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from hpsteer.config import Settings

    monkeypatch.setenv("HPSTEER_API_ROLES", '{"alice@example.com": "admin", "bob@x.org": "viewer"}')
    monkeypatch.setenv("HPSTEER_API_URL", "https://europe-west1-p.cloudfunctions.net/api")
    settings = Settings()
    assert settings.api_roles == {"alice@example.com": "admin", "bob@x.org": "viewer"}
    assert settings.api_url.endswith("/api")
    monkeypatch.setenv("HPSTEER_API_ROLES", '{"eve@example.com": "root"}')
    with pytest.raises(ValidationError):
        Settings()
