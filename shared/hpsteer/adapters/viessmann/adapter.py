"""The Viessmann ViCare adapter: generic actions ↔ ViCare features and commands.

Promises:

- ``DeviceRef.external_id`` is ``"{installation_id}/{gateway_serial}/{device_id}"``; the account's
  credentials are those :mod:`hpsteer.adapters.viessmann.client` reads from the
  :class:`~hpsteer.adapters.credentials.CredentialStore`.
- Everything the adapter decides comes from the device's own feature list (which features are
  enabled, which commands executable, their ``min``/``max``/``stepping``) and the table in
  :mod:`hpsteer.adapters.viessmann.params`. Feature lists are cached per device for
  ``features_max_age`` (default 5 min) because ViCare allows only 120 calls per 10 minutes and
  1,450 per day per account; :meth:`get_device_state` always reads afresh, and a sent command
  drops the device's cached list.
- Payloads are ``{"feature", "command", "params"}`` plus what a reader of the command log needs
  (``action``, ``circuit``, ``lever``, ``offset_k``, ``baseline``); feature names are values,
  never keys, so the payload can be stored as a document.
- **The baseline.** An offset is relative to the household's own setting of the lever (the comfort
  program's temperature, or the curve's shift). The adapter reads it from the device the first
  time it steers that lever and keeps it in a :class:`BaselineBook`, because once steering has
  begun the device shows baseline + offset and the baseline can no longer be read back. Each
  payload carries its baseline, so the command log records it. The default book lives in memory
  (enough for one process: the local runtime, tests); production must pass a book kept in the
  document store so a new function instance does not mistake a steered value for the baseline.
  :meth:`ViessmannAdapter.forget_baseline` re-learns it (after reconcile sees a user override).
- **Offline devices.** :meth:`get_device_state` reports a ViCare "device/gateway offline" answer
  as ``DeviceState(online=False)`` (it is what the manufacturer reports about the device, and
  reconcile needs it as state); commands raise :class:`~hpsteer.errors.DeviceOffline`. Every other
  failure is raised as the error classes of :mod:`hpsteer.adapters.protocol`.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any, Final

import httpx

from hpsteer.adapters.baseline import BaselineBook, MemoryBaselineBook
from hpsteer.adapters.credentials import CredentialStore
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
from hpsteer.adapters.viessmann.client import DEFAULT_BASE_URL, DEFAULT_TOKEN_URL, ViCareClient
from hpsteer.adapters.viessmann.params import (
    DHW_BOOST,
    DHW_TEMPERATURE,
    HEAT_PUMP_MODEL,
    HEAT_PUMP_ROLE,
    INDOOR_TEMPERATURE,
    OUTDOOR_TEMPERATURE,
    POWER,
    SETPOINT_LEVERS,
    SUPPLY_TEMPERATURE,
    CommandChoice,
    FeatureSet,
    SetpointLever,
)
from hpsteer.domain.actions import GenericAction, Mode
from hpsteer.errors import CommandRejected, DeviceOffline, UnknownDevice
from hpsteer.ports.clock import Clock

__all__ = ["RATE_LIMITS", "BaselineBook", "MemoryBaselineBook", "ViessmannAdapter"]

RATE_LIMITS: Final = RateLimitConfig(
    windows=(
        RateWindow(limit=120, window=timedelta(minutes=10), block_for=timedelta(hours=24)),
        RateWindow(limit=1450, window=timedelta(hours=24), block_for=timedelta(hours=24)),
    ),
    read_share=0.3,
    per="account",
)
"""ViCare's basic plan (reference/manufacturer-apis.md §1.5); paid plans allow 3,000 a day."""

_TOKEN_PATH: Final = "/idp/v3/token"


class ViessmannAdapter:
    """:class:`~hpsteer.adapters.protocol.ManufacturerAdapter` for Viessmann ViCare."""

    def __init__(
        self,
        credentials: CredentialStore,
        clock: Clock,
        *,
        http: httpx.Client,
        base_url: str = DEFAULT_BASE_URL,
        token_url: str = DEFAULT_TOKEN_URL,
        baselines: BaselineBook | None = None,
        features_max_age: timedelta = timedelta(minutes=5),
    ) -> None:
        self._credentials = credentials
        self._clock = clock
        self._http = http
        self._base_url = base_url
        self._token_url = token_url
        self._baselines: BaselineBook = baselines if baselines is not None else MemoryBaselineBook()
        self._features_max_age = features_max_age
        self._clients: dict[str, ViCareClient] = {}
        self._cache: dict[str, tuple[datetime, FeatureSet]] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"ViessmannAdapter(base_url={self._base_url!r})"

    @staticmethod
    def factory(context: AdapterContext) -> ViessmannAdapter:
        """Build from an :class:`AdapterContext`: ``base_urls["viessmann"]`` overrides the API
        (and the token endpoint, as ``{base}/idp/v3/token``, unless ``base_urls["viessmann_iam"]``
        names the identity host); ``context.transport`` is used when set."""
        base_url = context.base_urls.get("viessmann", DEFAULT_BASE_URL)
        iam = context.base_urls.get("viessmann_iam")
        if iam is not None:
            token_url = iam.rstrip("/") + _TOKEN_PATH
        elif "viessmann" in context.base_urls:
            token_url = base_url.rstrip("/") + _TOKEN_PATH
        else:
            token_url = DEFAULT_TOKEN_URL
        http = http_client(context)
        return ViessmannAdapter(
            context.credential_store(),
            context.clock,
            http=http,
            base_url=base_url,
            token_url=token_url,
            baselines=context.baselines("viessmann"),
        )

    @property
    def name(self) -> str:
        return "viessmann"

    @property
    def rate_limits(self) -> RateLimitConfig:
        return RATE_LIMITS

    def discover(self, account_id: str) -> tuple[DeviceRef, ...]:
        """The account's heat pumps (one API call), as DeviceRefs with composite external ids."""
        client = self._client(DeviceRef(self.name, "", account_id))
        found: list[DeviceRef] = []
        for installation in client.installations():
            gateways = installation.get("gateways")
            for gateway in gateways if isinstance(gateways, list) else []:
                devices = gateway.get("devices") if isinstance(gateway, dict) else None
                for device in devices if isinstance(devices, list) else []:
                    if not isinstance(device, dict) or not _is_heat_pump(device):
                        continue
                    external_id = (
                        f"{installation.get('id')}/{gateway.get('serial')}/{device.get('id')}"
                    )
                    found.append(DeviceRef(self.name, external_id, account_id))
        return tuple(found)

    # -- the protocol ---------------------------------------------------------------------

    def capabilities(self, device: DeviceRef) -> Capabilities:
        features = self._features(device)
        actions: set[GenericAction] = set()
        offset_range = (0.0, 0.0)
        notes = []
        found = _lever(features)
        if found is not None:
            lever, circuit = found
            actions |= {a for a in GenericAction if a.mode is not None}
            baseline = self._baseline(device, lever, circuit, features, remember=False)
            offset_range = _offset_range(features, lever, circuit, baseline)
            notes.append(f"set_mode_* via {lever.feature_for(circuit)}/{lever.command}")
        boost = _boost(features)
        if boost is not None:
            actions.add(GenericAction.BOOST_DHW)
            notes.append(f"boost_dhw via {boost.feature}/{boost.command}")
        return Capabilities(
            model=self._model(found),
            actions=frozenset(actions),
            setpoint_offset_range_k=offset_range,
            notes="; ".join(notes),
        )

    def translate_generic_command(self, action: GenericAction, device: DeviceRef) -> dict[str, Any]:
        features = self._features(device)
        mode = action.mode
        if mode is None:
            boost = _boost(features)
            if boost is None:
                raise CommandRejected(f"{_label(device)}: no executable one-time hot-water charge")
            return {
                "action": action.value,
                "feature": boost.feature,
                "command": boost.command,
                "params": dict(boost.params),
            }
        found = _lever(features)
        if found is None:
            raise CommandRejected(f"{_label(device)}: no executable setpoint or curve command")
        lever, circuit = found
        baseline = self._baseline(device, lever, circuit, features, remember=True)
        feature = lever.feature_for(circuit)
        params = {name: baseline[name] for name in lever.carried_params}
        params[lever.value_param] = _target(features, lever, circuit, baseline, mode)
        current = features.number(feature, lever.value_property)
        shown = _mode_shown(features, lever, circuit, baseline, current)
        return {
            "action": action.value,
            "feature": feature,
            "command": lever.command,
            "params": {name: _plain(value) for name, value in params.items()},
            "circuit": circuit,
            "lever": lever.name,
            "offset_k": mode.setpoint_offset_k,
            "baseline": {name: _plain(value) for name, value in baseline.items()},
            FOUND_MODE: shown.value if shown is not None else None,
        }

    def validate_command(
        self, action: GenericAction, payload: Mapping[str, Any], device: DeviceRef
    ) -> ValidationResult:
        feature = payload.get("feature")
        command = payload.get("command")
        params = payload.get("params")
        if not isinstance(feature, str) or not isinstance(command, str):
            return ValidationResult(False, "payload lacks feature or command")
        if not isinstance(params, Mapping):
            return ValidationResult(False, "payload params must be a mapping")
        if not _fits_action(action, feature, command):
            return ValidationResult(False, f"{feature}/{command} does not carry {action.value}")
        described = self._features(device).command(feature, command)
        if described is None:
            return ValidationResult(False, f"{feature} has no command {command} on this device")
        if described.get("isExecutable") is not True:
            return ValidationResult(False, f"{feature}/{command} is not executable now")
        return _check_params(f"{feature}/{command}", described.get("params"), params)

    def send_command(
        self, action: GenericAction, payload: Mapping[str, Any], device: DeviceRef
    ) -> CommandResult:
        feature = payload.get("feature")
        command = payload.get("command")
        params = payload.get("params")
        if not (isinstance(feature, str) and isinstance(command, str)):
            raise CommandRejected(f"{_label(device)}: {action.value} payload lacks feature/command")
        if not isinstance(params, Mapping):
            raise CommandRejected(f"{_label(device)}: {action.value} payload params not a mapping")
        inst, serial, dev = _ids(device)
        try:
            data = self._client(device).execute(inst, serial, dev, feature, command, params)
        finally:
            with self._lock:
                self._cache.pop(_cache_key(device), None)
        excerpt = {
            key: data[key]
            for key in ("success", "reason", "message")
            if isinstance(data.get(key), str | bool | int | float)
        }
        return CommandResult(
            accepted_at=self._clock.now(),
            manufacturer_reference=None,
            response={"feature": feature, "command": command, **excerpt},
        )

    def get_device_state(self, device: DeviceRef) -> DeviceState:
        try:
            features = self._features(device, fresh=True)
        except DeviceOffline:
            return DeviceState(device=device, observed_at=self._clock.now(), online=False)
        circuits = features.circuits()
        circuit = circuits[0] if circuits else "0"
        found = _lever(features)
        mode: Mode | None = None
        offset_k: float | None = None
        room_setpoint_c: float | None = None
        if found is not None:
            lever, circuit = found
            current = features.number(lever.feature_for(circuit), lever.value_property)
            if lever.gain_property is None:
                room_setpoint_c = current
            baseline = self._stored_baseline(device, lever, circuit)
            if current is not None and baseline is not None:
                gain = _gain(lever, baseline)
                offset_k = (current - baseline[lever.value_param]) / gain
                mode = _mode_shown(features, lever, circuit, baseline, current)
        return DeviceState(
            device=device,
            observed_at=self._clock.now(),
            online=True,
            mode=mode,
            setpoint_offset_k=offset_k,
            room_setpoint_c=room_setpoint_c,
            indoor_temp_c=features.read(INDOOR_TEMPERATURE, circuit),
            outdoor_temp_c=features.read(OUTDOOR_TEMPERATURE, circuit),
            supply_temp_c=features.read(SUPPLY_TEMPERATURE, circuit),
            dhw_temp_c=features.read(DHW_TEMPERATURE, circuit),
            power_kw=features.read(POWER, circuit),
            changed_by_user=None,  # only ViCare's event history tells (reference §1.6)
        )

    def forget_baseline(self, device: DeviceRef) -> None:
        """Re-learn the household's setting from the device at the next command."""
        self._baselines.forget(_cache_key(device) + "|")

    # -- helpers --------------------------------------------------------------------------

    def _client(self, device: DeviceRef) -> ViCareClient:
        with self._lock:
            client = self._clients.get(device.account_id)
            if client is None:
                client = ViCareClient(
                    device.account_id,
                    self._credentials,
                    self._clock,
                    http=self._http,
                    base_url=self._base_url,
                    token_url=self._token_url,
                )
                self._clients[device.account_id] = client
            return client

    def _features(self, device: DeviceRef, *, fresh: bool = False) -> FeatureSet:
        key = _cache_key(device)
        now = self._clock.now()
        with self._lock:
            cached = self._cache.get(key)
        if not fresh and cached is not None and now - cached[0] < self._features_max_age:
            return cached[1]
        features = FeatureSet(self._client(device).features(*_ids(device)))
        with self._lock:
            self._cache[key] = (now, features)
        return features

    def _stored_baseline(
        self, device: DeviceRef, lever: SetpointLever, circuit: str
    ) -> dict[str, float] | None:
        stored = self._baselines.get(
            f"{_cache_key(device)}|{lever.feature_for(circuit)}", epoch=device.baseline_epoch
        )
        return dict(stored) if stored is not None else None

    def _baseline(
        self,
        device: DeviceRef,
        lever: SetpointLever,
        circuit: str,
        features: FeatureSet,
        *,
        remember: bool,
    ) -> dict[str, float]:
        """The stored baseline, else the device's current values (stored if ``remember``)."""
        stored = self._stored_baseline(device, lever, circuit)
        if stored is not None:
            return stored
        feature = lever.feature_for(circuit)
        values: dict[str, float] = {}
        for name in (lever.value_param, *lever.carried_params):
            prop = lever.value_property if name == lever.value_param else name
            value = features.number(feature, prop)
            if value is None:
                raise CommandRejected(f"{_label(device)}: {feature} reports no {prop}")
            values[name] = value
        if remember:  # another instance may have learnt it first: its value stands
            standing = self._baselines.put(
                f"{_cache_key(device)}|{feature}", values, epoch=device.baseline_epoch
            )
            return dict(standing)
        return values

    @staticmethod
    def _model(found: tuple[SetpointLever, str] | None) -> str:
        # A features body names no model; discovery's modelId would (not read here).
        family = found[0].family if found is not None else "unknown features"
        return f"Viessmann ViCare heat pump ({family})"


# -- pure helpers -----------------------------------------------------------------------------


def _ids(device: DeviceRef) -> tuple[str, str, str]:
    parts = device.external_id.split("/")
    if len(parts) != 3 or not all(parts):
        raise UnknownDevice(
            f"ViCare external id {device.external_id!r} is not installation/gateway/device"
        )
    return parts[0], parts[1], parts[2]


def _is_heat_pump(device: Mapping[str, Any]) -> bool:
    roles = device.get("roles")
    model = device.get("modelId")
    return (isinstance(roles, list) and HEAT_PUMP_ROLE in roles) or (
        isinstance(model, str) and HEAT_PUMP_MODEL.search(model) is not None
    )


def _cache_key(device: DeviceRef) -> str:
    return f"{device.account_id}/{device.external_id}"


def _label(device: DeviceRef) -> str:
    return f"ViCare device {device.external_id}"


def _lever(features: FeatureSet) -> tuple[SetpointLever, str] | None:
    """The first lever of the table that the device offers executable, on its first circuit."""
    for circuit in features.circuits():
        for lever in SETPOINT_LEVERS:
            if features.executable(lever.feature_for(circuit), lever.command) is not None:
                return lever, circuit
    return None


def _boost(features: FeatureSet) -> CommandChoice | None:
    return next((c for c in DHW_BOOST if features.executable(c.feature, c.command)), None)


def _fits_action(action: GenericAction, feature: str, command: str) -> bool:
    if action.mode is None:
        return any(c.feature == feature and c.command == command for c in DHW_BOOST)
    return any(
        lever.command == command
        and feature.startswith("heating.circuits.")
        and lever.feature_for(feature.split(".")[2]) == feature
        for lever in SETPOINT_LEVERS
    )


def _constraints(features: FeatureSet, lever: SetpointLever, circuit: str) -> Mapping[str, Any]:
    described = features.command(lever.feature_for(circuit), lever.command) or {}
    params = described.get("params")
    param = params.get(lever.value_param) if isinstance(params, Mapping) else None
    constraints = param.get("constraints") if isinstance(param, Mapping) else None
    return constraints if isinstance(constraints, Mapping) else {}


def _gain(lever: SetpointLever, baseline: Mapping[str, float]) -> float:
    if lever.gain_property is None:
        return 1.0
    return 1.0 + baseline.get(lever.gain_property, 0.0)


def _mode_shown(
    features: FeatureSet,
    lever: SetpointLever,
    circuit: str,
    baseline: Mapping[str, float],
    current: float | None,
) -> Mode | None:
    """Which of our modes the lever's ``current`` value is (None: a setting none of them
    makes); the translation and :meth:`ViessmannAdapter.get_device_state` judge alike."""
    shown = (m for m in Mode if _target(features, lever, circuit, baseline, m) == current)
    return next(shown, None)


def _target(
    features: FeatureSet,
    lever: SetpointLever,
    circuit: str,
    baseline: Mapping[str, float],
    mode: Mode,
) -> float:
    """The lever's value for ``mode``: baseline + offset · gain, on the command's stepping."""
    stepping = _number(_constraints(features, lever, circuit).get("stepping")) or 1.0
    delta = mode.setpoint_offset_k * _gain(lever, baseline)
    steps = math.copysign(math.floor(abs(delta) / stepping + 0.5), delta)
    return round(baseline[lever.value_param] + steps * stepping, 6)


def _offset_range(
    features: FeatureSet, lever: SetpointLever, circuit: str, baseline: Mapping[str, float]
) -> tuple[float, float]:
    constraints = _constraints(features, lever, circuit)
    low, high = _number(constraints.get("min")), _number(constraints.get("max"))
    base = baseline[lever.value_param]
    gain = _gain(lever, baseline)
    return (
        (low - base) / gain if low is not None else -math.inf,
        (high - base) / gain if high is not None else math.inf,
    )


def _check_params(label: str, declared: Any, given: Mapping[str, Any]) -> ValidationResult:
    declared = declared if isinstance(declared, Mapping) else {}
    for name in given:
        if name not in declared:
            return ValidationResult(False, f"{label}: unknown parameter {name}")
    for name, spec in declared.items():
        spec = spec if isinstance(spec, Mapping) else {}
        if name not in given:
            if spec.get("required") is True:
                return ValidationResult(False, f"{label}: parameter {name} is required")
            continue
        problem = _check_value(name, spec, given[name])
        if problem is not None:
            return ValidationResult(False, f"{label}: {problem}")
    return ValidationResult(True)


def _check_value(name: str, spec: Mapping[str, Any], value: Any) -> str | None:
    kind = spec.get("type")
    constraints = spec.get("constraints")
    constraints = constraints if isinstance(constraints, Mapping) else {}
    if kind == "boolean":
        return None if isinstance(value, bool) else f"{name} must be a boolean"
    if kind == "string":
        allowed = constraints.get("enum")
        if not isinstance(value, str):
            return f"{name} must be a string"
        if isinstance(allowed, list) and value not in allowed:
            return f"{name} {value!r} is not one of {allowed}"
        return None
    if kind == "number":
        number = _number(value)
        if number is None or not math.isfinite(number):
            return f"{name} must be a finite number"
        low, high = _number(constraints.get("min")), _number(constraints.get("max"))
        if low is not None and number < low:
            return f"{name} {number:g} is below the minimum {low:g}"
        if high is not None and number > high:
            return f"{name} {number:g} is above the maximum {high:g}"
        step = _number(constraints.get("stepping"))
        if step:
            origin = low if low is not None else 0.0
            steps = (number - origin) / step
            if abs(steps - round(steps)) > 1e-6:
                return f"{name} {number:g} is not on the stepping {step:g} from {origin:g}"
        return None
    return None  # other types (schedules) are not sent by this adapter


def _number(value: Any) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return None


def _plain(value: float) -> int | float:
    """Whole numbers as int (ViCare's shift is an integer; ``20.0`` reads as ``20``)."""
    return int(value) if float(value).is_integer() else value
