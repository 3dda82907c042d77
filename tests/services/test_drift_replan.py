"""MPC's measured-state trigger in production: a telemetry sample showing the home off its plan's
predicted temperatures asks optimize for a re-plan from that measurement (issue 4, item 5).

Local backends: the device is registered, a plan made current with its predicted indoor
temperatures (:func:`~hpsteer.services.plans_store.make_current`), then samples are ingested as
``ingest_telemetry`` does.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from hpsteer.backends.local.bus import LocalMessageBus
from hpsteer.domain.actions import Mode
from hpsteer.domain.messages import ReplanRequest, Topic
from hpsteer.domain.plan_track import IndoorTrack
from hpsteer.domain.telemetry import TelemetrySample, TelemetrySource
from hpsteer.runtime.bootstrap import Dependencies
from hpsteer.services.ingest_telemetry import (
    ingest_sample,
    state_update_needed,
    telemetry_options,
)
from hpsteer.services.plans_store import make_current
from tests.services.test_ingest_telemetry import NOW, last_telemetry, local_deps

START = NOW - timedelta(hours=2)
# Predicted 21.0 °C through the hour around NOW.
TRACK = IndoorTrack.of_slots(START, timedelta(hours=1), [21.0, 21.0, 21.0, 21.0])


def steered(plan_id: str = "plan-a", *, at: Any = START) -> Dependencies:
    deps = local_deps()
    make_current(
        deps.store, "d1", plan_id, at, at, [(at, Mode.MID)], at + timedelta(hours=4), TRACK
    )
    return deps


def polled(minutes_ago: float, indoor: float, **fields: Any) -> TelemetrySample:
    observed_at = NOW - timedelta(minutes=minutes_ago)
    return TelemetrySample(
        sample_id=f"d1@{observed_at:%H%M%S}",
        device_id="d1",
        observed_at=observed_at,
        source=TelemetrySource.POLL,
        manufacturer="viessmann",
        indoor_temp_c=indoor,
        observed_mode=Mode.MID,
        online=True,
        **fields,
    )


def replans(deps: Dependencies) -> list[ReplanRequest]:
    bus = deps.bus
    assert isinstance(bus, LocalMessageBus)
    return [ReplanRequest.parse_json(m.data) for m in bus.published(Topic.REPLAN_REQUESTS)]


def device(deps: Dependencies) -> dict[str, Any]:
    document = deps.store.get("devices/d1")
    assert document is not None
    return dict(document.data)


def test_a_home_off_its_plan_asks_for_one_replan_from_the_stored_measurement() -> None:
    deps = steered()
    ingest_sample(polled(20, 21.1), deps)
    off = polled(5, 20.2)  # 0.8 K below the plan: nothing else changed, yet it is stored

    assert ingest_sample(off, deps) is True

    (request,) = replans(deps)
    assert request.device_id == "d1"
    assert request.requested_at == NOW
    assert "plan-a" in request.reason
    assert "-0.8 K" in request.reason
    assert last_telemetry(deps)["sample_id"] == off.sample_id  # optimize starts from it
    assert device(deps)["drift_replan"]["plan_id"] == "plan-a"


def test_a_home_within_the_band_asks_nothing_and_is_not_rewritten() -> None:
    deps = steered()
    ingest_sample(polled(20, 21.1), deps)

    assert ingest_sample(polled(5, 20.6), deps) is False

    assert replans(deps) == []
    assert "drift_replan" not in device(deps)


def test_the_same_plans_drift_asks_once_per_cooldown_and_a_redelivery_asks_nothing() -> None:
    deps = steered()
    first = polled(70, 20.0)
    ingest_sample(first, deps)
    ingest_sample(first, deps)  # delivered twice
    ingest_sample(polled(40, 19.9), deps)  # still off, within the hour

    assert len(replans(deps)) == 1

    ingest_sample(polled(9, 19.8), deps)  # an hour and more later, still the same plan
    assert len(replans(deps)) == 2


def test_a_new_plan_from_the_measured_state_is_judged_afresh() -> None:
    deps = steered()
    ingest_sample(polled(30, 20.0), deps)
    newer = NOW - timedelta(minutes=25)
    make_current(
        deps.store,
        "d1",
        "plan-b",
        newer,
        newer,
        [(newer, Mode.MAX)],
        NOW + timedelta(hours=3),
        IndoorTrack.of_slots(newer, timedelta(hours=1), [20.0, 20.5, 21.0]),
    )

    ingest_sample(polled(10, 20.1), deps)  # on plan-b's track
    assert len(replans(deps)) == 1
    ingest_sample(polled(5, 21.4), deps)  # off plan-b's
    assert [r.reason.split("plan ")[1][:6] for r in replans(deps)] == ["plan-a", "plan-b"]


def test_a_household_override_or_steering_off_asks_nothing() -> None:
    paused = steered()
    paused.store.update("devices/d1", {"override_until": NOW + timedelta(hours=2)})
    ingest_sample(polled(5, 18.0), paused)
    off = steered()
    off.store.update("devices/d1", {"steering_enabled": False})
    ingest_sample(polled(5, 18.0), off)

    assert replans(paused) == []
    assert replans(off) == []


def test_a_plan_without_a_track_asks_nothing() -> None:
    deps = local_deps()
    make_current(deps.store, "d1", "plan-a", START, START, [(START, Mode.MID)])

    ingest_sample(polled(5, 15.0), deps)

    assert replans(deps) == []


def test_reconciliation_does_not_mark_a_drifting_poll_record_only() -> None:
    """Reconciliation publishes a poll to be recorded only when it finds nothing worth storing:
    a home off its plan is worth storing, so ingestion sees it and asks for the re-plan."""
    deps = steered()
    ingest_sample(polled(20, 21.1), deps)
    options = telemetry_options(deps.settings)

    assert state_update_needed(polled(5, 20.2), device(deps), options) is True
    assert state_update_needed(polled(5, 20.9), device(deps), options) is False
