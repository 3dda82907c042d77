"""The command state machine: one table of legal transitions and one pure fold."""

from datetime import UTC, datetime, timedelta

import pytest

from hpsteer.domain.actions import GenericAction
from hpsteer.domain.commands import (
    TERMINAL_STATES,
    TRANSITIONS,
    Command,
    CommandEvent,
    CommandEventType,
    CommandState,
    CurrentPlan,
    Wanted,
    fold,
    next_state,
)
from hpsteer.errors import IllegalTransition

T0 = datetime(2024, 1, 15, 6, tzinfo=UTC)
E = CommandEventType
S = CommandState


def created(command_id: str = "c1") -> CommandEvent:
    return CommandEvent(
        command_id=command_id,
        seq=1,
        type=E.CREATED,
        at=T0,
        detail={
            "device_id": "d1",
            "manufacturer": "viessmann",
            "generic_action": "set_mode_max",
            "manufacturer_payload": {"shift": 2},
            "plan_id": "p1",
            "slot_start_at": "2024-01-15T06:00:00Z",
            "correlation_id": "trace-1",
        },
    )


def history(*types: CommandEventType, **kwargs: object) -> list[CommandEvent]:
    events = [created()]
    for offset, event_type in enumerate(types, start=2):
        events.append(
            CommandEvent(
                command_id="c1",
                seq=offset,
                type=event_type,
                at=T0 + timedelta(minutes=offset),
                attempt=1,
                **kwargs,  # type: ignore[arg-type]
            )
        )
    return events


def test_the_happy_path_folds_to_completed_with_a_timestamp_per_state():
    command = fold(history(E.SENT, E.ACKNOWLEDGED, E.VERIFIED, E.COMPLETED))
    assert command.state is S.COMPLETED
    assert command.generic_action is GenericAction.SET_MODE_MAX
    assert command.created_at == T0
    assert command.sent_at == T0 + timedelta(minutes=2)
    assert command.acknowledged_at == T0 + timedelta(minutes=3)
    assert command.verified_at == T0 + timedelta(minutes=4)
    assert command.completed_at == T0 + timedelta(minutes=5)
    assert command.last_seq == 5
    assert command.correlation_id == "trace-1"


def test_a_retry_returns_to_sent_and_counts():
    command = fold(history(E.RETRY_SCHEDULED, E.SENT, E.RETRY_SCHEDULED, E.SENT, E.ACKNOWLEDGED))
    assert command.state is S.ACKNOWLEDGED
    assert command.retry_count == 2


def test_the_fold_does_not_depend_on_the_order_events_arrive_in():
    events = history(E.SENT, E.ACKNOWLEDGED)
    assert fold(reversed(events)) == fold(events)


def test_a_failure_keeps_its_reason():
    events = history(E.SENT)
    events.append(
        CommandEvent(command_id="c1", seq=3, type=E.FAILED, at=T0, attempt=5, error="offline")
    )
    command = fold(events)
    assert command.state is S.FAILED
    assert command.last_error == "offline"
    assert command.failed_at == T0


@pytest.mark.parametrize("terminal", sorted(TERMINAL_STATES))
def test_terminal_states_accept_no_event(terminal):
    for event_type in E:
        with pytest.raises(IllegalTransition, match="terminal"):
            next_state(terminal, event_type)


def test_superseding_is_for_commands_not_sent_or_accepted_but_not_yet_verified():
    assert next_state(S.PENDING, E.SUPERSEDED) is S.SUPERSEDED
    assert next_state(S.RETRYING, E.SUPERSEDED) is S.SUPERSEDED
    assert next_state(S.ACKNOWLEDGED, E.SUPERSEDED) is S.SUPERSEDED
    # A request whose outcome is unknown is first settled (retry_scheduled), never skipped over.
    with pytest.raises(IllegalTransition, match="a sent command cannot take 'superseded'"):
        next_state(S.SENT, E.SUPERSEDED)
    with pytest.raises(IllegalTransition, match="a verified command cannot take 'superseded'"):
        next_state(S.VERIFIED, E.SUPERSEDED)


def test_a_send_records_the_payload_and_a_remediation_is_counted():
    created = CommandEvent(
        command_id="c1",
        seq=1,
        type=E.CREATED,
        at=T0,
        detail={
            "device_id": "d1",
            "manufacturer": "viessmann",
            "generic_action": "set_mode_max",
            "correlation_id": "corr",
        },
    )
    events = [
        created,
        CommandEvent(
            command_id="c1",
            seq=2,
            type=E.SENT,
            at=T0,
            attempt=1,
            detail={"manufacturer_payload": {"feature": "x", "value": 23}},
        ),
        CommandEvent(
            command_id="c1",
            seq=3,
            type=E.ACKNOWLEDGED,
            at=T0,
            attempt=1,
            detail={"manufacturer_reference": "req-42"},
        ),
        CommandEvent(
            command_id="c1",
            seq=4,
            type=E.RETRY_SCHEDULED,
            at=T0,
            attempt=1,
            detail={"cause": "verification_mismatch"},
        ),
    ]
    command = fold(events)
    assert command.manufacturer_payload == {"feature": "x", "value": 23}
    assert command.manufacturer_reference == "req-42"
    assert (command.retry_count, command.remediations) == (1, 1)


def test_every_state_but_the_terminal_ones_has_a_way_forward():
    sources = {state for state, _ in TRANSITIONS}
    assert sources == set(S) - TERMINAL_STATES


def test_a_gap_or_a_repeat_in_the_sequence_is_refused():
    events = history(E.SENT, E.ACKNOWLEDGED)
    with pytest.raises(IllegalTransition, match="seq 3 does not follow 1"):
        fold([events[0], events[2]])
    with pytest.raises(IllegalTransition, match="seq 2 does not follow 2"):
        fold([events[0], events[1], events[1]])


def test_history_must_start_with_created():
    with pytest.raises(IllegalTransition, match="must start with 'created'"):
        fold(history(E.SENT)[1:])
    with pytest.raises(IllegalTransition, match="at least"):
        fold([])


def test_skipping_a_state_is_illegal():
    with pytest.raises(IllegalTransition, match="a pending command cannot take 'verified'"):
        fold(history(E.VERIFIED))


# -- which plan wants a command ----------------------------------------------------------------

SLOT = datetime(2024, 1, 15, 6, tzinfo=UTC)  # the slot start of created()'s command


def current_plan(plan_id: str = "p2", **fields: object) -> CurrentPlan:
    """The device document's view of plan ``plan_id``, created after the command: max from the
    command's slot start until 08:00, then min until the plan's end at 12:00."""
    device = {
        "current_plan_id": plan_id,
        "current_plan_created_at": T0 + timedelta(minutes=30),
        "current_plan_modes": [
            {"at": SLOT - timedelta(hours=1), "mode": "mid"},
            {"at": SLOT, "mode": "max"},
            {"at": SLOT + timedelta(hours=2), "mode": "min"},
        ],
        "current_plan_end_at": SLOT + timedelta(hours=6),
        **fields,
    }
    return CurrentPlan.of_device(device)


def pending(action: str = "set_mode_max", **detail: object) -> Command:
    event = created()
    return fold(
        [event.model_copy(update={"detail": {**event.detail, "generic_action": action, **detail}})]
    )


def test_a_plan_wants_its_own_command_until_its_valid_until():
    own = pending(valid_until="2024-01-15T07:00:00Z")
    assert current_plan("p1").wants(own) == Wanted(SLOT + timedelta(hours=1))


def test_a_newer_plan_making_the_same_change_wants_an_older_plans_command_until_its_run_ends():
    wanted = current_plan().wants(pending(valid_until="2024-01-15T07:00:00Z"))
    assert wanted == Wanted(SLOT + timedelta(hours=2), adopted_by="p2")


@pytest.mark.parametrize(
    ("why", "command", "plan"),
    [
        ("another mode from that instant", pending("set_mode_min"), current_plan()),
        ("a hot-water boost sets no mode", pending("boost_dhw"), current_plan()),
        (
            "no run starts at its slot",
            pending(slot_start_at="2024-01-15T07:00:00Z"),
            current_plan(),
        ),
        (
            "the command is younger than the plan",
            pending(),
            current_plan(current_plan_created_at=T0),
        ),
        ("no current plan", pending(), current_plan(current_plan_id=None)),
    ],
)
def test_a_newer_plan_does_not_want_a_change_it_does_not_make(why, command, plan):
    assert plan.wants(command) is None, why


def test_the_last_run_is_wanted_until_the_plans_end():
    later = pending("set_mode_min", slot_start_at="2024-01-15T08:00:00Z")
    assert current_plan().wants(later) == Wanted(SLOT + timedelta(hours=6), adopted_by="p2")


def test_an_event_naming_an_adopting_plan_adds_it_and_moves_valid_until():
    events = history(E.SENT, E.ACKNOWLEDGED)
    events[1] = events[1].model_copy(
        update={"detail": {"adopted_by": "p2", "valid_until": "2024-01-15T08:00:00Z"}}
    )
    events[2] = events[2].model_copy(
        update={"detail": {"adopted_by": "p3", "valid_until": "2024-01-15T09:00:00Z"}}
    )
    command = fold(events)
    assert command.plan_id == "p1"
    assert command.adopted_by == ("p2", "p3")
    assert command.valid_until == datetime(2024, 1, 15, 9, tzinfo=UTC)
    assert fold(history(E.SENT)).adopted_by == ()
