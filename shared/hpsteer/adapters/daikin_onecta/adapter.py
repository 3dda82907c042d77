"""The Daikin Onecta adapter: generic actions ↔ Onecta management-point characteristics.

Promises:

- ``DeviceRef.external_id`` is the gateway device id (``"1ece521b-…"``), optionally followed by
  ``"/{embeddedId}"`` of the climate-control point to steer (default: the main zone,
  ``climateControlMainZone``). The account's credentials are those
  :mod:`hpsteer.adapters.daikin_onecta.client` reads from the
  :class:`~hpsteer.adapters.credentials.CredentialStore`.
- Everything the adapter decides comes from the unit's own document (which characteristics are
  ``settable``, their ``minValue``/``maxValue``/``stepValue``/``values``) and the tables in
  :mod:`hpsteer.adapters.daikin_onecta.params` (which also states the mode rule: room setpoint
  when room-controlled, else leaving-water offset when weather-dependent). Documents are cached
  per unit for ``device_max_age`` (default 5 min), because Onecta allows only 20 calls a minute
  and 200 a day; :meth:`get_device_state` always reads afresh, and a sent command drops the
  unit's cached document. A command therefore costs one read and one PATCH at most.
- Payloads are ``{"embedded_id", "characteristic", "body"}`` (``body`` is what the PATCH sends:
  ``{"value": v}`` or ``{"value": v, "path": "/operationModes/…"}``) plus what a reader of the
  command log needs (``action``, ``operation_mode``, ``lever``, ``offset_k``, ``baseline``); no
  key contains a dot, so the payload can be stored as a document.
- **The baseline.** As in the Viessmann adapter: an offset is relative to the household's own
  setting of the lever, read from the unit the first time hpsteer steers that lever (per
  operation mode) and kept in a :class:`~hpsteer.adapters.baseline.BaselineBook`,
  because once steering has begun the unit shows baseline + offset. Each payload carries its
  baseline. The default book lives in memory; production must pass one kept in the document
  store. :meth:`DaikinOnectaAdapter.forget_baseline` re-learns it (after a user override).
- **Offline units.** A unit whose ``isCloudConnectionUp`` is false reads as
  ``DeviceState(online=False)`` (the cloud's last values are stale and not reported); commands to
  it raise :class:`~hpsteer.errors.DeviceOffline`, a device fault that never trips the breaker.
  Every other failure is raised as the error classes of :mod:`hpsteer.adapters.protocol`.
- Space heating switched off (``onOffMode`` ``off``) is reported in the capabilities' notes; the
  adapter never switches it (Daikin asks for at most one compressor start/stop per 10 minutes).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

import httpx

from hpsteer.adapters.baseline import BaselineBook, MemoryBaselineBook
from hpsteer.adapters.credentials import CredentialStore
from hpsteer.adapters.daikin_onecta.client import (
    DEFAULT_BASE_URL,
    DEFAULT_TOKEN_URL,
    OnectaClient,
)
from hpsteer.adapters.daikin_onecta.params import (
    CLIMATE_POINT_TYPE,
    CONTROL_MODE,
    DHW_BOOST,
    DHW_TEMPERATURE,
    INDOOR_TEMPERATURE,
    ON_OFF,
    OPERATION_MODE,
    OUTDOOR_TEMPERATURE,
    SETPOINT_LEVERS,
    SETPOINT_MODE,
    STEERED_OPERATION_MODES,
    SUPPLY_TEMPERATURE,
    TEMPERATURE_CONTROL,
    GatewayDevice,
    SetpointLever,
    number,
    setpoint_path,
)
from hpsteer.adapters.http import http_client
from hpsteer.adapters.protocol import (
    FOUND_MODE,
    AdapterContext,
    Capabilities,
    CommandResult,
    DeviceRef,
    DeviceState,
    RateLimitConfig,
    RateWindow,
    ValidationResult,
)
from hpsteer.domain.actions import GenericAction, Mode
from hpsteer.errors import CommandRejected, DeviceOffline, UnknownDevice
from hpsteer.ports.clock import Clock

__all__ = ["RATE_LIMITS", "DaikinOnectaAdapter"]

RATE_LIMITS: Final = RateLimitConfig(
    windows=(
        RateWindow(limit=20, window=timedelta(minutes=1)),
        RateWindow(limit=200, window=timedelta(hours=24)),
    ),
    read_share=0.3,
    per="account",
)
"""Onecta's default quota, sliding windows (reference/manufacturer-apis.md §3.5). Whether it is
keyed per user or per application is unconfirmed; calls made while limited count against the
next day (Daikin support, quoted there), which is why no ``block_for`` is modelled: never exceed."""

_TOKEN_PATH: Final = "/v1/oidc/token"
_MODES_BY_PREFERENCE: Final = (Mode.MID, Mode.MIN, Mode.MAX)
"""When two modes clamp to the same value (a baseline at the range's edge), MID is reported."""


@dataclass(frozen=True, slots=True)
class _Steering:
    """Which setpoint carries set_mode_* on one unit now."""

    embedded_id: str
    operation_mode: str
    lever: SetpointLever
    spec: Mapping[str, Any]
    """The setpoint's entry: ``settable``, ``value``, ``minValue``, ``maxValue``, ``stepValue``."""

    @property
    def path(self) -> str:
        return setpoint_path(self.operation_mode, self.lever.setpoint)


class DaikinOnectaAdapter:
    """:class:`~hpsteer.adapters.protocol.ManufacturerAdapter` for Daikin Onecta."""

    def __init__(
        self,
        credentials: CredentialStore,
        clock: Clock,
        *,
        http: httpx.Client,
        base_url: str = DEFAULT_BASE_URL,
        token_url: str = DEFAULT_TOKEN_URL,
        baselines: BaselineBook | None = None,
        device_max_age: timedelta = timedelta(minutes=5),
    ) -> None:
        self._credentials = credentials
        self._clock = clock
        self._http = http
        self._base_url = base_url
        self._token_url = token_url
        self._baselines: BaselineBook = baselines if baselines is not None else MemoryBaselineBook()
        self._device_max_age = device_max_age
        self._clients: dict[str, OnectaClient] = {}
        self._cache: dict[str, tuple[datetime, GatewayDevice]] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"DaikinOnectaAdapter(base_url={self._base_url!r})"

    @staticmethod
    def factory(context: AdapterContext) -> DaikinOnectaAdapter:
        """Build from an :class:`AdapterContext`: ``base_urls["daikin_onecta"]`` overrides the API
        (and the token endpoint, as ``{base}/v1/oidc/token``, unless
        ``base_urls["daikin_onecta_idp"]`` names the identity host); ``context.transport`` is
        used when set."""
        base_url = context.base_urls.get("daikin_onecta", DEFAULT_BASE_URL)
        idp = context.base_urls.get("daikin_onecta_idp")
        if idp is not None:
            token_url = idp.rstrip("/") + _TOKEN_PATH
        elif "daikin_onecta" in context.base_urls:
            token_url = base_url.rstrip("/") + _TOKEN_PATH
        else:
            token_url = DEFAULT_TOKEN_URL
        http = http_client(context)
        return DaikinOnectaAdapter(
            context.credential_store(),
            context.clock,
            http=http,
            base_url=base_url,
            token_url=token_url,
            baselines=context.baselines("daikin_onecta"),
        )

    @property
    def name(self) -> str:
        return "daikin_onecta"

    @property
    def rate_limits(self) -> RateLimitConfig:
        return RATE_LIMITS

    def discover(self, account_id: str) -> tuple[DeviceRef, ...]:
        """The account's heat pumps (one API call); air conditioners are left out."""
        client = self._client(DeviceRef(self.name, "", account_id))
        units = (GatewayDevice(document) for document in client.gateway_devices())
        return tuple(
            DeviceRef(self.name, unit.device_id, account_id)
            for unit in units
            if unit.device_id and unit.is_heat_pump()
        )

    # -- the protocol ---------------------------------------------------------------------

    def capabilities(self, device: DeviceRef) -> Capabilities:
        unit = self._unit(device)
        _, embedded = _ids(device)
        actions: set[GenericAction] = set()
        offset_range = (0.0, 0.0)
        notes: list[str] = []
        steering, why_not = _steering(unit, embedded)
        if steering is not None:
            actions |= {a for a in GenericAction if a.mode is not None}
            baseline = self._baseline(device, steering, remember=False)
            offset_range = _offset_range(steering, baseline)
            notes.append(
                f"set_mode_* via {steering.embedded_id}/{TEMPERATURE_CONTROL} {steering.path}"
            )
        else:
            notes.append(f"no set_mode_*: {why_not}")
        boost = _boost_point(unit)
        if boost is not None:
            actions.add(GenericAction.BOOST_DHW)
            notes.append(f"boost_dhw via {boost}/{DHW_BOOST.characteristic}")
        climate = unit.climate_point(embedded)
        if GatewayDevice.plain(climate, ON_OFF) == "off":
            notes.append("space heating is switched off by the household")
        if not unit.online:
            notes.append("cloud connection down")
        return Capabilities(
            model=f"Daikin {unit.model}",
            actions=frozenset(actions),
            setpoint_offset_range_k=offset_range,
            notes="; ".join(notes),
        )

    def translate_generic_command(self, action: GenericAction, device: DeviceRef) -> dict[str, Any]:
        unit = self._unit(device)
        _, embedded = _ids(device)
        if not unit.online:
            raise DeviceOffline(f"{_label(device)}: cloud connection is down")
        mode = action.mode
        if mode is None:
            point = _boost_point(unit)
            if point is None:
                raise CommandRejected(f"{_label(device)}: no settable hot-water powerful mode")
            return {
                "action": action.value,
                "embedded_id": point,
                "characteristic": DHW_BOOST.characteristic,
                "body": {"value": DHW_BOOST.value},
            }
        steering, why_not = _steering(unit, embedded)
        if steering is None:
            raise CommandRejected(f"{_label(device)}: cannot steer the setpoint: {why_not}")
        baseline = self._baseline(device, steering, remember=True)
        found = _mode_shown(steering, baseline, number(steering.spec.get("value")))
        return {
            "action": action.value,
            "embedded_id": steering.embedded_id,
            "characteristic": TEMPERATURE_CONTROL,
            "body": {"value": _plain(_target(steering, baseline, mode)), "path": steering.path},
            "operation_mode": steering.operation_mode,
            "lever": steering.lever.name,
            "offset_k": mode.setpoint_offset_k,
            "baseline": _plain(baseline),
            FOUND_MODE: found.value if found is not None else None,
        }

    def validate_command(
        self, action: GenericAction, payload: Mapping[str, Any], device: DeviceRef
    ) -> ValidationResult:
        embedded = payload.get("embedded_id")
        characteristic = payload.get("characteristic")
        body = payload.get("body")
        if not isinstance(embedded, str) or not isinstance(characteristic, str):
            return ValidationResult(False, "payload lacks embedded_id or characteristic")
        if not isinstance(body, Mapping) or "value" not in body:
            return ValidationResult(False, "payload body must be a mapping with a value")
        unknown = sorted(set(body) - {"value", "path"})
        if unknown:
            return ValidationResult(False, f"body has unknown keys {unknown}")
        label = f"{embedded}/{characteristic}"
        unit = self._unit(device)
        point = unit.point(embedded)
        if point is None:
            return ValidationResult(False, f"this unit has no management point {embedded}")
        described = GatewayDevice.characteristic(point, characteristic)
        if described is None:
            return ValidationResult(False, f"{embedded} has no characteristic {characteristic}")
        if described.get("settable") is not True:
            return ValidationResult(False, f"{label} is not settable")
        if action.mode is None:
            if (
                point.get("managementPointType") not in DHW_BOOST.point_types
                or characteristic != DHW_BOOST.characteristic
                or "path" in body
            ):
                return ValidationResult(False, f"{label} does not carry {action.value}")
            return _check_choice(label, described, body["value"])
        path = body.get("path")
        found = _setpoint_of_path(path) if isinstance(path, str) else None
        if (
            point.get("managementPointType") != CLIMATE_POINT_TYPE
            or characteristic != TEMPERATURE_CONTROL
            or found is None
        ):
            return ValidationResult(False, f"{label} {path} does not carry {action.value}")
        operation_mode, setpoint = found
        spec = GatewayDevice.setpoint(point, operation_mode, setpoint)
        if spec is None:
            return ValidationResult(False, f"{label} has no setpoint at {path}")
        if spec.get("settable") is not True:
            return ValidationResult(False, f"{label} {path} is not settable")
        return _check_number(f"{label} {path}", spec, body["value"])

    def send_command(
        self, action: GenericAction, payload: Mapping[str, Any], device: DeviceRef
    ) -> CommandResult:
        embedded = payload.get("embedded_id")
        characteristic = payload.get("characteristic")
        body = payload.get("body")
        if not (isinstance(embedded, str) and isinstance(characteristic, str)):
            raise CommandRejected(
                f"{_label(device)}: {action.value} payload lacks embedded_id/characteristic"
            )
        if not isinstance(body, Mapping):
            raise CommandRejected(f"{_label(device)}: {action.value} payload body not a mapping")
        gateway_id, _ = _ids(device)
        if not self._unit(device).online:
            raise DeviceOffline(f"{_label(device)}: cloud connection is down")
        try:
            status = self._client(device).patch_characteristic(
                gateway_id, embedded, characteristic, body
            )
        finally:
            with self._lock:
                self._cache.pop(_cache_key(device), None)
        response: dict[str, Any] = {
            "status": status,
            "embedded_id": embedded,
            "characteristic": characteristic,
        }
        if isinstance(body.get("path"), str):
            response["path"] = body["path"]
        return CommandResult(
            accepted_at=self._clock.now(), manufacturer_reference=None, response=response
        )

    def get_device_state(self, device: DeviceRef) -> DeviceState:
        unit = self._unit(device, fresh=True)
        now = self._clock.now()
        if not unit.online:
            return DeviceState(device=device, observed_at=now, online=False)
        _, embedded = _ids(device)
        climate = unit.climate_point(embedded)
        mode: Mode | None = None
        offset_k: float | None = None
        steering, _ = _steering(unit, embedded)
        if steering is not None:
            current = number(steering.spec.get("value"))
            baseline = self._stored_baseline(device, steering)
            if current is not None and baseline is not None:
                offset_k = (current - baseline) / steering.lever.k_per_room_k
                mode = _mode_shown(steering, baseline, current)
        operation_mode = GatewayDevice.plain(climate, OPERATION_MODE)
        room = (
            GatewayDevice.setpoint(climate, operation_mode, "roomTemperature")
            if isinstance(operation_mode, str)
            else None
        )
        return DeviceState(
            device=device,
            observed_at=now,
            online=True,
            mode=mode,
            setpoint_offset_k=offset_k,
            room_setpoint_c=number(room.get("value")) if room is not None else None,
            indoor_temp_c=unit.read(INDOOR_TEMPERATURE, climate),
            outdoor_temp_c=unit.read(OUTDOOR_TEMPERATURE, climate),
            supply_temp_c=unit.read(SUPPLY_TEMPERATURE, climate),
            dhw_temp_c=unit.read(DHW_TEMPERATURE),
            power_kw=None,  # not exposed by Onecta (reference §3.3)
            changed_by_user=None,  # Onecta names no actor of a change
        )

    def forget_baseline(self, device: DeviceRef) -> None:
        """Re-learn the household's setting from the unit at the next command."""
        self._baselines.forget(_cache_key(device) + "|")

    # -- helpers --------------------------------------------------------------------------

    def _client(self, device: DeviceRef) -> OnectaClient:
        with self._lock:
            client = self._clients.get(device.account_id)
            if client is None:
                client = OnectaClient(
                    device.account_id,
                    self._credentials,
                    self._clock,
                    http=self._http,
                    base_url=self._base_url,
                    token_url=self._token_url,
                )
                self._clients[device.account_id] = client
            return client

    def _unit(self, device: DeviceRef, *, fresh: bool = False) -> GatewayDevice:
        key = _cache_key(device)
        gateway_id, _ = _ids(device)
        now = self._clock.now()
        with self._lock:
            cached = self._cache.get(key)
        if not fresh and cached is not None and now - cached[0] < self._device_max_age:
            return cached[1]
        unit = GatewayDevice(self._client(device).gateway_device(gateway_id))
        with self._lock:
            self._cache[key] = (now, unit)
        return unit

    def _baseline_key(self, device: DeviceRef, steering: _Steering) -> str:
        return f"{_cache_key(device)}|{steering.embedded_id}{steering.path}"

    def _stored_baseline(self, device: DeviceRef, steering: _Steering) -> float | None:
        stored = self._baselines.get(
            self._baseline_key(device, steering), epoch=device.baseline_epoch
        )
        return stored.get("value") if stored is not None else None

    def _baseline(self, device: DeviceRef, steering: _Steering, *, remember: bool) -> float:
        """The stored baseline, else the unit's current value (stored if ``remember``)."""
        stored = self._stored_baseline(device, steering)
        if stored is not None:
            return stored
        value = number(steering.spec.get("value"))
        if value is None:
            raise CommandRejected(f"{_label(device)}: {steering.path} reports no value")
        if remember:  # another instance may have learnt it first: its value stands
            standing = self._baselines.put(
                self._baseline_key(device, steering), {"value": value}, epoch=device.baseline_epoch
            )
            return standing.get("value", value)
        return value


# -- pure helpers -----------------------------------------------------------------------------


def _ids(device: DeviceRef) -> tuple[str, str | None]:
    parts = device.external_id.split("/")
    if not 1 <= len(parts) <= 2 or not all(parts):
        raise UnknownDevice(
            f"Onecta external id {device.external_id!r} is not gateway-device-id[/embeddedId]"
        )
    return parts[0], parts[1] if len(parts) == 2 else None


def _cache_key(device: DeviceRef) -> str:
    return f"{device.account_id}/{_ids(device)[0]}"


def _label(device: DeviceRef) -> str:
    return f"Onecta unit {device.external_id}"


def _steering(unit: GatewayDevice, embedded: str | None) -> tuple[_Steering | None, str]:
    """The lever of the mode rule (params.py), or None and why not."""
    point = unit.climate_point(embedded)
    if point is None:
        return None, f"no {CLIMATE_POINT_TYPE} point {embedded or ''}".rstrip()
    operation_mode = GatewayDevice.plain(point, OPERATION_MODE)
    if operation_mode not in STEERED_OPERATION_MODES:
        return None, f"operation mode {operation_mode} is not steered"
    control = GatewayDevice.characteristic(point, TEMPERATURE_CONTROL)
    if control is None or control.get("settable") is not True:
        return None, f"{TEMPERATURE_CONTROL} is not settable"
    control_mode = GatewayDevice.plain(point, CONTROL_MODE)
    setpoint_mode = GatewayDevice.plain(point, SETPOINT_MODE)
    for lever in SETPOINT_LEVERS:
        if lever.control_modes is not None and control_mode not in lever.control_modes:
            continue
        if lever.setpoint_modes is not None and setpoint_mode not in lever.setpoint_modes:
            continue
        spec = GatewayDevice.setpoint(point, str(operation_mode), lever.setpoint)
        if spec is not None and spec.get("settable") is True:
            return _Steering(str(point.get("embeddedId")), str(operation_mode), lever, spec), ""
    return None, (
        f"no settable setpoint for controlMode {control_mode}, setpointMode {setpoint_mode} "
        f"in operation mode {operation_mode}"
    )


def _boost_point(unit: GatewayDevice) -> str | None:
    """The embedded id of the hot-water point whose powerful mode can be switched on."""
    point = unit.point_of_types(DHW_BOOST.point_types)
    described = GatewayDevice.characteristic(point, DHW_BOOST.characteristic)
    if point is None or described is None or described.get("settable") is not True:
        return None
    values = described.get("values")
    if isinstance(values, list) and DHW_BOOST.value not in values:
        return None
    return str(point.get("embeddedId"))


def _setpoint_of_path(path: str) -> tuple[str, str] | None:
    parts = path.split("/")
    if len(parts) != 5 or parts[0] or parts[1] != "operationModes" or parts[3] != "setpoints":
        return None
    if parts[2] not in STEERED_OPERATION_MODES:
        return None
    if not any(lever.setpoint == parts[4] for lever in SETPOINT_LEVERS):
        return None
    return parts[2], parts[4]


def _mode_shown(steering: _Steering, baseline: float, current: float | None) -> Mode | None:
    """Which of our modes the lever's ``current`` value is (None: a setting none of them
    makes); the translation and :meth:`DaikinOnectaAdapter.get_device_state` judge alike."""
    shown = (m for m in _MODES_BY_PREFERENCE if _target(steering, baseline, m) == current)
    return next(shown, None)


def _target(steering: _Steering, baseline: float, mode: Mode) -> float:
    """baseline + offset · k, snapped to stepValue from minValue, clamped to the unit's range."""
    spec = steering.spec
    low, high = number(spec.get("minValue")), number(spec.get("maxValue"))
    step = number(spec.get("stepValue"))
    value = baseline + mode.setpoint_offset_k * steering.lever.k_per_room_k
    if step:
        origin = low if low is not None else 0.0
        value = origin + math.floor((value - origin) / step + 0.5) * step
    if low is not None:
        value = max(low, value)
    if high is not None:
        value = min(high, value)
    return round(value, 6)


def _offset_range(steering: _Steering, baseline: float) -> tuple[float, float]:
    low, high = number(steering.spec.get("minValue")), number(steering.spec.get("maxValue"))
    k = steering.lever.k_per_room_k
    return (
        (low - baseline) / k if low is not None else -math.inf,
        (high - baseline) / k if high is not None else math.inf,
    )


def _check_number(label: str, spec: Mapping[str, Any], value: Any) -> ValidationResult:
    given = number(value)
    if given is None:
        return ValidationResult(False, f"{label}: value must be a finite number")
    low, high = number(spec.get("minValue")), number(spec.get("maxValue"))
    if low is not None and given < low:
        return ValidationResult(False, f"{label}: {given:g} is below the minimum {low:g}")
    if high is not None and given > high:
        return ValidationResult(False, f"{label}: {given:g} is above the maximum {high:g}")
    step = number(spec.get("stepValue"))
    if step:
        origin = low if low is not None else 0.0
        steps = (given - origin) / step
        if abs(steps - round(steps)) > 1e-6:
            return ValidationResult(
                False, f"{label}: {given:g} is not on the step {step:g} from {origin:g}"
            )
    return ValidationResult(True)


def _check_choice(label: str, described: Mapping[str, Any], value: Any) -> ValidationResult:
    values = described.get("values")
    if not isinstance(value, str):
        return ValidationResult(False, f"{label}: value must be a string")
    if isinstance(values, list) and value not in values:
        return ValidationResult(False, f"{label}: {value!r} is not one of {values}")
    if value != DHW_BOOST.value:
        return ValidationResult(
            False, f"{label}: boost_dhw sets {DHW_BOOST.value!r}, not {value!r}"
        )
    return ValidationResult(True)


def _plain(value: float) -> int | float:
    """Whole numbers as int (Onecta's offsets are integers; ``20.0`` reads as ``20``)."""
    return int(value) if float(value).is_integer() else value
