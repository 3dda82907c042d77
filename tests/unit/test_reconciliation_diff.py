"""The pure reconciliation diff, one row per branch: what it decides and why."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from hpsteer.domain.actions import Mode
from hpsteer.domain.reconciliation import (
    Action,
    AlertKind,
    InSync,
    Intended,
    MarkReachable,
    MarkUnreachable,
    Memory,
    Observed,
    Override,
    Policy,
    RaiseAlert,
    Remediate,
    ResolveAlert,
    Skip,
    SkipReason,
    diff,
    needs_no_look,
)

NOW = datetime(2025, 1, 15, 12, tzinfo=UTC)
PAUSE = datetime(2025, 1, 15, 23, tzinfo=UTC)
POLICY = Policy()
MAX_SINCE_AN_HOUR = Intended(Mode.MAX, since=NOW - timedelta(hours=1), plan_id="p1")
STEERED = Memory(commanded_modes=frozenset({Mode.MAX, Mode.MIN, Mode.MID}))


def seen(mode: Mode | None, *, online: bool = True, by_user: bool | None = None) -> Observed:
    return Observed(online=online, mode=mode, observed_at=NOW, changed_by_user=by_user)


def run(
    observed: Observed | None,
    memory: Memory = STEERED,
    intended: Intended = MAX_SINCE_AN_HOUR,
) -> list[Action]:
    return diff(intended, observed, memory, NOW, pause_until=PAUSE, policy=POLICY)


CASES: list[tuple[str, Intended, Observed | None, Memory, list[Action]]] = [
    # -- not ours to judge
    (
        "steering disabled",
        MAX_SINCE_AN_HOUR,
        seen(Mode.MIN),
        replace(STEERED, steering_enabled=False),
        [Skip(SkipReason.STEERING_DISABLED)],
    ),
    (
        "household override still in force",
        MAX_SINCE_AN_HOUR,
        seen(Mode.MIN),
        replace(STEERED, override_until=NOW + timedelta(minutes=1)),
        [Skip(SkipReason.OVERRIDE_IN_FORCE)],
    ),
    (
        "an override that has ended is judged again",
        MAX_SINCE_AN_HOUR,
        seen(Mode.MAX),
        replace(STEERED, override_until=NOW),
        [InSync()],
    ),
    ("no current plan", Intended(None), seen(Mode.MID), STEERED, [Skip(SkipReason.NO_PLAN)]),
    (
        "the intended mode changed moments ago: the command path owns it",
        Intended(Mode.MAX, since=NOW - timedelta(minutes=19)),
        seen(Mode.MID),
        STEERED,
        [Skip(SkipReason.COMMAND_IN_FLIGHT)],
    ),
    (
        "a household change the verification saw in this mode: an override at once",
        Intended(Mode.MAX, since=NOW - timedelta(minutes=12)),
        seen(Mode.MAX),
        replace(STEERED, household_change_seen_at=NOW - timedelta(minutes=2)),
        [Override(None, PAUSE)],
    ),
    (
        "a sighting from before the current mode began is history",
        MAX_SINCE_AN_HOUR,
        seen(Mode.MAX),
        replace(STEERED, household_change_seen_at=NOW - timedelta(hours=2)),
        [InSync()],
    ),
    # -- unreachable
    (
        "first time unreachable: remembered",
        MAX_SINCE_AN_HOUR,
        None,
        STEERED,
        [MarkUnreachable(NOW)],
    ),
    (
        "reported offline counts as unreachable",
        MAX_SINCE_AN_HOUR,
        seen(None, online=False),
        STEERED,
        [MarkUnreachable(NOW)],
    ),
    (
        "unreachable, not yet for long: nothing",
        MAX_SINCE_AN_HOUR,
        None,
        replace(STEERED, unreachable_since=NOW - timedelta(minutes=59)),
        [],
    ),
    (
        "unreachable past the threshold: one alert",
        MAX_SINCE_AN_HOUR,
        None,
        replace(STEERED, unreachable_since=NOW - timedelta(hours=1)),
        [
            RaiseAlert(
                AlertKind.DEVICE_UNREACHABLE,
                "unreachable since 2025-01-15T11:00:00+00:00 (1:00:00 ago)",
            )
        ],
    ),
    (
        "unreachable and already alerted: nothing more",
        MAX_SINCE_AN_HOUR,
        None,
        replace(
            STEERED,
            unreachable_since=NOW - timedelta(hours=3),
            open_alert=AlertKind.DEVICE_UNREACHABLE,
        ),
        [],
    ),
    # -- in sync
    ("in sync", MAX_SINCE_AN_HOUR, seen(Mode.MAX), STEERED, [InSync()]),
    (
        "back in sync resolves the open alert",
        MAX_SINCE_AN_HOUR,
        seen(Mode.MAX),
        replace(STEERED, open_alert=AlertKind.PERSISTENT_DRIFT, remediations_in_a_row=3),
        [InSync(), ResolveAlert(AlertKind.PERSISTENT_DRIFT)],
    ),
    (
        "back online and in sync: reachable again, the unreachable alert resolves",
        MAX_SINCE_AN_HOUR,
        seen(Mode.MAX),
        replace(
            STEERED,
            unreachable_since=NOW - timedelta(hours=2),
            open_alert=AlertKind.DEVICE_UNREACHABLE,
        ),
        [MarkReachable(), InSync(), ResolveAlert(AlertKind.DEVICE_UNREACHABLE)],
    ),
    # -- the household's choice
    (
        "the manufacturer says the user changed it",
        MAX_SINCE_AN_HOUR,
        seen(Mode.MID, by_user=True),
        STEERED,
        [Override(Mode.MID, PAUSE)],
    ),
    (
        "a setting none of our modes is the household's",
        MAX_SINCE_AN_HOUR,
        seen(None),
        STEERED,
        [Override(None, PAUSE)],
    ),
    (
        "min while we never commanded min is the household's",
        MAX_SINCE_AN_HOUR,
        seen(Mode.MIN),
        replace(STEERED, commanded_modes=frozenset({Mode.MAX})),
        [Override(Mode.MIN, PAUSE)],
    ),
    (
        "an override even while a remediation is open: never fight the user",
        MAX_SINCE_AN_HOUR,
        seen(None),
        replace(STEERED, open_remediation_until=NOW + timedelta(minutes=5)),
        [Override(None, PAUSE)],
    ),
    # -- drift
    (
        "back at the household's own setting (a reboot, a lost command): remediate",
        MAX_SINCE_AN_HOUR,
        seen(Mode.MID),
        STEERED,
        [Remediate(Mode.MAX, 1, NOW + timedelta(minutes=20))],
    ),
    (
        "the manufacturer says it was not the user: drift even at min",
        MAX_SINCE_AN_HOUR,
        seen(Mode.MIN, by_user=False),
        replace(STEERED, commanded_modes=frozenset({Mode.MAX})),
        [Remediate(Mode.MAX, 1, NOW + timedelta(minutes=20))],
    ),
    (
        "an earlier mode of ours still showing: drift",
        MAX_SINCE_AN_HOUR,
        seen(Mode.MIN),
        STEERED,
        [Remediate(Mode.MAX, 1, NOW + timedelta(minutes=20))],
    ),
    (
        "one remediation at a time",
        MAX_SINCE_AN_HOUR,
        seen(Mode.MID),
        replace(
            STEERED, open_remediation_until=NOW + timedelta(minutes=1), remediations_in_a_row=1
        ),
        [Skip(SkipReason.REMEDIATION_OPEN)],
    ),
    (
        "the next remediation once the last one's window closed",
        MAX_SINCE_AN_HOUR,
        seen(Mode.MID),
        replace(STEERED, open_remediation_until=NOW, remediations_in_a_row=2),
        [Remediate(Mode.MAX, 3, NOW + timedelta(minutes=20))],
    ),
    (
        "drift after the allowed remediations: an alert, no more remediation",
        MAX_SINCE_AN_HOUR,
        seen(Mode.MID),
        replace(STEERED, remediations_in_a_row=3),
        [
            RaiseAlert(
                AlertKind.PERSISTENT_DRIFT, "still in mid instead of max after 3 remediations"
            )
        ],
    ),
    (
        "drift, alerted already: wait for a person or for sync",
        MAX_SINCE_AN_HOUR,
        seen(Mode.MID),
        replace(STEERED, remediations_in_a_row=3, open_alert=AlertKind.PERSISTENT_DRIFT),
        [Skip(SkipReason.GAVE_UP)],
    ),
    (
        "back online but drifted: reachable, then remediate",
        MAX_SINCE_AN_HOUR,
        seen(Mode.MID),
        replace(STEERED, unreachable_since=NOW - timedelta(minutes=30)),
        [MarkReachable(), Remediate(Mode.MAX, 1, NOW + timedelta(minutes=20))],
    ),
]


@pytest.mark.parametrize(
    ("intended", "observed", "memory", "expected"),
    [pytest.param(i, o, m, e, id=name) for name, i, o, m, e in CASES],
)
def test_the_diff_decides(
    intended: Intended, observed: Observed | None, memory: Memory, expected: list[Action]
) -> None:
    assert run(observed, memory, intended) == expected


def test_the_rules_that_need_no_look_at_the_device_decide_without_it() -> None:
    for _name, intended, _observed, memory, expected in CASES:
        decided = needs_no_look(intended, memory, NOW, pause_until=PAUSE, policy=POLICY)
        if decided is not None:
            assert decided == expected  # the same decision, whatever the device showed
            assert diff(intended, None, memory, NOW, pause_until=PAUSE, policy=POLICY) == expected


def test_every_action_and_skip_reason_is_reached_by_some_row() -> None:
    produced = {type(a) for *_, actions in CASES for a in actions}
    assert produced == {
        Skip,
        InSync,
        MarkUnreachable,
        MarkReachable,
        Override,
        Remediate,
        RaiseAlert,
        ResolveAlert,
    }
    reasons = {a.reason for *_, actions in CASES for a in actions if isinstance(a, Skip)}
    assert reasons == set(SkipReason)


def test_a_user_override_is_never_remediated_whatever_the_memory() -> None:
    for remediations in range(5):
        for open_until in (None, NOW + timedelta(minutes=5)):
            memory = replace(
                STEERED, remediations_in_a_row=remediations, open_remediation_until=open_until
            )
            actions = run(seen(Mode.MID, by_user=True), memory)
            assert not any(isinstance(a, Remediate) for a in actions)
