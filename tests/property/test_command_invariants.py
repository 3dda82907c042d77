"""Every command ends terminal with one lawful history, whatever crashes or repeats on the way.

Issue 6's invariants, proven by a seeded property test. Hypothesis draws a :class:`Scenario`: a
seed (the fleet's homes, the fault dice and the chaos dice all come from it), a chaos profile and
a list of steps. The steps publish plans (outboxes of mode changes at the coming quarter-hours;
a newer plan supersedes the older's unsent commands, except those making a change it makes
again, which it adopts; re-plans that keep some or all of the coming changes make that
common), let simulated time pass (Cloud Scheduler's sweep every 10
minutes), inject faults (manufacturer 5xx, 429 storms, timeouts on writes only or on everything,
accepted-but-not-applied, applied late, gateway offline), let a household change its setting in
the app, arm crashes, redeliver optimize's release, release an older plan late (a concurrent
optimize), replay stale deliveries and sweep once more. Throughout, every delivery of a task may
be repeated at once or replayed later with the same headers (so tasks arrive two or three times
and out of order), a crash may be raised at any ``checkpoint`` of the dispatch and verify
handlers, and another delivery may run *inside* a handler at a checkpoint (two deliveries
interleaved, as two function instances would be). Then everything heals: faults and crashes
stop and time runs on, with a sweep every 10 minutes, until no task is pending (at least three
hours, at most thirty).

Then, for every command in ``collection_group("commands")`` (and every plan, for 7):

1. it is terminal: completed, superseded, or failed with ``alerts/command-failed-{device}-{id}``
   (published);
2. its history never forked: events numbered 1..n without gaps, and ``fold(history)`` is the
   stored command;
3. its history is a legal path of ``TRANSITIONS`` (``fold`` accepts it);
4. no manufacturer received the same (command, attempt) twice, and every call went out after
   that attempt's ``sent`` was stored, to the command's own device (the gateway's ``send`` is
   wrapped; the command and attempt are the ids the dispatcher binds to its log context);
5. the device ends in the intended mode unless that command failed with an alert
   (:func:`standing_command` says which command that is; a home whose household changed its
   setting is left out);
6. retries stayed within the queue's config: each queue attempt (task, retry count) recorded at
   most one ``sent`` and made at most one call, so a task at most ``max_attempts`` of each
   however often Cloud Tasks delivered it; a transient failure ends a command only on the
   queue's last attempt; and a task the queue gave up on did end in a crash (or while another
   delivery held its command) and belongs to a command that is terminal now (the sweep took
   over);

7. each released entry of a plan names a command that makes its change (the plan's own, or an
   older plan's that it adopted because it makes the same change) and that this plan never
   superseded;

and no handler raised on its own (only the injected crashes escape).

The checker is plain functions over stored facts; small tests show it catches a forked history,
an illegal path and the other breaches, and the property test asserts that its runs really met
faults, crashes at every checkpoint, repeats, replays, interleavings, supersessions, failures,
remediations and dropped tasks.

Hand-written rather than a library: the chaos is a subclass of the local fleet's delivery and a
checkpoint of our own; no library knows our handlers. Why a scenario list under ``@given`` rather
than ``hypothesis.stateful``: the invariants are claims about the end, after healing, and a state
machine's ``teardown`` also runs after a failed rule, where its own failure would hide the
rule's. Hypothesis still shrinks the step list.

Replaying: Hypothesis runs derandomized (the same examples on every machine, a fixed number of
them: ``HPSTEER_PROPERTY_EXAMPLES`` raises it for a longer hunt); a failure prints its seed and
the falsifying ``Scenario(...)``, and ``run_scenario(<that scenario>, Exposure())`` replays it.

One fault is held in check on purpose: ``apply_delay`` (5 minutes) stays below the verification
delay (10 minutes), so a late application lands before any later command is verified. A device
that applies an old command after a newer one was verified is out of this layer's sight; issue
7's reconciliation compares the device with its plan. Reboots are left out for the same reason.
"""

from __future__ import annotations

import json
import logging
import os
import random
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, TypeAlias

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hpsteer.adapters.gateway import ManufacturerGateway
from hpsteer.adapters.protocol import CommandResult, DeviceRef
from hpsteer.backends.local.tasks import DispatchedRequest, DispatchResult, FailedTask
from hpsteer.domain.actions import GenericAction, Mode
from hpsteer.domain.commands import (
    Command,
    CommandEvent,
    CommandEventType,
    CommandState,
    fold,
)
from hpsteer.domain.instants import format_instant
from hpsteer.domain.messages import CommandTask
from hpsteer.errors import IllegalTransition, TransientError
from hpsteer.observability.logging import JsonFormatter
from hpsteer.ports.clock import SimulatedClock
from hpsteer.ports.store import DocumentStore
from hpsteer.runtime.local_fleet import LocalFleet
from hpsteer.services.alerts import alert_path
from hpsteer.services.command_log import history, load_command
from hpsteer.services.command_tasks import max_attempts
from hpsteer.services.outbox import release_plan, sweep
from hpsteer.services.outbox_markers import new_release
from hpsteer.services.plans_store import make_current
from hpsteer.sim import MANUFACTURERS
from hpsteer.sim.faults import FaultPlan, FaultSpec

E = CommandEventType
S = CommandState

T0 = datetime(2025, 1, 15, 6, tzinfo=UTC)
HOMES = 6
"""Two homes of each manufacturer (the fleet deals them in turn)."""
QUARTER = timedelta(minutes=15)
PLAN_LIFETIME = timedelta(days=2)
"""A plan's end: past the whole run, so its last change still stands when the checks run."""
APPLY_DELAY = timedelta(minutes=5)
"""Below the verification delay (module docstring)."""
SWEEP_EVERY = timedelta(minutes=10)
HEAL_AT_LEAST = timedelta(hours=3)
"""Long enough for the sweep to find commands a crash stranded (stuck after 60 minutes)."""
HEAL_AT_MOST = timedelta(hours=30)
"""A spent daily budget (Onecta: 200 calls a day) answers 429 with a Retry-After of up to a
day, and the queue waits for it: so may the heal."""
EXAMPLES = int(os.environ.get("HPSTEER_PROPERTY_EXAMPLES", "100"))
"""Fixed for CI; raise it locally for a longer hunt."""
MIN_STEPS = 10
MAX_STEPS = 40


class Crash(Exception):
    """A simulated crash of a handler between two of its steps."""


# -- scenarios ---------------------------------------------------------------------------------

Release = Literal["released", "released_twice", "lost"]
"""How optimize's release of a new plan went: once, twice (a duplicate optimize with the
original outbox), or lost to a crash after the plan was written (the sweep must find it)."""
RELEASES: tuple[Release, ...] = ("released", "released_twice", "lost")

FAULTS: dict[str, Callable[[float], FaultSpec]] = {
    "server_errors": lambda rate: FaultSpec(server_error_rate=rate),
    "rate_limit_storm": lambda rate: FaultSpec(rate_limit_rate=rate, retry_after_s=120),
    "timeouts_on_writes": lambda rate: FaultSpec(
        timeout_rate=rate, wire_faults_on_writes_only=True
    ),
    "timeouts": lambda rate: FaultSpec(timeout_rate=rate),
    "not_applied": lambda rate: FaultSpec(not_applied_rate=rate),
    "applied_late": lambda rate: FaultSpec(applied_late_rate=rate, apply_delay=APPLY_DELAY),
    "gateway_offline": lambda rate: FaultSpec(gateway_offline=True),
}


@dataclass(frozen=True)
class PublishPlan:
    """A new plan for the ``device``-th home: (quarter-hours after the previous change, action)
    per change, the first counted from the quarter before the current one."""

    device: int
    changes: tuple[tuple[int, GenericAction], ...]
    release: Release


@dataclass(frozen=True)
class KeepingReplan:
    """A new plan for the ``device``-th home that makes the current plan's next ``keep``
    changes again, at the same instants (its release adopts their commands), then its own
    ``changes`` (quarter-hours after the previous change, action); ``None``: it makes all the
    current plan's coming changes again and no other (its last change, the standing one, is
    adopted)."""

    device: int
    keep: int
    changes: tuple[tuple[int, GenericAction], ...] | None
    release: Release


@dataclass(frozen=True)
class RedeliverOptimize:
    """Optimize runs again for the current plan: the stored outbox, or the original one."""

    device: int
    original: bool


@dataclass(frozen=True)
class ReleaseOlderPlanLate:
    """A concurrent optimize checked that its (older) plan was current, then a newer plan
    became current, then it released the older plan's original outbox."""

    device: int
    pick: int


@dataclass(frozen=True)
class PassTime:
    minutes: int


@dataclass(frozen=True)
class Sweep:
    pass


@dataclass(frozen=True)
class ManufacturerFault:
    manufacturer: str
    fault: str
    rate: float


@dataclass(frozen=True)
class DeviceFault:
    device: int
    fault: str
    rate: float


@dataclass(frozen=True)
class Heal:
    manufacturer: str


@dataclass(frozen=True)
class HouseholdChange:
    """The household moves the ``device``-th home's lever by ``shift`` steps in the app (odd:
    never onto one of our modes, so verification can tell)."""

    device: int
    shift: int


@dataclass(frozen=True)
class ArmCrash:
    """Crash at ``step`` the ``after + 1``-th time a handler reaches it from now."""

    step: str
    after: int


@dataclass(frozen=True)
class ReplayStale:
    """Deliver one of the stashed earlier deliveries now (out of order, same headers)."""

    pick: int


Step: TypeAlias = (
    PublishPlan
    | KeepingReplan
    | RedeliverOptimize
    | ReleaseOlderPlanLate
    | PassTime
    | Sweep
    | ManufacturerFault
    | DeviceFault
    | Heal
    | HouseholdChange
    | ArmCrash
    | ReplayStale
)


@dataclass(frozen=True)
class Chaos:
    repeat_rate: float
    """Share of deliveries delivered again, once or twice more."""
    replay_share: float
    """Share of those repeats stashed and replayed later rather than at once."""
    crash_rate: float
    """Chance that a handler crashes at a checkpoint."""
    interleave_rate: float
    """Chance that another delivery runs inside a handler at a checkpoint."""
    crash_at_first_reach: bool
    """Crash at every checkpoint the first time a handler reaches it."""


@dataclass(frozen=True)
class Scenario:
    seed: int
    chaos: Chaos
    steps: tuple[Step, ...]


CRASH_STEPS = (
    "checked",
    "prepared",
    "admitted",
    "sent_recorded",
    "send_failed",
    "manufacturer_accepted",
    "acknowledged",
    "verification_scheduled",
    "unknown_outcome_read",
    "unknown_outcome_settled",
    "failed_recorded",
    "state_read",
    "remediation_recorded",
    "override_noted",
)
"""The handlers' checkpoints (the test also crashes at any other it finds them reach)."""

_devices = st.integers(0, HOMES - 1)
_mode_actions = st.sampled_from([a for a in GenericAction if a.mode is not None])
_rates = st.sampled_from([0.4, 1.0])


@st.composite
def _changes(draw: st.DrawFn) -> tuple[tuple[int, GenericAction], ...]:
    first = (draw(st.integers(0, 8)), draw(st.sampled_from(list(GenericAction))))
    middle = draw(
        st.lists(st.tuples(st.integers(1, 8), st.sampled_from(list(GenericAction))), max_size=2)
    )
    last = (draw(st.integers(1, 8)), draw(_mode_actions))  # a plan ends in a mode that stands
    return (first, *middle, last)


_pass_time = st.builds(PassTime, st.integers(1, 40))
_publish = st.builds(PublishPlan, _devices, _changes(), st.sampled_from(RELEASES))
_keeping_replan = st.builds(
    KeepingReplan, _devices, st.integers(1, 3), st.none() | _changes(), st.sampled_from(RELEASES)
)
_manufacturer_fault = st.builds(
    ManufacturerFault, st.sampled_from(MANUFACTURERS), st.sampled_from(sorted(FAULTS)), _rates
)
_WEIGHTED_STEPS: list[st.SearchStrategy[Step]] = [  # repeated entries weigh more
    _pass_time,
    _pass_time,
    _pass_time,
    _pass_time,
    _publish,
    _keeping_replan,  # most re-plans make the plan before's next changes again
    _manufacturer_fault,
    _manufacturer_fault,
    st.builds(DeviceFault, _devices, st.sampled_from(sorted(FAULTS)), _rates),
    st.builds(Heal, st.sampled_from(MANUFACTURERS)),
    st.builds(HouseholdChange, _devices, st.sampled_from([-3, -1, 1, 3])),
    st.builds(HouseholdChange, _devices, st.sampled_from([-3, -1, 1, 3])),
    st.builds(ArmCrash, st.sampled_from(CRASH_STEPS), st.integers(0, 3)),
    st.builds(RedeliverOptimize, _devices, st.booleans()),
    st.builds(ReleaseOlderPlanLate, _devices, st.integers(0, 5)),
    st.builds(ReplayStale, st.integers(0, 50)),
    st.builds(Sweep),
]
_steps: st.SearchStrategy[Step] = st.sampled_from(_WEIGHTED_STEPS).flatmap(lambda step: step)


@st.composite
def _scenario_steps(draw: st.DrawFn) -> tuple[Step, ...]:
    """A plan for every home and maybe a fault per manufacturer first, then the drawn steps."""
    opening: list[Step] = [
        draw(st.builds(PublishPlan, st.just(device), _changes(), st.sampled_from(RELEASES)))
        for device in range(HOMES)
    ]
    for manufacturer in MANUFACTURERS:
        fault = draw(st.none() | st.sampled_from(sorted(FAULTS)))
        if fault is not None:
            opening.append(ManufacturerFault(manufacturer, fault, draw(_rates)))
    return (*opening, *draw(st.lists(_steps, min_size=MIN_STEPS, max_size=MAX_STEPS)))


scenarios = st.builds(
    Scenario,
    seed=st.integers(0, 2**20),
    chaos=st.builds(
        Chaos,
        repeat_rate=st.sampled_from([1.0, 0.5, 0.0]),
        replay_share=st.sampled_from([0.3, 0.6]),
        crash_rate=st.sampled_from([0.0, 0.05, 0.15]),
        interleave_rate=st.sampled_from([0.0, 0.1, 0.4]),
        crash_at_first_reach=st.booleans(),
    ),
    steps=_scenario_steps(),
)


# -- what a run met ----------------------------------------------------------------------------


@dataclass
class Exposure:
    """What the runs exercised, summed over every example (so the test cannot pass idly)."""

    examples: int = 0
    commands: int = 0
    states: Counter[str] = field(default_factory=Counter)
    events: Counter[str] = field(default_factory=Counter)
    crashes: Counter[str] = field(default_factory=Counter)
    steps_reached: Counter[str] = field(default_factory=Counter)
    repeats: int = 0
    replays: int = 0
    interleaved: int = 0
    remediations: int = 0
    found_applied: int = 0
    lost_tasks: int = 0
    superseded_because: Counter[str] = field(default_factory=Counter)
    step_kinds: Counter[str] = field(default_factory=Counter)
    adoptions: int = 0
    """Outbox entries whose change an older plan's command carried (no command created)."""
    adopted_commands: int = 0
    """Commands whose history names a plan that adopted them."""


# -- the rig: deliveries that repeat, come back late, interleave and crash ---------------------


@dataclass(frozen=True)
class Delivering:
    request: DispatchedRequest
    task: CommandTask
    task_name: str
    queue: str
    retry_count: int


@dataclass(frozen=True)
class ManufacturerCall:
    device_id: str
    command_id: str
    attempt: int
    called_device_id: str
    sent_recorded: bool
    """Whether the command's history held a ``sent`` of this attempt when the call went out."""
    task_name: str
    retry_count: int
    """The delivery (task and ``X-CloudTasks-TaskRetryCount``) whose handler made the call."""


Deliver = Callable[[DispatchedRequest], DispatchResult]


def _delivering(request: DispatchedRequest) -> Delivering:
    headers = {k.lower(): v for k, v in request.headers.items()}
    return Delivering(
        request,
        CommandTask.parse_json(request.body),
        headers["x-cloudtasks-taskname"],
        headers["x-cloudtasks-queuename"],
        int(headers["x-cloudtasks-taskretrycount"]),
    )


class DeliveryChaos:
    """Cloud Tasks at its least polite: at-least-once, out of order, with crashing handlers."""

    def __init__(
        self, chaos: Chaos, rng: random.Random, exposure: Exposure, clock: SimulatedClock
    ) -> None:
        self.chaos = chaos
        self.clock = clock
        self.rng = rng
        self.exposure = exposure
        self.stash: list[DispatchedRequest] = []
        self.stack: list[tuple[Delivering, Deliver]] = []
        self.armed: dict[str, int] = {}
        self.reached: set[str] = set()
        self.crashing = True
        self.task_commands: dict[str, tuple[str, str]] = {}
        self.task_queues: dict[str, str] = {}
        self.answers: dict[tuple[str, int, datetime], DispatchResult | None] = {}
        """What the queue got from each (task, retry count, when: a name can come back an hour
        after its task left); None: the handler crashed."""
        self.unexpected_errors: list[str] = []

    def deliver(self, request: DispatchedRequest, inner: Deliver) -> DispatchResult:
        """The queue's delivery, with a stale one before it and repeats after it."""
        if self.stash and self.rng.random() < self.chaos.replay_share / 4:
            self.replay(self.rng.randrange(len(self.stash)), inner)
        delivering = _delivering(request)
        key = (delivering.task_name, delivering.retry_count, self.clock.now())
        self.answers[key] = None
        try:
            self.answers[key] = answer = self.handle(request, inner)
            return answer
        finally:
            if self.rng.random() < self.chaos.repeat_rate:
                for _ in range(self.rng.choice((1, 2))):
                    if self.rng.random() < self.chaos.replay_share:
                        self.stash.append(request)
                    else:
                        self.exposure.repeats += 1
                        self.quietly(request, inner)

    def replay(self, pick: int, inner: Deliver) -> None:
        self.exposure.replays += 1
        self.quietly(self.stash.pop(pick % len(self.stash)), inner)

    def handle(self, request: DispatchedRequest, inner: Deliver) -> DispatchResult:
        delivering = _delivering(request)
        self.task_commands[delivering.task_name] = (
            delivering.task.device_id,
            delivering.task.command_id,
        )
        self.task_queues[delivering.task_name] = delivering.queue
        self.stack.append((delivering, inner))
        try:
            return inner(request)
        except Crash:
            raise
        except Exception as err:  # a handler must never raise on its own: note it, let it fail
            self.unexpected_errors.append(f"{delivering.task_name}: {type(err).__name__}: {err}")
            raise
        finally:
            self.stack.pop()

    def quietly(self, request: DispatchedRequest, inner: Deliver) -> None:
        """A delivery whose answer nobody waits for (the queue took another one's)."""
        try:
            self.handle(request, inner)
        except Exception:  # noqa: BLE001 - a repeat's crash or failure reaches no queue
            return

    def checkpoint(self, step: str) -> None:
        self.exposure.steps_reached[step] += 1
        if not self.crashing:
            return
        if self.chaos.crash_at_first_reach and step not in self.reached:
            self.reached.add(step)
            self._crash(step)
        if step in self.armed:
            if self.armed[step] == 0:
                del self.armed[step]
                self._crash(step)
            self.armed[step] -= 1
        if self.rng.random() < self.chaos.crash_rate:
            self._crash(step)
        if len(self.stack) == 1 and self.rng.random() < self.chaos.interleave_rate:
            self.exposure.interleaved += 1
            delivering, inner = self.stack[-1]
            pool = [delivering.request, *self.stash]
            self.quietly(pool[self.rng.randrange(len(pool))], inner)

    def _crash(self, step: str) -> None:
        self.exposure.crashes[step] += 1
        raise Crash(step)


def bound_log_ids() -> dict[str, Any]:
    """The ids bound with ``log_context`` right now, read as a log line would carry them."""
    record = logging.LogRecord("probe", logging.INFO, __file__, 0, "", (), None)
    ids: dict[str, Any] = json.loads(JsonFormatter().format(record))
    return ids


class RecordingGateway(ManufacturerGateway):
    """The real gateway, noting every command call with the command and attempt the dispatcher
    bound to its log context around the call, and whether that attempt's ``sent`` was stored."""

    store: DocumentStore
    calls: list[ManufacturerCall]

    def send(self, device: DeviceRef, action: GenericAction, payload: Any) -> CommandResult:
        ids = bound_log_ids()
        device_id, command_id, attempt = ids["device_id"], ids["command_id"], ids["attempt"]
        recorded = any(
            e.type is E.SENT and e.attempt == attempt
            for e in history(self.store, device_id, command_id)
        )
        self.calls.append(
            ManufacturerCall(
                device_id,
                command_id,
                attempt,
                device.device_id,
                recorded,
                ids["task"],
                ids["retry"],
            )
        )
        return super().send(device, action, payload)


class ChaoticFleet(LocalFleet):
    chaos: DeliveryChaos | None = None

    def deliver(self, request: DispatchedRequest) -> DispatchResult:
        if self.chaos is None:
            return super().deliver(request)
        return self.chaos.deliver(request, super().deliver)

    def deliver_plainly(self, request: DispatchedRequest) -> DispatchResult:
        return super().deliver(request)


@dataclass
class PlanRecord:
    plan_id: str
    document: dict[str, Any]


@dataclass
class Rig:
    scenario: Scenario
    local: ChaoticFleet
    chaos: DeliveryChaos
    gateway: RecordingGateway
    device_ids: list[str]
    plans: dict[str, list[PlanRecord]] = field(default_factory=dict)
    household_changed: set[str] = field(default_factory=set)

    @classmethod
    def build(cls, scenario: Scenario, exposure: Exposure) -> Rig:
        local = ChaoticFleet.build(
            start=T0, homes=HOMES, seed=scenario.seed, faults=FaultPlan(seed=scenario.seed)
        )
        assert isinstance(local, ChaoticFleet)
        chaos = DeliveryChaos(scenario.chaos, random.Random(scenario.seed), exposure, local.clock)
        gateway = RecordingGateway(local.gateway.context)
        gateway.store, gateway.calls = local.deps.store, []
        local.gateway, local.chaos, local.checkpoint = gateway, chaos, chaos.checkpoint
        return cls(scenario, local, chaos, gateway, local.register_devices())

    @property
    def store(self) -> DocumentStore:
        return self.local.deps.store

    def now(self) -> datetime:
        return self.local.clock.now()


# -- the steps ---------------------------------------------------------------------------------


def _plan_start(rig: Rig) -> datetime:
    """A new plan's start: the quarter before the current one."""
    now = rig.now()
    return now.replace(minute=now.minute - now.minute % 15, second=0, microsecond=0) - QUARTER


def _plan_document(
    rig: Rig,
    device_id: str,
    plan_id: str,
    changes: Sequence[tuple[int, GenericAction]],
    kept: Sequence[tuple[datetime, GenericAction]] = (),
) -> dict[str, Any]:
    """A plan document as optimize writes it: slots (for the verifier's current-plan check)
    and an outbox of its mode changes: the ``kept`` ones (instants from the plan's start on, in
    order), then ``changes`` counted from the last of them (else from the plan's start)."""
    now = rig.now()
    start = _plan_start(rig)
    timed = list(kept)
    at = timed[-1][0] if timed else start
    for gap, action in changes:  # gaps after the first are >= 1: the changes are in order
        at = at + QUARTER * max(gap, 1 if timed else 0)
        timed.append((at, action))
    slots, mode = [], None
    for index, (at, action) in enumerate(timed):
        mode = action.mode or mode  # a hot-water boost keeps the mode
        until = timed[index + 1][0] if index + 1 < len(timed) else at + timedelta(hours=4)
        if mode is not None:
            slots.append(
                {
                    "start_at": format_instant(at),
                    "end_at": format_instant(until),
                    "mode": mode.value,
                }
            )
    outbox = [
        {
            "at": format_instant(at),
            "action": action.value,
            "slot_index": int((at - start) / QUARTER),
            "status": "pending",
        }
        for at, action in timed
    ]
    return {
        "plan_id": plan_id,
        "device_id": device_id,
        "start_at": start,
        "end_at": now + PLAN_LIFETIME,
        "created_at": now,
        "slots": slots,
        "outbox": outbox,
    }


def _mode_runs(document: dict[str, Any]) -> list[tuple[datetime, Mode]]:
    """The plan's runs of one mode, as optimize keeps them on the device (``Plan.mode_runs``):
    what dispatch judges an adopted command by."""
    runs: list[tuple[datetime, Mode]] = []
    for slot in document["slots"]:
        mode = Mode(slot["mode"])
        if not runs or runs[-1][1] is not mode:
            runs.append((datetime.fromisoformat(slot["start_at"]), mode))
    return runs


def _current_plan(rig: Rig, device_id: str) -> tuple[dict[str, Any], dict[str, Any]] | None:
    device = rig.store.get(f"devices/{device_id}")
    assert device is not None
    plan_id = device.data.get("current_plan_id")
    if not isinstance(plan_id, str):
        return None
    plan = rig.store.get(f"devices/{device_id}/plans/{plan_id}")
    assert plan is not None
    return device.data, plan.data


def publish_plan(
    rig: Rig, step: PublishPlan | KeepingReplan, kept: Sequence[tuple[datetime, GenericAction]] = ()
) -> None:
    device_id = rig.device_ids[step.device]
    records = rig.plans.setdefault(device_id, [])
    plan_id = f"plan{len(records) + 1:02d}"
    document = _plan_document(rig, device_id, plan_id, step.changes or (), kept)
    if document["outbox"]:  # written with its release fields, as write_plan does
        document.update(new_release(rig.now()))
    rig.store.set(f"devices/{device_id}/plans/{plan_id}", document)
    records.append(PlanRecord(plan_id, document))
    created = rig.now() + timedelta(microseconds=len(records))  # later plans win ties
    assert make_current(
        rig.store,
        device_id,
        plan_id,
        document["start_at"],
        created,
        _mode_runs(document),
        document["end_at"],
    )
    if step.release == "lost":
        return
    device = rig.store.get(f"devices/{device_id}")
    assert device is not None
    release_plan(rig.local.deps, device_id, device.data, document)
    if step.release == "released_twice":
        release_plan(rig.local.deps, device_id, device.data, document)


def keeping_replan(rig: Rig, step: KeepingReplan) -> None:
    """A re-plan that keeps the current plan's next changes where they are (the weather or the
    prices moved a little): the changes from the new plan's start on, the first ``keep``."""
    found = _current_plan(rig, rig.device_ids[step.device])
    start = _plan_start(rig)
    upcoming = [
        (at, GenericAction(entry["action"]))
        for entry in (found[1]["outbox"] if found is not None else [])
        if (at := datetime.fromisoformat(entry["at"])) >= start
    ]
    if step.changes is None:
        if upcoming:  # (else nothing is coming: no re-plan)
            publish_plan(rig, replace(step, changes=()), upcoming)
        return
    publish_plan(rig, step, upcoming[: step.keep])


def redeliver_optimize(rig: Rig, step: RedeliverOptimize) -> None:
    device_id = rig.device_ids[step.device]
    found = _current_plan(rig, device_id)
    if found is None:
        return
    device, stored = found
    original = next(p.document for p in rig.plans[device_id] if p.plan_id == stored["plan_id"])
    release_plan(rig.local.deps, device_id, device, original if step.original else stored)


def release_older_plan_late(rig: Rig, step: ReleaseOlderPlanLate) -> None:
    device_id = rig.device_ids[step.device]
    records = rig.plans.get(device_id, [])
    if len(records) < 2:
        return
    older = records[step.pick % (len(records) - 1)]
    device = rig.store.get(f"devices/{device_id}")
    assert device is not None
    release_plan(rig.local.deps, device_id, device.data, older.document)


def run_step(rig: Rig, step: Step, exposure: Exposure) -> None:
    exposure.step_kinds[type(step).__name__] += 1
    faults = rig.local.fleet.faults
    match step:
        case PublishPlan():
            publish_plan(rig, step)
        case KeepingReplan():
            keeping_replan(rig, step)
        case RedeliverOptimize():
            redeliver_optimize(rig, step)
        case ReleaseOlderPlanLate():
            release_older_plan_late(rig, step)
        case PassTime(minutes):
            pass_time(rig, timedelta(minutes=minutes))
        case Sweep():
            sweep(rig.local.deps)
        case ManufacturerFault(manufacturer, fault, rate):
            faults.set_manufacturer(manufacturer, FAULTS[fault](rate))
        case DeviceFault(device, fault, rate):
            faults.set_device(rig.device_ids[device], FAULTS[fault](rate))
        case Heal(manufacturer):
            faults.set_manufacturer(manufacturer, FaultSpec())
            for home in rig.local.fleet:
                if home.manufacturer == manufacturer:
                    faults.clear(home.home_id)
        case HouseholdChange(device, shift):
            home = rig.local.fleet.home(rig.device_ids[device])
            rig.household_changed.add(home.home_id)
            rig.local.fleet.user_changes_setpoint(
                home.home_id, home.shown_lever + shift * home.lever.step
            )
        case ArmCrash(name, after):
            rig.chaos.armed[name] = after
        case ReplayStale(pick):
            if rig.chaos.stash:
                rig.chaos.replay(pick, rig.local.deliver_plainly)


def pass_time(rig: Rig, duration: timedelta) -> None:
    """Run the fleet for ``duration``, with Cloud Scheduler's sweep at every 10-minute mark."""
    end = rig.now() + duration
    while True:
        mark = T0 + SWEEP_EVERY * ((rig.now() - T0) // SWEEP_EVERY + 1)
        if mark > end:
            rig.local.run_until(end)
            return
        rig.local.run_until(mark)
        sweep(rig.local.deps)


def heal_and_settle(rig: Rig) -> None:
    """Faults and crashes stop; repeats and stale replays go on. Time runs with a sweep every
    10 minutes until no task is pending and nothing is stashed (within the bounds above)."""
    rig.chaos.crashing = False
    rig.chaos.armed.clear()
    rig.local.fleet.faults.clear()
    started = rig.now()
    while rig.now() < started + HEAL_AT_MOST:
        pass_time(rig, SWEEP_EVERY)
        if rig.now() >= started + HEAL_AT_LEAST / 2:  # the stale deliveries come back at last
            for _ in range(min(5, len(rig.chaos.stash))):
                pick = rig.chaos.rng.randrange(len(rig.chaos.stash))
                rig.chaos.replay(pick, rig.local.deliver_plainly)
        idle = rig.local.tasks.next_due_at() is None and not rig.chaos.stash
        if idle and rig.now() >= started + HEAL_AT_LEAST:
            return


# -- the checker -------------------------------------------------------------------------------


@dataclass(frozen=True)
class CommandFacts:
    stored: Command
    events: list[CommandEvent]
    alert: dict[str, Any] | None


def check_history(stored: Command, events: Sequence[CommandEvent]) -> list[str]:
    """Invariants 2 and 3: numbered 1..n, a legal path, and its fold is the stored command."""
    name = f"{stored.device_id}/{stored.command_id}"
    seqs = [e.seq for e in events]
    if seqs != list(range(1, len(events) + 1)):
        return [f"{name}: history forked or has gaps: seq {seqs}"]
    try:
        folded = fold(events)
    except IllegalTransition as err:
        return [f"{name}: not a legal path ({[e.type.value for e in events]}): {err}"]
    if folded != stored:
        differing = sorted(
            k for k in Command.model_fields if getattr(folded, k) != getattr(stored, k)
        )
        return [f"{name}: the stored command is not its history's fold (differs in {differing})"]
    return []


def check_terminal(facts: CommandFacts) -> list[str]:
    """Invariant 1: completed, superseded, or failed with its alert (published)."""
    command = facts.stored
    name = f"{command.device_id}/{command.command_id}"
    if not command.state.is_terminal:
        return [f"{name}: ended {command.state.value}, not terminal"]
    if command.state is S.FAILED and (
        facts.alert is None or facts.alert.get("published") is not True
    ):
        return [f"{name}: failed without a published alert ({facts.alert})"]
    return []


def check_calls(calls: Sequence[ManufacturerCall], queues: dict[str, str]) -> list[str]:
    """Invariant 4: one call per (command, attempt), each after its ``sent`` was recorded; and
    invariant 6 at the manufacturer: at most one call per queue attempt (task, retry count),
    so at most the queue's ``max_attempts`` per task, however often Cloud Tasks delivered."""
    counts = Counter((c.device_id, c.command_id, c.attempt) for c in calls)
    problems = [
        f"{device_id}/{command_id}: attempt {attempt} reached the manufacturer {count} times"
        for (device_id, command_id, attempt), count in counts.items()
        if count > 1
    ]
    per_attempt = Counter((c.device_id, c.command_id, c.task_name, c.retry_count) for c in calls)
    problems += [
        f"{device_id}/{command_id}: delivery {retry} of {task} called the manufacturer {n} times"
        for (device_id, command_id, task, retry), n in per_attempt.items()
        if n > 1
    ]
    per_task = Counter((c.device_id, c.command_id, c.task_name) for c in calls)
    problems += [
        f"{device_id}/{command_id}: task {task} called the manufacturer {n} times"
        for (device_id, command_id, task), n in per_task.items()
        if n > max_attempts(queues.get(task, ""))
    ]
    problems += [
        f"{c.device_id}/{c.command_id}: attempt {c.attempt} went out before its sent was recorded"
        for c in calls
        if not c.sent_recorded
    ]
    problems += [
        f"{c.device_id}/{c.command_id}: went to device {c.called_device_id}"
        for c in calls
        if c.called_device_id != c.device_id
    ]
    return problems


def _transient_reasons() -> frozenset[str]:
    """The ``reason`` a ``failed`` event names when retrying could have helped: a transient
    error's class name, or ``verify`` (the device could not be read on the last attempt)."""
    names, todo = {"verify"}, [TransientError]
    while todo:
        cls = todo.pop()
        names.add(cls.__name__)
        todo.extend(cls.__subclasses__())
    return frozenset(names)


TRANSIENT_REASONS = _transient_reasons()


def _delivery_of(event: CommandEvent) -> tuple[str, int] | None:
    """(task name, retry count) of the delivery that recorded ``event`` (its dedup key)."""
    parts = (event.dedup_key or "").split("/")  # "{task}/{retry}/{type}" when a task's
    if len(parts) != 3 or not parts[1].isdigit():
        return None  # e.g. "superseded-by/{plan}": a newer plan's release, no task's
    return parts[0], int(parts[1])


def check_retries(facts: CommandFacts, queues: dict[str, str]) -> list[str]:
    """Invariant 6 (per command): ``sent`` only by deliveries within the queue's attempts, at
    most one per queue attempt (so at most ``max_attempts`` per task, however often a delivery
    came), and a transient failure ends a command only on the queue's last attempt."""
    name = f"{facts.stored.device_id}/{facts.stored.command_id}"
    problems = []
    sent_by_task: Counter[str] = Counter()
    sent_by_delivery: Counter[tuple[str, int]] = Counter()
    for event in facts.events:
        delivery = _delivery_of(event)
        if event.type is E.SENT and delivery is None:
            problems.append(f"{name}: sent #{event.seq} names no delivery")
        if delivery is None or event.type not in (E.SENT, E.FAILED):
            continue
        task_name, retry = delivery
        limit = max_attempts(queues[task_name])
        if event.type is E.SENT:
            sent_by_task[task_name] += 1
            sent_by_delivery[delivery] += 1
            if sent_by_delivery[delivery] > 1:
                problems.append(f"{name}: delivery {retry} of {task_name} sent twice")
            if retry >= limit or sent_by_task[task_name] > limit:
                problems.append(
                    f"{name}: sent #{sent_by_task[task_name]} by delivery {retry} of "
                    f"{task_name}, beyond the queue's {limit} attempts"
                )
        transient = event.detail.get("reason") in TRANSIENT_REASONS
        if event.type is E.FAILED and transient and retry != limit - 1:
            problems.append(
                f"{name}: failed ({event.detail.get('reason')}) on delivery {retry} of "
                f"{task_name}, not on the queue's last ({limit - 1})"
            )
    return problems


def check_lost_tasks(
    failed: Sequence[FailedTask], chaos: DeliveryChaos, store: DocumentStore
) -> list[str]:
    """Invariant 6 (the queue): a task the queue gave up on left no command behind, and was
    given up only after a crash or while another delivery held its command (``in_flight``: 503
    with Retry-After 10), never because the handler miscounted its last attempt."""
    problems = []
    for task in failed:
        device_id, command_id = chaos.task_commands[task.name]
        command = load_command(store, device_id, command_id)
        assert command is not None
        if not command.state.is_terminal:
            problems.append(
                f"{device_id}/{command_id}: its task {task.name} was dropped and nothing took over"
            )
        answer = chaos.answers[(task.name, task.attempts - 1, task.failed_at)]
        in_flight = answer is not None and (answer.status, answer.headers) == (
            503,
            {"Retry-After": "10"},
        )
        if answer is not None and not in_flight:
            problems.append(
                f"{device_id}/{command_id}: the handler answered {answer.status} on the last "
                f"attempt of {task.name}: its count of attempts is not the queue's"
            )
    return problems


def standing_command(
    commands: Sequence[Command], plan: Mapping[str, Any] | None, end: datetime
) -> Command | None:
    """The command whose mode the device must show at ``end`` (invariant 5).

    It is the command that the device's current plan's mode change in force at ``end`` was
    released into: the last entry of the plan's outbox due by ``end`` names it (its own command,
    or an older plan's command that makes the same change and that the plan adopted). The
    scenarios end every plan with a mode change that holds until the plan's end, two days on: it
    is the standing one. A command no entry of the current plan names never is (a newer plan took
    over, whatever it did), nor is a hot-water boost (it sets no mode), nor a change never
    released. The standing command must be completed (and the device in its mode) or failed with
    its alert (no mode is claimed then); any other end (superseded, still moving) means nothing
    holds the device to its plan.
    """
    due = [
        entry
        for entry in (plan or {}).get("outbox", [])
        if datetime.fromisoformat(str(entry["at"])) <= end
    ]
    if not due or GenericAction(due[-1]["action"]).mode is None:
        return None
    return next((c for c in commands if c.command_id == due[-1].get("command_id")), None)


def check_device_mode(rig: Rig, device_id: str, commands: Sequence[Command]) -> list[str]:
    """Invariant 5 for one device: read it with its adapter and compare with the standing mode."""
    if device_id in rig.household_changed:
        return []  # the household's word beats the plan (reconciliation, issue 7, takes it up)
    found = _current_plan(rig, device_id)
    command = standing_command(commands, None if found is None else found[1], rig.now())
    if command is None or command.state is S.FAILED:
        return []
    if command.state is not S.COMPLETED:
        return [
            f"{device_id}: its plan's standing command {command.command_id} ended "
            f"{command.state.value}; nothing holds the device to its plan"
        ]
    home = rig.local.fleet.home(device_id)
    state = rig.gateway.adapter(home.manufacturer).get_device_state(home.ref())
    if state.mode is not command.generic_action.mode:
        return [
            f"{device_id}: ends in mode {state.mode}, but {command.command_id} completed "
            f"{command.generic_action.value}"
        ]
    return []


def _all_commands(store: DocumentStore) -> Iterator[Command]:
    cursor: str | None = None
    while True:
        page = store.collection_group("commands", limit=200, cursor=cursor)
        yield from (Command.parse(d.data) for d in page.documents)
        if page.next_cursor is None:
            return
        cursor = page.next_cursor


def gather(store: DocumentStore) -> list[CommandFacts]:
    facts = []
    for command in _all_commands(store):
        alert = store.get(alert_path(f"command-failed-{command.device_id}-{command.command_id}"))
        facts.append(
            CommandFacts(
                command,
                history(store, command.device_id, command.command_id),
                None if alert is None else alert.data,
            )
        )
    return facts


def check_named_commands(
    device_id: str, plan: Mapping[str, Any], facts: Mapping[tuple[str, str], CommandFacts]
) -> list[str]:
    """Invariant 7: the command each released entry of a plan names (its own, or an older
    plan's it adopted) exists, makes that entry's change, and was never superseded by that very
    plan (a plan keeps what it adopted, however often it is released)."""
    plan_id = plan["plan_id"]
    problems = []
    for entry in plan.get("outbox", []):
        command_id = entry.get("command_id")
        if command_id is None:
            continue
        fact = facts.get((device_id, command_id))
        if fact is None:
            problems.append(
                f"{device_id}/{plan_id}: names a command {command_id} that is not there"
            )
            continue
        command = fact.stored
        change = (datetime.fromisoformat(entry["at"]), entry["action"])
        if (command.slot_start_at, command.generic_action.value) != change:
            problems.append(
                f"{device_id}/{plan_id}: {command_id} does not make its change {change}"
            )
        if any(
            e.type is E.SUPERSEDED and e.detail.get("by_plan_id") == plan_id for e in fact.events
        ):
            problems.append(f"{device_id}/{plan_id}: superseded {command_id}, which it names")
    return problems


def violations(rig: Rig) -> list[str]:
    facts = gather(rig.store)
    problems: list[str] = []
    by_id = {(f.stored.device_id, f.stored.command_id): f for f in facts}
    for device_id, records in rig.plans.items():
        for record in records:
            stored = rig.store.get(f"devices/{device_id}/plans/{record.plan_id}")
            assert stored is not None
            problems += check_named_commands(device_id, stored.data, by_id)
    for fact in facts:
        problems += check_terminal(fact)
        problems += check_history(fact.stored, fact.events)
        problems += check_retries(fact, rig.chaos.task_queues)
    problems += check_calls(rig.gateway.calls, rig.chaos.task_queues)
    problems += [f"a handler raised on its own: {error}" for error in rig.chaos.unexpected_errors]
    problems += check_lost_tasks(rig.local.tasks.failed_tasks(), rig.chaos, rig.store)
    for device_id in rig.device_ids:
        mine = [f.stored for f in facts if f.stored.device_id == device_id]
        problems += check_device_mode(rig, device_id, mine)
    return problems


def tally(rig: Rig, exposure: Exposure) -> None:
    exposure.examples += 1
    for fact in gather(rig.store):
        exposure.commands += 1
        exposure.states[fact.stored.state.value] += 1
        exposure.events.update(e.type.value for e in fact.events)
        exposure.remediations += fact.stored.remediations
        exposure.adopted_commands += bool(fact.stored.adopted_by)
        exposure.found_applied += sum(1 for e in fact.events if e.detail.get("found_applied"))
        exposure.superseded_because.update(
            str(e.detail.get("reason")) for e in fact.events if e.type is E.SUPERSEDED
        )
    exposure.lost_tasks += len(rig.local.tasks.failed_tasks())
    for records in rig.plans.values():
        for record in records:
            stored = rig.store.get(f"devices/{record.document['device_id']}/plans/{record.plan_id}")
            assert stored is not None
            outbox = stored.data.get("outbox", [])
            exposure.adoptions += sum(1 for e in outbox if e.get("adopted_from_plan_id"))


def run_scenario(scenario: Scenario, exposure: Exposure) -> None:
    """Drive the scenario, heal, check every invariant (AssertionError naming the seed)."""
    rig = Rig.build(scenario, exposure)
    for step in scenario.steps:
        run_step(rig, step, exposure)
    heal_and_settle(rig)
    problems = violations(rig)
    assert not problems, (
        f"seed {scenario.seed}: {len(problems)} invariant violations:\n  "
        + "\n  ".join(problems[:20])
        + f"\nreplay: run_scenario({scenario!r}, Exposure())"
    )
    tally(rig, exposure)


# -- the tests ---------------------------------------------------------------------------------


def test_every_command_ends_terminal_with_one_lawful_history_whatever_the_faults() -> None:
    exposure = Exposure()

    @settings(
        max_examples=EXAMPLES,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(scenarios)
    def holds(scenario: Scenario) -> None:
        run_scenario(scenario, exposure)

    holds()

    # The runs met what the invariants are about (else they would hold vacuously).
    assert exposure.examples == EXAMPLES
    assert min(exposure.states[s] for s in ("completed", "failed", "superseded")) > 0, exposure
    assert exposure.superseded_because["newer_plan"] > 0, exposure
    assert min(exposure.adoptions, exposure.adopted_commands) > 0, exposure
    assert exposure.events["retry_scheduled"] > 0, exposure
    assert exposure.remediations > 0, exposure
    assert exposure.found_applied > 0, exposure
    assert exposure.lost_tasks > 0, exposure  # the queue gave up on tasks: the sweep took over
    assert min(exposure.repeats, exposure.replays, exposure.interleaved) > 0, exposure
    reached = set(CRASH_STEPS) | set(exposure.steps_reached)
    uncrashed = sorted(reached - set(exposure.crashes))
    assert not uncrashed, f"checkpoints never crashed at: {uncrashed}"


def _event(seq: int, kind: CommandEventType, **detail: Any) -> CommandEvent:
    return CommandEvent(
        command_id="plan01-s004",
        seq=seq,
        type=kind,
        at=T0 + timedelta(minutes=seq),
        attempt=1 if kind is not E.CREATED else 0,
        detail=detail,
    )


def _created() -> CommandEvent:
    return _event(
        1,
        E.CREATED,
        device_id="home-0000",
        manufacturer="viessmann",
        generic_action="set_mode_max",
        plan_id="plan01",
        correlation_id="plan01",
    )


def test_the_checker_accepts_a_lawful_history() -> None:
    events = [_created(), _event(2, E.SENT), _event(3, E.ACKNOWLEDGED)]
    assert check_history(fold(events), events) == []


def test_the_checker_catches_a_forked_history() -> None:
    lawful = [_created(), _event(2, E.SENT), _event(3, E.ACKNOWLEDGED)]
    forked = [*lawful[:2], _event(2, E.RETRY_SCHEDULED), lawful[2]]
    [problem] = check_history(fold(lawful), forked)
    assert "forked" in problem
    gap = [lawful[0], lawful[2]]
    assert "forked or has gaps" in check_history(fold(lawful[:1]), gap)[0]


def test_the_checker_catches_an_illegal_path_and_a_stored_state_that_is_not_the_fold() -> None:
    illegal = [_created(), _event(2, E.COMPLETED)]
    [problem] = check_history(fold(illegal[:1]), illegal)
    assert "not a legal path" in problem
    events = [_created(), _event(2, E.SENT)]
    drifted = fold(events).model_copy(update={"state": S.COMPLETED})
    assert "not its history's fold" in check_history(drifted, events)[0]


def test_the_checker_catches_a_repeated_attempt_and_a_call_before_sent() -> None:
    queues = {"t": "dispatch-viessmann"}
    call = ManufacturerCall("home-0000", "c1", 1, "home-0000", True, "t", 0)
    early = ManufacturerCall("home-0000", "c2", 1, "home-0000", False, "t", 0)
    astray = ManufacturerCall("home-0000", "c3", 1, "home-0001", True, "t", 0)
    assert check_calls([call, early, astray], queues) == [
        "home-0000/c2: attempt 1 went out before its sent was recorded",
        "home-0000/c3: went to device home-0001",
    ]
    twice = [call, replace(call, attempt=2)]
    assert check_calls(twice, queues) == [
        "home-0000/c1: delivery 0 of t called the manufacturer 2 times"
    ]
    assert check_calls([call, call], queues)[0] == (
        "home-0000/c1: attempt 1 reached the manufacturer 2 times"
    )
    nine = [ManufacturerCall("home-0000", "c1", n, "home-0000", True, "t", n) for n in range(9)]
    assert check_calls(nine, queues) == ["home-0000/c1: task t called the manufacturer 9 times"]


def test_the_checker_catches_sends_beyond_the_queues_attempts_and_a_failure_short_of_them() -> None:
    queue = "dispatch-viessmann"
    beyond = _event(2, E.SENT).model_copy(update={"dedup_key": "t1/8/sent"})
    early = _event(3, E.FAILED, reason="OemUnavailable").model_copy(
        update={"dedup_key": "t1/5/failed"}
    )
    events = [_created(), beyond, early]
    facts = CommandFacts(fold(events), events, {"published": True})
    assert check_retries(facts, {"t1": queue}) == [
        "home-0000/plan01-s004: sent #1 by delivery 8 of t1, beyond the queue's 8 attempts",
        "home-0000/plan01-s004: failed (OemUnavailable) on delivery 5 of t1, not on the queue's "
        "last (7)",
    ]
    twin = [
        _created(),
        _event(2, E.SENT).model_copy(update={"dedup_key": "t1/3/sent"}),
        _event(3, E.RETRY_SCHEDULED).model_copy(update={"dedup_key": "t1/3/retry_scheduled"}),
        _event(4, E.SENT).model_copy(update={"dedup_key": "t1/3/sent"}),
    ]
    assert check_retries(CommandFacts(fold(twin), twin, None), {"t1": queue}) == [
        "home-0000/plan01-s004: delivery 3 of t1 sent twice"
    ]
    lawful = [
        _created(),
        _event(2, E.SENT).model_copy(update={"dedup_key": "t1/7/sent"}),
        _event(3, E.FAILED, reason="OemUnavailable").model_copy(
            update={"dedup_key": "t1/7/failed"}
        ),
    ]
    assert check_retries(CommandFacts(fold(lawful), lawful, None), {"t1": queue}) == []


def test_the_checker_wants_failed_commands_alerted_and_every_command_terminal() -> None:
    events = [_created(), _event(2, E.FAILED)]
    failed = fold(events)
    assert "without a published alert" in check_terminal(CommandFacts(failed, events, None))[0]
    assert check_terminal(CommandFacts(failed, events, {"published": True})) == []
    pending = fold(events[:1])
    assert "not terminal" in check_terminal(CommandFacts(pending, events[:1], None))[0]


def test_the_standing_command_is_the_one_the_current_plans_change_in_force_at_the_end_names() -> (
    None
):
    end = T0 + timedelta(hours=10)

    def command(plan_id: str, start_h: int, action: str) -> Command:
        created = _event(
            1,
            E.CREATED,
            device_id="home-0000",
            manufacturer="viessmann",
            generic_action=action,
            plan_id=plan_id,
            correlation_id=plan_id,
            slot_start_at=(T0 + timedelta(hours=start_h)).isoformat(),
        )
        return fold([created.model_copy(update={"command_id": f"{plan_id}-{start_h}"})])

    def plan(*entries: tuple[int, str, str | None]) -> dict[str, Any]:
        return {
            "outbox": [
                {"at": format_instant(T0 + timedelta(hours=h)), "action": a, "command_id": c}
                for h, a, c in entries
            ]
        }

    older = command("plan01", 2, "set_mode_mid")  # adopted by plan02 below
    passed = command("plan02", 1, "set_mode_min")
    boost = command("plan02", 3, "boost_dhw")
    later = command("plan02", 11, "set_mode_max")
    commands = [older, passed, boost, later]
    current = plan(
        (1, "set_mode_min", "plan02-1"),
        (2, "set_mode_mid", "plan01-2"),
        (11, "set_mode_max", "plan02-11"),
    )
    assert standing_command(commands, current, end) == older
    with_boost = plan((1, "set_mode_min", "plan02-1"), (3, "boost_dhw", "plan02-3"))
    assert standing_command(commands, with_boost, end) is None
    unreleased = plan((2, "set_mode_mid", None))
    assert standing_command(commands, unreleased, end) is None
    assert standing_command(commands, None, end) is None
