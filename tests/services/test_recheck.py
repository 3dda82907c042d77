"""Rechecks: a device a reconcile run could not read is reconciled again a minute or so later,
so a drift that became visible at that run is still corrected within the interval.

Each scenario runs the real reconcile page, the recheck task it queues, and the recheck handler
on the local command path against the simulated fleet, on the local store and on the Firestore
emulator in its place (the ``rig`` fixture of ``test_reconcile``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from hpsteer.domain.messages import RecheckTask
from hpsteer.errors import CircuitOpen, OemRateLimited, OemUnavailable
from hpsteer.ports.store import DocumentStore
from hpsteer.runtime.local_fleet import LocalFleet
from hpsteer.services.dispatch import TaskDelivery
from hpsteer.services.recheck import handle_recheck
from hpsteer.services.recheck_tasks import (
    RECHECK_DELAY,
    RECHECK_QUEUE,
    RECHECK_RETRY,
    recheck_at,
    recheck_task_name,
)
from hpsteer.sim.fleet import Home
from tests.services.test_reconcile import INTERVAL, SLOT, T0, Rig, actions

TICK = datetime(2025, 1, 15, 7, 50, tzinfo=UTC)


# -- when ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "retry_after", "expected_after"),
    [
        ("OemUnavailable", None, RECHECK_DELAY),  # a 5xx or a timeout: a minute later
        ("OemRateLimited", timedelta(seconds=30), RECHECK_DELAY),  # the minute is later
        ("OemRateLimited", timedelta(minutes=3), timedelta(minutes=3)),  # its Retry-After
        ("CircuitOpen", timedelta(minutes=4), timedelta(minutes=4)),  # the breaker half-opens
        ("OemRateLimited", timedelta(minutes=6), None),  # past half an interval: the next run
        ("CircuitOpen", timedelta(minutes=30), None),
        ("StaleTelemetry", None, None),  # the manufacturer's figures stopped: a minute won't do
        ("not_polled", None, None),  # its poll was not due this run
        ("InvalidInput", None, None),  # a broken document
        (None, None, None),  # judged
    ],
)
def test_a_recheck_comes_a_minute_after_a_failed_read_or_when_its_failure_says_a_read_may_pass(
    error: str | None, retry_after: timedelta | None, expected_after: timedelta | None
) -> None:
    failed_at = TICK + timedelta(seconds=5)
    retry_at = failed_at + retry_after if retry_after else None
    at = recheck_at(error, retry_at, failed_at, TICK, INTERVAL)
    assert at == (failed_at + expected_after if expected_after else None)


# -- the page queues it, the recheck corrects --------------------------------------------------


@pytest.fixture
def r(document_store: DocumentStore) -> Rig:
    """Three homes on the local command path, on the local store or the Firestore emulator."""
    local = LocalFleet.build(start=T0, homes=3, seed=21, wrap_store=lambda _local: document_store)
    local.register_devices()
    return Rig(local)


@dataclass
class Failing:
    """The viessmann adapter's reads of one home fail with ``error`` the next ``left`` times."""

    home: Home
    error: Callable[[], Exception]
    left: int
    reads: int = 0
    calls: list[datetime] = field(default_factory=list)


@pytest.fixture
def failing(
    monkeypatch: pytest.MonkeyPatch,
) -> Callable[[Rig, Callable[[], Exception], int], Failing]:
    def make(r: Rig, error: Callable[[], Exception], left: int) -> Failing:
        home = r.home("viessmann")
        adapter = r.local.gateway.adapter("viessmann")
        read = adapter.get_device_state
        state = Failing(home, error, left)

        def flaky(device: Any) -> Any:
            if device.device_id == home.home_id:
                state.reads += 1
                state.calls.append(r.now)
                if state.left:
                    state.left -= 1
                    raise state.error()
            return read(device)

        monkeypatch.setattr(adapter, "get_device_state", flaky)
        return state

    return make


def steered_then_rebooted(r: Rig) -> Home:
    """A viessmann home steered to max from 07:00, rebooted back to its own setting at 07:40 +
    a few seconds, so its drift is visible at the 07:50 run."""
    home = r.home("viessmann")
    r.steer(home)
    r.run(SLOT + timedelta(minutes=41))
    r.local.fleet.reboot(home.home_id)
    return home


def in_max(home: Home) -> bool:
    return bool(home.target_c == pytest.approx(home.room_setpoint_c + 2.0))


def remedies(r: Rig, home: Home) -> list[str]:
    return sorted(
        c["command_id"] for c in r.commands(home) if c["command_id"].startswith("remedy-")
    )


def test_a_drift_whose_read_failed_twice_on_5xx_is_corrected_by_its_recheck_within_the_interval(
    r: Rig,
    failing: Callable[[Rig, Callable[[], Exception], int], Failing],
) -> None:
    home = steered_then_rebooted(r)
    reads = failing(r, lambda: OemUnavailable("viessmann: 503 Service Unavailable"), 6)
    runs = r.run(TICK)
    assert actions(runs, home) == [("OemUnavailable",)]  # three attempts, and the second look's
    assert [t.name for t in r.local.tasks.pending_tasks(RECHECK_QUEUE.name)] == [
        recheck_task_name(home.home_id, TICK)
    ]
    r.local.run_until(TICK + RECHECK_DELAY + timedelta(seconds=30))
    assert reads.calls[-1] >= TICK + RECHECK_DELAY  # read again a minute later
    assert in_max(home)  # corrected well before the next run
    assert remedies(r, home) == ["remedy-20250115T0750Z"]  # named by the run, as the run would
    runs = r.run(TICK + INTERVAL)
    assert actions(runs, home) == [("InSync",)]  # the next run finds it where its plan says
    assert r.local.tasks.failed_tasks() == []


def test_a_429s_recheck_waits_for_its_retry_after(
    r: Rig,
    failing: Callable[[Rig, Callable[[], Exception], int], Failing],
) -> None:
    home = steered_then_rebooted(r)
    retry_at = TICK + timedelta(minutes=3)
    reads = failing(r, lambda: OemRateLimited("viessmann: 429", retry_at=retry_at), 1)
    runs = r.run(TICK)
    assert actions(runs, home) == [("OemRateLimited",)]  # no second look: the account waits
    assert reads.reads == 1
    r.local.run_until(retry_at - timedelta(seconds=1))
    assert reads.reads == 1
    assert not in_max(home)
    r.local.run_until(retry_at + timedelta(seconds=30))
    assert reads.reads == 2
    assert in_max(home)


def test_a_failure_that_lasts_past_half_an_interval_is_left_to_the_next_run(
    r: Rig,
    failing: Callable[[Rig, Callable[[], Exception], int], Failing],
) -> None:
    home = steered_then_rebooted(r)
    retry_at = TICK + timedelta(minutes=8)
    failing(r, lambda: CircuitOpen("viessmann: breaker open", retry_at=retry_at), 1)
    runs = r.run(TICK)
    assert actions(runs, home) == [("CircuitOpen",)]
    assert r.local.tasks.pending_tasks(RECHECK_QUEUE.name) == []


def test_a_recheck_whose_read_fails_again_is_delivered_again_a_minute_later(
    r: Rig,
    failing: Callable[[Rig, Callable[[], Exception], int], Failing],
) -> None:
    home = steered_then_rebooted(r)
    reads = failing(r, lambda: OemUnavailable("viessmann: 503 Service Unavailable"), 6 + 3)
    r.run(TICK)
    r.local.run_until(TICK + RECHECK_DELAY + timedelta(seconds=30))
    assert reads.left == 0  # the run's six reads and the recheck's three failed
    assert not in_max(home)
    r.local.run_until(TICK + 2 * RECHECK_DELAY + timedelta(seconds=30))
    assert reads.calls[-1] >= reads.calls[-2] + RECHECK_DELAY  # its Retry-After
    assert in_max(home)
    assert r.local.tasks.failed_tasks() == []


def test_a_recheck_that_keeps_failing_ends_with_the_queues_attempts_and_the_next_run_corrects(
    r: Rig,
    failing: Callable[[Rig, Callable[[], Exception], int], Failing],
) -> None:
    home = steered_then_rebooted(r)
    attempts = RECHECK_RETRY.max_attempts
    reads = failing(
        r, lambda: OemUnavailable("viessmann: 503 Service Unavailable"), 6 + 3 * attempts
    )
    r.run(TICK)
    r.local.run_until(TICK + INTERVAL / 2)
    assert reads.left == 0
    assert not in_max(home)
    assert r.local.tasks.pending_tasks(RECHECK_QUEUE.name) == []
    assert r.local.tasks.failed_tasks() == []  # its last attempt answered 200: nothing to retry
    runs = r.run(TICK + INTERVAL)
    assert actions(runs, home) == [("Remediate",)]


def test_a_page_delivered_twice_queues_one_recheck_and_a_recheck_delivered_twice_remedies_once(
    r: Rig,
    failing: Callable[[Rig, Callable[[], Exception], int], Failing],
) -> None:
    home = steered_then_rebooted(r)
    failing(r, lambda: OemUnavailable("viessmann: 503 Service Unavailable"), 6)
    r.run(TICK)
    r.reconcile()  # Pub/Sub delivered the page again
    assert len(r.local.tasks.pending_tasks(RECHECK_QUEUE.name)) == 1
    r.local.copies = lambda: 2  # Cloud Tasks delivers every task twice from now on
    r.local.run_until(TICK + timedelta(minutes=3))
    assert in_max(home)
    assert remedies(r, home) == ["remedy-20250115T0750Z"]
    sent = [c for c in r.commands(home) if c["command_id"].startswith("remedy-")]
    assert [c["state"] for c in sent] != ["failed"]
    assert home.commands_received == 2  # the plan's command and the one remediation


def delivery(body: bytes) -> TaskDelivery:
    return TaskDelivery(body=body, task_name="t", queue_name=RECHECK_QUEUE.name)


def test_a_recheck_that_comes_after_the_next_runs_tick_leaves_the_device_to_that_run(
    r: Rig,
    failing: Callable[[Rig, Callable[[], Exception], int], Failing],
) -> None:
    home = steered_then_rebooted(r)
    reads = failing(r, lambda: OemUnavailable("never"), 0)
    r.local.run_until(TICK + INTERVAL)
    body = RecheckTask(device_id=home.home_id, tick=TICK).model_dump_json().encode()
    reply = handle_recheck(delivery(body), r.local.deps, gateway=r.local.gateway)
    assert (reply.status, reply.outcome) == (200, "superseded")
    assert reads.reads == 0
    assert not in_max(home)


@pytest.mark.parametrize(
    ("body", "outcome"),
    [
        (b"{not json", "malformed"),
        (b'{"device_id": "", "tick": "2025-01-15T07:50:00Z"}', "malformed"),
        (b'{"device_id": "d1", "tick": "2025-01-15T07:50:00"}', "malformed"),  # naive
        (b'{"device_id": "home-0000", "tick": "2025-01-15T07:50:00Z"}', "malformed"),  # unversioned
        (
            RecheckTask(device_id="no-such-home", tick=TICK).model_dump_json().encode(),
            "unknown_device",
        ),
    ],
)
def test_a_recheck_for_no_device_it_can_name_is_answered_200_and_dropped(
    r: Rig, body: bytes, outcome: str
) -> None:
    r.local.run_until(TICK + timedelta(minutes=1))
    reply = handle_recheck(delivery(body), r.local.deps, gateway=r.local.gateway)
    assert (reply.status, reply.outcome) == (200, outcome)
