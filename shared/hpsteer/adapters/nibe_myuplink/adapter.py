"""The NIBE myUplink adapter: generic actions ↔ myUplink points.

Promises:

- ``DeviceRef.external_id`` is ``"{systemId}/{deviceId}"`` (discovery builds it); the account's
  credentials are those :mod:`hpsteer.adapters.nibe_myuplink.client` reads from the
  :class:`~hpsteer.adapters.credentials.CredentialStore`.
- Everything decided comes from the device's own answers (``GET /v2/devices/{id}``: product,
  ``availableFeatures``; ``GET …/points``: which points exist, are writable, their limits) and the
  table in :mod:`hpsteer.adapters.nibe_myuplink.params`. Both are cached per device for
  ``cache_max_age`` (default 5 min: myUplink refreshes values about every 5 minutes anyway);
  :meth:`get_device_state` always reads afresh, :meth:`send_command` re-reads the device's
  connection state unless it was read within :data:`CONNECTION_STATE_MAX_AGE` (the
  translation's read moments before, in the same dispatch: one call of six saved per command),
  and a sent command drops the device's cache.
- ``set_mode_min/mid/max`` PATCH the heating offset to baseline -2/0/+2 steps (one step ≈ 1 K of
  room: see :mod:`~hpsteer.adapters.nibe_myuplink.params`); ``boost_dhw`` PATCHes the hot-water
  boost point to 1. Payloads are ``{"action", "body", "parameter_id", "point", …}`` where
  ``body`` is the PATCH body (``{"47011": "-1"}``; parameter ids are digits, so the payload can be
  stored as a document).
- **The baseline** is the household's heating offset, read the first time hpsteer steers it and
  kept in a :class:`BaselineBook` (production: one kept in the document store), as for Viessmann.
- **Offline.** A device whose ``connectionState`` is not ``Connected`` reads as
  ``DeviceState(online=False)``; a command to it raises :class:`~hpsteer.errors.DeviceOffline`
  before anything is written. (myUplink marks devices disconnected intermittently; what a PATCH
  to a disconnected device does is unconfirmed, so none is sent.)
- **Writes need Premium.** myUplink accepts writes only for systems with an active ``manage``
  subscription; without one a PATCH is refused with 403, raised as
  :class:`~hpsteer.errors.CommandRejected` naming the cause. "modified" means the cloud took the
  value, not that the device applied it (verify by a later read; some S-series ignore writes
  that were "modified").
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
from hpsteer.adapters.http import http_client
from hpsteer.adapters.nibe_myuplink.client import (
    DEFAULT_BASE_URL,
    DEFAULT_TOKEN_URL,
    MyUplinkClient,
)
from hpsteer.adapters.nibe_myuplink.params import (
    DHW_BOOST,
    DHW_BOOST_ON,
    DHW_TEMPERATURE,
    HEATING_OFFSET,
    INDOOR_TEMPERATURE,
    OFFSET_STEPS_PER_ROOM_K,
    OUTDOOR_TEMPERATURE,
    POWER,
    ROOM_SETPOINT,
    SUPPLY_TEMPERATURE,
    Point,
    PointSet,
    display_text,
    family_of,
)
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

__all__ = [
    "CONNECTION_STATE_MAX_AGE",
    "RATE_LIMITS",
    "BaselineBook",
    "MemoryBaselineBook",
    "NibeMyUplinkAdapter",
]

RATE_LIMITS: Final = RateLimitConfig(
    windows=(RateWindow(limit=25, window=timedelta(minutes=1)),),
    read_share=0.3,
    per="account",
    calls_per_state_read=2,
)
"""myUplink: "one request every 4th second with occasional bursts" (dev.myuplink.com), HTTP 429
beyond, headers ``RateLimit-Limit: 25``; read as 25 per minute as jaroschek's client does. The
window length, and whether it is keyed per user or per *application* (then the whole fleet shares
it), are **unconfirmed**: find out before serving more than a few households with one app."""

CONNECTED: Final = "Connected"
CONNECTION_STATE_MAX_AGE: Final = timedelta(seconds=30)
"""How old a read of the device may be for :meth:`NibeMyUplinkAdapter.send_command` to take its
``connectionState`` instead of reading the device again (a dispatch translates and sends within
a second; a command sent later reads afresh)."""
_TOKEN_PATH: Final = "/oauth/token"
_MODE_POINT: Final = HEATING_OFFSET
_BOOST_POINT: Final = DHW_BOOST


@dataclass(frozen=True, slots=True)
class _Snapshot:
    """One read of a device: its ``GET /v2/devices/{id}`` body and its points."""

    info: Mapping[str, Any]
    points: PointSet

    @property
    def product(self) -> str:
        product = self.info.get("product")
        name = product.get("name") if isinstance(product, Mapping) else None
        return name if isinstance(name, str) else ""

    def feature(self, name: str) -> bool | None:
        """The device's ``availableFeatures[name]``, or None when it does not say."""
        features = self.info.get("availableFeatures")
        value = features.get(name) if isinstance(features, Mapping) else None
        return value if isinstance(value, bool) else None


class NibeMyUplinkAdapter:
    """:class:`~hpsteer.adapters.protocol.ManufacturerAdapter` for NIBE via myUplink."""

    def __init__(
        self,
        credentials: CredentialStore,
        clock: Clock,
        *,
        http: httpx.Client,
        base_url: str = DEFAULT_BASE_URL,
        token_url: str = DEFAULT_TOKEN_URL,
        baselines: BaselineBook | None = None,
        cache_max_age: timedelta = timedelta(minutes=5),
    ) -> None:
        self._credentials = credentials
        self._clock = clock
        self._http = http
        self._base_url = base_url
        self._token_url = token_url
        self._baselines: BaselineBook = baselines if baselines is not None else MemoryBaselineBook()
        self._cache_max_age = cache_max_age
        self._clients: dict[str, MyUplinkClient] = {}
        self._cache: dict[str, tuple[datetime, _Snapshot]] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"NibeMyUplinkAdapter(base_url={self._base_url!r})"

    @staticmethod
    def factory(context: AdapterContext) -> NibeMyUplinkAdapter:
        """Build from an :class:`AdapterContext` (``base_urls["nibe_myuplink"]`` overrides both
        the API and its token endpoint, which live on the same host)."""
        base_url = context.base_urls.get("nibe_myuplink", DEFAULT_BASE_URL)
        token_url = (
            base_url.rstrip("/") + _TOKEN_PATH
            if "nibe_myuplink" in context.base_urls
            else DEFAULT_TOKEN_URL
        )
        http = http_client(context)
        return NibeMyUplinkAdapter(
            context.credential_store(),
            context.clock,
            http=http,
            base_url=base_url,
            token_url=token_url,
            baselines=context.baselines("nibe_myuplink"),
        )

    @property
    def name(self) -> str:
        return "nibe_myuplink"

    @property
    def rate_limits(self) -> RateLimitConfig:
        return RATE_LIMITS

    def discover(self, account_id: str) -> tuple[DeviceRef, ...]:
        """The account's devices (one API call), with ``systemId/deviceId`` external ids."""
        client = self._client(DeviceRef(self.name, "", account_id))
        found: list[DeviceRef] = []
        for system in client.systems():
            devices = system.get("devices")
            for device in devices if isinstance(devices, list) else []:
                if isinstance(device, dict) and isinstance(device.get("id"), str):
                    external_id = f"{system.get('systemId')}/{device['id']}"
                    found.append(DeviceRef(self.name, external_id, account_id))
        return tuple(found)

    # -- the protocol ---------------------------------------------------------------------

    def capabilities(self, device: DeviceRef) -> Capabilities:
        snapshot = self._snapshot(device)
        actions: set[GenericAction] = set()
        offset_range = (0.0, 0.0)
        notes: list[str] = []
        offset = snapshot.points.find(_MODE_POINT)
        if offset is not None and offset.value is not None:
            actions |= {a for a in GenericAction if a.mode is not None}
            baseline = self._baseline(device, offset, remember=False)
            offset_range = _offset_range_k(offset, baseline)
            notes.append(
                f"set_mode_* via point {offset.parameter_id} ({offset.name}), "
                f"{OFFSET_STEPS_PER_ROOM_K:g} step per room K (unconfirmed)"
            )
        boost = _boost_point(snapshot)
        if boost is not None:
            actions.add(GenericAction.BOOST_DHW)
            notes.append(f"boost_dhw via point {boost.parameter_id} ({boost.name})")
        family = snapshot.points.family
        notes.append(
            f"family {family.name if family else 'unknown'}"
            + ("" if family is None or family.confirmed else " (point ids unconfirmed)")
        )
        notes.append("writes need an active 'manage' subscription")
        return Capabilities(
            model=f"NIBE {snapshot.product}".strip(),
            actions=frozenset(actions),
            setpoint_offset_range_k=offset_range,
            notes="; ".join(notes),
        )

    def translate_generic_command(self, action: GenericAction, device: DeviceRef) -> dict[str, Any]:
        snapshot = self._snapshot(device)
        mode = action.mode
        if mode is None:
            boost = _boost_point(snapshot)
            if boost is None:
                raise CommandRejected(f"{_label(device)}: no writable hot-water boost point")
            return {
                "action": action.value,
                "body": {boost.parameter_id: display_text(DHW_BOOST_ON)},
                "parameter_id": boost.parameter_id,
                "point": _BOOST_POINT.quantity,
            }
        offset = snapshot.points.find(_MODE_POINT)
        if offset is None or offset.value is None:
            raise CommandRejected(f"{_label(device)}: no writable heating offset point")
        baseline = self._baseline(device, offset, remember=True)
        steps = _steps(offset, mode)
        found = _mode_shown(offset, baseline, offset.value)
        return {
            "action": action.value,
            "body": {offset.parameter_id: display_text(baseline + steps)},
            "parameter_id": offset.parameter_id,
            "point": _MODE_POINT.quantity,
            "offset_k": mode.setpoint_offset_k,
            "offset_steps": steps,
            "baseline": baseline,
            FOUND_MODE: found.value if found is not None else None,
        }

    def validate_command(
        self, action: GenericAction, payload: Mapping[str, Any], device: DeviceRef
    ) -> ValidationResult:
        body = payload.get("body")
        if not isinstance(body, Mapping) or len(body) != 1:
            return ValidationResult(False, "payload body must hold exactly one point")
        ((parameter_id, raw_value),) = body.items()
        spec = _MODE_POINT if action.mode is not None else _BOOST_POINT
        expected = self._snapshot(device).points.find(spec)
        if expected is None:
            return ValidationResult(False, f"the device has no writable {spec.quantity} point")
        if parameter_id != expected.parameter_id:
            return ValidationResult(
                False,
                f"point {parameter_id} does not carry {action.value} "
                f"(the {spec.quantity} point is {expected.parameter_id})",
            )
        value = _parse(raw_value)
        if value is None:
            return ValidationResult(
                False, f"point {parameter_id}: value must be a number as a string"
            )
        problem = expected.check(value)
        return ValidationResult(problem is None, problem)

    def send_command(
        self, action: GenericAction, payload: Mapping[str, Any], device: DeviceRef
    ) -> CommandResult:
        body = payload.get("body")
        if not isinstance(body, Mapping) or not body:
            raise CommandRejected(f"{_label(device)}: {action.value} payload lacks a body")
        _, device_id = _ids(device)
        client = self._client(device)
        state = self._connection_state(device, client, device_id)
        if state != CONNECTED:
            raise DeviceOffline(f"{_label(device)}: connectionState {state!s}, nothing written")
        try:
            answer = client.patch_points(device_id, {str(k): str(v) for k, v in body.items()})
        finally:
            with self._lock:
                self._cache.pop(_cache_key(device), None)
        return CommandResult(
            accepted_at=self._clock.now(),
            manufacturer_reference=None,
            response={str(k): answer[k] for k in body if isinstance(answer.get(k), str)},
        )

    def get_device_state(self, device: DeviceRef) -> DeviceState:
        _, device_id = _ids(device)
        client = self._client(device)
        info = client.device(device_id)
        if info.get("connectionState") != CONNECTED:
            with self._lock:  # a kept read says connected: this newer one wins
                self._cache.pop(_cache_key(device), None)
            return DeviceState(device=device, observed_at=self._clock.now(), online=False)
        snapshot = self._store(device, info, client.points(device_id))
        points = snapshot.points
        mode: Mode | None = None
        offset_k: float | None = None
        offset = points.find(_MODE_POINT)
        baseline = self._stored_baseline(device, offset) if offset is not None else None
        if offset is not None and offset.value is not None and baseline is not None:
            offset_k = (offset.value - baseline) / OFFSET_STEPS_PER_ROOM_K
            mode = _mode_shown(offset, baseline, offset.value)
        return DeviceState(
            device=device,
            observed_at=self._clock.now(),
            online=True,
            mode=mode,
            setpoint_offset_k=offset_k,
            room_setpoint_c=points.read(ROOM_SETPOINT),
            indoor_temp_c=points.read(INDOOR_TEMPERATURE),
            outdoor_temp_c=points.read(OUTDOOR_TEMPERATURE),
            supply_temp_c=points.read(SUPPLY_TEMPERATURE),
            dhw_temp_c=points.read(DHW_TEMPERATURE),
            power_kw=points.read(POWER),
            changed_by_user=None,  # myUplink does not expose who changed a point (reference §2.3)
        )

    def forget_baseline(self, device: DeviceRef) -> None:
        """Re-learn the household's offset from the device at the next command."""
        self._baselines.forget(_cache_key(device) + "|")

    # -- helpers --------------------------------------------------------------------------

    def _client(self, device: DeviceRef) -> MyUplinkClient:
        with self._lock:
            client = self._clients.get(device.account_id)
            if client is None:
                client = MyUplinkClient(
                    device.account_id,
                    self._credentials,
                    self._clock,
                    http=self._http,
                    base_url=self._base_url,
                    token_url=self._token_url,
                )
                self._clients[device.account_id] = client
            return client

    def _connection_state(self, device: DeviceRef, client: MyUplinkClient, device_id: str) -> Any:
        with self._lock:
            cached = self._cache.get(_cache_key(device))
        if cached is not None and self._clock.now() - cached[0] <= CONNECTION_STATE_MAX_AGE:
            return cached[1].info.get("connectionState")
        return client.device(device_id).get("connectionState")

    def _snapshot(self, device: DeviceRef) -> _Snapshot:
        now = self._clock.now()
        with self._lock:
            cached = self._cache.get(_cache_key(device))
        if cached is not None and now - cached[0] < self._cache_max_age:
            return cached[1]
        _, device_id = _ids(device)
        client = self._client(device)
        return self._store(device, client.device(device_id), client.points(device_id))

    def _store(
        self, device: DeviceRef, info: Mapping[str, Any], points: list[dict[str, Any]]
    ) -> _Snapshot:
        product = info.get("product")
        name = product.get("name") if isinstance(product, Mapping) else None
        snapshot = _Snapshot(
            info, PointSet(points, family_of(name if isinstance(name, str) else ""))
        )
        with self._lock:
            self._cache[_cache_key(device)] = (self._clock.now(), snapshot)
        return snapshot

    def _stored_baseline(self, device: DeviceRef, point: Point) -> float | None:
        stored = self._baselines.get(
            f"{_cache_key(device)}|{point.parameter_id}", epoch=device.baseline_epoch
        )
        return stored.get(point.parameter_id) if stored is not None else None

    def _baseline(self, device: DeviceRef, point: Point, *, remember: bool) -> float:
        """The stored baseline, else the point's current value (stored if ``remember``)."""
        stored = self._stored_baseline(device, point)
        if stored is not None:
            return stored
        if point.value is None:
            raise CommandRejected(f"{_label(device)}: point {point.parameter_id} has no value")
        if remember:  # another instance may have learnt it first: its value stands
            standing = self._baselines.put(
                f"{_cache_key(device)}|{point.parameter_id}",
                {point.parameter_id: point.value},
                epoch=device.baseline_epoch,
            )
            return standing.get(point.parameter_id, point.value)
        return point.value


# -- pure helpers -----------------------------------------------------------------------------


def _ids(device: DeviceRef) -> tuple[str, str]:
    parts = device.external_id.split("/")
    if len(parts) != 2 or not all(parts):
        raise UnknownDevice(f"myUplink external id {device.external_id!r} is not systemId/deviceId")
    return parts[0], parts[1]


def _cache_key(device: DeviceRef) -> str:
    return f"{device.account_id}/{device.external_id}"


def _label(device: DeviceRef) -> str:
    return f"myUplink device {device.external_id}"


def _boost_point(snapshot: _Snapshot) -> Point | None:
    if snapshot.feature("boostHotWater") is False:
        return None
    return snapshot.points.find(_BOOST_POINT)


def _mode_shown(offset: Point, baseline: float, value: float) -> Mode | None:
    """Which of our modes the offset point's ``value`` is (None: a setting none of them makes);
    the translation and :meth:`NibeMyUplinkAdapter.get_device_state` judge alike."""
    return next((m for m in Mode if math.isclose(baseline + _steps(offset, m), value)), None)


def _steps(point: Point, mode: Mode) -> float:
    """The offset change for ``mode``, on the point's step (half away from zero)."""
    step = point.step_value or 1.0
    delta = mode.setpoint_offset_k * OFFSET_STEPS_PER_ROOM_K
    return math.copysign(math.floor(abs(delta) / step + 0.5), delta) * step


def _offset_range_k(point: Point, baseline: float) -> tuple[float, float]:
    low, high = point.min_value, point.max_value
    return (
        (low - baseline) / OFFSET_STEPS_PER_ROOM_K if low is not None else -math.inf,
        (high - baseline) / OFFSET_STEPS_PER_ROOM_K if high is not None else math.inf,
    )


def _parse(value: Any) -> float | None:
    if not isinstance(value, str):
        return None
    try:
        return float(value)
    except ValueError:
        return None
