"""Heat pumps under steering, and what the household asks of them.

A :class:`Device` is one heat pump in one home: which manufacturer's cloud reaches it and under
which id, the price area it buys in, where it is (for weather), the comfort band its household
accepts, the thermal parameters the planner uses, and whether steering is enabled at all.
"""

from __future__ import annotations

from datetime import datetime
from typing import Self

from pydantic import Field, model_validator

from hpsteer.domain.base import FrozenModel, Record, UtcDatetime
from hpsteer.domain.market import PriceArea

__all__ = ["ComfortBand", "Device", "Location", "ThermalParameters"]

SLUG = r"^[a-z][a-z0-9_]{1,39}$"
DEVICE_ID = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$"


class Location(FrozenModel):
    location_id: str = Field(pattern=DEVICE_ID)
    latitude: float = Field(ge=-90, le=90)
    longitude: float = Field(ge=-180, le=180)


class ComfortBand(FrozenModel):
    """Indoor temperatures the household accepts, and the setpoint it normally wants."""

    min_indoor_temp_c: float = Field(ge=5, le=30)
    setpoint_c: float = Field(ge=5, le=30)
    max_indoor_temp_c: float = Field(ge=5, le=30)

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if not self.min_indoor_temp_c <= self.setpoint_c <= self.max_indoor_temp_c:
            raise ValueError(
                f"need min <= setpoint <= max, got {self.min_indoor_temp_c} / "
                f"{self.setpoint_c} / {self.max_indoor_temp_c} °C"
            )
        return self

    def contains(self, indoor_temp_c: float) -> bool:
        return self.min_indoor_temp_c <= indoor_temp_c <= self.max_indoor_temp_c


class ThermalParameters(FrozenModel):
    """What the planner knows of the building and its heat pump.

    One thermal mass (1R1C) when ``envelope_capacity_kwh_per_k`` is None, air and envelope (2R2C)
    otherwise. ``archetype`` names the published building type the values came from, if any.
    """

    archetype: str | None = None
    heat_loss_w_per_k: float = Field(gt=0, le=2000)
    air_capacity_kwh_per_k: float = Field(gt=0, le=500)
    envelope_capacity_kwh_per_k: float | None = Field(default=None, gt=0, le=500)
    air_envelope_conductance_w_per_k: float | None = Field(default=None, gt=0, le=10000)
    hp_max_heat_kw: float = Field(gt=0, le=100)
    carnot_fraction: float = Field(default=0.45, gt=0.1, le=0.8)
    floor_heating: bool = False

    @model_validator(mode="after")
    def _two_mass_parameters_together(self) -> Self:
        if (self.envelope_capacity_kwh_per_k is None) != (
            self.air_envelope_conductance_w_per_k is None
        ):
            raise ValueError(
                "a two-mass model needs both envelope_capacity_kwh_per_k and "
                "air_envelope_conductance_w_per_k"
            )
        return self


class Device(Record):
    device_id: str = Field(pattern=DEVICE_ID)
    manufacturer: str = Field(pattern=SLUG)
    external_id: str = Field(min_length=1, max_length=256)
    account_id: str = Field(pattern=DEVICE_ID)
    price_area: PriceArea
    location: Location
    comfort: ComfortBand
    thermal: ThermalParameters
    steering_enabled: bool = True
    registered_at: UtcDatetime
    override_until: UtcDatetime | None = None
    """A household override is respected until this instant; steering pauses until then."""

    def is_steerable(self, now: datetime) -> bool:
        return self.steering_enabled and (self.override_until is None or now >= self.override_until)
