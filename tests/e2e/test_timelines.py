"""`command_timelines` links a run's commands to their spans in a hand-written `traces.jsonl`.

Two traces, written the way the exporter writes them (a span when it ends: children before their
parents). The price event's trace plans and dispatches devices A and B side by side: A's command
``a1`` needs three dispatches (a 503, a twin delivery in flight, then the acknowledged send) and is
verified later; B's ``b1`` goes through at its first attempt. The weather event's trace dispatches
A's ``a2``, which fails, and A's ``a3``, later superseded.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from hpsteer.runtime.simulation.record import CommandTimeline
from hpsteer.runtime.simulation.timelines import command_timelines

T0 = datetime(2025, 1, 14, 23, tzinfo=UTC)
A, B = "home-a", "home-b"
COMMANDS = [
    (A, "a1", "acme", "completed"),
    (B, "b1", "boreal", "completed"),
    (A, "a2", "acme", "failed"),
    (A, "a4", "acme", "superseded"),  # superseded before it was ever sent: no span
    (A, "a3", "acme", "superseded"),
]


def span(
    trace: str,
    span_id: str,
    parent: str | None,
    name: str,
    start_s: int,
    end_s: int | None = None,
    status: str = "UNSET",
    **attributes: object,
) -> dict[str, object]:
    return {
        "trace_id": trace,
        "span_id": span_id,
        "parent_span_id": parent,
        "name": name,
        "start_at": (T0 + timedelta(seconds=start_s)).isoformat(),
        "end_at": (T0 + timedelta(seconds=start_s if end_s is None else end_s)).isoformat(),
        "status": status,
        "sampled": True,
        "attributes": attributes,
    }


def dispatch(
    trace: str,
    span_id: str,
    parent: str,
    device: str,
    command: str,
    start_s: int,
    status: str = "UNSET",
    outcome: str = "acknowledged",
) -> dict[str, object]:
    """An ``execute_command`` span: one dispatch attempt of ``command``."""
    return span(
        trace,
        span_id,
        parent,
        "execute_command",
        start_s,
        status=status,
        device_id=device,
        command_id=command,
        outcome=outcome,
    )


PRICE_TRACE = [
    span("t1", "pA", "o", "plan_device", 1, 2, device_id=A),
    span("t1", "pB", "o", "plan_device", 1, 2, device_id=B),
    span("t1", "vA1", "eA1", "validate_command", 3, action="set_mode_max"),
    span("t1", "sA1", "eA1", "send_to_oem", 3, status="ERROR", attempt=1),
    dispatch("t1", "eA1", "rA", A, "a1", 3, status="ERROR", outcome="retrying"),
    dispatch("t1", "eA1b", "rA", A, "a1", 3, status="ERROR", outcome="in_flight"),
    span("t1", "sB", "eB", "send_to_oem", 3, attempt=1),
    dispatch("t1", "eB", "rB", B, "b1", 3),
    span("t1", "rB", "o", "release_plan", 3, device_id=B),
    span("t1", "sA2", "eA2", "send_to_oem", 60, 61, attempt=2),
    dispatch("t1", "eA2", "rA", A, "a1", 60),
    span("t1", "rA", "o", "release_plan", 3, 60, device_id=A),
    span("t1", "o", "r", "handle_optimize_request", 0, 5),
    span("t1", "r", None, "handle_price_ingest_request", 0),
    span("t1", "yB", "eB", "verify_execution", 603, device_id=B, command_id="b1"),
    span("t1", "yA", "eA2", "verify_execution", 660, device_id=A, command_id="a1"),
]
WEATHER_TRACE = [
    span("t2", "sF1", "eF1", "send_to_oem", 3600, status="ERROR", attempt=1),
    dispatch("t2", "eF1", "rA2", A, "a2", 3600, status="ERROR", outcome="retrying"),
    dispatch("t2", "eS", "rA2", A, "a3", 3600, outcome="in_flight"),
    span("t2", "rA2", "o2", "release_plan", 3600, device_id=A),
    span("t2", "o2", "w", "handle_optimize_request", 3600),
    span("t2", "w", None, "handle_weather_ingest_request", 3600),
    dispatch("t2", "eF2", "rA2", A, "a2", 3700, status="ERROR", outcome="failed"),
]


@pytest.fixture
def traces(tmp_path: Path) -> Path:
    path = tmp_path / "traces.jsonl"
    lines = [json.dumps(record) for record in PRICE_TRACE + WEATHER_TRACE]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def rows(timeline: CommandTimeline) -> list[tuple[str, int, object]]:
    return [(s["name"], s["depth"], s["attributes"].get("device_id")) for s in timeline["spans"]]


def test_a_timeline_holds_its_commands_spans_and_the_shared_ancestors_but_no_other_device(
    traces: Path,
) -> None:
    timeline = next(t for t in command_timelines(traces, COMMANDS) if t["command_id"] == "a1")
    assert rows(timeline) == [
        ("handle_price_ingest_request", 0, None),
        ("handle_optimize_request", 1, None),
        ("plan_device", 2, A),
        ("release_plan", 2, A),
        ("execute_command", 3, A),
        ("validate_command", 4, None),
        ("send_to_oem", 4, None),
        ("execute_command", 3, A),
        ("execute_command", 3, A),
        ("send_to_oem", 4, None),
        ("verify_execution", 4, A),
    ]
    assert (timeline["device_id"], timeline["manufacturer"]) == (A, "acme")
    assert timeline["final_state"] == "completed"


def test_spans_come_in_start_order_with_their_status_times_and_attributes(traces: Path) -> None:
    timeline = next(t for t in command_timelines(traces, COMMANDS) if t["command_id"] == "a1")
    starts = [datetime.fromisoformat(s["start_at"]) for s in timeline["spans"]]
    assert starts == sorted(starts)
    first_send = timeline["spans"][6]
    assert first_send["status"] == "ERROR"
    assert first_send["attributes"] == {"attempt": 1}
    assert first_send["start_at"] == first_send["end_at"] == (T0 + timedelta(seconds=3)).isoformat()
    assert timeline["spans"][1]["end_at"] == (T0 + timedelta(seconds=5)).isoformat()


def test_it_picks_a_failed_the_most_dispatched_a_superseded_and_a_first_time_command(
    traces: Path,
) -> None:
    picked = [(t["command_id"], t["why"]) for t in command_timelines(traces, COMMANDS)]
    assert picked == [
        ("a2", "failed"),
        ("a1", "most dispatch attempts (3)"),
        ("a3", "superseded"),
        ("b1", "completed at its first attempt"),
    ]


def test_a_command_both_failed_and_most_dispatched_is_picked_once_with_both_reasons(
    traces: Path,
) -> None:
    without_a1 = [row for row in COMMANDS if row[1] != "a1"]
    picked = [(t["command_id"], t["why"]) for t in command_timelines(traces, without_a1)]
    assert picked[0] == ("a2", "failed; most dispatch attempts (2)")
    assert [command_id for command_id, _ in picked] == ["a2", "a3", "b1"]


def test_the_other_devices_command_holds_only_its_own_device_spans(traces: Path) -> None:
    timeline = next(t for t in command_timelines(traces, COMMANDS) if t["command_id"] == "b1")
    assert {device for _, _, device in rows(timeline)} == {None, B}
    assert [name for name, _, _ in rows(timeline)] == [
        "handle_price_ingest_request",
        "handle_optimize_request",
        "plan_device",
        "release_plan",
        "execute_command",
        "send_to_oem",
        "verify_execution",
    ]


def test_a_failed_commands_timeline_stays_in_its_own_trace_and_leaves_its_sibling_out(
    traces: Path,
) -> None:
    timeline = command_timelines(traces, COMMANDS)[0]
    assert [(s["name"], s["attributes"].get("command_id")) for s in timeline["spans"]] == [
        ("handle_weather_ingest_request", None),
        ("handle_optimize_request", None),
        ("release_plan", None),
        ("execute_command", "a2"),
        ("send_to_oem", None),
        ("execute_command", "a2"),
    ]


def test_the_limit_keeps_the_first_picks(traces: Path) -> None:
    assert [t["command_id"] for t in command_timelines(traces, COMMANDS, limit=2)] == ["a2", "a1"]
    assert command_timelines(traces, COMMANDS, limit=0) == []


def test_a_line_cut_off_mid_write_is_skipped(traces: Path) -> None:
    whole = command_timelines(traces, COMMANDS)
    with traces.open("a", encoding="utf-8") as file:
        file.write('{"trace_id": "t1", "span_id": "x", "na')
    assert command_timelines(traces, COMMANDS) == whole


def test_commands_without_spans_or_a_missing_file_give_no_timeline(
    traces: Path, tmp_path: Path
) -> None:
    assert command_timelines(tmp_path / "absent.jsonl", COMMANDS) == []
    assert command_timelines(traces, [(A, "a4", "acme", "superseded")]) == []
    assert command_timelines(traces, []) == []
