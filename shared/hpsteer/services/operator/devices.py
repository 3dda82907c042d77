"""Devices as an operator manages them: register, read, list, change, steer on and off, delete.

**Register** (:func:`register_device`) is idempotent on (manufacturer, manufacturer's device
id): ``device_keys/{manufacturer}~{hash of the external id}`` names the device that holds the
pair, and is written in the transaction that writes the device, so two registrations of the same
heat pump cannot both win. Registering again with the same settings (account, area, coordinates,
building, comfort, tariff; and the device id, when given) answers the stored device
(``created=False``); different settings conflict. Devices registered before the key existed
(the simulator's) are found by a query on the pair. A deleted device is registered afresh under
its id, its revision going on, its command history kept. The account must be one whose
credentials hpsteer holds (:func:`hpsteer.adapters.credentials.account_known`, the one
place that decides it, next to where the credentials are kept). A ``tariff_id`` must name a tariff
file hpsteer has (:mod:`hpsteer.tariffs`) meant for the device's price area
(:func:`require_tariff`, also for a change and for every row of an import); the tariff module is
imported only when a request names a tariff.

**Changes** (:func:`update_device`, :func:`set_steering`, :func:`delete_device`) are each one
transaction: read the device, decide, write the changed fields with ``revision`` + 1,
``updated_at`` and ``updated_by``, and create the audit event ``device-{id}-r{revision}`` (before
and after). A request that changes nothing writes nothing and is not audited, so a retried
request never counts twice.

- Disabling steering records the hand-back it owes (``hand_back``) with the change, then
  :func:`~hpsteer.services.operator.hand_back.ensure_hand_back` supersedes what is owed and
  sends one ``set_mode_mid``. Disabling again finds steering off and only makes sure of that same
  hand-back (a crash in between is finished by the retry).
- Enabling supersedes a hand-back not sent yet and asks for a re-plan (every time: a re-plan is
  harmless and a retry after a crash must not lose it).
- Changing the comfort band or the tariff asks for a re-plan when the device is steered.
- Deleting hands the device back first (the same hand-back, when steering was on) and keeps the
  document as a tombstone (``deleted_at``, steering off): its commands' history stays readable
  under it and the hand-back can still reach the heat pump. Deleted devices are absent from
  reads and lists; deleting again answers the same tombstone.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from hpsteer.adapters.credentials import account_known
from hpsteer.domain.audit import AuditEvent, device_audit_id
from hpsteer.domain.devices import Device
from hpsteer.domain.hand_back import hand_back_command_id
from hpsteer.domain.operator_requests import (
    DeviceListQuery,
    DeviceRegistration,
    DeviceUpdate,
)
from hpsteer.domain.operator_views import DeletedDevice, DevicesPage, DeviceView
from hpsteer.domain.roles import Operation
from hpsteer.errors import InvalidInput
from hpsteer.ports.store import Filter, Transaction
from hpsteer.runtime.bootstrap import Dependencies
from hpsteer.services.operator.audit import Actor, export_audit, stage_audit
from hpsteer.services.operator.errors import Conflict, Refused, UnknownTarget
from hpsteer.services.operator.hand_back import ensure_hand_back, supersede_unsent
from hpsteer.services.operator.replan import publish_replan
from hpsteer.services.operator.views import UnreadableDocument, device_view, is_deleted
from hpsteer.services.paths import device_path

__all__ = [
    "DEVICE_KEYS",
    "Registered",
    "delete_device",
    "derived_device_id",
    "device_key_path",
    "get_device",
    "list_devices",
    "register_device",
    "require_account",
    "require_tariff",
    "set_steering",
    "store_registration",
    "update_device",
]

_log = logging.getLogger(__name__)

DEVICE_KEYS = "device_keys"


def _digest(text: str, length: int) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def device_key_path(manufacturer: str, external_id: str) -> str:
    return f"{DEVICE_KEYS}/{manufacturer}~{_digest(external_id, 32)}"


def derived_device_id(manufacturer: str, external_id: str) -> str:
    """The id of a device registered without one: stable for its (manufacturer, external id)."""
    return f"{manufacturer}-{_digest(external_id, 16)}"


@dataclass(frozen=True, slots=True)
class Registered:
    device: DeviceView
    created: bool
    """False: the same registration was stored before (the answer is 200, not 201)."""


def _settings_of(data: Mapping[str, Any]) -> dict[str, Any]:
    """What a registration must repeat to be "the same": comparable across writers."""
    location = data.get("location") or {}
    return {
        "manufacturer": data.get("manufacturer"),
        "external_id": data.get("external_id"),
        "account_id": data.get("account_id"),
        "price_area": data.get("price_area"),
        "latitude": location.get("latitude"),
        "longitude": location.get("longitude"),
        "comfort": dict(data.get("comfort") or {}),
        "thermal": dict(data.get("thermal") or {}),
        "tariff_id": data.get("tariff_id"),
    }


def _audit_event(
    actor: Actor,
    operation: Operation,
    device_id: str,
    revision: int,
    at: datetime,
    before: DeviceView | None,
    after: DeviceView | None,
    context: Mapping[str, Any] | None = None,
) -> AuditEvent:
    return AuditEvent(
        audit_id=device_audit_id(device_id, revision),
        occurred_at=at,
        actor=actor.email,
        actor_role=actor.role,
        operation=operation,
        target_type="device",
        target_id=device_id,
        before=None if before is None else before.model_dump(mode="json"),
        after=None if after is None else after.model_dump(mode="json"),
        context=dict(context or {}),
    )


def _legacy_owner(deps: Dependencies, manufacturer: str, external_id: str) -> str | None:
    """A live device of this pair written without a key document (before the API)."""
    page = deps.store.query(
        "devices",
        [Filter("manufacturer", "==", manufacturer), Filter("external_id", "==", external_id)],
        limit=5,
    )
    for document in page.documents:
        if not is_deleted(document.data):
            return document.id
    return None


def require_account(deps: Dependencies, manufacturer: str, account_id: str) -> None:
    """Refuse (422, ``account_id``) an account whose credentials hpsteer does not hold."""
    if not account_known(deps.store, manufacturer, account_id):
        raise Refused(
            f"hpsteer holds no credentials for {manufacturer} account {account_id!r}: "
            "onboard the account first",
            code="unknown_account",
            field="account_id",
        )


def require_tariff(tariff_id: str | None, price_area: str | None = None) -> None:
    """Refuse (422, ``tariff_id``) a tariff hpsteer has no file for, one that cannot be read, or,
    given ``price_area``, one meant for other price areas. ``None`` (no tariff) passes."""
    if tariff_id is None:
        return
    from hpsteer.tariffs import TariffError, UnknownTariff, available_tariffs, cached_tariff

    try:
        tariff = cached_tariff(tariff_id)
    except UnknownTariff:
        raise Refused(
            f"no tariff {tariff_id!r}; known: {', '.join(available_tariffs())}",
            code="unknown_tariff",
            field="tariff_id",
        ) from None
    except TariffError as err:
        _log.error("tariff %s cannot be read: %s", tariff_id, err)
        raise Refused(
            f"tariff {tariff_id!r} cannot be used: {str(err).splitlines()[0]}",
            code="unusable_tariff",
            field="tariff_id",
        ) from None
    if price_area is not None and price_area not in tariff.price_areas:
        raise Refused(
            f"tariff {tariff_id!r} is for price area {', '.join(tariff.price_areas)}, "
            f"not {price_area}",
            code="tariff_area_mismatch",
            field="tariff_id",
        )


def register_device(
    deps: Dependencies,
    actor: Actor,
    registration: DeviceRegistration,
    *,
    context: Mapping[str, Any] | None = None,
) -> Registered:
    """Register a device, idempotently (module docstring)."""
    require_account(deps, registration.manufacturer, registration.account_id)
    registered, events = store_registration(deps, actor, registration, context=context)
    export_audit(deps, events)
    return registered


def store_registration(
    deps: Dependencies,
    actor: Actor,
    registration: DeviceRegistration,
    *,
    context: Mapping[str, Any] | None = None,
) -> tuple[Registered, list[AuditEvent]]:
    """:func:`register_device` for a caller that checked the account and exports the audit
    events itself (an import appends all its rows' events at once)."""
    require_tariff(registration.tariff_id, registration.price_area.value)
    manufacturer, external_id = registration.manufacturer, registration.external_id
    device_id = registration.device_id or derived_device_id(manufacturer, external_id)
    key_path = device_key_path(manufacturer, external_id)
    legacy = None if deps.store.get(key_path) else _legacy_owner(deps, manufacturer, external_id)
    now = deps.clock.now()
    device = Device(
        device_id=device_id,
        manufacturer=manufacturer,
        external_id=external_id,
        account_id=registration.account_id,
        price_area=registration.price_area,
        location=registration.location.location(device_id),
        comfort=registration.comfort.band(),
        thermal=registration.thermal_parameters(),
        steering_enabled=registration.steering_enabled,
        registered_at=now,
    )
    wanted = _settings_of({**device.to_document(), "tariff_id": registration.tariff_id})
    staged: list[AuditEvent] = []

    def run(tx: Transaction) -> Registered:
        staged.clear()
        key = tx.get(key_path)
        owner = str(key.data["device_id"]) if key is not None else legacy
        owned = tx.get(device_path(owner)) if owner is not None else None
        if owner is not None and owned is not None and not is_deleted(owned.data):
            same_id = registration.device_id in (None, owner)
            if same_id and _settings_of(owned.data) == wanted:
                return Registered(device_view(owner, owned.data), created=False)
            raise Conflict(
                f"{manufacturer} device {external_id!r} is registered as {owner} with other "
                "settings: change it through the device, or delete it first",
                code="registration_conflict",
            )
        existing = owned if owner == device_id else tx.get(device_path(device_id))
        if existing is not None and not is_deleted(existing.data):
            raise Conflict(
                f"device id {device_id} is taken by another heat pump",
                code="device_id_taken",
                field="device_id",
            )
        revision = int(existing.data.get("revision") or 0) + 1 if existing is not None else 1
        document = {
            **device.to_document(),
            "tariff_id": registration.tariff_id,
            "revision": revision,
            "updated_at": now,
            "updated_by": actor.email,
            "registered_by": actor.email,
        }
        view = device_view(device_id, document)
        event = _audit_event(
            actor, Operation.REGISTER_DEVICE, device_id, revision, now, None, view, context
        )
        tx.set(
            key_path,
            {"manufacturer": manufacturer, "external_id": external_id, "device_id": device_id},
        )
        tx.set(device_path(device_id), document)
        stage_audit(tx, event)
        staged.append(event)
        return Registered(view, created=True)

    registered = deps.store.run_transaction(run)
    if registered.created:
        _log.info(
            "device %s registered by %s", device_id, actor.email, extra={"device_id": device_id}
        )
    return registered, list(staged)


def get_device(deps: Dependencies, device_id: str) -> DeviceView:
    snapshot = deps.store.get(device_path(device_id))
    if snapshot is None or is_deleted(snapshot.data):
        raise UnknownTarget(f"no device {device_id}", code="unknown_device")
    return device_view(device_id, snapshot.data)


def list_devices(deps: Dependencies, query: DeviceListQuery) -> DevicesPage:
    """One page of devices in id order, filtered by area, manufacturer and steering; deleted and
    unreadable devices are left out, so a page may hold fewer than ``page_size``."""
    filters = []
    if query.price_area is not None:
        filters.append(Filter("price_area", "==", query.price_area.value))
    if query.manufacturer is not None:
        filters.append(Filter("manufacturer", "==", query.manufacturer))
    if query.steering_enabled is not None:
        filters.append(Filter("steering_enabled", "==", query.steering_enabled))
    try:
        page = deps.store.query("devices", filters, limit=query.page_size, cursor=query.page_token)
    except InvalidInput as err:
        raise Refused(str(err), code="invalid_page_token", field="page_token") from None
    views = []
    for document in page.documents:
        if is_deleted(document.data):
            continue
        try:
            views.append(device_view(document.id, document.data))
        except UnreadableDocument as err:
            _log.error("device left out of the list: %s", err)
    return DevicesPage(devices=views, next_page_token=page.next_cursor)


Decide = Callable[[Mapping[str, Any]], dict[str, Any] | None]
"""From the stored device, the fields to change (None: nothing to change)."""


@dataclass(frozen=True, slots=True)
class _Changed:
    view: DeviceView
    data: dict[str, Any]
    """The device after the call (as stored)."""
    event: AuditEvent | None
    """None when nothing changed."""


def _change(
    deps: Dependencies, actor: Actor, device_id: str, operation: Operation, decide: Decide
) -> _Changed:
    now = deps.clock.now()
    path = device_path(device_id)

    def run(tx: Transaction) -> _Changed:
        snapshot = tx.get(path)
        if snapshot is None or is_deleted(snapshot.data):
            raise UnknownTarget(f"no device {device_id}", code="unknown_device")
        data = snapshot.data
        changes = decide(data)
        if not changes:
            return _Changed(device_view(device_id, data), dict(data), None)
        revision = int(data.get("revision") or 0) + 1
        changes = {**changes, "revision": revision, "updated_at": now, "updated_by": actor.email}
        after = {**data, **changes}
        view = device_view(device_id, after)
        event = _audit_event(
            actor, operation, device_id, revision, now, device_view(device_id, data), view
        )
        tx.update(path, changes)
        stage_audit(tx, event)
        return _Changed(view, after, event)

    changed = deps.store.run_transaction(run)
    if changed.event is not None:
        export_audit(deps, [changed.event])
    return changed


def update_device(
    deps: Dependencies, actor: Actor, device_id: str, update: DeviceUpdate
) -> DeviceView:
    """Change comfort band and/or tariff; either, changed on a steered device, re-plans it (the
    planner plans on the band and on the tariff's price)."""
    new_tariff = "tariff_id" in update.model_fields_set
    if new_tariff:
        require_tariff(update.tariff_id)  # the file, before the transaction; the area inside

    def decide(data: Mapping[str, Any]) -> dict[str, Any] | None:
        if new_tariff:
            area = data.get("price_area")
            require_tariff(update.tariff_id, area if isinstance(area, str) else None)
        changes: dict[str, Any] = {}
        if update.comfort is not None:
            band = update.comfort.band().model_dump(mode="json")
            if dict(data.get("comfort") or {}) != band:
                changes["comfort"] = band
        if new_tariff and data.get("tariff_id") != update.tariff_id:
            changes["tariff_id"] = update.tariff_id
        return changes or None

    changed = _change(deps, actor, device_id, Operation.UPDATE_DEVICE, decide)
    event = changed.event
    if event is not None and event.before is not None and event.after is not None:
        moved = [
            field
            for field in ("comfort", "tariff_id")
            if event.before.get(field) != event.after.get(field)
        ]
        if moved and changed.view.steering_enabled:
            what = " and ".join("tariff" if f == "tariff_id" else f for f in moved)
            publish_replan(deps, f"{what} changed by {actor.email}", device_id=device_id)
    return changed.view


def set_steering(deps: Dependencies, actor: Actor, device_id: str, enabled: bool) -> DeviceView:
    """Switch steering on (supersede an unsent hand-back, re-plan) or off (hand back)."""
    now = deps.clock.now()

    def decide(data: Mapping[str, Any]) -> dict[str, Any] | None:
        if (data.get("steering_enabled") is True) == enabled:
            return None
        changes: dict[str, Any] = {"steering_enabled": enabled}
        if not enabled:
            revision = int(data.get("revision") or 0) + 1
            changes["hand_back"] = {
                "command_id": hand_back_command_id(revision),
                "requested_at": now,
                "requested_by": actor.email,
            }
        return changes

    operation = Operation.ENABLE_STEERING if enabled else Operation.DISABLE_STEERING
    changed = _change(deps, actor, device_id, operation, decide)
    if enabled:
        supersede_unsent(
            deps,
            device_id,
            keep=None,
            steering_enabled=True,
            reason="steering_enabled",
            hand_backs_only=True,
        )
        publish_replan(deps, f"steering enabled by {actor.email}", device_id=device_id)
    else:
        ensure_hand_back(deps, device_id, changed.data)
    return changed.view


def delete_device(deps: Dependencies, actor: Actor, device_id: str) -> DeletedDevice:
    """Hand the device back (when it was steered) and keep it as a tombstone (module
    docstring); deleting a deleted device answers the same tombstone."""
    now = deps.clock.now()
    path = device_path(device_id)
    staged: list[AuditEvent] = []

    def run(tx: Transaction) -> dict[str, Any]:
        staged.clear()
        snapshot = tx.get(path)
        if snapshot is None:
            raise UnknownTarget(f"no device {device_id}", code="unknown_device")
        data = snapshot.data
        if is_deleted(data):
            return dict(data)
        revision = int(data.get("revision") or 0) + 1
        changes: dict[str, Any] = {
            "steering_enabled": False,
            "deleted_at": now,
            "deleted_by": actor.email,
            "revision": revision,
            "updated_at": now,
            "updated_by": actor.email,
        }
        if data.get("steering_enabled") is True:
            changes["hand_back"] = {
                "command_id": hand_back_command_id(revision),
                "requested_at": now,
                "requested_by": actor.email,
            }
        event = _audit_event(
            actor,
            Operation.DELETE_DEVICE,
            device_id,
            revision,
            now,
            device_view(device_id, data),
            None,
        )
        tx.update(path, changes)
        stage_audit(tx, event)
        staged.append(event)
        return {**data, **changes}

    data = deps.store.run_transaction(run)
    export_audit(deps, staged)
    hand_back = ensure_hand_back(deps, device_id, data)
    deleted_at = data["deleted_at"]
    return DeletedDevice(
        device_id=device_id,
        deleted_at=deleted_at,
        hand_back_command_id=hand_back.command.command_id if hand_back else None,
    )
