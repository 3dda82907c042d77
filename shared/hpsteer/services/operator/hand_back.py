"""Stop steering a device: supersede what is still owed, and hand it back with one command.

When steering stops (disabled, or the device deleted), the change itself records on the device
which hand-back it owes: ``hand_back: {command_id, requested_at, requested_by}``, in the same
transaction that turns steering off. :func:`ensure_hand_back` then makes it so, every step
idempotent, so a caller that retries after a crash completes what the crash left:

1. the command ``devices/{id}/commands/handback-r{revision}`` (``set_mode_mid``, no plan, no
   ``valid_until``) through :func:`~hpsteer.services.command_log.create_command`: a second call
   finds it and creates nothing;
2. its named Cloud Task on the manufacturer's dispatch queue, due now (ALREADY_EXISTS is success);
3. every other command of the device that has not been sent, or was sent and awaits verification
   (``pending``, ``retrying``, ``acknowledged``), is ``superseded`` and its send task deleted (best
   effort: a task that still runs finds its command superseded and sends nothing); each in a
   transaction that first checks that steering is still off, so a re-enable racing with it keeps
   the new plan's commands. A command already ``sent`` is in flight and is left to dispatch.

Re-enabling supersedes a hand-back that was not sent yet (:func:`supersede_unsent` with the
opposite guard): the device is steered again and mid would fight the next plan.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from hpsteer.domain.commands import Command, CommandEvent, CommandEventType, CommandState
from hpsteer.domain.hand_back import HAND_BACK_ACTION, is_hand_back
from hpsteer.domain.instants import instant_or_none
from hpsteer.errors import IllegalTransition, TaskAlreadyExists, TransientError
from hpsteer.ports.store import Filter, Transaction, every_page
from hpsteer.runtime.bootstrap import Dependencies
from hpsteer.services.command_log import (
    NewEvent,
    append_event_rows,
    create_command,
    record_events,
)
from hpsteer.services.command_tasks import dispatch_queue, dispatch_task
from hpsteer.services.paths import device_path

__all__ = ["HandBack", "ensure_hand_back", "hand_back_task_name", "supersede_unsent"]

_log = logging.getLogger(__name__)

_OWED = [
    CommandState.PENDING.value,
    CommandState.RETRYING.value,
    CommandState.ACKNOWLEDGED.value,
]
_PAGE = 200


class _SteeringChanged(Exception):
    """Steering was switched meanwhile: superseding is no longer this caller's to do."""


@dataclass(frozen=True, slots=True)
class HandBack:
    """What :func:`ensure_hand_back` did: the hand-back command and the commands superseded."""

    command: Command
    superseded: list[str]


def hand_back_task_name(device_id: str, command_id: str) -> str:
    digest = hashlib.sha256(f"{device_id}|{command_id}".encode()).hexdigest()[:32]
    return f"{digest}-handback"


def _created_event(
    device_id: str, manufacturer: str, command_id: str, requested_at: datetime
) -> CommandEvent:
    return CommandEvent(
        command_id=command_id,
        seq=1,
        type=CommandEventType.CREATED,
        at=requested_at,
        detail={
            "device_id": device_id,
            "manufacturer": manufacturer,
            "generic_action": HAND_BACK_ACTION.value,
            "plan_id": None,
            "slot_start_at": requested_at.isoformat(),
            "valid_until": None,
            "task_name": hand_back_task_name(device_id, command_id),
            "correlation_id": f"{command_id}-{device_id}",
        },
    )


def ensure_hand_back(
    deps: Dependencies, device_id: str, device: Mapping[str, Any]
) -> HandBack | None:
    """Carry out the hand-back the device document owes (module docstring); None if it owes
    none (its steering was never on)."""
    owed = device.get("hand_back")
    if not isinstance(owed, Mapping):
        return None
    command_id = str(owed["command_id"])
    requested_at = instant_or_none(owed.get("requested_at")) or deps.clock.now()
    manufacturer = str(device["manufacturer"])
    created = _created_event(device_id, manufacturer, command_id, requested_at)
    command, is_new = create_command(deps.store, created)
    if is_new:
        append_event_rows(
            deps.analytics, command, [created.model_copy(update={"state": command.state})]
        )
    if command.state is CommandState.PENDING and command.task_name:
        with contextlib.suppress(TaskAlreadyExists):
            deps.tasks.create_task(
                dispatch_task(
                    deps.settings,
                    manufacturer,
                    command.task_name,
                    device_id,
                    command_id,
                    max(requested_at, deps.clock.now()),
                )
            )
    superseded = supersede_unsent(
        deps, device_id, keep=command_id, steering_enabled=False, reason="steering_disabled"
    )
    _log.info(
        "device %s handed back with %s (%d commands superseded)",
        device_id,
        command_id,
        len(superseded),
        extra={"device_id": device_id, "command_id": command_id},
    )
    return HandBack(command, superseded)


def supersede_unsent(
    deps: Dependencies,
    device_id: str,
    *,
    keep: str | None,
    steering_enabled: bool,
    reason: str,
    hand_backs_only: bool = False,
) -> list[str]:
    """Supersede the device's owed commands but ``keep``, each only while the device's steering
    is still ``steering_enabled``; return their ids."""
    store = deps.store
    now = deps.clock.now()

    def steering_unchanged(tx: Transaction) -> None:
        device = tx.get(device_path(device_id))
        if device is None or (device.data.get("steering_enabled") is True) != steering_enabled:
            raise _SteeringChanged(device_id)

    owed = list(
        every_page(
            lambda cursor: store.query(
                f"devices/{device_id}/commands",
                [Filter("state", "in", _OWED)],
                limit=_PAGE,
                cursor=cursor,
            )
        )
    )
    superseded: list[str] = []
    for document in owed:
        command = Command.parse(document.data)
        if command.command_id == keep or (hand_backs_only and not is_hand_back(document.id)):
            continue
        try:
            after, events = record_events(
                store,
                device_id,
                command.command_id,
                [
                    NewEvent(
                        CommandEventType.SUPERSEDED,
                        now,
                        command.attempt,
                        detail={"reason": reason, "by": keep or reason},
                    )
                ],
                dedup_key=f"superseded-by/{keep or reason}",
                guard=steering_unchanged,
            )
        except IllegalTransition:
            continue  # it moved on meanwhile (a dispatch sent it): dispatch decides
        except _SteeringChanged:
            break
        if events:
            append_event_rows(deps.analytics, after, events)
            superseded.append(command.command_id)
            if command.task_name and command.state is not CommandState.ACKNOWLEDGED:
                _delete_task(deps, command)
    return superseded


def _delete_task(deps: Dependencies, command: Command) -> None:
    try:
        deps.tasks.delete_task(dispatch_queue(command.manufacturer).name, str(command.task_name))
    except TransientError as err:
        _log.info(
            "task of superseded %s not deleted (it will find it superseded): %s",
            command.command_id,
            err,
        )
