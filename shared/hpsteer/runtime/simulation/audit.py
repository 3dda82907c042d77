"""After a run: every command's history checked, and what reached the manufacturers counted.

The figures the fault campaigns judge the command path by (issue 6's invariants, read from the
store and from the manufacturers' side, never from the code's own counters):

- **lost**: a command whose slot began before the run's end and that is still not terminal after
  the settling time, a failed command without its published alert, or a mode change of a
  current plan due before the run's end that never became a command;
- **forked**: a history whose events are not numbered 1..n, that is not a legal path through the
  state machine, or whose fold is not the stored command;
- **duplicate side effects**: one attempt of one command reaching the manufacturer more than once
  (:class:`CountingGateway` notes each call with the command and attempt the dispatcher bound).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from hpsteer.adapters.gateway import ManufacturerGateway
from hpsteer.adapters.protocol import AdapterContext, CommandResult, DeviceRef
from hpsteer.domain.actions import GenericAction
from hpsteer.domain.commands import Command, CommandEvent, CommandState, fold
from hpsteer.domain.instants import instant_or_none
from hpsteer.errors import IllegalTransition
from hpsteer.observability.logging import bound_ids
from hpsteer.ports.store import DocumentStore, every_page
from hpsteer.runtime.simulation.record import FUNNEL_STAGES
from hpsteer.services.alerts import alert_path
from hpsteer.services.command_log import events_of

__all__ = ["CommandAudit", "CountingGateway", "audit_commands"]

_STAGE_FIELDS = {
    "sent": "sent_at",
    "acknowledged": "acknowledged_at",
    "verified": "verified_at",
    "completed": "completed_at",
    "failed": "failed_at",
    "superseded": "superseded_at",
}


class CountingGateway(ManufacturerGateway):
    """The real gateway; each command call is noted with the command and attempt it is for."""

    def __init__(self, context: AdapterContext) -> None:
        super().__init__(context)
        self.calls: Counter[tuple[str, str, int]] = Counter()

    def send(self, device: DeviceRef, action: GenericAction, payload: Any) -> CommandResult:
        ids = bound_ids()
        key = (str(ids.get("device_id")), str(ids.get("command_id")), int(ids.get("attempt", 0)))
        self.calls[key] += 1
        return super().send(device, action, payload)

    def duplicate_side_effects(self) -> int:
        return sum(n - 1 for n in self.calls.values() if n > 1)


@dataclass
class CommandAudit:
    by_state: Counter[str] = field(default_factory=Counter)
    funnel: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    lost: list[str] = field(default_factory=list)
    forked: list[str] = field(default_factory=list)
    remediations: list[tuple[str, datetime]] = field(default_factory=list)
    """(device id, created at) of every remediation (reconcile's ``remedy-…`` commands)."""
    commands: int = 0
    listed: list[tuple[str, str, str, str]] = field(default_factory=list)
    """(device id, command id, manufacturer, final state) of every command."""


def _all_commands(store: DocumentStore) -> Iterator[tuple[Command, list[CommandEvent]]]:
    """Every command with the history its document holds."""
    pages = every_page(lambda cursor: store.collection_group("commands", limit=500, cursor=cursor))
    for document in pages:
        yield Command.parse(document.data), events_of(document.data)


def _history_problem(stored: Command, events: list[CommandEvent]) -> str | None:
    name = f"{stored.device_id}/{stored.command_id}"
    seqs = [e.seq for e in events]
    if seqs != list(range(1, len(events) + 1)):
        return f"{name}: events numbered {seqs}"
    try:
        folded = fold(events)
    except IllegalTransition as err:
        return f"{name}: not a legal path: {err}"
    if folded != stored:
        return f"{name}: the stored command is not its history's fold"
    return None


def _unreleased(store: DocumentStore, end_at: datetime) -> Iterator[str]:
    """Mode changes of current plans due before ``end_at`` still pending in their outbox."""
    devices = every_page(lambda cursor: store.query("devices", limit=300, cursor=cursor))
    for device in devices:
        plan_id = device.data.get("current_plan_id")
        if not plan_id:
            continue
        plan = store.get(f"{device.path}/plans/{plan_id}")
        for entry in (plan.data.get("outbox") or []) if plan else []:
            at = instant_or_none(entry.get("at"))
            if entry.get("status") == "pending" and at is not None and at < end_at:
                yield f"{device.path}: plan {plan_id} change at {at.isoformat()} never released"


def audit_commands(store: DocumentStore, end_at: datetime) -> CommandAudit:
    """Every command's final state, stages and history; lost and forked ones named."""
    audit = CommandAudit()
    for command, events in _all_commands(store):
        audit.commands += 1
        audit.by_state[command.state.value] += 1
        audit.listed.append(
            (command.device_id, command.command_id, command.manufacturer, command.state.value)
        )
        stages = audit.funnel[command.manufacturer]
        stages["created"] += 1
        for stage in FUNNEL_STAGES[1:]:
            if getattr(command, _STAGE_FIELDS[stage]) is not None:
                stages[stage] += 1
        if command.command_id.startswith("remedy-"):
            audit.remediations.append((command.device_id, command.created_at))
        name = f"{command.device_id}/{command.command_id}"
        problem = _history_problem(command, events)
        if problem is not None:
            audit.forked.append(problem)
        slot = command.slot_start_at or command.created_at
        if not command.state.is_terminal and slot < end_at:
            audit.lost.append(f"{name}: still {command.state.value}")
        if command.state is CommandState.FAILED:
            alert = store.get(
                alert_path(f"command-failed-{command.device_id}-{command.command_id}")
            )
            if alert is None or alert.data.get("published") is not True:
                audit.lost.append(f"{name}: failed without a published alert")
    audit.lost.extend(_unreleased(store, end_at))
    return audit
