"""A reconcile page on several threads: the same outcomes, the same stored state, the same counts.

Production reconciles a page's devices on ``reconcile_workers`` threads (they wait on the
manufacturers almost all the time); the local runtime reconciles them one after another, so its
seeded faults stay reproducible. These tests run the same page both ways on the local backends,
with the real adapters, breakers and budgets over the simulated fleet (healthy: no random fault
draws, so the order of the calls changes nothing the fleet answers).
"""

from __future__ import annotations

import logging
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from hpsteer.backends.local.store import LocalDocumentStore
from hpsteer.domain.actions import Mode
from hpsteer.domain.messages import ReconcileRequest, Topic
from hpsteer.errors import StoreUnavailable
from hpsteer.observability.logging import log_context
from hpsteer.observability.tracing import span
from hpsteer.ports.store import DocumentStore
from hpsteer.runtime.local_fleet import LocalFleet
from hpsteer.services.command_tasks import VERIFY_QUEUE, dispatch_queue
from hpsteer.services.outbox import release_plan
from hpsteer.services.plans_store import make_current
from hpsteer.services.reconcile import DeviceOutcome, reconcile_page
from hpsteer.sim import MANUFACTURERS
from hpsteer.sim.faults import FaultSpec
from tests.support.tracing import BoundIds

T0 = datetime(2025, 1, 15, 6, tzinfo=UTC)
SLOT = T0 + timedelta(hours=1)
PLAN_END = T0 + timedelta(hours=12)
HOMES = 12
WORKERS = 6


class FailingUpdates:
    """A store whose updates of the paths in ``failing`` raise :class:`StoreUnavailable`."""

    def __init__(self, inner: DocumentStore) -> None:
        self.inner = inner
        self.failing: set[str] = set()

    def update(self, path: str, changes: Any, **kwargs: Any) -> datetime:
        if path in self.failing:
            raise StoreUnavailable(f"{path}: the store did not answer")
        return self.inner.update(path, changes, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def steered_fleet(store: DocumentStore | None = None) -> LocalFleet:
    """Twelve homes (four per manufacturer) steered to ``max`` from 07:00, the command path done;
    then at 07:41 two rebooted (drift), one changed by its household (override), one offline,
    one with a manufacturer nobody knows: what one page meets."""
    local = LocalFleet.build(
        start=T0,
        homes=HOMES,
        seed=5,
        wrap_store=(lambda _built: store) if store is not None else None,
    )
    assert local.deps.settings.reconcile_workers == 1  # the local runtime's own runs
    local.register_devices()
    deps = local.deps
    for home in local.fleet:
        document: dict[str, Any] = {
            "plan_id": "p1",
            "device_id": home.home_id,
            "end_at": PLAN_END,
            "outbox": [
                {"at": SLOT.isoformat(), "action": "set_mode_max", "slot_index": 4}
                | {"status": "pending"}
            ],
        }
        deps.store.set(f"devices/{home.home_id}/plans/p1", document)
        make_current(
            deps.store, home.home_id, "p1", T0, T0, [(T0, Mode.MID), (SLOT, Mode.MAX)], PLAN_END
        )
        device = deps.store.get(f"devices/{home.home_id}")
        assert device is not None
        release_plan(deps, home.home_id, device.data, document)
    local.run_until(SLOT + timedelta(minutes=40))
    homes = list(local.fleet)
    local.fleet.reboot(homes[0].home_id)
    local.fleet.reboot(homes[4].home_id)
    local.fleet.user_changes_setpoint(homes[1].home_id, homes[1].room_setpoint_c + 1.0)
    local.fleet.faults.set_device(homes[6].home_id, FaultSpec(gateway_offline=True))
    deps.store.update(f"devices/{homes[3].home_id}", {"manufacturer": "acme_heat"})
    local.run_until(SLOT + timedelta(minutes=41))
    return local


def reconcile(local: LocalFleet, workers: int) -> list[DeviceOutcome]:
    request = ReconcileRequest(scheduled_at=local.clock.now(), shard_size=100)
    return reconcile_page(
        request, local.deps, gateway=local.gateway, counters=local.metrics, workers=workers
    )


def stored(local: LocalFleet) -> dict[str, dict[str, Any]]:
    """Every document's data by path (not its update time: that follows the commit order)."""
    store = local.deps.store
    found: dict[str, dict[str, Any]] = {}
    for collection in ("devices", "alerts", "reconcile_runs"):
        for document in store.query(collection).documents:
            found[document.path] = document.data
    for home in local.fleet:
        for sub in ("commands", "plans"):
            for document in store.query(f"devices/{home.home_id}/{sub}").documents:
                found[document.path] = document.data
    return found


def published(local: LocalFleet) -> Counter[tuple[str, bytes, tuple[tuple[str, str], ...]]]:
    """Every message published, as a multiset (the threads publish in the order they finish)."""
    bus: Any = local.deps.bus
    return Counter(
        (topic.value, m.data, tuple(sorted(m.attributes.items())))
        for topic in Topic
        for m in bus.published(topic.value)
    )


def tasks(local: LocalFleet) -> list[str]:
    queues = [dispatch_queue(m).name for m in MANUFACTURERS] + [VERIFY_QUEUE.name]
    return sorted(task.name for queue in queues for task in local.tasks.pending_tasks(queue))


def counts(local: LocalFleet) -> dict[str, list[dict[str, object]]]:
    return {
        name: series
        for name, series in local.metrics.snapshot().items()
        if name.startswith(("reconciliation_", "state_drift", "user_overrides"))
    }


# -- the same page, one worker and several ------------------------------------------------------


@pytest.fixture(scope="module")
def one_and_several() -> tuple[LocalFleet, list[DeviceOutcome], LocalFleet, list[DeviceOutcome]]:
    alone, together = steered_fleet(), steered_fleet()
    return alone, reconcile(alone, 1), together, reconcile(together, WORKERS)


def test_a_page_on_several_workers_gives_the_same_outcomes_in_document_order(
    one_and_several: tuple[LocalFleet, list[DeviceOutcome], LocalFleet, list[DeviceOutcome]],
) -> None:
    alone, sequential, _, threaded = one_and_several
    assert threaded == sequential
    by_device = {o.device_id: o.actions for o in threaded}
    homes = list(alone.fleet)
    assert by_device[homes[0].home_id] == ("Remediate",)
    assert by_device[homes[1].home_id] == ("Override",)
    assert by_device[homes[6].home_id] == ("MarkUnreachable",)
    assert by_device[homes[3].home_id] == ("failed",)
    assert [o.device_id for o in threaded] == sorted(by_device)  # the query's order


def test_a_page_on_several_workers_leaves_the_same_stored_state_tasks_and_messages(
    one_and_several: tuple[LocalFleet, list[DeviceOutcome], LocalFleet, list[DeviceOutcome]],
) -> None:
    alone, _, together, _ = one_and_several
    assert stored(together) == stored(alone)
    assert tasks(together) == tasks(alone)
    assert published(together) == published(alone)


def test_the_counters_of_a_page_on_several_workers_add_up_as_on_one(
    one_and_several: tuple[LocalFleet, list[DeviceOutcome], LocalFleet, list[DeviceOutcome]],
) -> None:
    alone, sequential, together, _ = one_and_several
    assert counts(together) == counts(alone)
    judged_in_sync = sum(o.actions == ("InSync",) for o in sequential)
    assert judged_in_sync > 0
    in_sync = together.metrics.snapshot()["reconciliation_success_total"]
    assert sum(float(str(s["value"])) for s in in_sync) >= judged_in_sync


# -- failures --------------------------------------------------------------------------------


def test_a_device_whose_save_fails_fails_the_page_only_after_the_others_are_reconciled() -> None:
    """A store error (transient) of one device is raised once every device of the page is
    done: the page is not recorded as done, so Pub/Sub delivers it again, and the redelivered
    page finishes that device without doubling what it or the others did."""
    store = FailingUpdates(LocalDocumentStore())
    local = steered_fleet(store)
    homes = list(local.fleet)
    broken, drifted, overridden = homes[0].home_id, homes[4].home_id, homes[1].home_id
    store.failing.add(f"devices/{broken}")  # its remediation's save

    def remedies(device_id: str) -> int:
        commands = local.deps.store.query(f"devices/{device_id}/commands").documents
        return sum(d.id.startswith("remedy-") for d in commands)

    def done_pages() -> int:
        runs = local.deps.store.query("reconcile_runs").documents
        return sum(d.data.get("done_at") is not None for d in runs)

    with pytest.raises(StoreUnavailable):
        reconcile(local, WORKERS)

    assert done_pages() == 0  # claimed by this delivery, not done
    assert remedies(drifted) == 1  # devices after the broken one: reconciled all the same
    override = local.deps.store.get(f"devices/{overridden}")
    assert override is not None
    assert override.data["override_until"] is not None
    store.failing.clear()

    again = {o.device_id: o.actions for o in reconcile(local, WORKERS)}

    assert again[broken] == ("Remediate",)
    assert again[drifted] == again[overridden] == ("Skip",)  # done the first time
    assert remedies(broken) == remedies(drifted) == 1
    assert len(local.deps.store.query("reconcile_runs").documents) == done_pages() == 1


# -- context ---------------------------------------------------------------------------------


def test_each_worker_writes_its_lines_and_spans_in_the_pages_context(
    spans: InMemorySpanExporter,
) -> None:
    local = steered_fleet()
    drifted = next(iter(local.fleet)).home_id
    handler = BoundIds(logging.WARNING)
    logger = logging.getLogger("hpsteer.services.reconcile")
    logger.addHandler(handler)
    try:
        with span("reconcile_requests"), log_context(message_id="m-1"):
            reconcile(local, WORKERS)
    finally:
        logger.removeHandler(handler)

    [line] = [ids for message, ids in handler.lines if message.startswith(f"drift on {drifted}")]
    assert line == {"message_id": "m-1", "device_id": drifted}
    assert all(name.startswith("reconcile") for name in handler.threads)  # the page's workers
    finished = spans.get_finished_spans()
    [page] = [s for s in finished if s.name == "reconcile_requests"]
    devices = [s for s in finished if s.name == "reconcile_device"]
    assert len(devices) == HOMES
    assert {s.parent.span_id for s in devices if s.parent} == {page.context.span_id}
    assert all(s.context.trace_id == page.context.trace_id for s in devices)


def replans_for(local: LocalFleet, device_id: str) -> int:
    bus: Any = local.deps.bus
    messages = bus.published(Topic.REPLAN_REQUESTS.value)
    return sum(m.attributes.get("device_id") == device_id for m in messages)


def test_an_override_whose_pause_cannot_be_stored_is_seen_again_never_fought() -> None:
    """The household's setting is handed over (its baseline forgotten, a re-plan asked) only
    once the pause is stored: were it handed over first, the redelivered page could no longer
    place the household's setting and would remediate against it."""
    store = FailingUpdates(LocalDocumentStore())
    local = steered_fleet(store)
    overridden = list(local.fleet)[1].home_id
    store.failing.add(f"devices/{overridden}")

    with pytest.raises(StoreUnavailable):
        reconcile(local, 1)

    assert replans_for(local, overridden) == 0
    store.failing.clear()

    again = {o.device_id: o.actions for o in reconcile(local, 1)}

    assert again[overridden] == ("Override",)
    commands = local.deps.store.query(f"devices/{overridden}/commands").documents
    assert not any(d.id.startswith("remedy-") for d in commands)
    assert replans_for(local, overridden) == 1
