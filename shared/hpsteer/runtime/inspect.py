"""``hpsteer inspect``: one device or one command of a run's store, as the Firestore console
would show it, but readable (or as one JSON object, instants in ISO 8601 with ``Z``).

It only reads, through the document store port. :func:`inspect_device` prints the device
document's key fields, the mode its current plan intends now, its newest 10 plans (expected vs
baseline cost, which is current, the outbox by status), its newest 20 commands (by
``created_at``) and its open alerts; :func:`inspect_command` a command's materialised state
(every field that is set), its events in ``seq`` order and the alerts raised about it. An unknown
device or command, a command id that several devices have (without ``--device``) and a missing
store file are one line on ``err`` and exit status 1, never a traceback.

"Now", for the intended mode, is the latest write among the device's own documents (the device,
its plans, its commands): a snapshot has no clock of its own, and that is the last moment the run
is known to have looked at this device (telemetry, reconciliation and dispatch all write there).
A caller that knows the run's end passes ``now``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from hpsteer.domain.instants import format_instant, instant_or_none
from hpsteer.errors import HpsteerError, InvalidDocumentPath
from hpsteer.ports.store import Document, DocumentStore, Filter, Order, every_page

if TYPE_CHECKING:  # the services are imported when used: the command line starts fast
    from hpsteer.domain.commands import Command

__all__ = ["add_inspect_parser", "inspect_command", "inspect_device", "open_store", "run_inspect"]

STORE_FILE = "store.sqlite"
PLANS_SHOWN = 10
COMMANDS_SHOWN = 20
_PAGE = 200


def _json_default(value: object) -> str:
    return format_instant(value) if isinstance(value, datetime) else str(value)


def _text(value: object) -> str:
    if value is None or value == {} or value == []:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, datetime):
        return format_instant(value)
    if isinstance(value, float):
        return f"{value:.3f}".rstrip("0").rstrip(".")
    if isinstance(value, dict):
        return ", ".join(f"{k}={_text(v)}" for k, v in value.items())
    if isinstance(value, list):
        return ", ".join(_text(v) for v in value)
    return str(value)


def _table(columns: Sequence[tuple[str, str]], rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """``columns``: (heading, key) pairs; one line per row, aligned."""
    cells = [[h for h, _ in columns], *([_text(row.get(k)) for _, k in columns] for row in rows)]
    widths = [max(len(line[i]) for line in cells) for i in range(len(columns))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)) for line in cells]
    return [lines[0].rstrip(), "  ".join("-" * w for w in widths), *(x.rstrip() for x in lines[1:])]


def _write(out: TextIO, view: Mapping[str, Any], lines: Sequence[str], as_json: bool) -> int:
    out.write(json.dumps(view, default=_json_default, indent=2) if as_json else "\n".join(lines))
    out.write("\n")
    return 0


def _get(store: DocumentStore, path: str) -> Document | None:
    """The document, or ``None`` also when an id makes no valid path (``a/b``, ``..``)."""
    try:
        return store.get(path)
    except InvalidDocumentPath:
        return None


def _alerts(store: DocumentStore, filters: Sequence[Filter], *, open_only: bool) -> list[Any]:
    oldest_first = [Order("raised_at")]
    found = every_page(
        lambda c: store.query("alerts", filters, oldest_first, limit=_PAGE, cursor=c)
    )
    return [
        {"alert_id": doc.id, **doc.data}
        for doc in found
        if not (open_only and doc.data.get("resolved_at") is not None)
    ]


def _alert_lines(alerts: Sequence[Mapping[str, Any]]) -> list[str]:
    return [
        f"  {_text(a.get('severity')).upper()} {a.get('kind')} at "
        f"{_text(instant_or_none(a.get('raised_at')))}: {a.get('message')}"
        for a in alerts
    ] or ["  none"]


# -- a device --------------------------------------------------------------------------------


def _plan_row(doc: Document, current_plan_id: object) -> dict[str, Any]:
    data = doc.data
    statuses = Counter(str(e.get("status")) for e in data.get("outbox") or [])
    return {
        "plan_id": doc.id,
        "current": doc.id == current_plan_id,
        "created_at": instant_or_none(data.get("created_at")),
        "start_at": instant_or_none(data.get("start_at")),
        "end_at": instant_or_none(data.get("end_at")),
        "expected_cost_eur": data.get("expected_cost_eur"),
        "baseline_cost_eur": data.get("baseline_cost_eur"),
        "outbox": dict(sorted(statuses.items())),
    }


def _command_row(command: Command) -> dict[str, Any]:
    return {
        "command_id": command.command_id,
        "action": command.generic_action.value,
        "slot_start_at": command.slot_start_at,
        "state": command.state.value,
        "attempt": command.attempt,
        "retry_count": command.retry_count,
        "last_error": command.last_error,
        "created_at": command.created_at,
    }


def _device_view(store: DocumentStore, device: Document, now: datetime | None) -> dict[str, Any]:
    from hpsteer.domain.commands import Command
    from hpsteer.services.reconcile import intended_now

    data, device_id = device.data, device.id
    plans = store.query(
        f"devices/{device_id}/plans", order_by=[Order("created_at", "desc")], limit=PLANS_SHOWN
    ).documents
    command_docs = list(
        every_page(lambda c: store.query(f"{device.path}/commands", limit=_PAGE, cursor=c))
    )
    commands = sorted(  # newest first; of those created together, the latest slot first
        (Command.parse(doc.data) for doc in command_docs),
        key=lambda c: (c.created_at, c.slot_start_at or c.created_at, c.command_id),
        reverse=True,
    )
    as_of = now or max(doc.update_time for doc in [device, *plans, *command_docs])
    intended, _ = intended_now(data, as_of)
    telemetry = data.get("last_telemetry")
    return {
        "device_id": device_id,
        "as_of": as_of,
        "manufacturer": data.get("manufacturer"),
        "external_id": data.get("external_id"),
        "account_id": data.get("account_id"),
        "price_area": data.get("price_area"),
        "comfort": data.get("comfort"),
        "steering_enabled": data.get("steering_enabled") is not False,
        "override_until": instant_or_none(data.get("override_until")),
        "last_telemetry": telemetry if isinstance(telemetry, dict) else None,
        "current_plan_id": data.get("current_plan_id"),
        "intended_now": {
            "mode": None if intended.mode is None else intended.mode.value,
            "since": intended.since,
            "until": intended.until,
            "plan_id": intended.plan_id,
        },
        "reconcile": data.get("reconcile"),
        "plans": [_plan_row(doc, data.get("current_plan_id")) for doc in plans],
        "commands": [_command_row(c) for c in commands[:COMMANDS_SHOWN]],
        "commands_total": len(commands),
        "open_alerts": _alerts(store, [Filter("device_id", "==", device_id)], open_only=True),
    }


def _telemetry_text(telemetry: Mapping[str, Any] | None) -> str:
    if not telemetry:
        return "-"
    shown = ("indoor_temp_c", "outdoor_temp_c", "observed_mode", "power_kw", "online")
    facts = ", ".join(f"{k}={_text(telemetry.get(k))}" for k in shown if k in telemetry)
    return f"observed {_text(instant_or_none(telemetry.get('observed_at')))}: {facts}"


_PLAN_COLUMNS = [
    ("plan", "plan_id"), ("current", "current"), ("created", "created_at"), ("start", "start_at"),
    ("end", "end_at"), ("expected €", "expected_cost_eur"), ("baseline €", "baseline_cost_eur"),
    ("outbox", "outbox"),
]  # fmt: skip
_COMMAND_COLUMNS = [
    ("command", "command_id"), ("action", "action"), ("slot start", "slot_start_at"),
    ("state", "state"), ("attempt", "attempt"), ("retries", "retry_count"),
    ("error", "last_error"),
]  # fmt: skip
_EVENT_COLUMNS = [
    ("seq", "seq"), ("at", "at"), ("type", "type"), ("state", "state"), ("attempt", "attempt"),
    ("error / detail", "about"),
]  # fmt: skip


def _device_lines(view: Mapping[str, Any]) -> list[str]:
    comfort = view["comfort"] or {}
    band = "/".join(
        _text(comfort.get(k)) for k in ("min_indoor_temp_c", "setpoint_c", "max_indoor_temp_c")
    )
    intended = view["intended_now"]
    mode, since, until = (_text(intended[k]) for k in ("mode", "since", "until"))
    fields = [
        ("manufacturer", view["manufacturer"]),
        ("external id", view["external_id"]),
        ("account", view["account_id"]),
        ("price area", view["price_area"]),
        ("comfort band", f"{band} °C (min/setpoint/max)"),
        ("steering", "enabled" if view["steering_enabled"] else "disabled"),
        ("override until", view["override_until"]),
        ("last telemetry", _telemetry_text(view["last_telemetry"])),
        ("current plan", view["current_plan_id"]),
        ("intended now", f"{mode} since {since} until {until}"),
        ("reconcile", view["reconcile"]),
    ]
    return [
        f"device {view['device_id']} (now = {_text(view['as_of'])}: "
        "the latest write to its documents)",
        *(f"  {name:<15} {_text(value)}" for name, value in fields),
        "",
        f"plans (newest {PLANS_SHOWN})",
        *_table(_PLAN_COLUMNS, view["plans"]),
        "",
        f"commands (newest {len(view['commands'])} of {view['commands_total']})",
        *_table(_COMMAND_COLUMNS, view["commands"]),
        "",
        "open alerts",
        *_alert_lines(view["open_alerts"]),
    ]


def inspect_device(
    store: DocumentStore,
    device_id: str,
    *,
    out: TextIO,
    err: TextIO,
    as_json: bool = False,
    now: datetime | None = None,
    source: str = "the store",
) -> int:
    """Print one device, its plans, commands and open alerts; 1 if there is no such device."""
    device = _get(store, f"devices/{device_id}")
    if device is None:
        print(f"error: no device {device_id} in {source}", file=err)
        return 1
    view = _device_view(store, device, now)
    return _write(out, view, _device_lines(view), as_json)


# -- a command -------------------------------------------------------------------------------


def _find_commands(store: DocumentStore, command_id: str, device_id: str | None) -> list[Document]:
    if device_id is not None:
        found = _get(store, f"devices/{device_id}/commands/{command_id}")
        return [] if found is None else [found]
    flt = [Filter("command_id", "==", command_id)]
    return list(
        every_page(lambda c: store.collection_group("commands", flt, limit=_PAGE, cursor=c))
    )


def _about(error: str | None, detail: Mapping[str, Any], width: int = 90) -> str:
    """An event's error, else its facts, cut to ``width``."""
    text = error or _text(detail)
    return text if len(text) <= width else text[: width - 1] + "…"


def inspect_command(
    store: DocumentStore,
    command_id: str,
    *,
    device_id: str | None,
    out: TextIO,
    err: TextIO,
    as_json: bool = False,
    source: str = "the store",
) -> int:
    """Print one command's state, history and alerts; 1 if it is missing or ambiguous."""
    from hpsteer.domain.commands import Command
    from hpsteer.services.command_log import events_of

    found = _find_commands(store, command_id, device_id)
    owners = sorted({doc.path.split("/")[1] for doc in found})
    if not found:
        of = "" if device_id is None else f" of device {device_id}"
        print(f"error: no command {command_id}{of} in {source}", file=err)
        return 1
    if len(owners) > 1:
        print(
            f"error: command {command_id} exists on devices {', '.join(owners)}: "
            "choose one with --device",
            file=err,
        )
        return 1
    command = Command.parse(found[0].data)
    events = events_of(found[0].data)
    near = [Filter("device_id", "==", owners[0]), Filter("command_id", "==", command_id)]
    state = {k: v for k, v in command.to_document().items() if v is not None}
    view: dict[str, Any] = {
        "device_id": owners[0],
        "command": state,
        "events": [e.to_document() for e in events],
        "alerts": _alerts(store, near, open_only=False),
    }
    rows = [{**e.model_dump(), "about": _about(e.error, e.detail)} for e in events]
    lines = [
        f"command {command_id} of device {owners[0]}",
        *(f"  {name:<24} {_text(value)}" for name, value in state.items()),
        "",
        "events",
        *_table(_EVENT_COLUMNS, rows),
        "",
        "alerts",
        *_alert_lines(view["alerts"]),
    ]
    return _write(out, view, lines, as_json)


# -- the command line ------------------------------------------------------------------------


def open_store(state: Path, err: TextIO) -> tuple[DocumentStore, Path] | None:
    """The store of a run's output folder (or of the file itself), read-only; ``None`` after
    one line on ``err`` if there is none."""
    from hpsteer.backends.local.store import LocalDocumentStore

    path = state if state.is_file() else state / STORE_FILE
    if not path.is_file():
        print(f"error: no store at {path}: run `hpsteer simulate` first", file=err)
        return None
    try:
        return LocalDocumentStore.open_readonly(path), path
    except HpsteerError as error:
        print(f"error: {error}".splitlines()[0], file=err)
        return None


def add_inspect_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``hpsteer inspect device ID`` and ``hpsteer inspect command ID [--device ID]``."""
    inspect = sub.add_parser(
        "inspect",
        help="show a simulated run's devices and commands, as the Firestore console would",
        description="Read the store a run left (STATE/store.sqlite) and print one device or "
        "one command readably; exit 1 with a one-line error if there is no such thing.",
    )
    kinds = inspect.add_subparsers(dest="inspect_command", required=True, metavar="SUBCOMMAND")
    device = kinds.add_parser("device", help="a device, its plans, commands and open alerts")
    device.add_argument("device_id", metavar="ID", help="the device's id (e.g. home-0000)")
    command = kinds.add_parser("command", help="a command's state, event history and alerts")
    command.add_argument("command_id", metavar="ID", help="the command's id")
    command.add_argument("--device", dest="device_id", metavar="ID", help="the command's device")
    for parser in (device, command):
        parser.add_argument(
            "--state",
            type=Path,
            default=Path("hpsteer-report"),
            metavar="DIR",
            help="the run's output folder, holding store.sqlite (default hpsteer-report)",
        )
        parser.add_argument("--json", action="store_true", help="print one JSON object")


def run_inspect(
    args: argparse.Namespace, *, out: TextIO | None = None, err: TextIO | None = None
) -> int:
    out, err = out or sys.stdout, err or sys.stderr
    opened = open_store(args.state, err)
    if opened is None:
        return 1
    store, path = opened
    shown: dict[str, Any] = {"out": out, "err": err, "as_json": args.json, "source": str(path)}
    try:
        if args.inspect_command == "device":
            return inspect_device(store, args.device_id, **shown)
        return inspect_command(store, args.command_id, device_id=args.device_id, **shown)
    except HpsteerError as error:  # a document the models refuse: name it, no traceback
        print(f"error: {error}".splitlines()[0], file=err)
        return 1
    except BrokenPipeError:  # the reader stopped early (| head): not an error of ours
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - keeps the interpreter's flush quiet
        return 0
