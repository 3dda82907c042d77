"""Optimize with the local backends: fan-out into shards, plans written once, bad input contained.

Prices are real SE3 2023 days stored through ingest_prices (replay source); the forecast is the
bundled Stockholm weather stored through ingest_weather (replay source); devices carry the
thermal archetypes' parameters.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from hpsteer.backends.local.tasks import LocalTaskQueue
from hpsteer.domain.actions import Mode
from hpsteer.domain.commands import CommandState
from hpsteer.domain.devices import ComfortBand, Device, Location
from hpsteer.domain.market import PriceArea
from hpsteer.domain.messages import (
    OptimizeRequest,
    PriceIngestRequest,
    ReplanRequest,
    SpotPricesUpdated,
    WeatherIngestRequest,
    WeatherUpdated,
)
from hpsteer.errors import MalformedMessage, StoreUnavailable
from hpsteer.messaging.envelope import PubSubMessage, encode_json_message
from hpsteer.optimizer.baselines import OwnControl
from hpsteer.optimizer.problem import evaluate
from hpsteer.ports.clock import SimulatedClock
from hpsteer.runtime import bootstrap
from hpsteer.runtime.bootstrap import Dependencies
from hpsteer.services.command_log import load_command
from hpsteer.services.ingest_prices import ingest_prices
from hpsteer.services.ingest_weather import forecast_location_id, ingest_weather
from hpsteer.services.optimize import decode_trigger, fan_out, plan_shard
from hpsteer.services.plan_inputs import (
    PlanningOptions,
    assemble,
    horizon_prices,
    latest_forecast,
    load_device,
)
from hpsteer.services.plans_store import plan_from_document, plan_path
from hpsteer.sources.replay_prices import ReplayPriceSource
from hpsteer.sources.replay_weather import ReplayWeatherSource, bundled_weather_dir
from hpsteer.thermal import ARCHETYPES, NEW_FLOOR_HEATING, OLD_RADIATORS
from tests.support.stores import ReadRecordingStore

NOW = datetime(2023, 1, 15, 12, 30, tzinfo=UTC)
STOCKHOLM = (59.2970, 18.1633)
STOCKHOLM_ID = forecast_location_id(*STOCKHOLM)
MALMO = (55.5712, 12.9352)


@pytest.fixture
def clock() -> SimulatedClock:
    return SimulatedClock(NOW)


@pytest.fixture
def deps(clock: SimulatedClock) -> Dependencies:
    return bootstrap.local(clock=clock)


def store_prices(deps: Dependencies, *days: date, area: PriceArea = PriceArea.SE3) -> None:
    replay = ReplayPriceSource(clock=deps.clock)
    for day in days:
        request = PriceIngestRequest(areas=(area,), market_date=day, scheduled_at=NOW)
        ingest_prices(request, deps, lambda _area, _deps: [replay])


def store_forecast(deps: Dependencies, hours: int = 48, where: tuple[float, float] = STOCKHOLM):
    source = ReplayWeatherSource(
        bundled_weather_dir(), clock=deps.clock, horizon=timedelta(hours=hours)
    )
    location_id = forecast_location_id(*where)
    ingest_weather(
        WeatherIngestRequest(location_ids=(location_id,), scheduled_at=NOW), deps, source
    )


def register(
    deps: Dependencies,
    device_id: str,
    *,
    archetype: str = "renovated_radiators",
    area: PriceArea = PriceArea.SE3,
    where: tuple[float, float] = STOCKHOLM,
    steered: bool = True,
    **overrides: object,
) -> None:
    device = Device(
        device_id=device_id,
        manufacturer="viessmann",
        external_id=f"ext-{device_id}",
        account_id="acct-1",
        price_area=area,
        location=Location(location_id=f"home-{device_id}", latitude=where[0], longitude=where[1]),
        comfort=ComfortBand(min_indoor_temp_c=20, setpoint_c=21, max_indoor_temp_c=23),
        thermal=ARCHETYPES[archetype].parameters,
        steering_enabled=steered,
        registered_at=NOW - timedelta(days=30),
    )
    document = device.to_document()
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(document.get(key), dict):
            document[key] = {**document[key], **value}
        else:
            document[key] = value
    deps.store.set(f"devices/{device_id}", document)


def shard(*device_ids: str, area: PriceArea = PriceArea.SE3) -> OptimizeRequest:
    return OptimizeRequest(
        area=area, device_ids=device_ids, trigger="prices:SE3:test", requested_at=NOW
    )


def count(deps: Dependencies, table: str) -> int:
    return int(deps.analytics.query(f"SELECT COUNT(*) AS n FROM `{table}`")[0]["n"])


@pytest.fixture
def ready(deps: Dependencies) -> Dependencies:
    store_prices(deps, date(2023, 1, 15), date(2023, 1, 16))
    store_forecast(deps)
    return deps


# -- fan-out ----------------------------------------------------------------------------------


def price_update() -> SpotPricesUpdated:
    return SpotPricesUpdated(
        area=PriceArea.SE3,
        market_date=date(2023, 1, 16),
        resolution=60,
        content_hash="a" * 64,
        source="replay",
        version=1,
    )


def test_a_price_update_fans_250_devices_out_into_3_shards_and_a_redelivery_repeats_them(
    deps: Dependencies,
) -> None:
    for i in range(250):
        register(deps, f"d{i:03d}")
    register(deps, "other-area", area=PriceArea.SE4, where=MALMO)
    register(deps, "off", steered=False)

    first = fan_out(price_update(), deps)
    again = fan_out(price_update(), deps)

    assert [len(s.device_ids) for s in first] == [100, 100, 50]
    assert {d for s in first for d in s.device_ids} == {f"d{i:03d}" for i in range(250)}
    assert [s.device_ids for s in again] == [s.device_ids for s in first]
    assert first[0].trigger == f"prices:SE3:2023-01-16:{'a' * 16}:v1"
    published = deps.bus.published("optimize-requests")  # type: ignore[attr-defined]  # local bus
    assert len(published) == 6
    assert published[0].attributes["message_type"] == "OptimizeRequest"


def test_a_weather_update_fans_out_only_the_devices_at_that_location(deps: Dependencies) -> None:
    register(deps, "stockholm-1")
    register(deps, "stockholm-2", where=(59.3012, 18.1571))
    register(deps, "malmo", area=PriceArea.SE4, where=MALMO)

    shards = fan_out(WeatherUpdated(location_id=STOCKHOLM_ID, issued_at=NOW), deps)

    assert [s.device_ids for s in shards] == [("stockholm-1", "stockholm-2")]
    assert shards[0].trigger.startswith(f"weather:{STOCKHOLM_ID}:")


def test_a_replan_request_for_one_device_gives_one_shard(deps: Dependencies) -> None:
    register(deps, "d1")
    register(deps, "d2")
    request = ReplanRequest(device_id="d2", reason="comfort changed", requested_at=NOW)
    shards = fan_out(request, deps, PlanningOptions(shard_size=1))
    assert [s.device_ids for s in shards] == [("d2",)]


def test_trigger_messages_are_told_apart_by_attribute_or_by_shape() -> None:
    def message(model: object, **attributes: str) -> PubSubMessage:
        return PubSubMessage(
            message_id="1",
            data=encode_json_message(model),  # type: ignore[arg-type]  # models only
            attributes=attributes,
            publish_time=NOW,
        )

    prices = message(price_update(), area="SE3", content_hash="a" * 64)
    weather = message(WeatherUpdated(location_id=STOCKHOLM_ID, issued_at=NOW))
    replan = message(ReplanRequest(area=PriceArea.SE3, reason="x", requested_at=NOW))
    assert isinstance(decode_trigger(prices), SpotPricesUpdated)
    assert isinstance(decode_trigger(weather), WeatherUpdated)
    assert isinstance(decode_trigger(replan), ReplanRequest)
    with pytest.raises(MalformedMessage, match="none of"):
        decode_trigger(PubSubMessage(message_id="2", data=b"{}", attributes={}, publish_time=NOW))


# -- a shard ----------------------------------------------------------------------------------


def test_a_shard_writes_each_plan_with_its_outbox_makes_it_current_and_records_it(
    ready: Dependencies,
) -> None:
    for name in ARCHETYPES:
        register(ready, name, archetype=name)

    outcomes = plan_shard(shard(*ARCHETYPES), ready)

    assert [o.status for o in outcomes] == ["planned"] * 3
    for outcome in outcomes:
        device = ready.store.get(f"devices/{outcome.device_id}")
        assert device is not None
        assert device.data["current_plan_id"] == outcome.plan_id
        assert outcome.plan_id is not None
        stored = ready.store.get(plan_path(outcome.device_id, outcome.plan_id))
        assert stored is not None
        plan = plan_from_document(stored.data)
        assert plan.start_at == datetime(2023, 1, 15, 13, tzinfo=UTC)
        assert plan.end_at == datetime(2023, 1, 16, 23, tzinfo=UTC)  # end of the 16th, local
        assert [c["slot_index"] for c in stored.data["outbox"]] == [
            c.slot_index for c in plan.mode_changes(None)
        ]
        # The outbox is released as far as it reaches: each change within
        # release_ahead_minutes is a pending command with its task in the queue; the later
        # ones wait in the outbox for the sweep.
        reach = NOW + timedelta(minutes=ready.settings.release_ahead_minutes)
        near = [e for e in stored.data["outbox"] if datetime.fromisoformat(e["at"]) <= reach]
        later = [e for e in stored.data["outbox"] if e not in near]
        queued = [e for e in near if e["status"] == "queued"]
        assert queued
        assert all(e["status"] in ("queued", "skipped") for e in near)
        assert later
        assert all(e["status"] == "pending" for e in later)
        for entry in queued:
            command = load_command(ready.store, outcome.device_id, entry["command_id"])
            assert command is not None
            assert command.state is CommandState.PENDING
            assert command.slot_start_at == datetime.fromisoformat(entry["at"])
            assert command.generic_action.value == entry["action"]
        # Its release comes due for the sweep when the next later change comes within reach.
        assert stored.data["release_due_at"] == datetime.fromisoformat(later[0]["at"]) - (
            reach - NOW
        )
        assert stored.data["solve_ms"] > 0
        assert plan.solver_gap is not None
        assert stored.data["inputs"]["weather_issued_at"] == "2023-01-15T12:00:00Z"
        assert len(stored.data["inputs"]["price_days"]) == 2
        assert stored.data["weather_held"] is False
        assert plan.expected_cost_eur <= plan.baseline_cost_eur * 1.05
    assert count(ready, "plans") == 3
    assert count(ready, "cost_savings") == 6  # two local days per plan
    tasks = ready.tasks
    assert isinstance(tasks, LocalTaskQueue)
    commands = sum(
        1 for o in outcomes for _ in ready.store.query(f"devices/{o.device_id}/commands").documents
    )
    assert len(tasks.pending_tasks("dispatch-viessmann")) == commands


def test_a_redelivered_shard_writes_nothing_new(ready: Dependencies) -> None:
    register(ready, "d1")
    first = plan_shard(shard("d1"), ready)
    assert first[0].plan_id is not None
    path = plan_path("d1", first[0].plan_id)
    written = ready.store.get(path)

    again = plan_shard(shard("d1"), ready)

    assert [o.plan_id for o in again] == [o.plan_id for o in first]
    assert again[0].status == "unchanged"
    assert ready.store.get(path) == written
    assert count(ready, "plans") == 1
    assert count(ready, "cost_savings") == 2


def test_devices_with_bad_input_keep_their_previous_plan_and_the_others_are_planned(
    ready: Dependencies,
) -> None:
    register(ready, "good")
    register(ready, "inverted-band", comfort={"min_indoor_temp_c": 23, "max_indoor_temp_c": 20})
    register(ready, "absurd", thermal={"heat_loss_w_per_k": 0.001, "archetype": None})
    register(ready, "no-prices", area=PriceArea.SE4, where=MALMO)
    for device_id in ("inverted-band", "absurd", "no-prices"):
        ready.store.update(f"devices/{device_id}", {"current_plan_id": "previous"})

    outcomes = {
        o.device_id: o
        for o in plan_shard(shard("good", "inverted-band", "absurd", "no-prices", "unknown"), ready)
    }

    assert outcomes["good"].status == "planned"
    assert {k: o.error for k, o in outcomes.items() if o.status == "failed"} == {
        "inverted-band": "InfeasibleComfortBand",
        "absurd": "AbsurdThermalParameters",
        "no-prices": "MissingPrices",
        "unknown": "UnknownDevice",
    }
    for device_id in ("inverted-band", "absurd", "no-prices"):
        device = ready.store.get(f"devices/{device_id}")
        assert device is not None
        assert device.data["current_plan_id"] == "previous"


def test_a_forecast_shorter_than_the_horizon_is_held_and_the_plan_flagged(
    deps: Dependencies,
) -> None:
    store_prices(deps, date(2023, 1, 15), date(2023, 1, 16))
    store_forecast(deps, hours=12)  # 12:00..23:00 UTC on the 15th
    register(deps, "d1")

    (outcome,) = plan_shard(shard("d1"), deps)

    assert outcome.plan_id is not None
    stored = deps.store.get(plan_path("d1", outcome.plan_id))
    assert stored is not None
    assert stored.data["weather_held"] is True
    assert stored.data["weather_held_after_at"] == datetime(2023, 1, 15, 23, tzinfo=UTC)


def test_a_missing_day_in_the_middle_ends_the_horizon_at_the_gap(deps: Dependencies) -> None:
    store_prices(deps, date(2023, 1, 15), date(2023, 1, 17))  # the 16th is missing
    store_forecast(deps)
    register(deps, "d1")

    (outcome,) = plan_shard(shard("d1"), deps)

    assert outcome.plan_id is not None
    stored = deps.store.get(plan_path("d1", outcome.plan_id))
    assert stored is not None
    assert plan_from_document(stored.data).end_at == datetime(2023, 1, 15, 23, tzinfo=UTC)
    assert stored.data["horizon_truncated"] == "no prices stored for SE3 2023-01-16"


def test_a_plans_expected_and_baseline_costs_are_what_evaluate_gives(ready: Dependencies) -> None:
    register(ready, "d1", archetype=NEW_FLOOR_HEATING.name)
    register(ready, "d2", archetype=OLD_RADIATORS.name)
    options = PlanningOptions()
    for outcome in plan_shard(shard("d1", "d2"), ready, options=options):
        assert outcome.plan_id is not None
        stored = ready.store.get(plan_path(outcome.device_id, outcome.plan_id))
        assert stored is not None
        plan = plan_from_document(stored.data)
        record = load_device(ready.store, outcome.device_id, now=NOW, options=options)
        inputs = assemble(
            record,
            horizon_prices(ready.store, PriceArea.SE3, NOW, options.max_horizon),
            latest_forecast(ready.store, *STOCKHOLM),
            options,
        )
        modes = [slot.mode for slot in plan.slots]
        planned = evaluate(inputs.problem, modes)
        baseline = evaluate(inputs.problem, OwnControl().plan(inputs.problem))
        assert plan.expected_cost_eur == pytest.approx(planned.energy_cost_eur)
        assert plan.baseline_cost_eur == pytest.approx(baseline.energy_cost_eur)
        days = stored.data["cost_by_day"]
        assert sum(d["planned_cost_eur"] for d in days) == pytest.approx(plan.expected_cost_eur)
        assert sum(d["baseline_cost_eur"] for d in days) == pytest.approx(plan.baseline_cost_eur)


def test_a_newer_plan_replaces_the_current_one_and_an_older_never_does(
    ready: Dependencies, clock: SimulatedClock
) -> None:
    register(
        ready,
        "d1",
        last_telemetry={
            "indoor_temp_c": 21.3,
            "observed_mode": "mid",
            "observed_at": "2023-01-15T12:20:00Z",
        },
    )
    (early,) = plan_shard(shard("d1"), ready)
    clock.advance(timedelta(hours=1))
    (later,) = plan_shard(shard("d1"), ready)
    device = ready.store.get("devices/d1")
    assert device is not None
    assert later.plan_id != early.plan_id
    assert device.data["current_plan_id"] == later.plan_id
    stored = ready.store.get(plan_path("d1", str(early.plan_id)))
    assert stored is not None
    assert stored.data["inputs"]["initial_state"] == "telemetry"
    assert stored.data["outbox"][0]["slot_index"] >= 0
    assert all(c["action"] != "set_mode_mid" or c["slot_index"] > 0 for c in stored.data["outbox"])
    # Replaying the earlier shard's plan as current would move backwards: it does not.
    from hpsteer.services.plans_store import make_current

    plan = plan_from_document(stored.data)
    assert not make_current(ready.store, "d1", plan.plan_id, plan.start_at, plan.created_at)
    assert Mode(stored.data["slots"][0]["mode"]) in Mode


@pytest.fixture
def recorded(clock: SimulatedClock) -> tuple[Dependencies, ReadRecordingStore]:
    holder: list[ReadRecordingStore] = []

    def wrap(store: Any) -> Any:
        holder.append(ReadRecordingStore(store))
        return holder[0]

    deps = bootstrap.local(clock=clock, wrap_store=wrap)
    store_prices(deps, date(2023, 1, 15), date(2023, 1, 16))
    store_forecast(deps)
    return deps, holder[0]


def test_a_new_plan_reads_its_device_once_and_looks_for_no_earlier_plan(
    recorded: tuple[Dependencies, ReadRecordingStore],
) -> None:
    deps, store = recorded
    register(deps, "d1")
    store.read.clear()

    (outcome,) = plan_shard(shard("d1"), deps)

    assert outcome.status == "planned"
    assert store.read.count("devices/d1") == 1  # prepared from it, made current on it
    assert plan_path("d1", str(outcome.plan_id)) not in store.read
    device = deps.store.get("devices/d1")
    assert device is not None
    assert device.data["current_plan_id"] == outcome.plan_id


def test_a_plan_written_but_never_made_current_is_solved_again_and_found_not_doubled(
    ready: Dependencies,
) -> None:
    register(ready, "d1")
    (first,) = plan_shard(shard("d1"), ready)
    path = plan_path("d1", str(first.plan_id))
    written = ready.store.get(path)
    # As if the first delivery ended between writing the plan and making it current.
    ready.store.update("devices/d1", {"current_plan_id": None, "current_plan_start_at": None})

    (again,) = plan_shard(shard("d1"), ready)

    assert (again.plan_id, again.status) == (first.plan_id, "unchanged")
    assert ready.store.get(path) == written
    device = ready.store.get("devices/d1")
    assert device is not None
    assert device.data["current_plan_id"] == first.plan_id


def test_making_a_plan_current_on_a_stale_read_decides_again_on_the_document_as_it_is(
    ready: Dependencies, clock: SimulatedClock
) -> None:
    from hpsteer.services.plans_store import make_current

    register(ready, "d1")
    read = ready.store.get("devices/d1")
    assert read is not None
    at = NOW + timedelta(hours=1)
    # Written since the read: an unrelated field (telemetry), then a newer plan made current.
    ready.store.update("devices/d1", {"last_telemetry": {"indoor_temp_c": 21.0}})
    assert make_current(ready.store, "d1", "p-new", at, NOW + timedelta(minutes=5), read=read)
    moved_back = make_current(ready.store, "d1", "p-old", at, NOW, read=read)

    device = ready.store.get("devices/d1")
    assert device is not None
    assert not moved_back
    assert device.data["current_plan_id"] == "p-new"
    assert device.data["last_telemetry"] == {"indoor_temp_c": 21.0}


def test_a_store_outage_is_raised_after_the_shard_for_redelivery(ready: Dependencies) -> None:
    register(ready, "d1")
    store = ready.store
    real_get = store.get

    def failing_get(path: str):  # type: ignore[no-untyped-def]  # a test double's signature
        if path.startswith("devices/"):
            raise StoreUnavailable("induced outage")
        return real_get(path)

    store.get = failing_get  # type: ignore[method-assign]  # induce an outage on this instance
    with pytest.raises(StoreUnavailable, match="1 of 1 devices failed transiently"):
        plan_shard(shard("d1"), ready)


# -- the mode a new plan starts from ----------------------------------------------------------


def _first_mode(deps: Dependencies) -> Mode:
    """The first slot's mode of the plan this test's prices and weather give a fresh device."""
    register(deps, "probe")
    (outcome,) = plan_shard(shard("probe"), deps)
    stored = deps.store.get(plan_path("probe", str(outcome.plan_id)))
    assert stored is not None
    return Mode(stored.data["slots"][0]["mode"])


def _telemetry(mode: Mode, at: str = "2023-01-15T12:20:00Z") -> dict[str, object]:
    return {"indoor_temp_c": 21.0, "observed_mode": mode.value, "observed_at": at}


def _held_in(mode: Mode) -> dict[str, object]:
    """A current plan that holds the device in ``mode`` from before NOW to tomorrow."""
    return {
        "current_plan_id": "older",
        "current_plan_start_at": NOW - timedelta(hours=3),
        "current_plan_created_at": NOW - timedelta(hours=3),
        "current_plan_end_at": NOW + timedelta(hours=20),
        "current_plan_modes": [{"at": NOW - timedelta(hours=3), "mode": mode.value}],
    }


def _outbox(deps: Dependencies, device_id: str) -> list[dict[str, Any]]:
    (outcome,) = plan_shard(shard(device_id), deps)
    stored = deps.store.get(plan_path(device_id, str(outcome.plan_id)))
    assert stored is not None
    outbox: list[dict[str, Any]] = stored.data["outbox"]
    return outbox


def test_a_device_seen_and_held_in_the_first_slots_mode_gets_no_command_for_it(
    ready: Dependencies,
) -> None:
    first = _first_mode(ready)
    register(ready, "d1", last_telemetry=_telemetry(first), **_held_in(first))
    assert _outbox(ready, "d1")[0]["slot_index"] > 0
    # The same mode run as the older plan's: reconciliation's command window began with it.
    device = ready.store.get("devices/d1")
    assert device is not None
    assert device.data["current_plan_modes"][0]["since"] == NOW - timedelta(hours=3)


def test_a_sighting_the_current_plan_disagrees_with_does_not_spare_the_first_command(
    ready: Dependencies,
) -> None:
    """The telemetry shows the first slot's mode, but our plan has held the device in another
    since (a command after the sighting, or a drift not corrected yet): the mode is unknown, so
    the first mode is set explicitly."""
    first = _first_mode(ready)
    other = next(m for m in Mode if m is not first)
    register(ready, "d1", last_telemetry=_telemetry(first), **_held_in(other))
    outbox = _outbox(ready, "d1")
    assert outbox[0]["slot_index"] == 0
    assert outbox[0]["action"] == first.action.value
    device = ready.store.get("devices/d1")
    assert device is not None
    assert "since" not in device.data["current_plan_modes"][0]  # its own command's run


def test_a_sighting_older_than_the_telemetry_age_limit_tells_no_mode(ready: Dependencies) -> None:
    options = PlanningOptions()
    stale = (NOW - options.max_telemetry_age - timedelta(minutes=1)).isoformat()
    register(ready, "d1", last_telemetry=_telemetry(Mode.MIN, at=stale))
    register(ready, "d2", last_telemetry=_telemetry(Mode.MIN))
    assert load_device(ready.store, "d1", now=NOW, options=options).observed_mode is None
    assert load_device(ready.store, "d2", now=NOW, options=options).observed_mode is Mode.MIN


def test_with_no_plan_holding_the_device_its_sighting_is_the_mode_it_starts_from(
    ready: Dependencies,
) -> None:
    first = _first_mode(ready)
    ended = {**_held_in(next(m for m in Mode if m is not first)), "current_plan_end_at": NOW}
    register(ready, "d1", last_telemetry=_telemetry(first), **ended)
    assert _outbox(ready, "d1")[0]["slot_index"] > 0
