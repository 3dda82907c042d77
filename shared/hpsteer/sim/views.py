"""Each manufacturer's view of a simulated home, in the payload shapes its cloud answers.

Pure functions of a :class:`~hpsteer.sim.fleet.Home` (and whether it is online): ViCare features
(``{"data": [feature, …]}``), myUplink's device and points, Onecta's gateway device with its
management points. Shapes follow the recorded bodies in tests/fixtures/oem (one feature / point /
characteristic per quantity the adapters read or write; fields the adapters never read are left
out). Readings come from ``home.reported`` with its sampling time as their timestamps, so stale
telemetry shows as old timestamps. Setpoint levers show ``home.shown_lever``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Final

from hpsteer.sim.fleet import Home

__all__ = [
    "MYUPLINK_BOOST_ID",
    "MYUPLINK_OFFSET_ID",
    "ONECTA_CLIMATE",
    "ONECTA_DHW",
    "VICARE_BOOST",
    "VICARE_PROGRAM",
    "myuplink_device",
    "myuplink_points",
    "myuplink_system",
    "onecta_device",
    "vicare_features",
    "vicare_installation",
]

VICARE_PROGRAM: Final = "heating.circuits.0.operating.programs.normalHeating"
VICARE_BOOST: Final = "heating.dhw.oneTimeCharge"
MYUPLINK_OFFSET_ID: Final = "47011"
MYUPLINK_BOOST_ID: Final = "50004"
MYUPLINK_PRODUCT: Final = "F730 CU 3x400V"
ONECTA_CLIMATE: Final = "climateControlMainZone"
ONECTA_DHW: Final = "domesticHotWaterTank"


def _vicare_time(at: datetime) -> str:
    return at.strftime("%Y-%m-%dT%H:%M:%S.") + f"{at.microsecond // 1000:03d}Z"


def _plain(value: float) -> int | float:
    return int(value) if float(value).is_integer() else value


# -- ViCare ---------------------------------------------------------------------------------


def _feature(
    gateway_id: str,
    name: str,
    stamp: str,
    properties: dict[str, Any],
    commands: dict[str, Any] | None = None,
) -> dict[str, Any]:
    return {
        "apiVersion": 1,
        "commands": commands or {},
        "deviceId": "0",
        "feature": name,
        "gatewayId": gateway_id,
        "isEnabled": True,
        "isReady": True,
        "properties": properties,
        "timestamp": stamp,
    }


def _sensor(value: float, unit: str = "celsius") -> dict[str, Any]:
    return {
        "status": {"type": "string", "value": "connected"},
        "value": {"type": "number", "unit": unit, "value": value},
    }


def vicare_features(home: Home) -> dict[str, Any]:
    """``GET …/devices/0/features``: the comfort program (the lever), sensors, hot-water boost."""
    r = home.reported
    lever = home.lever
    set_temperature = {
        "isExecutable": True,
        "name": "setTemperature",
        "params": {
            "targetTemperature": {
                "constraints": {
                    "max": _plain(lever.maximum),
                    "min": _plain(lever.minimum),
                    "stepping": _plain(lever.step),
                },
                "required": True,
                "type": "number",
            }
        },
    }
    gateway_id = home.external_id.split("/")[1]
    sampled = _vicare_time(r.at)  # the features' two timestamps, formatted once
    changed = _vicare_time(home.changed_at or r.at)
    boost_commands = {
        "activate": {"isExecutable": True, "name": "activate", "params": {}},
        "deactivate": {"isExecutable": True, "name": "deactivate", "params": {}},
    }
    return {
        "data": [
            _feature(
                gateway_id,
                "heating.circuits",
                sampled,
                {"enabled": {"type": "array", "value": ["0"]}},
            ),
            _feature(
                gateway_id,
                VICARE_PROGRAM,
                changed,
                {
                    "active": {"type": "boolean", "value": True},
                    "demand": {"type": "string", "value": "heating"},
                    "temperature": {
                        "type": "number",
                        "unit": "celsius",
                        "value": _plain(home.shown_lever),
                    },
                },
                {"setTemperature": set_temperature},
            ),
            _feature(
                gateway_id,
                "heating.circuits.0.sensors.temperature.room",
                sampled,
                _sensor(r.indoor_temp_c),
            ),
            _feature(
                gateway_id,
                "heating.circuits.0.sensors.temperature.supply",
                sampled,
                _sensor(r.supply_temp_c),
            ),
            _feature(
                gateway_id,
                "heating.sensors.temperature.outside",
                sampled,
                _sensor(r.outdoor_temp_c),
            ),
            _feature(
                gateway_id,
                "heating.dhw.sensors.temperature.dhwCylinder",
                sampled,
                _sensor(r.dhw_temp_c),
            ),
            _feature(
                gateway_id,
                "heating.inverters.0.sensors.power.output",
                sampled,
                _sensor(round(r.power_kw * 1000.0), "watt"),
            ),
            _feature(
                gateway_id,
                VICARE_BOOST,
                changed,
                {"active": {"type": "boolean", "value": home.dhw_boost}},
                boost_commands,
            ),
        ]
    }


def vicare_installation(home: Home) -> dict[str, Any]:
    """One element of ``GET /iot/v2/equipment/installations?includeGateways=true``."""
    installation, serial, device = home.external_id.split("/")
    return {
        "id": int(installation),
        "gateways": [
            {
                "serial": serial,
                "devices": [
                    {"id": "gateway", "modelId": "Heatbox1", "roles": ["type:gateway"]},
                    {"id": device, "modelId": "E3_Vitocal", "roles": ["type:heatpump"]},
                ],
            }
        ],
    }


# -- myUplink -------------------------------------------------------------------------------


def _myuplink_time(at: datetime) -> str:
    return at.strftime("%Y-%m-%dT%H:%M:%S+00:00")


def myuplink_device(home: Home, online: bool) -> dict[str, Any]:
    """``GET /v2/devices/{id}`` (shape of the recorded device.json)."""
    return {
        "id": home.external_id.split("/")[1],
        "connectionState": "Connected" if online else "Disconnected",
        "firmware": {"currentFwVersion": "9682R7", "desiredFwVersion": "9682R7"},
        "product": {"serialNumber": home.home_id, "name": MYUPLINK_PRODUCT},
        "availableFeatures": {"settings": True, "reboot": True, "boostHotWater": True},
    }


def myuplink_system(home: Home, online: bool) -> dict[str, Any]:
    """One element of ``GET /v2/systems/me``'s ``systems``."""
    system_id, device_id = home.external_id.split("/")
    return {
        "systemId": system_id,
        "name": home.home_id,
        "securityLevel": "admin",
        "hasAlarm": False,
        "country": "Sweden",
        "devices": [
            {
                "id": device_id,
                "connectionState": "Connected" if online else "Disconnected",
                "currentFwVersion": "9682R7",
                "product": {"serialNumber": home.home_id, "name": MYUPLINK_PRODUCT},
            }
        ],
    }


def _point(
    parameter_id: str,
    name: str,
    unit: str,
    value: float,
    stamp: str,
    *,
    writable: bool = False,
    categories: tuple[str, ...] = (),
    limits: tuple[float, float, float] | None = None,
    enum: tuple[tuple[str, str], ...] = (),
    scale: str = "0.1",
) -> dict[str, Any]:
    minimum, maximum, step = limits if limits is not None else (None, None, 1)
    return {
        "category": f"NIBEF {MYUPLINK_PRODUCT}",
        "parameterId": parameter_id,
        "parameterName": name,
        "parameterUnit": unit,
        "writable": writable,
        "timestamp": stamp,
        "value": _plain(value),
        "strVal": f"{_plain(value)}{unit}",
        "smartHomeCategories": list(categories),
        "minValue": minimum,
        "maxValue": maximum,
        "stepValue": step,
        "enumValues": [{"value": v, "text": t, "icon": ""} for v, t in enum],
        "scaleValue": scale,
        "zoneId": None,
    }


def myuplink_points(home: Home) -> list[dict[str, Any]]:
    """``GET /v2/devices/{id}/points`` (ids, names and scales of the recorded F730 body)."""
    r = home.reported
    sampled = _myuplink_time(r.at)  # the points' two timestamps, formatted once
    changed = _myuplink_time(home.changed_at or r.at)
    lever = home.lever
    return [
        _point("40004", "Current outd temp (BT1)", "°C", r.outdoor_temp_c, sampled),
        _point("40008", "Supply line (BT2)", "°C", r.supply_temp_c, sampled),
        _point("40013", "Hot water top (BT7)", "°C", r.dhw_temp_c, sampled),
        _point("40033", "Room temperature (BT50)", "°C", r.indoor_temp_c, sampled),
        _point(
            MYUPLINK_OFFSET_ID,
            "Heating offset climate system 1",
            "",
            home.shown_lever,
            changed,
            writable=True,
            categories=("sh-indoorSpOffsHeat",),
            limits=(lever.minimum, lever.maximum, lever.step),
            scale="1",
        ),
        _point(
            "47398",
            "Room sensor set point value heating climate system 1",
            "°C",
            home.room_setpoint_c,
            changed,
            writable=True,
            limits=(50.0, 350.0, 5.0),
        ),
        _point(
            MYUPLINK_BOOST_ID,
            "Temporary lux",
            "",
            1.0 if home.dhw_boost else 0.0,
            changed,
            writable=True,
            enum=(("0", "off"), ("1", "on")),
            scale="1",
        ),
    ]


# -- Onecta ---------------------------------------------------------------------------------


def _char(value: Any, *, settable: bool = False, **extra: Any) -> dict[str, Any]:
    return {"settable": settable, "requiresReboot": False, "value": value, **extra}


def _sensory(value: float, step: float = 1.0) -> dict[str, Any]:
    return _char(value, maxValue=127, minValue=-127, stepValue=step)


def onecta_device(home: Home, online: bool) -> dict[str, Any]:
    """``GET /v1/gateway-devices/{id}``: a room-controlled Altherma (shape of altherma_boost)."""
    r = home.reported
    lever = home.lever
    room = _char(
        _plain(home.shown_lever),
        settable=True,
        maxValue=_plain(lever.maximum),
        minValue=_plain(lever.minimum),
        stepValue=_plain(lever.step),
    )
    climate = {
        "embeddedId": ONECTA_CLIMATE,
        "managementPointType": "climateControl",
        "managementPointCategory": "primary",
        "managementPointSubType": "mainZone",
        "controlMode": _char(
            "roomTemperature",
            values=["leavingWaterTemperature", "externalRoomTemperature", "roomTemperature"],
        ),
        "onOffMode": _char("on", settable=True, values=["off", "on"]),
        "operationMode": _char("heating", settable=True, values=["heating", "cooling", "auto"]),
        "setpointMode": _char("fixed", values=["fixed", "weatherDependent"]),
        "sensoryData": {
            "settable": False,
            "ref": "#sensoryData",
            "value": {
                "leavingWaterTemperature": _sensory(round(r.supply_temp_c)),
                "outdoorTemperature": _sensory(round(r.outdoor_temp_c)),
                "roomTemperature": _sensory(r.indoor_temp_c, 0.1),
            },
        },
        "temperatureControl": {
            "settable": True,
            "ref": "#temperatureControl",
            "value": {"operationModes": {"heating": {"setpoints": {"roomTemperature": room}}}},
        },
    }
    dhw = {
        "embeddedId": ONECTA_DHW,
        "managementPointType": "domesticHotWaterTank",
        "managementPointCategory": "primary",
        "isPowerfulModeActive": _char(home.dhw_boost),
        "onOffMode": _char("on", settable=True, values=["off", "on"]),
        "powerfulMode": _char(
            "on" if home.dhw_boost else "off", settable=True, values=["off", "on"]
        ),
        "sensoryData": {
            "settable": False,
            "ref": "#sensoryData",
            "value": {"tankTemperature": _sensory(round(r.dhw_temp_c))},
        },
    }
    stamp = r.at.strftime("%Y-%m-%dT%H:%M:%S.") + f"{r.at.microsecond // 10000:02d}Z"
    return {
        "_id": home.external_id,
        "id": home.external_id,
        "deviceModel": "Altherma",
        "type": "heating-wlan",
        "isCloudConnectionUp": {"settable": False, "value": online},
        "embeddedId": home.home_id,
        "timestamp": stamp,
        "lastUpdateReceived": stamp,
        "managementPoints": [
            {
                "embeddedId": "gateway",
                "managementPointType": "gateway",
                "managementPointCategory": "secondary",
            },
            climate,
            dhw,
        ],
    }
