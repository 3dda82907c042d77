"""The API's operations: one :class:`~hpsteer.api.routing.Route` each, and its handler.

============================================  ========  ===========================================
route                                         role      what
============================================  ========  ===========================================
GET    /openapi.json                          viewer    this API's OpenAPI 3.1 document
GET    /v1/devices                            viewer    devices, by area, manufacturer, steering
POST   /v1/devices                            operator  register (201; the same again: 200)
GET    /v1/devices/{device_id}                viewer    one device
PATCH  /v1/devices/{device_id}                operator  comfort band, tariff
DELETE /v1/devices/{device_id}                admin     hand back, then delete
PUT    /v1/devices/{device_id}/steering       operator  steering on (re-plan) or off (hand back)
GET    /v1/devices/{device_id}/status         viewer    telemetry, intended vs actual, plan, ...
POST   /v1/devices/{device_id}/replan         operator  re-plan one device now (202)
POST   /v1/device-imports                     admin     register many from CSV, report per row
POST   /v1/areas/{price_area}/replan          operator  re-plan a price area now (202)
GET    /v1/alerts                             viewer    alerts, by device, kind, severity, state
GET    /v1/alerts/{alert_id}                  viewer    one alert
POST   /v1/alerts/{alert_id}/acknowledge      operator  acknowledge (idempotent, audited)
============================================  ========  ===========================================

The handlers import their services on first use: the function's cold start pays for the route
table and the models, not for every use case (reconciliation's reading of the plan included).
"""

from __future__ import annotations

from typing import Any

from pydantic import RootModel

from hpsteer.api.routing import Answer, Call, Route, Router
from hpsteer.domain.operator_requests import (
    AlertListQuery,
    AlertPath,
    AreaPath,
    DeviceListQuery,
    DevicePath,
    DeviceRegistration,
    DeviceUpdate,
    NoteBody,
    ReplanBody,
    SteeringChange,
)
from hpsteer.domain.operator_views import (
    AlertsPage,
    AlertView,
    DeletedDevice,
    DevicesPage,
    DeviceStatus,
    DeviceView,
    ImportReport,
    ReplanAccepted,
)
from hpsteer.domain.roles import Operation

__all__ = ["ROUTER", "ROUTES", "OpenApiDocument"]


class OpenApiDocument(RootModel[dict[str, Any]]):
    """An OpenAPI 3.1 document."""


def _openapi(call: Call) -> Answer:
    from hpsteer.api.openapi import document

    return Answer(200, OpenApiDocument(document()))


def _list_devices(call: Call) -> Answer:
    from hpsteer.services.operator import devices

    return Answer(200, devices.list_devices(call.deps, call.query))


def _register(call: Call) -> Answer:
    from hpsteer.services.operator import devices

    registered = devices.register_device(call.deps, call.actor, call.body)
    return Answer(201 if registered.created else 200, registered.device)


def _get_device(call: Call) -> Answer:
    from hpsteer.services.operator import devices

    return Answer(200, devices.get_device(call.deps, call.path.device_id))


def _update_device(call: Call) -> Answer:
    from hpsteer.services.operator import devices

    return Answer(200, devices.update_device(call.deps, call.actor, call.path.device_id, call.body))


def _delete_device(call: Call) -> Answer:
    from hpsteer.services.operator import devices

    return Answer(200, devices.delete_device(call.deps, call.actor, call.path.device_id))


def _steering(call: Call) -> Answer:
    from hpsteer.services.operator import devices

    view = devices.set_steering(call.deps, call.actor, call.path.device_id, call.body.enabled)
    return Answer(200, view)


def _status(call: Call) -> Answer:
    from hpsteer.services.operator import status

    return Answer(200, status.device_status(call.deps, call.path.device_id))


def _replan_device(call: Call) -> Answer:
    from hpsteer.services.operator.replan import replan_device

    body = call.body or ReplanBody()
    return Answer(202, replan_device(call.deps, call.actor, call.path.device_id, body.reason))


def _replan_area(call: Call) -> Answer:
    from hpsteer.services.operator.replan import replan_area

    body = call.body or ReplanBody()
    return Answer(202, replan_area(call.deps, call.actor, call.path.price_area, body.reason))


def _import(call: Call) -> Answer:
    from hpsteer.services.operator.device_import import import_devices

    return Answer(200, import_devices(call.deps, call.actor, call.body))


def _list_alerts(call: Call) -> Answer:
    from hpsteer.services.operator import alerts

    return Answer(200, alerts.list_alerts(call.deps, call.query))


def _get_alert(call: Call) -> Answer:
    from hpsteer.services.operator import alerts

    return Answer(200, alerts.get_alert(call.deps, call.path.alert_id))


def _acknowledge(call: Call) -> Answer:
    from hpsteer.services.operator import alerts

    body = call.body or NoteBody()
    view = alerts.acknowledge_alert(call.deps, call.actor, call.path.alert_id, body.note)
    return Answer(200, view)


DEVICE = "/v1/devices/{device_id}"

ROUTES: tuple[Route, ...] = (
    Route(
        "GET",
        "/openapi.json",
        Operation.READ,
        "getOpenApi",
        "This API's OpenAPI 3.1 document",
        _openapi,
        {200: (OpenApiDocument, "The document (also kept in docs/openapi.json).")},
        tags=("meta",),
    ),
    Route(
        "GET",
        "/v1/devices",
        Operation.READ,
        "listDevices",
        "List devices",
        _list_devices,
        {200: (DevicesPage, "One page of devices, in id order.")},
        query_model=DeviceListQuery,
        tags=("devices",),
    ),
    Route(
        "POST",
        "/v1/devices",
        Operation.REGISTER_DEVICE,
        "registerDevice",
        "Register a device",
        _register,
        {
            201: (DeviceView, "Registered."),
            200: (DeviceView, "The same registration was stored before: the stored device."),
        },
        body_model=DeviceRegistration,
        body_media="application/json",
        body_required=True,
        errors=(409,),
        tags=("devices",),
        description="Idempotent on (manufacturer, external_id); a different registration of "
        "the same manufacturer device conflicts (409). The account's credentials must be "
        "stored (422 naming account_id otherwise).",
    ),
    Route(
        "GET",
        DEVICE,
        Operation.READ,
        "getDevice",
        "Read a device",
        _get_device,
        {200: (DeviceView, "The device.")},
        path_model=DevicePath,
        tags=("devices",),
    ),
    Route(
        "PATCH",
        DEVICE,
        Operation.UPDATE_DEVICE,
        "updateDevice",
        "Change a device's comfort band or tariff",
        _update_device,
        {200: (DeviceView, "The device after the change.")},
        path_model=DevicePath,
        body_model=DeviceUpdate,
        body_media="application/json",
        body_required=True,
        tags=("devices",),
        description="A new comfort band or tariff of a steered device re-plans it.",
    ),
    Route(
        "DELETE",
        DEVICE,
        Operation.DELETE_DEVICE,
        "deleteDevice",
        "Hand a device back to its own control and delete it",
        _delete_device,
        {200: (DeletedDevice, "Deleted (again: the same answer).")},
        path_model=DevicePath,
        tags=("devices",),
        description="Pending commands are superseded and one final set_mode_mid command hands "
        "the heat pump back; the device's command history stays.",
    ),
    Route(
        "PUT",
        DEVICE + "/steering",
        Operation.ENABLE_STEERING,
        "setSteering",
        "Switch steering on or off",
        _steering,
        {200: (DeviceView, "The device after the change.")},
        path_model=DevicePath,
        body_model=SteeringChange,
        body_media="application/json",
        body_required=True,
        tags=("devices",),
        description="Off: pending commands are superseded and exactly one set_mode_mid command "
        "hands the heat pump back (repeating it creates no second one). On: the device is "
        "re-planned.",
    ),
    Route(
        "GET",
        DEVICE + "/status",
        Operation.READ,
        "getDeviceStatus",
        "What a device is doing and why",
        _status,
        {200: (DeviceStatus, "Telemetry, intended vs actual mode, plan, commands, alerts.")},
        path_model=DevicePath,
        tags=("devices",),
    ),
    Route(
        "POST",
        DEVICE + "/replan",
        Operation.REPLAN,
        "replanDevice",
        "Re-plan a device now",
        _replan_device,
        {202: (ReplanAccepted, "The re-plan request is published.")},
        path_model=DevicePath,
        body_model=ReplanBody,
        body_media="application/json",
        errors=(409,),
        tags=("planning",),
    ),
    Route(
        "POST",
        "/v1/device-imports",
        Operation.IMPORT_DEVICES,
        "importDevices",
        "Register devices from a CSV file",
        _import,
        {200: (ImportReport, "A report line per row: imported, existing or refused (why).")},
        body_media="text/csv",
        body_required=True,
        tags=("devices",),
        description="Columns: manufacturer, external_id, account_id, price_area, latitude, "
        "longitude, min_indoor_temp_c, setpoint_c, max_indoor_temp_c, and archetype or the "
        "thermal parameters; optional device_id, steering_enabled, tariff_id. Each row is "
        "registered whole or not at all; a refused row does not stop the others.",
    ),
    Route(
        "POST",
        "/v1/areas/{price_area}/replan",
        Operation.REPLAN,
        "replanArea",
        "Re-plan every steered device of a price area now",
        _replan_area,
        {202: (ReplanAccepted, "The re-plan request is published.")},
        path_model=AreaPath,
        body_model=ReplanBody,
        body_media="application/json",
        tags=("planning",),
    ),
    Route(
        "GET",
        "/v1/alerts",
        Operation.READ,
        "listAlerts",
        "List alerts",
        _list_alerts,
        {200: (AlertsPage, "One page of alerts, in id order.")},
        query_model=AlertListQuery,
        tags=("alerts",),
    ),
    Route(
        "GET",
        "/v1/alerts/{alert_id}",
        Operation.READ,
        "getAlert",
        "Read an alert",
        _get_alert,
        {200: (AlertView, "The alert.")},
        path_model=AlertPath,
        tags=("alerts",),
    ),
    Route(
        "POST",
        "/v1/alerts/{alert_id}/acknowledge",
        Operation.ACKNOWLEDGE_ALERT,
        "acknowledgeAlert",
        "Acknowledge an alert",
        _acknowledge,
        {200: (AlertView, "Acknowledged (again: unchanged).")},
        path_model=AlertPath,
        body_model=NoteBody,
        body_media="application/json",
        tags=("alerts",),
    ),
)

ROUTER = Router(ROUTES)
