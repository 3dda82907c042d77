"""The pricing arithmetic of ``benchmarks/cloud_cost.py``: how counted operations become dollars
per device-month (the simulation that counts them is the benchmark's, not tested here)."""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from benchmarks.cloud_cost import (
    CREDENTIAL_ENTRY_POINTS,
    DAYS_PER_MONTH,
    ENTRY_SCALING,
    INSTANCE_LIFETIME_S,
    LATENCY_S,
    PRICES,
    SERVED_BY,
    TERRAFORM_FUNCTIONS,
    FunctionResources,
    FunctionUsage,
    Invocations,
    Meter,
    Price,
    Scaling,
    Usage,
    bigquery_row_bytes,
    code_path,
    collection_group,
    collection_pattern,
    credential_instance_starts_per_month,
    effective_concurrency,
    entry_loads,
    firestore_document_bytes,
    firestore_index_bytes,
    firestore_index_exemptions,
    firestore_name_bytes,
    fleet_in_flight,
    function_usage,
    itemise,
    optimize_io_workers,
    pubsub_billed_bytes,
    pubsub_message_bytes,
    reconcile_workers,
    requests_per_device,
    serving_function,
    sweep_workers,
    terraform_functions,
    terraform_index_exemptions,
    terraform_max_instances,
    total_usd,
)
from benchmarks.dispatch import PhasedCountingStore
from hpsteer.backends.local.store import LocalDocumentStore

READS = Price("Firestore", "reads", "read", 0.03 / 100_000, 1_000_000.0, "test")
JOBS = Price("Cloud Scheduler", "jobs", "job-month", 0.10, 3.0, "test")
STORAGE = Price("Firestore", "stored", "GiB-month", 0.18, 0.0, "test")
TEST_PRICES = {"reads": READS, "jobs": JOBS, "storage": STORAGE}


def test_an_item_is_the_fleets_units_beyond_the_free_tier_shared_by_every_device() -> None:
    [item] = itemise([Usage("reads", per_device_month=100.0)], TEST_PRICES, fleet=100_000)
    billable = 100.0 * 100_000 - 1_000_000
    assert item.usd_per_device_month == pytest.approx(billable * READS.usd_per_unit / 100_000)
    assert item.quantity_per_device_month == pytest.approx(100.0)
    assert item.unit_price_usd == READS.usd_per_unit


def test_the_free_tier_is_taken_once_per_project_not_once_per_device() -> None:
    [item] = itemise([Usage("reads", per_device_month=20.0)], TEST_PRICES, fleet=100_000)
    per_device_free = max(0.0, 20.0 - READS.free_units_per_month) * READS.usd_per_unit
    assert per_device_free == 0.0  # what a per-device free tier would wrongly give
    assert item.usd_per_device_month == pytest.approx(
        (2_000_000 - 1_000_000) * READS.usd_per_unit / 100_000
    )


def test_a_fleet_within_the_free_tier_pays_nothing() -> None:
    [item] = itemise([Usage("reads", per_device_month=100.0)], TEST_PRICES, fleet=10_000)
    assert item.usd_per_device_month == 0.0


def test_per_device_cost_beyond_the_free_tier_is_the_same_whatever_the_fleet_size() -> None:
    """Beyond the free tier the per-device price falls only by the free units' share."""
    usage = [Usage("storage", per_device_month=0.001)]
    small, large = (itemise(usage, TEST_PRICES, fleet)[0] for fleet in (1_000, 100_000))
    assert small.usd_per_device_month == pytest.approx(large.usd_per_device_month)
    assert large.fleet_units_per_month == pytest.approx(100 * small.fleet_units_per_month)


def test_a_projects_fixed_cost_is_divided_by_the_fleet() -> None:
    usage = [Usage("jobs", per_device_month=0.0, project_month=5.0)]
    for fleet in (10, 100_000):
        [item] = itemise(usage, TEST_PRICES, fleet)
        assert item.usd_per_device_month == pytest.approx((5.0 - 3.0) * 0.10 / fleet)


def test_the_total_is_the_sum_of_the_items() -> None:
    usages = [
        Usage("reads", per_device_month=500.0),
        Usage("jobs", per_device_month=0.0, project_month=10.0),
        Usage("storage", per_device_month=0.002),
    ]
    items = itemise(usages, TEST_PRICES, fleet=100_000)
    assert len(items) == 3
    assert total_usd(items) == pytest.approx(sum(i.usd_per_device_month for i in items))
    assert total_usd(items) > max(i.usd_per_device_month for i in items)


def test_a_fleet_needs_a_device() -> None:
    with pytest.raises(ValueError, match="at least one device"):
        itemise([Usage("reads", 1.0)], TEST_PRICES, fleet=0)


def test_every_price_names_its_source_and_free_tiers_are_never_negative() -> None:
    for price in PRICES.values():
        assert price.source.startswith("https://cloud.google.com/")
        assert price.usd_per_unit > 0
        assert price.free_units_per_month >= 0


def test_firestore_daily_free_quota_is_counted_over_a_month() -> None:
    assert PRICES["firestore_reads"].free_units_per_month == pytest.approx(50_000 * DAYS_PER_MONTH)


def test_firestore_document_size_follows_the_documented_example() -> None:
    """Firestore's storage-size page: users/jeff/tasks/my_task_id with four fields is 147
    bytes (name 44, fields 71, 32 more)."""
    path = "users/jeff/tasks/my_task_id"
    data = {
        "type": "Personal",
        "done": False,
        "priority": 1,
        "description": "Learn Cloud Firestore",
    }
    assert firestore_name_bytes(path) == 44
    assert firestore_document_bytes(path, data) == 147


def test_firestore_maps_and_times_are_sized_by_their_parts() -> None:
    when = datetime(2024, 1, 1, tzinfo=UTC)
    flat = firestore_document_bytes("a/b", {"x": when, "y": None})
    nested = firestore_document_bytes("a/b", {"m": {"x": when, "y": None}})
    assert nested == flat + len(b"m") + 1


def test_index_entries_are_two_per_field_and_one_per_array_element() -> None:
    one = firestore_index_bytes("c/d", {"f": 1})
    assert firestore_index_bytes("c/d", {"f": 1, "g": 2}) == 2 * one
    assert firestore_index_bytes("c/d", {"f": [1, 2]}) == one  # two elements, one entry each
    assert firestore_index_bytes("c/d", {}) == 0


def test_a_documents_collection_group_is_the_last_collection_of_its_path() -> None:
    assert collection_group("devices/d") == "devices"
    assert collection_group("devices/d/plans/p") == "plans"
    assert collection_group("devices/d/commands/c/events/00000001") == "events"


def test_an_exempted_field_has_no_index_entries_nor_have_its_subfields() -> None:
    data = {"f": 1, "big": [1, 2, 3], "m": {"a": 1, "b": 2}}
    kept = firestore_index_bytes("c/d", {"f": 1})
    assert firestore_index_bytes("c/d", data, {("c", "big"), ("c", "m")}) == kept
    only_a = firestore_index_bytes("c/d", {"f": 1, "m": {"a": 1}})
    assert firestore_index_bytes("c/d", data, {("c", "big"), ("c", "m.b")}) == only_a


def test_an_exemption_holds_in_its_collection_group_at_any_depth_and_nowhere_else() -> None:
    data = {"f": 1, "slots": [1, 2, 3]}
    exempt = {("plans", "slots")}
    assert firestore_index_bytes("devices/d/plans/p", data, exempt) == firestore_index_bytes(
        "devices/d/plans/p", {"f": 1}
    )
    assert firestore_index_bytes("plans/p", data, exempt) == firestore_index_bytes(
        "plans/p", {"f": 1}
    )
    assert firestore_index_bytes("devices/d/slots/s", data, exempt) == firestore_index_bytes(
        "devices/d/slots/s", data
    )


FIRESTORE_TF = """
resource "google_firestore_field" "commands_command_id" {
  database   = google_firestore_database.main.name
  collection = "commands"
  field      = "command_id"

  index_config {
    indexes {
      order       = "ASCENDING"
      query_scope = "COLLECTION_GROUP"
    }
  }
}

resource "google_firestore_field" "webhook_ids_expires_at" {
  collection = "webhook_ids"
  field      = "expires_at"

  ttl_config {}
  index_config {}
}

resource "google_firestore_field" "alerts_raised_at_ttl_only" {
  collection = "alerts"
  field      = "raised_at"

  ttl_config {}
}

resource "google_firestore_field" "plans_slots" {
  database   = google_firestore_database.main.name
  collection = "plans"
  field      = "slots"

  index_config {
  }
}

resource "google_firestore_index" "alerts_of_device" {
  collection  = "alerts"
  query_scope = "COLLECTION"
}
"""


def test_exemptions_are_the_firestore_fields_whose_index_config_is_empty() -> None:
    assert terraform_index_exemptions(FIRESTORE_TF) == {
        ("webhook_ids", "expires_at"),
        ("plans", "slots"),
    }


def test_the_exemptions_are_read_from_terraform_and_none_without_it(tmp_path: Path) -> None:
    tf = tmp_path / "firestore.tf"
    tf.write_text(FIRESTORE_TF)
    assert firestore_index_exemptions(tf) == terraform_index_exemptions(FIRESTORE_TF)
    assert firestore_index_exemptions(tmp_path / "absent.tf") == frozenset()
    assert ("devices", "current_plan_track") in firestore_index_exemptions()


def test_a_small_pubsub_message_is_billed_as_a_thousand_bytes() -> None:
    size = pubsub_message_bytes(b"{}", {"device_id": "d1"})
    assert size == 2 + len("device_id") + 2 + 20 + 16
    assert pubsub_billed_bytes(size) == 1000
    assert pubsub_billed_bytes(4000) == 4000


def test_a_bigquery_row_is_sized_by_column_type() -> None:
    row = {"device_id": "abc", "at": datetime(2024, 1, 1, tzinfo=UTC), "on": True, "x": None}
    assert bigquery_row_bytes(row) == (2 + 3) + 8 + 1


def test_requests_per_device_by_scaling() -> None:
    fleet = 100_000
    assert requests_per_device(70, 20, Scaling("device"), fleet) == pytest.approx(3.5)
    # 10 runs of one page of 20 homes; the fleet needs 500 pages of 200 per run
    assert requests_per_device(10, 20, Scaling("page", 200), fleet) == pytest.approx(
        10 * 500 / fleet
    )
    assert requests_per_device(48, 20, Scaling("project"), fleet) == pytest.approx(48 / fleet)


DAY_S = 86_400.0


def test_waits_of_requests_an_instance_serves_at_once_are_billed_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Busy enough that every slot is used (a thousand requests in flight, one instance at
    most): the requests' summed durations, CPU stretched by the fractional vCPU, divided by the
    concurrency."""
    from benchmarks import cloud_cost

    monkeypatch.setitem(cloud_cost.ENTRY_SCALING, ("f", "e"), Scaling("device"))
    sizes = {"e": FunctionResources(0.5, 0.25, 4, "test")}
    measured = {"e": Invocations(10, 0.1, 8.0)}
    device, project = function_usage(
        "f", measured, 10, 100_000, sizes, period_s=60.0, max_instances={"e": 1}
    )
    instance_s = (0.1 / 0.25 + 8.0) / 4 / 10 + 0.05 * 1.0 / 4  # per device, one request each
    assert device.requests == pytest.approx(1.0)
    assert device.vcpu_s == pytest.approx(instance_s * 0.25)
    assert device.gib_s == pytest.approx(instance_s * 0.5)
    assert project == FunctionUsage(0.0, 0.0, 0.0)


def test_requests_that_never_overlap_are_each_billed_in_full_whatever_the_concurrency(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A trickle (far less than one request in flight fleet-wide) gains nothing from a high
    maximum concurrency: each request is its instance's whole busy time."""
    from benchmarks import cloud_cost

    monkeypatch.setitem(cloud_cost.ENTRY_SCALING, ("f", "e"), Scaling("device"))
    sizes = {"e": FunctionResources(1.0, 1.0, 80, "test")}
    measured = {"e": Invocations(10, 0.1, 1.0)}  # 1.1 s each, 10 in a day, fleet of 10
    device, _ = function_usage("f", measured, 10, 10, sizes, period_s=DAY_S, max_instances={})
    assert device.vcpu_s == pytest.approx((0.1 + 1.0) / 10 + 0.05 * 1.0)


def test_cpu_work_is_billed_even_when_waits_overlap() -> None:
    """Concurrency shares the waits, not the vCPU: an instance busy computing is billed for it."""
    from benchmarks.cloud_cost import ENTRY_SCALING

    assert ("reconcile", "reconcile") in ENTRY_SCALING
    sizes = {"reconcile": FunctionResources(1.0, 1.0, 4, "test")}
    measured = {"reconcile": Invocations(10, 8.0, 1.0)}
    device, _ = function_usage(
        "reconcile", measured, 10, 100_000, sizes, period_s=DAY_S, max_instances={}
    )
    assert device.vcpu_s >= 8.0 / 10


def test_the_autoscaler_keeps_instances_at_sixty_percent_of_their_concurrency() -> None:
    size = FunctionResources(0.5, 1.0, 10, "test")
    assert effective_concurrency(60.0, size, max_instances=100) == pytest.approx(6.0)
    assert effective_concurrency(0.3, size, max_instances=100) == 1.0
    assert effective_concurrency(60.0, size, max_instances=2) == 10.0  # capped: slots full


def test_a_runs_pages_are_all_in_flight_at_once() -> None:
    size = FunctionResources(0.5, 1.0, 4, "test")
    pages = fleet_in_flight(
        Invocations(144, 1.0, 50.0),
        Scaling("page", 200),
        size,
        homes=20,
        fleet=100_000,
        period_s=DAY_S,
    )
    assert pages == 500
    per_event = fleet_in_flight(
        Invocations(200, 1.0, 9.0),
        Scaling("device"),
        size,
        homes=20,
        fleet=86_400,
        period_s=DAY_S,
    )
    assert per_event == pytest.approx(200 / 20 * 0.05)  # 10 a second, 50 ms each


def test_a_project_wide_trigger_is_billed_to_the_project_not_per_device(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from benchmarks import cloud_cost

    monkeypatch.setitem(cloud_cost.ENTRY_SCALING, ("f", "tick"), Scaling("project"))
    sizes = {"tick": FunctionResources(1.0, 1.0, 1, "test")}
    device, project = function_usage(
        "f",
        {"tick": Invocations(48, 0.0, 0.0)},
        20,
        100_000,
        sizes,
        period_s=DAY_S,
        max_instances={},
    )
    assert project.requests == 48
    assert project.vcpu_s == pytest.approx(48 * 0.05)
    assert device.requests == 0.0


def test_entry_points_one_function_serves_share_its_instances(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Two routes of one function, each about 3.5 requests in flight fleet-wide (35 a second,
    0.1 s each): alone each keeps an instance 3.5 requests busy; served by one function of
    concurrency 16 they share one instance 7 requests busy, and each is billed at 7."""
    from benchmarks import cloud_cost

    monkeypatch.setitem(cloud_cost.ENTRY_SCALING, ("f", "a"), Scaling("device"))
    monkeypatch.setitem(cloud_cost.ENTRY_SCALING, ("f", "b"), Scaling("device"))
    measured = {"a": Invocations(300, 0.0, 30.0), "b": Invocations(300, 0.0, 30.0)}
    size = FunctionResources(0.5, 1.0, 16, "test")
    apart = {"a": size, "b": size}

    alone = entry_loads("f", measured, 10, 100_000, apart, period_s=DAY_S, max_instances={})
    monkeypatch.setitem(cloud_cost.SERVED_BY, "b", "a")
    shared = entry_loads("f", measured, 10, 100_000, {"a": size}, period_s=DAY_S, max_instances={})

    assert (
        alone["a"].in_flight
        == alone["a"].concurrency
        == pytest.approx(300 / 10 * 100_000 / DAY_S * 0.1)
    )
    assert shared["b"].in_flight == pytest.approx(alone["b"].in_flight)  # its own load unchanged
    assert (
        shared["a"].function_in_flight
        == shared["b"].function_in_flight
        == pytest.approx(alone["a"].in_flight + alone["b"].in_flight)
    )
    assert (
        shared["a"].concurrency
        == shared["b"].concurrency
        == pytest.approx(alone["a"].concurrency + alone["b"].concurrency)
    )


def test_entry_points_one_function_serves_are_billed_at_their_pooled_concurrency(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from benchmarks import cloud_cost

    monkeypatch.setitem(cloud_cost.ENTRY_SCALING, ("f", "a"), Scaling("device"))
    monkeypatch.setitem(cloud_cost.ENTRY_SCALING, ("f", "b"), Scaling("device"))
    measured = {"a": Invocations(300, 0.0, 30.0), "b": Invocations(300, 0.0, 30.0)}
    size = FunctionResources(0.5, 1.0, 16, "test")

    apart, _ = function_usage(
        "f", measured, 10, 100_000, {"a": size, "b": size}, period_s=DAY_S, max_instances={}
    )
    monkeypatch.setitem(cloud_cost.SERVED_BY, "b", "a")
    pooled, _ = function_usage(
        "f", measured, 10, 100_000, {"a": size}, period_s=DAY_S, max_instances={}
    )

    in_flight = 300 / 10 * 100_000 / DAY_S * 0.1  # each entry's own
    per_entry = (30.0 / 10 + 0.05 * 30) / in_flight  # per device: waits and rounding
    assert apart.vcpu_s == pytest.approx(2 * per_entry)
    assert pooled.vcpu_s == pytest.approx(2 * per_entry / 2)  # both at twice the concurrency
    assert pooled.requests == apart.requests


def test_an_entry_point_is_served_by_its_own_function_unless_it_is_a_route_of_another(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from benchmarks import cloud_cost

    monkeypatch.setitem(cloud_cost.SERVED_BY, "b", "a")
    assert serving_function("b") == "a"
    assert serving_function("a") == "a"
    assert serving_function("reconcile") == "reconcile"


def _terraform_text() -> str:
    return TERRAFORM_FUNCTIONS.read_text()


def test_every_entry_point_is_served_by_a_function_terraform_deploys() -> None:
    from tests.infra import code_usage

    deployed = terraform_functions(_terraform_text())
    for folder, entry in ENTRY_SCALING:
        assert serving_function(entry) in deployed, (folder, entry)
        assert (entry in deployed) == (entry not in SERVED_BY), entry
        # the benchmark's entry point is one of the folder's, or a route of one of them
        assert serving_function(entry) in code_usage.entry_points(folder), (folder, entry)


def test_verification_is_the_dispatch_functions_verify_route() -> None:
    """What :data:`SERVED_BY` says is what terraform deploys and the code routes: no verify
    function or entry point, and the verify URL below the dispatch function's."""
    from tests.infra import code_usage

    assert SERVED_BY == {"verify": "dispatch"}
    assert "verify" not in terraform_functions(_terraform_text())
    assert "verify" not in code_usage.entry_points("dispatch")
    assert re.search(r'verify_url\s*=\s*"\$\{local\.dispatch_url\}/verify"', _terraform_text())


TERRAFORM = """
  functions = {
    # a comment
    dispatch = {
      folder        = "dispatch"
      memory        = "512Mi"
      cpu           = "1"
      concurrency   = 8
      env = {
        HPSTEER_X = "y"
      }
    }
    optimize_shard = {
      memory        = "2Gi"
      cpu           = "2"
      concurrency   = 1
    }
  }
"""


def test_function_sizes_are_read_from_terraforms_functions_map() -> None:
    sizes = terraform_functions(TERRAFORM)
    assert sizes["dispatch"] == FunctionResources(0.5, 1.0, 8, "terraform")
    assert sizes["optimize_shard"] == FunctionResources(2.0, 2.0, 1, "terraform")
    assert set(sizes) == {"dispatch", "optimize_shard"}


SCALED = """
  functions = {
    dispatch = {
      memory        = "512Mi"
      max_instances = var.dispatch_max_instances
    }
    reconcile = {
      max_instances = 20
    }
    sweep_commands = {
      max_instances = var.not_declared
    }
  }
"""
VARIABLES = """
variable "dispatch_max_instances" {
  description = "Most dispatch instances."
  type        = number
  default     = 7
}
"""


def test_max_instances_are_read_as_numbers_or_from_a_variables_default() -> None:
    assert terraform_max_instances(SCALED, VARIABLES) == {"dispatch": 7, "reconcile": 20}


def test_credential_instance_starts_are_every_slot_restarted_once_per_assumed_lifetime(
    tmp_path: Path,
) -> None:
    functions, variables = tmp_path / "functions.tf", tmp_path / "variables.tf"
    functions.write_text(SCALED)
    variables.write_text(VARIABLES)
    starts, slots = credential_instance_starts_per_month(functions, variables)
    # verify reads credentials on the dispatch function's instances: their slots count once.
    assert slots == {"dispatch": 7, "reconcile": 20}
    assert set(slots) == {serving_function(e) for e in CREDENTIAL_ENTRY_POINTS}
    assert starts == pytest.approx(27 * DAYS_PER_MONTH * 86_400 / INSTANCE_LIFETIME_S)


def test_a_document_path_is_named_by_its_collections_with_the_ids_elided() -> None:
    assert collection_pattern("devices/home-3/commands/c-17") == "devices/{id}/commands/{id}"
    assert collection_pattern("devices/home-3") == "devices/{id}"
    assert collection_pattern("devices") == "devices (query)"
    assert collection_pattern("devices/home-3/commands") == "devices/{id}/commands (query)"


def _function_of_module(module: str, name: str) -> Any:
    """``name(fn)`` calling ``fn()``, defined as if in the module ``module``."""
    namespace: dict[str, Any] = {"__name__": module}
    exec(f"def {name}(fn):\n    return fn()\n", namespace)
    return namespace[name]


def test_the_code_path_is_the_innermost_frame_of_hpsteers_own_code_past_backends() -> None:
    service = _function_of_module("hpsteer.services.example", "save")
    backend = _function_of_module("hpsteer.backends.local.store", "update")
    probe = lambda: code_path(skip=1)  # noqa: E731 - the frame that asks
    assert service(lambda: backend(probe)) == "services.example:save"
    assert backend(probe) == "(outside hpsteer)"


# -- waits on a request's critical path ---------------------------------------------------------


def _meter() -> tuple[Meter, PhasedCountingStore]:
    """A meter over a counting store whose operations it is told of (as the benchmark wires it)."""
    from benchmarks.cloud_cost import _PathTally

    store = PhasedCountingStore(LocalDocumentStore())
    tally = _PathTally()
    store.tally = tally
    meter = Meter(lambda: True, store)
    tally.billed = meter.store_operations
    return meter, store


def _on_threads(*work: Callable[[], object]) -> None:
    """Each piece of work on its own thread, all at once (they wait for each other to start)."""
    started = threading.Barrier(len(work))

    def run(piece: Callable[[], object]) -> None:
        started.wait()
        piece()

    threads = [threading.Thread(target=run, args=(piece,)) for piece in work]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def _poll(meter: Meter, times: int = 1) -> Callable[[], None]:
    """``times`` manufacturer calls, one after another."""

    def calls() -> None:
        for _ in range(times):
            meter.add("manufacturer_calls", 1, "manufacturer")

    return calls


MANUFACTURER_S = LATENCY_S["manufacturer"]


def test_a_request_whose_two_threads_each_wait_the_same_waits_it_once_not_twice() -> None:
    meter, _ = _meter()
    with meter.invocation("reconcile", "reconcile"):
        _on_threads(_poll(meter), _poll(meter))
    measured = meter.invocations[("reconcile", "reconcile")]
    assert measured.io_s == pytest.approx(MANUFACTURER_S)
    assert measured.serial_io_s == pytest.approx(2 * MANUFACTURER_S)  # the what-if's rule
    assert meter.counts[("device", "manufacturer_calls")] == 2  # every call is still counted


def test_a_request_waits_for_its_own_threads_calls_and_then_its_longest_worker() -> None:
    meter, _ = _meter()
    with meter.invocation("reconcile", "reconcile"):
        meter.add("pubsub_publishes", 1, "publish")  # the next page's request, before
        _on_threads(_poll(meter), _poll(meter, times=2))
        meter.add("pubsub_publishes", 1, "publish")  # after
    measured = meter.invocations[("reconcile", "reconcile")]
    assert measured.io_s == pytest.approx(2 * LATENCY_S["publish"] + 2 * MANUFACTURER_S)


def test_store_operations_wait_on_the_thread_that_made_them() -> None:
    meter, store = _meter()
    with meter.invocation("reconcile", "reconcile"):
        store.get("devices/a")
        _on_threads(lambda: store.get("devices/b"), lambda: store.get("devices/c"))
    measured = meter.invocations[("reconcile", "reconcile")]
    assert measured.io_s == pytest.approx(2 * LATENCY_S["store"])
    assert measured.serial_io_s == pytest.approx(3 * LATENCY_S["store"])
    assert meter.io_by_entry[("reconcile", "reconcile", "store")] == pytest.approx(
        3 * LATENCY_S["store"]
    )


def test_units_run_one_after_another_wait_as_a_pool_of_that_many_workers_would() -> None:
    """Three devices on two workers: the third goes to the worker free first and the page
    waits for the busier one; with one worker the page waits for all three."""
    waits = {"a": 2, "b": 1, "c": 1}  # manufacturer round trips of each device, in order

    def page(lanes: int) -> Invocations:
        meter, _ = _meter()
        meter.unit_lanes = lanes
        with meter.invocation("reconcile", "reconcile"):
            for device in waits:
                with meter.unit():
                    _poll(meter, waits[device])()
        return meter.invocations[("reconcile", "reconcile")]

    assert page(2).io_s == pytest.approx(2 * MANUFACTURER_S)  # a; then b and c on the other
    assert page(1).io_s == pytest.approx(4 * MANUFACTURER_S)
    assert page(3).io_s == pytest.approx(2 * MANUFACTURER_S)
    assert page(2).serial_io_s == pytest.approx(4 * MANUFACTURER_S)


def test_a_unit_may_name_its_own_pools_workers() -> None:
    """Optimize's devices go to its shard's pool, whatever reconcile's pool is."""
    meter, _ = _meter()
    meter.unit_lanes = 1
    with meter.invocation("optimize", "optimize_shard"):
        for waits in (2, 1, 1):
            with meter.unit(2):
                _poll(meter, waits)()
    assert meter.invocations[("optimize", "optimize_shard")].io_s == pytest.approx(
        2 * MANUFACTURER_S
    )


def test_a_nested_requests_waits_are_its_own() -> None:
    meter, store = _meter()
    with meter.invocation("dispatch", "sweep_commands"):
        store.get("commands/a")
        with meter.invocation("dispatch", "dispatch"):
            _poll(meter)()
    assert meter.invocations[("dispatch", "dispatch")].io_s == pytest.approx(MANUFACTURER_S)
    sweep = meter.invocations[("dispatch", "sweep_commands")]
    assert sweep.io_s == pytest.approx(LATENCY_S["store"])


def test_reconciles_workers_are_read_from_terraform_else_the_settings_default(
    tmp_path: Path,
) -> None:
    from hpsteer.config import Settings

    functions = tmp_path / "functions.tf"
    functions.write_text(
        "  functions = {\n    reconcile = {\n      env = {\n"
        '        HPSTEER_RECONCILE_WORKERS = "12"\n      }\n    }\n  }\n'
    )
    assert reconcile_workers(functions) == 12
    assert reconcile_workers(tmp_path / "absent.tf") == Settings().reconcile_workers


def test_optimizes_io_workers_are_read_from_terraform_else_the_settings_default(
    tmp_path: Path,
) -> None:
    from hpsteer.config import Settings

    functions = tmp_path / "functions.tf"
    functions.write_text(
        "  functions = {\n    reconcile = {\n      env = {\n"
        '        HPSTEER_RECONCILE_WORKERS = "12"\n      }\n    }\n'
        "    optimize_shard = {\n      env = {\n"
        '        HPSTEER_OPTIMIZE_IO_WORKERS = "8"\n      }\n    }\n  }\n'
    )
    assert optimize_io_workers(functions) == 8
    assert reconcile_workers(functions) == 12
    assert optimize_io_workers(tmp_path / "absent.tf") == Settings().optimize_io_workers


def test_production_plans_a_shards_devices_on_more_io_workers_than_the_local_runtime() -> None:
    from hpsteer.config import Settings

    assert optimize_io_workers() > Settings().optimize_io_workers == 1


def test_the_sweeps_workers_are_read_from_terraform_and_production_has_more_than_local(
    tmp_path: Path,
) -> None:
    from hpsteer.config import Settings

    functions = tmp_path / "functions.tf"
    functions.write_text(
        "  functions = {\n    sweep_commands = {\n      env = {\n"
        '        HPSTEER_SWEEP_WORKERS = "4"\n      }\n    }\n  }\n'
    )
    assert sweep_workers(functions) == 4
    assert sweep_workers(tmp_path / "absent.tf") == Settings().sweep_workers == 1
    assert sweep_workers() > 1
