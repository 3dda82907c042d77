"""A command's verification read is paid in its send's budget write: dispatch books it
(:meth:`~hpsteer.adapters.gateway.ManufacturerGateway.admit_command`), the ``sent`` event carries
the booking to the command, and the first delivery of the verification task reads the device on
it without a store operation on the account's budget. Anything else counts its read on its own.

The rig is the local command path (:class:`hpsteer.runtime.local_fleet.LocalFleet`), its store
wrapped to tell operations on the budget's document from the others.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from benchmarks.dispatch import PhasedCountingStore
from hpsteer.adapters.budget import BLOCKED_FIELD, Booking
from hpsteer.adapters.gateway import VERIFY_BOOKING_SPAN
from hpsteer.config import Settings
from hpsteer.domain.actions import GenericAction
from hpsteer.domain.commands import VERIFICATION_BOOKING, Command, CommandState, fold
from hpsteer.domain.messages import CommandTask
from hpsteer.ports.store import DocumentStore
from hpsteer.runtime.local_fleet import LocalFleet
from hpsteer.services.command_log import command_path, history, load_command
from hpsteer.services.command_tasks import VERIFY_QUEUE, verify_task_name
from hpsteer.services.dispatch import Reply, TaskDelivery, handle_verify
from hpsteer.sim.faults import FaultSpec
from hpsteer.sim.fleet import Home
from tests.services.test_dispatch import publish_plan

T0 = datetime(2025, 1, 15, 6, tzinfo=UTC)
SLOT = T0 + timedelta(hours=1)
VERIFY_AT = SLOT + timedelta(minutes=10)  # verify_delay_seconds = 600
S = CommandState


class Rig:
    """A local fleet on a store that tallies each operation by phase and document kind."""

    def __init__(self, document_store: DocumentStore) -> None:
        self.store = PhasedCountingStore(document_store)
        self.local = LocalFleet.build(
            start=T0,
            homes=3,
            seed=11,
            settings=Settings(backend="local", release_ahead_minutes=2880),
            wrap_store=lambda _local: self.store,
        )
        self.local.register_devices()

    def home(self, manufacturer: str) -> Home:
        return next(h for h in self.local.fleet if h.manufacturer == manufacturer)

    def command(self, home: Home, command_id: str) -> Command:
        found = load_command(self.local.deps.store, home.home_id, command_id)
        assert found is not None
        return found

    def budget_operations(self, phase: str) -> tuple[int, int]:
        """Reads and writes of budget documents in ``phase``."""
        counts = self.store.tally.counts
        return counts[(phase, "budget", "read")], counts[(phase, "budget", "write")]

    def sent_and_acknowledged(self, manufacturer: str) -> tuple[Home, str]:
        home = self.home(manufacturer)
        [command_id] = publish_plan(
            self.local, home.home_id, "p1", [(SLOT, GenericAction.SET_MODE_MAX)]
        )
        self.local.run_until(SLOT + timedelta(seconds=1))
        assert self.command(home, command_id).state is S.ACKNOWLEDGED
        return home, command_id

    def verify(self, home: Home, command_id: str, *, retry: int = 0, attempt: int = 1) -> Reply:
        """A delivery of the command's verification task, as Cloud Tasks makes it, now."""
        self.store.phase = f"verify{retry}"
        return handle_verify(
            TaskDelivery(
                body=CommandTask(device_id=home.home_id, command_id=command_id, purpose="verify")
                .model_dump_json()
                .encode(),
                task_name=verify_task_name(home.home_id, command_id, attempt),
                queue_name=VERIFY_QUEUE.name,
                retry_count=retry,
            ),
            self.local.deps,
            gateway=self.local.gateway,
        )


@pytest.fixture
def rig(document_store: DocumentStore) -> Rig:
    return Rig(document_store)


def _booking(command: Command) -> Booking:
    booking = Booking.parse(command.verification_booking)
    assert booking is not None
    return booking


@pytest.mark.parametrize("manufacturer", ["viessmann", "nibe_myuplink", "daikin_onecta"])
def test_the_send_books_the_verification_read_and_the_command_carries_the_booking(
    rig: Rig, manufacturer: str
) -> None:
    home, command_id = rig.sent_and_acknowledged(manufacturer)
    booking = _booking(rig.command(home, command_id))
    calls = rig.local.gateway.adapter(manufacturer).rate_limits.calls_per_state_read
    assert (booking.kind, booking.units, booking.slots) == ("command", calls, 1)
    assert (booking.first_at, booking.span) == (VERIFY_AT, VERIFY_BOOKING_SPAN)
    assert booking.holder == command_path(home.home_id, command_id)
    assert booking.marked_on == f"devices/{home.home_id}"
    budget = rig.local.gateway.budget(manufacturer, home.account_id)
    assert [b.booking_id for b in budget.bookings()] == [booking.booking_id]
    [sent] = [
        e for e in history(rig.local.deps.store, home.home_id, command_id) if e.type == "sent"
    ]
    assert Booking.parse(sent.detail[VERIFICATION_BOOKING]) == booking
    events = history(rig.local.deps.store, home.home_id, command_id)
    assert fold(events) == rig.command(home, command_id)


@pytest.mark.parametrize("manufacturer", ["viessmann", "nibe_myuplink", "daikin_onecta"])
def test_a_verification_on_its_booking_reads_and_writes_nothing_of_the_budget(
    rig: Rig, manufacturer: str
) -> None:
    home, command_id = rig.sent_and_acknowledged(manufacturer)
    assert rig.budget_operations("setup") == (1, 1)  # the send's one transaction
    rig.store.phase = "verify0"
    rig.local.run_until(VERIFY_AT + timedelta(minutes=1))  # the queue's first delivery
    done = rig.command(home, command_id)
    assert done.state is S.COMPLETED
    assert done.verified_at == VERIFY_AT
    assert rig.budget_operations("verify0") == (0, 0)


@pytest.mark.parametrize(
    ("manufacturer", "at", "delivery"),
    [
        # The first delivery crashed after its read: the booked call was made.
        pytest.param("viessmann", VERIFY_AT, {"retry": 1}, id="a redelivery"),
        # The queue ran late: the booking's span has passed.
        pytest.param(
            "daikin_onecta", VERIFY_AT + VERIFY_BOOKING_SPAN, {}, id="after the booking ended"
        ),
        # Not the task this booking is for.
        pytest.param("nibe_myuplink", VERIFY_AT, {"attempt": 2}, id="another attempt's task"),
    ],
)
def test_a_verification_the_booking_is_not_for_counts_its_read_on_its_own(
    rig: Rig, manufacturer: str, at: datetime, delivery: dict[str, int]
) -> None:
    home, command_id = rig.sent_and_acknowledged(manufacturer)
    rig.local.fleet.advance(at)
    reply = rig.verify(home, command_id, **delivery)
    assert (reply.status, reply.outcome) == (200, "completed")
    assert rig.budget_operations(f"verify{delivery.get('retry', 0)}") == (1, 1)


def test_a_block_after_the_send_stops_the_booked_verification_until_it_ends(rig: Rig) -> None:
    home, command_id = rig.sent_and_acknowledged("viessmann")
    before = rig.local.deps.store.get(command_path(home.home_id, command_id))
    budget = rig.local.gateway.budget("viessmann", home.account_id)
    until = SLOT + timedelta(minutes=30)
    budget.block_until(until, "ViCare 429")
    device = rig.local.deps.store.get(f"devices/{home.home_id}")
    assert device is not None
    assert device.data[BLOCKED_FIELD] == until
    after = rig.local.deps.store.get(command_path(home.home_id, command_id))
    assert before is not None
    assert after is not None
    assert after.data == before.data

    rig.local.fleet.advance(VERIFY_AT)
    reply = rig.verify(home, command_id)
    assert (reply.status, reply.outcome) == (429, "verify_later")
    assert reply.headers() == {"Retry-After": "1200"}
    assert rig.command(home, command_id).state is S.ACKNOWLEDGED

    rig.local.fleet.advance(until)
    reply = rig.verify(home, command_id, retry=1)
    assert (reply.status, reply.outcome) == (200, "completed")
    assert rig.budget_operations("verify1") == (1, 1)


def test_a_remediation_books_the_read_of_its_own_verification(rig: Rig) -> None:
    home = rig.home("nibe_myuplink")
    [command_id] = publish_plan(rig.local, home.home_id, "p1", [(SLOT, GenericAction.SET_MODE_MAX)])
    rig.local.fleet.faults.set_device(home.home_id, FaultSpec(not_applied_rate=1.0))
    rig.local.run_until(SLOT + timedelta(seconds=1))
    first = _booking(rig.command(home, command_id))
    rig.local.run_until(VERIFY_AT + timedelta(seconds=1))  # a mismatch: the remediation is sent
    remediated = rig.command(home, command_id)
    assert (remediated.state, remediated.attempt) == (S.ACKNOWLEDGED, 2)
    second = _booking(remediated)
    assert second.booking_id != first.booking_id
    assert second.first_at == VERIFY_AT + timedelta(minutes=10)
    rig.store.phase = "verify_remediation"
    rig.local.run_until(VERIFY_AT + timedelta(minutes=11))
    assert rig.command(home, command_id).state is S.FAILED
    assert rig.budget_operations("verify_remediation") == (0, 0)
