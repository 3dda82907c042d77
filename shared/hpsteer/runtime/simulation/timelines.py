"""A few commands' timelines, linked from a run's ``traces.jsonl``.

:func:`command_timelines` picks up to ``limit`` telling commands of a run, in this order: a failed
one, the one with the most dispatch attempts (``execute_command`` spans), a superseded one, and
one completed at its first attempt (its only sends were attempt 1, none in error). A command that
fits two of these is picked once, with both reasons. Only commands with spans in the file can be
picked; among several that fit, the one whose first span starts first (then the one listed first)
is taken, and among commands completed at their first attempt, the one with the fewest dispatches.

Each timeline holds the command's own ``execute_command`` and ``verify_execution`` spans, what ran
under them (``validate_command``, ``send_to_oem``), and every span above them up to their trace's
root (the device's ``release_plan``, the optimize handlers, the price or weather event) with the
device's own spans beside them (its ``plan_device`` under the same optimize request), never
another device's or another command's spans of the same trace. The spans
are in start order (a parent before its children at the same instant), each with its depth: how
many of the timeline's spans lie above it.

The file is streamed twice and never held whole: the first pass counts per command, the second
keeps only the picked commands' traces, less other devices' spans. A missing file gives no
timeline; a line that is not a JSON object (a run cut off mid-write) is skipped.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from hpsteer.domain.instants import instant_or_none
from hpsteer.runtime.simulation.record import CommandTimeline, TimelineSpan

__all__ = ["command_timelines"]

EXECUTE, VERIFY, SEND = "execute_command", "verify_execution", "send_to_oem"
_COMMAND_SPANS = frozenset({EXECUTE, VERIFY})

CommandRow = tuple[str, str, str, str]
"""(device id, command id, manufacturer, final state) of one command."""
CommandKey = tuple[str, str]
"""(device id, command id)."""
SpanKey = tuple[str, str]
"""(trace id, span id)."""


@dataclass
class _Seen:
    """What the first pass learns of one command from its spans."""

    first_at: datetime
    listed_at: int
    """The command's position in the run's command list."""
    dispatches: int = 0
    traces: set[str] = field(default_factory=set)
    sends: list[tuple[int, bool]] = field(default_factory=list)
    """(attempt, ended in error) of each ``send_to_oem`` span under its dispatches."""

    @property
    def order(self) -> tuple[datetime, int]:
        return self.first_at, self.listed_at

    @property
    def first_time(self) -> bool:
        return bool(self.sends) and all(attempt == 1 and not err for attempt, err in self.sends)


@dataclass(frozen=True)
class _Span:
    trace_id: str
    span_id: str
    parent_id: str | None
    name: str
    start: datetime
    start_at: str
    end_at: str
    status: str
    attributes: dict[str, object]
    line: int

    @property
    def key(self) -> SpanKey:
        return self.trace_id, self.span_id

    @property
    def parent_key(self) -> SpanKey | None:
        return None if self.parent_id is None else (self.trace_id, self.parent_id)

    @property
    def sort_key(self) -> tuple[datetime, int]:
        return self.start, self.line


def command_timelines(
    traces: Path, commands: Sequence[CommandRow], limit: int = 4
) -> list[CommandTimeline]:
    """Up to ``limit`` telling commands of ``commands``, each with its spans from ``traces``."""
    if limit <= 0 or not traces.is_file():
        return []
    rows = {(row[0], row[1]): row for row in commands}
    listed = {key: index for index, key in enumerate(rows)}
    seen = _survey(traces, listed)
    picks = _pick(rows, seen)[:limit]
    if not picks:
        return []
    wanted: dict[str, set[str]] = defaultdict(set)
    for key, _ in picks:
        for trace_id in seen[key].traces:
            wanted[trace_id].add(key[0])
    kept = _gather(traces, wanted)
    return [_timeline(rows[key], why, seen[key].traces, kept) for key, why in picks]


# --- reading ------------------------------------------------------------------------------------


def _records(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Each line's JSON object with its line number; other lines skipped."""
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines):
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(record, dict):
                yield number, record


def _attributes(record: dict[str, Any]) -> dict[str, object]:
    attributes = record.get("attributes")
    return attributes if isinstance(attributes, dict) else {}


def _command_of(record: dict[str, Any]) -> CommandKey | None:
    """The command an ``execute_command`` or ``verify_execution`` span is about."""
    if record.get("name") not in _COMMAND_SPANS:
        return None
    attributes = _attributes(record)
    device_id, command_id = attributes.get("device_id"), attributes.get("command_id")
    if device_id is None or command_id is None:
        return None
    return str(device_id), str(command_id)


def _survey(path: Path, listed: dict[CommandKey, int]) -> dict[CommandKey, _Seen]:
    """First pass: per listed command, its first start, dispatches, traces and sends."""
    seen: dict[CommandKey, _Seen] = {}
    dispatch_of: dict[SpanKey, CommandKey] = {}
    sends: list[tuple[SpanKey, int, bool]] = []
    for _, record in _records(path):
        trace_id = str(record.get("trace_id"))
        if record.get("name") == SEND:
            attempt = _attributes(record).get("attempt")
            parent = (trace_id, str(record.get("parent_span_id")))
            sends.append((parent, attempt if isinstance(attempt, int) else 0, _errored(record)))
            continue
        key = _command_of(record)
        start = instant_or_none(record.get("start_at"))
        if key is None or key not in listed or start is None:
            continue
        entry = seen.setdefault(key, _Seen(first_at=start, listed_at=listed[key]))
        entry.first_at = min(entry.first_at, start)
        entry.traces.add(trace_id)
        if record.get("name") == EXECUTE:
            entry.dispatches += 1
            dispatch_of[trace_id, str(record.get("span_id"))] = key
    for parent, attempt, errored in sends:
        if (owner := dispatch_of.get(parent)) is not None:
            seen[owner].sends.append((attempt, errored))
    return seen


def _errored(record: dict[str, Any]) -> bool:
    return record.get("status") == "ERROR"


def _gather(path: Path, wanted: dict[str, set[str]]) -> dict[str, list[_Span]]:
    """Second pass: the spans of the wanted traces, less those of devices not wanted there."""
    kept: dict[str, list[_Span]] = defaultdict(list)
    for line, record in _records(path):
        trace_id = str(record.get("trace_id"))
        devices = wanted.get(trace_id)
        if devices is None:
            continue
        device_id = _attributes(record).get("device_id")
        if device_id is not None and str(device_id) not in devices:
            continue
        if (span := _span(record, line)) is not None:
            kept[trace_id].append(span)
    return kept


def _span(record: dict[str, Any], line: int) -> _Span | None:
    start = instant_or_none(record.get("start_at"))
    if start is None:
        return None
    parent = record.get("parent_span_id")
    start_at = str(record["start_at"])
    end_at = record.get("end_at")
    return _Span(
        trace_id=str(record.get("trace_id")),
        span_id=str(record.get("span_id")),
        parent_id=None if parent is None else str(parent),
        name=str(record.get("name")),
        start=start,
        start_at=start_at,
        end_at=str(end_at) if instant_or_none(end_at) is not None else start_at,
        status=str(record.get("status", "UNSET")),
        attributes=_attributes(record),
        line=line,
    )


# --- picking ------------------------------------------------------------------------------------


def _pick(
    rows: dict[CommandKey, CommandRow], seen: dict[CommandKey, _Seen]
) -> list[tuple[CommandKey, str]]:
    """The telling commands in priority order, each with why it was picked."""
    ordered = sorted(seen, key=lambda key: seen[key].order)

    def in_state(state: str) -> list[CommandKey]:
        return [key for key in ordered if rows[key][3] == state]

    most = sorted((key for key in ordered if seen[key].dispatches), key=_fewest(seen, -1))
    first_time = [key for key in in_state("completed") if seen[key].first_time]
    reasons: dict[CommandKey, list[str]] = {}
    for candidates, why in (
        (in_state("failed"), lambda _: "failed"),
        (most, lambda key: f"most dispatch attempts ({seen[key].dispatches})"),
        (in_state("superseded"), lambda _: "superseded"),
        (sorted(first_time, key=_fewest(seen, 1)), lambda _: "completed at its first attempt"),
    ):
        _note_first(candidates, why, reasons)
    return [(key, "; ".join(whys)) for key, whys in reasons.items()]


def _fewest(
    seen: dict[CommandKey, _Seen], sign: int
) -> Callable[[CommandKey], tuple[int, datetime, int]]:
    """Sort by dispatches (ascending for ``sign`` 1, descending for -1), then first start."""
    return lambda key: (sign * seen[key].dispatches, *seen[key].order)


def _note_first(
    candidates: Sequence[CommandKey],
    why: Callable[[CommandKey], str],
    reasons: dict[CommandKey, list[str]],
) -> None:
    if candidates:
        reasons.setdefault(candidates[0], []).append(why(candidates[0]))


# --- one timeline -------------------------------------------------------------------------------


def _timeline(
    row: CommandRow, why: str, traces: Iterable[str], kept: dict[str, list[_Span]]
) -> CommandTimeline:
    device_id, command_id, manufacturer, final_state = row
    key = (device_id, command_id)
    spans = [span for trace_id in sorted(traces) for span in kept.get(trace_id, [])]
    by_key = {span.key: span for span in spans}
    children: dict[SpanKey, list[_Span]] = defaultdict(list)
    for span in spans:
        if span.parent_key is not None:
            children[span.parent_key].append(span)
    chosen: dict[SpanKey, _Span] = {}
    for seed in spans:
        if seed.name in _COMMAND_SPANS and _own(seed, key):
            _add_ancestors(seed, by_key, chosen)
            _add_descendants(seed, children, key, chosen)
    for ancestor in [span for span in chosen.values() if _named(span, "command_id") is None]:
        for sibling in children.get(ancestor.key, []):
            if _named(sibling, "device_id") == device_id and _belongs(sibling, key):
                chosen.setdefault(sibling.key, sibling)
                _add_descendants(sibling, children, key, chosen)
    return CommandTimeline(
        device_id=device_id,
        command_id=command_id,
        manufacturer=manufacturer,
        final_state=final_state,
        why=why,
        spans=_in_start_order(chosen),
    )


def _own(span: _Span, key: CommandKey) -> bool:
    return _named(span, "device_id") == key[0] and _named(span, "command_id") == key[1]


def _belongs(span: _Span, key: CommandKey) -> bool:
    """Nothing in the span's attributes names another device or command."""
    device_id, command_id = _named(span, "device_id"), _named(span, "command_id")
    return device_id in (None, key[0]) and command_id in (None, key[1])


def _named(span: _Span, attribute: str) -> str | None:
    value = span.attributes.get(attribute)
    return None if value is None else str(value)


def _add_ancestors(span: _Span, by_key: dict[SpanKey, _Span], chosen: dict[SpanKey, _Span]) -> None:
    current: _Span | None = span
    while current is not None and current.key not in chosen:
        chosen[current.key] = current
        parent = current.parent_key
        current = by_key.get(parent) if parent is not None else None


def _add_descendants(
    span: _Span,
    children: dict[SpanKey, list[_Span]],
    key: CommandKey,
    chosen: dict[SpanKey, _Span],
) -> None:
    stack = [child for child in children.get(span.key, []) if _belongs(child, key)]
    while stack:
        child = stack.pop()
        if child.key in chosen:
            continue
        chosen[child.key] = child
        stack.extend(grandchild for grandchild in children[child.key] if _belongs(grandchild, key))


def _in_start_order(chosen: dict[SpanKey, _Span]) -> list[TimelineSpan]:
    """Depth first from the roots (children by start), then stably by start: a parent stays
    before its children that start at the same instant."""
    children: dict[SpanKey, list[_Span]] = defaultdict(list)
    roots: list[_Span] = []
    for span in chosen.values():
        parent = span.parent_key
        if parent is not None and parent in chosen:
            children[parent].append(span)
        else:
            roots.append(span)
    walked: list[tuple[_Span, int]] = []
    stack = [(root, 0) for root in sorted(roots, key=lambda s: s.sort_key, reverse=True)]
    while stack:
        span, depth = stack.pop()
        walked.append((span, depth))
        below = sorted(children[span.key], key=lambda s: s.sort_key, reverse=True)
        stack.extend((child, depth + 1) for child in below)
    walked.sort(key=lambda item: item[0].start)
    return [
        TimelineSpan(
            name=span.name,
            start_at=span.start_at,
            end_at=span.end_at,
            status=span.status,
            depth=depth,
            attributes=span.attributes,
        )
        for span, depth in walked
    ]
