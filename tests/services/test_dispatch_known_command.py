"""A task carries the command as its maker left it, so that its first delivery does not read it.

The release that creates a command, and the dispatch that records its acknowledgement (or its
remediation), know the command's document and its ``update_time``; the task they make carries
both (:class:`~hpsteer.domain.messages.KnownCommand`). The task's first delivery records on that
version with one update conditional on its ``update_time``. Whoever wrote the command since (a
newer plan superseding it, an earlier delivery of the same task) makes that update fail, and
the delivery then reads the command as it is: a carried version is never acted on once stale,
and a retry (retry count above 0) always reads.

The rig is the local command path (:class:`hpsteer.runtime.local_fleet.LocalFleet`), on the
local store and on Firestore (its emulator).
"""

from __future__ import annotations

import dataclasses
import json
from datetime import timedelta

import pytest

from hpsteer.backends.local.tasks import DispatchedRequest, DispatchResult
from hpsteer.config import Settings
from hpsteer.domain.actions import GenericAction, Mode
from hpsteer.domain.commands import Command, CommandState
from hpsteer.domain.messages import CommandTask
from hpsteer.ports.store import DocumentStore
from hpsteer.runtime.local_fleet import LocalFleet
from hpsteer.services.command_log import history, known_command, load_command
from hpsteer.services.dispatch import TaskDelivery, handle_dispatch
from hpsteer.sim.fleet import Home
from tests.support.outboxes import PLAN_START, publish
from tests.support.stores import ReadRecordingStore

T0 = PLAN_START
SLOT = T0 + timedelta(hours=1)
S = CommandState


@pytest.fixture
def recording(document_store: DocumentStore) -> ReadRecordingStore:
    return ReadRecordingStore(document_store)


@pytest.fixture
def local(recording: ReadRecordingStore) -> LocalFleet:
    fleet = LocalFleet.build(
        start=T0,
        homes=3,
        seed=11,
        settings=Settings(backend="local"),
        wrap_store=lambda _local: recording,  # type: ignore[arg-type,return-value]
    )
    fleet.register_devices()
    return fleet


@pytest.fixture
def home(local: LocalFleet) -> Home:
    return next(h for h in local.fleet if h.manufacturer == "viessmann")


def delivered(
    monkeypatch: pytest.MonkeyPatch, local: LocalFleet
) -> list[tuple[DispatchedRequest, DispatchResult]]:
    """Every task delivery from now on, with its answer."""
    seen: list[tuple[DispatchedRequest, DispatchResult]] = []
    real = local.deliver

    def deliver(request: DispatchedRequest) -> DispatchResult:
        result = real(request)
        seen.append((request, result))
        return result

    monkeypatch.setattr(local, "deliver", deliver)
    return seen


def body_of(request: DispatchedRequest) -> CommandTask:
    return CommandTask.parse_json(request.body)


def again(request: DispatchedRequest, *, retry: int = 0) -> TaskDelivery:
    """The same task delivered once more (Cloud Tasks delivers at least once)."""
    headers = {**request.headers, "X-CloudTasks-TaskRetryCount": str(retry)}
    return TaskDelivery.from_headers(headers, request.body)


def test_a_released_command_is_sent_verified_and_completed_without_being_read(
    monkeypatch: pytest.MonkeyPatch,
    local: LocalFleet,
    home: Home,
    recording: ReadRecordingStore,
) -> None:
    [command_id] = publish(local, home.home_id, "p1", [(1, Mode.MIN)]).queued
    path = f"devices/{home.home_id}/commands/{command_id}"
    seen = delivered(monkeypatch, local)
    recording.read.clear()

    local.run_until(SLOT + timedelta(minutes=11))

    read = list(recording.read)
    assert path not in read  # the dispatch and the verification recorded on versions
    assert read.count(f"devices/{home.home_id}") == 2  # the device, once by each, as before
    stored = load_command(local.deps.store, home.home_id, command_id)
    assert stored is not None
    assert stored.state is S.COMPLETED
    (send, _), (verify, _) = seen
    send_known, verify_known = body_of(send).known, body_of(verify).known
    assert send_known is not None
    assert send_known.command["state"] == S.PENDING.value
    assert verify_known is not None
    assert verify_known.command["state"] == S.ACKNOWLEDGED.value
    assert home.commands_received == 1


def test_a_first_delivery_repeated_after_completion_sends_nothing_and_the_retry_reads(
    monkeypatch: pytest.MonkeyPatch, local: LocalFleet, home: Home
) -> None:
    [command_id] = publish(local, home.home_id, "p1", [(1, Mode.MIN)]).queued
    seen = delivered(monkeypatch, local)
    local.run_until(SLOT + timedelta(minutes=11))
    (send, _), _ = seen
    events = len(history(local.deps.store, home.home_id, command_id))

    # Its carried version is stale: the command was written since, so nothing goes out.
    repeat = handle_dispatch(again(send), local.deps, gateway=local.gateway)
    assert repeat.status == 503
    retry = handle_dispatch(again(send, retry=1), local.deps, gateway=local.gateway)
    assert (retry.status, retry.outcome) == (200, "already_completed")

    assert home.commands_received == 1
    assert len(history(local.deps.store, home.home_id, command_id)) == events


def carried(local: LocalFleet, device_id: str, command_id: str, *, names: str) -> TaskDelivery:
    """A first delivery of a dispatch task for ``names`` carrying ``command_id`` as stored now."""
    path = f"devices/{device_id}/commands/{command_id}"
    stored = local.deps.store.get(path)
    assert stored is not None
    known = known_command(Command.parse(stored.data), stored)
    body = CommandTask(device_id=device_id, command_id=names, purpose="send", known=known)
    return TaskDelivery(body=body.model_dump_json().encode(), task_name="t", queue_name="q")


def test_a_stale_carried_version_of_a_command_superseded_since_sends_nothing(
    local: LocalFleet, home: Home
) -> None:
    [command_id] = publish(local, home.home_id, "p1", [(1, Mode.MIN)]).queued
    delivery = carried(local, home.home_id, command_id, names=command_id)  # as released
    publish(local, home.home_id, "p2", [(1, Mode.MAX)])  # another change: supersedes it
    local.move_to(SLOT)

    first = handle_dispatch(delivery, local.deps, gateway=local.gateway)
    retry = handle_dispatch(
        dataclasses.replace(delivery, retry_count=1), local.deps, gateway=local.gateway
    )

    assert first.status == 503  # its record on the stale version failed: nothing was sent
    assert (retry.status, retry.outcome) == (200, "already_superseded")
    assert home.commands_received == 0
    stored = load_command(local.deps.store, home.home_id, command_id)
    assert stored is not None
    assert stored.state is S.SUPERSEDED


def test_a_task_carrying_another_command_than_it_names_reads_the_one_it_names(
    local: LocalFleet, home: Home, recording: ReadRecordingStore
) -> None:
    [first, second] = publish(local, home.home_id, "p1", [(1, Mode.MIN), (2, Mode.MAX)]).queued
    delivery = carried(local, home.home_id, first, names=second)
    local.move_to(T0 + timedelta(hours=2))
    recording.read.clear()

    reply = handle_dispatch(delivery, local.deps, gateway=local.gateway)

    assert f"devices/{home.home_id}/commands/{second}" in recording.read
    assert (reply.status, reply.outcome) == (200, "acknowledged")
    stored = load_command(local.deps.store, home.home_id, second)
    assert stored is not None
    assert stored.generic_action is GenericAction.SET_MODE_MAX


def test_a_task_body_with_fields_this_version_does_not_know_is_delivered_not_dropped() -> None:
    """A newer optimize may make tasks before this dispatch is replaced by the newer one."""
    body = b'{"schema_version": 1, "device_id": "d1", "command_id": "c1", "purpose": "send", '
    body += b'"hint_from_a_newer_version": {"anything": 1}}'
    task = CommandTask.parse_json(body)
    assert (task.device_id, task.command_id, task.known) == ("d1", "c1", None)


def test_a_task_carrying_a_command_this_version_cannot_read_is_delivered_by_reading_it(
    local: LocalFleet, home: Home, recording: ReadRecordingStore
) -> None:
    """A newer maker's command may have a field this version does not know: read instead."""
    [command_id] = publish(local, home.home_id, "p1", [(1, Mode.MIN)]).queued
    delivery = carried(local, home.home_id, command_id, names=command_id)
    body = json.loads(delivery.body)
    body["known"]["command"]["colour_of_a_newer_version"] = "red"
    delivery = dataclasses.replace(delivery, body=json.dumps(body).encode())
    local.move_to(SLOT)
    recording.read.clear()

    reply = handle_dispatch(delivery, local.deps, gateway=local.gateway)

    assert (reply.status, reply.outcome) == (200, "acknowledged")
    assert f"devices/{home.home_id}/commands/{command_id}" in recording.read
    assert home.commands_received == 1
