"""What an operator may send the API: registrations, comfort and steering changes, queries.

Every model refuses unknown fields and, as the API validates JSON bodies in strict mode, values
of the wrong JSON type (a number as a string, a string as a boolean). Beyond the types:

- a comfort band lies within 10 to 28 °C and is at least 1 K wide (:class:`ComfortSettings`, the
  household's :class:`~hpsteer.domain.devices.ComfortBand` with the API's tighter limits);
- coordinates lie on the globe (latitude ±90°, longitude ±180°);
- the manufacturer is one the adapter registry knows (:data:`MANUFACTURERS`, the names of
  :data:`hpsteer.adapters.registry.DEFAULT_FACTORIES`: ``tests/unit/test_api_models.py`` holds
  them equal; naming the registry here would put every adapter, and the credentials they read,
  into the API function's call graph, and its service account would be granted them), the
  price area a
  :class:`~hpsteer.domain.market.PriceArea`, ids follow :data:`~hpsteer.domain.devices.DEVICE_ID`;
- a building is described either by a thermal archetype's name
  (:mod:`hpsteer.domain.archetype_parameters`) or by explicit
  :class:`~hpsteer.domain.devices.ThermalParameters`, never both.

Whether the account's credentials exist is not a property of the request: the service checks it
(:func:`hpsteer.adapters.credentials.account_known`). ``tariff_id`` is accepted as an optional id
now; which tariffs exist is checked where tariffs are defined.
"""

from __future__ import annotations

from typing import Final, Literal, Self

from pydantic import ConfigDict, Field, field_validator, model_validator

from hpsteer.domain.archetype_parameters import ARCHETYPE_PARAMETERS
from hpsteer.domain.base import FrozenModel
from hpsteer.domain.devices import DEVICE_ID, ComfortBand, Location, ThermalParameters
from hpsteer.domain.market import PriceArea
from hpsteer.domain.messages import AlertSeverity

__all__ = [
    "ALERT_ID",
    "MANUFACTURERS",
    "MIN_COMFORT_WIDTH_K",
    "AlertListQuery",
    "AlertPath",
    "AlertStateFilter",
    "AreaPath",
    "ComfortSettings",
    "Coordinates",
    "DeviceListQuery",
    "DevicePath",
    "DeviceRegistration",
    "DeviceUpdate",
    "NoteBody",
    "ReplanBody",
    "RequestModel",
    "SteeringChange",
    "known_manufacturers",
]

MIN_COMFORT_WIDTH_K = 1.0
COMFORT_LOW_C = 10.0
COMFORT_HIGH_C = 28.0
ALERT_ID = r"^[A-Za-z0-9][A-Za-z0-9_.:~-]{0,199}$"
TOKEN_MAX = 2000


MANUFACTURERS: Final = ("daikin_onecta", "nibe_myuplink", "viessmann")
"""The manufacturers whose adapters the registry holds (sorted)."""


def known_manufacturers() -> tuple[str, ...]:
    return MANUFACTURERS


class RequestModel(FrozenModel):
    """An API input: frozen, no unknown fields, no NaN or infinity."""

    model_config = ConfigDict(
        frozen=True, extra="forbid", validate_default=True, allow_inf_nan=False
    )


class ComfortSettings(ComfortBand):
    """A household's comfort band as the API accepts it: 10 to 28 °C, at least 1 K wide."""

    model_config = ConfigDict(
        frozen=True, extra="forbid", validate_default=True, allow_inf_nan=False
    )

    min_indoor_temp_c: float = Field(ge=COMFORT_LOW_C, le=COMFORT_HIGH_C)
    setpoint_c: float = Field(ge=COMFORT_LOW_C, le=COMFORT_HIGH_C)
    max_indoor_temp_c: float = Field(ge=COMFORT_LOW_C, le=COMFORT_HIGH_C)

    @model_validator(mode="after")
    def _wide_enough(self) -> Self:
        width = self.max_indoor_temp_c - self.min_indoor_temp_c
        if width < MIN_COMFORT_WIDTH_K:
            raise ValueError(
                f"the band {self.min_indoor_temp_c}..{self.max_indoor_temp_c} °C is "
                f"{width:g} K wide; it must be at least {MIN_COMFORT_WIDTH_K:g} K"
            )
        return self

    def band(self) -> ComfortBand:
        return ComfortBand(
            min_indoor_temp_c=self.min_indoor_temp_c,
            setpoint_c=self.setpoint_c,
            max_indoor_temp_c=self.max_indoor_temp_c,
        )


class Coordinates(RequestModel):
    latitude: float = Field(ge=-90, le=90)
    longitude: float = Field(ge=-180, le=180)

    def location(self, location_id: str) -> Location:
        return Location(location_id=location_id, latitude=self.latitude, longitude=self.longitude)


class DeviceRegistration(RequestModel):
    """A heat pump to steer. Registering the same (manufacturer, external id) again with the same
    body is idempotent; with a different body it conflicts."""

    device_id: str | None = Field(
        default=None,
        pattern=DEVICE_ID,
        description="hpsteer's id for the device; derived from manufacturer and external id "
        "when absent",
    )
    manufacturer: str = Field(json_schema_extra={"enum": list(known_manufacturers())})
    external_id: str = Field(
        min_length=1, max_length=256, description="the manufacturer's id of the device"
    )
    account_id: str = Field(
        pattern=DEVICE_ID, description="the account whose credentials reach the device"
    )
    price_area: PriceArea
    location: Coordinates
    archetype: Literal["old_radiators", "renovated_radiators", "new_floor_heating"] | None = Field(
        default=None, description="a published building type (or give thermal)"
    )
    thermal: ThermalParameters | None = Field(
        default=None, description="the building's identified parameters (or give archetype)"
    )
    comfort: ComfortSettings
    steering_enabled: bool = True
    tariff_id: str | None = Field(default=None, pattern=DEVICE_ID)

    @field_validator("manufacturer")
    @classmethod
    def _known_manufacturer(cls, value: str) -> str:
        if value not in MANUFACTURERS:
            raise ValueError(
                f"unknown manufacturer {value!r}; known: {', '.join(known_manufacturers())}"
            )
        return value

    @model_validator(mode="after")
    def _one_building_description(self) -> Self:
        if (self.archetype is None) == (self.thermal is None):
            raise ValueError("give either archetype or thermal, not both and not neither")
        return self

    def thermal_parameters(self) -> ThermalParameters:
        if self.thermal is not None:
            return self.thermal
        assert self.archetype is not None  # the validator saw to it
        return ARCHETYPE_PARAMETERS[self.archetype]


class DeviceUpdate(RequestModel):
    """A change of a device's settings: any of its fields; an absent field stays as it is."""

    comfort: ComfortSettings | None = None
    tariff_id: str | None = Field(
        default=None, pattern=DEVICE_ID, description="null removes the tariff"
    )

    @model_validator(mode="after")
    def _something_to_change(self) -> Self:
        if not self.model_fields_set:
            raise ValueError("name at least one field to change: comfort, tariff_id")
        if "comfort" in self.model_fields_set and self.comfort is None:
            raise ValueError("comfort cannot be removed, only changed")
        return self


class SteeringChange(RequestModel):
    enabled: bool


class NoteBody(RequestModel):
    """An optional note an operator attaches to an acknowledgement."""

    note: str | None = Field(default=None, max_length=500)


class ReplanBody(RequestModel):
    reason: str | None = Field(default=None, min_length=1, max_length=200)


class DevicePath(RequestModel):
    device_id: str = Field(pattern=DEVICE_ID)


class AlertPath(RequestModel):
    alert_id: str = Field(pattern=ALERT_ID)


class AreaPath(RequestModel):
    price_area: PriceArea


class DeviceListQuery(RequestModel):
    price_area: PriceArea | None = None
    manufacturer: str | None = Field(
        default=None, json_schema_extra={"enum": list(known_manufacturers())}
    )
    steering_enabled: bool | None = None
    page_size: int = Field(default=50, ge=1, le=200)
    page_token: str | None = Field(default=None, min_length=1, max_length=TOKEN_MAX)

    @field_validator("manufacturer")
    @classmethod
    def _known_manufacturer(cls, value: str | None) -> str | None:
        if value is not None and value not in MANUFACTURERS:
            raise ValueError(
                f"unknown manufacturer {value!r}; known: {', '.join(known_manufacturers())}"
            )
        return value


AlertStateFilter = Literal["open", "acknowledged", "resolved", "unresolved", "all"]


class AlertListQuery(RequestModel):
    device_id: str | None = Field(default=None, pattern=DEVICE_ID)
    kind: str | None = Field(default=None, pattern=r"^[a-z][a-z0-9_]{0,99}$")
    severity: AlertSeverity | None = None
    state: AlertStateFilter = Field(
        default="unresolved",
        description="open: neither acknowledged nor resolved; unresolved: open or acknowledged",
    )
    page_size: int = Field(default=50, ge=1, le=200)
    page_token: str | None = Field(default=None, min_length=1, max_length=TOKEN_MAX)
