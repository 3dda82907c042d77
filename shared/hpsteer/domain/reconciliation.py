"""Reconciliation, decided: what should happen when a heat pump is not doing what was intended.

:func:`diff` is pure: given what is intended now (the current plan's mode), what the device
shows (fresh telemetry or a read), what reconciliation remembers of the device, and the policy,
it returns the actions; the shell (:mod:`hpsteer.services.reconcile`) applies them. The rules,
first match wins:

1. **Not ours to judge** → ``Skip``: steering off; a household override still in force; no
   current plan; the intended mode changed moments ago (its command and verification are still
   running: the command path owns that window); a remediation still open. These need no look at
   the device (:func:`needs_no_look`), so the shell reads nothing for them.
   Except: a household change the command path's verification already saw during the current
   mode (``household_change_seen_at``) is an ``Override`` at once.
2. **Unreachable** (no answer, or the device reports offline): remembered from the first time;
   past ``unreachable_alert_after`` an alert (once).
3. **In sync** → ``InSync`` (a metric), and an open alert resolves itself.
4. **The household's choice** → ``Override``: the manufacturer says the user changed it; or,
   where it cannot say, the device is at a setting that is none of our modes, or at ``min``/
   ``max`` while we commanded neither recently (``Memory.commanded_modes``: the current and
   previous plans' modes, and the mode of our last accepted command when that is the one seen,
   which the shell looks up only then). Steering pauses until ``pause_until`` and the
   device is re-planned from the user's choice. Never fought.
5. **Drift** (reverted to the household's own setting after a reboot, never applied, applied
   then lost) → one ``Remediate`` at a time, at most ``max_remediations`` in a row; then an alert
   and no more remediations until the device is back in sync.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum

from hpsteer.domain.actions import Mode

__all__ = [
    "Action",
    "AlertKind",
    "InSync",
    "Intended",
    "MarkReachable",
    "MarkUnreachable",
    "Memory",
    "Observed",
    "Override",
    "Policy",
    "RaiseAlert",
    "Remediate",
    "ResolveAlert",
    "Skip",
    "SkipReason",
    "diff",
]


class SkipReason(StrEnum):
    STEERING_DISABLED = "steering_disabled"
    OVERRIDE_IN_FORCE = "override_in_force"
    NO_PLAN = "no_plan"
    COMMAND_IN_FLIGHT = "command_in_flight"
    REMEDIATION_OPEN = "remediation_open"
    GAVE_UP = "gave_up"
    """Drift persists after the allowed remediations: alerted, waiting for a person or sync."""


class AlertKind(StrEnum):
    PERSISTENT_DRIFT = "persistent_drift"
    DEVICE_UNREACHABLE = "device_unreachable"


@dataclass(frozen=True, slots=True)
class Intended:
    """What the current plan wants now, and since when."""

    mode: Mode | None
    since: datetime | None = None
    until: datetime | None = None
    """When the plan's next mode change (or its end) takes over."""
    plan_id: str | None = None


@dataclass(frozen=True, slots=True)
class Observed:
    """What the device shows (None: it could not be read)."""

    online: bool
    mode: Mode | None
    observed_at: datetime
    changed_by_user: bool | None = None


@dataclass(frozen=True, slots=True)
class Memory:
    """What reconciliation keeps per device (``devices/{id}.reconcile``)."""

    steering_enabled: bool = True
    override_until: datetime | None = None
    remediations_in_a_row: int = 0
    open_remediation_until: datetime | None = None
    """A remediation command is in flight until then (its send and verification)."""
    unreachable_since: datetime | None = None
    open_alert: AlertKind | None = None
    commanded_modes: frozenset[Mode] = field(default_factory=frozenset)
    """Modes we commanded the device into: the current plan's so far, and the mode the plan
    before it held the device in (a failed first command of the new plan leaves that one), and
    the mode of our last accepted command when the device shows it (failed commands of several
    plans in a row leave that one)."""
    household_change_seen_at: datetime | None = None
    """When a verification saw the household's own change (not yet acted on), if it did."""
    household_change_mode: Mode | None = None


@dataclass(frozen=True, slots=True)
class Policy:
    max_remediations: int = 3
    unreachable_alert_after: timedelta = timedelta(hours=1)
    command_window: timedelta = timedelta(minutes=20)
    """After the intended mode changes, its command and verification own the device this long."""
    remediation_window: timedelta = timedelta(minutes=20)


@dataclass(frozen=True, slots=True)
class Skip:
    reason: SkipReason


@dataclass(frozen=True, slots=True)
class InSync:
    pass


@dataclass(frozen=True, slots=True)
class MarkUnreachable:
    since: datetime


@dataclass(frozen=True, slots=True)
class MarkReachable:
    pass


@dataclass(frozen=True, slots=True)
class Override:
    observed_mode: Mode | None
    pause_until: datetime


@dataclass(frozen=True, slots=True)
class Remediate:
    mode: Mode
    attempt: int
    """1 for the first remediation of this drift."""
    open_until: datetime


@dataclass(frozen=True, slots=True)
class RaiseAlert:
    kind: AlertKind
    message: str


@dataclass(frozen=True, slots=True)
class ResolveAlert:
    kind: AlertKind


Action = (
    Skip
    | InSync
    | MarkUnreachable
    | MarkReachable
    | Override
    | Remediate
    | RaiseAlert
    | ResolveAlert
)


def _is_override(intended: Mode, observed: Observed, memory: Memory) -> bool:
    """Whether a mismatch is the household's doing (see rule 4)."""
    if observed.changed_by_user is not None:
        return observed.changed_by_user
    if observed.mode is None:
        return True  # a setting none of our modes: only a person puts it there
    if observed.mode is Mode.MID:
        return False  # the household's own setting: what a reboot or a lost command leaves
    return observed.mode not in memory.commanded_modes


def needs_no_look(
    intended: Intended,
    memory: Memory,
    now: datetime,
    *,
    pause_until: datetime,
    policy: Policy = Policy(),
) -> list[Action] | None:
    """The decision when it does not depend on what the device shows (rule 1, and a household
    change already seen); ``None`` when the device must be looked at."""
    if not memory.steering_enabled:
        return [Skip(SkipReason.STEERING_DISABLED)]
    if memory.override_until is not None and now < memory.override_until:
        return [Skip(SkipReason.OVERRIDE_IN_FORCE)]
    if intended.mode is None:
        return [Skip(SkipReason.NO_PLAN)]
    seen = memory.household_change_seen_at
    if seen is not None and (intended.since is None or seen >= intended.since):
        return [Override(memory.household_change_mode, pause_until)]
    if intended.since is not None and now < intended.since + policy.command_window:
        return [Skip(SkipReason.COMMAND_IN_FLIGHT)]
    return None


def diff(
    intended: Intended,
    observed: Observed | None,
    memory: Memory,
    now: datetime,
    *,
    pause_until: datetime,
    policy: Policy = Policy(),
) -> list[Action]:
    """The actions for one device now (see the module docstring for the rules)."""
    decided = needs_no_look(intended, memory, now, pause_until=pause_until, policy=policy)
    if decided is not None:
        return decided
    assert intended.mode is not None  # needs_no_look decided every case without a mode
    if observed is None or not observed.online:
        since = memory.unreachable_since or now
        actions: list[Action] = []
        if memory.unreachable_since is None:
            actions.append(MarkUnreachable(now))
        if (
            now - since >= policy.unreachable_alert_after
            and memory.open_alert is not AlertKind.DEVICE_UNREACHABLE
        ):
            actions.append(
                RaiseAlert(
                    AlertKind.DEVICE_UNREACHABLE,
                    f"unreachable since {since.isoformat()} ({now - since} ago)",
                )
            )
        return actions
    back: list[Action] = [MarkReachable()] if memory.unreachable_since is not None else []
    return back + _judge(intended.mode, observed, memory, now, pause_until, policy)


def _judge(
    intended: Mode,
    observed: Observed,
    memory: Memory,
    now: datetime,
    pause_until: datetime,
    policy: Policy,
) -> list[Action]:
    if observed.mode is intended:
        actions: list[Action] = [InSync()]
        if memory.open_alert is not None:
            actions.append(ResolveAlert(memory.open_alert))
        return actions
    if _is_override(intended, observed, memory):
        return [Override(observed.mode, pause_until)]
    if memory.open_remediation_until is not None and now < memory.open_remediation_until:
        return [Skip(SkipReason.REMEDIATION_OPEN)]
    if memory.remediations_in_a_row >= policy.max_remediations:
        if memory.open_alert is AlertKind.PERSISTENT_DRIFT:
            return [Skip(SkipReason.GAVE_UP)]
        shown = observed.mode.value if observed.mode else "none of our modes"
        return [
            RaiseAlert(
                AlertKind.PERSISTENT_DRIFT,
                f"still in {shown} instead of {intended.value} after "
                f"{memory.remediations_in_a_row} remediations",
            )
        ]
    return [
        Remediate(
            intended,
            memory.remediations_in_a_row + 1,
            now + policy.remediation_window,
        )
    ]
