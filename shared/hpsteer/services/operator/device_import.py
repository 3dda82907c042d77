"""Register many devices from a CSV file, with a report line per row.

The file is UTF-8 CSV with a header naming its columns (any order):

- required: ``manufacturer``, ``external_id``, ``account_id``, ``price_area``, ``latitude``,
  ``longitude``, ``min_indoor_temp_c``, ``setpoint_c``, ``max_indoor_temp_c``;
- the building: ``archetype``, or the thermal parameters' own columns (``heat_loss_w_per_k``,
  ``air_capacity_kwh_per_k``, ``hp_max_heat_kw``, and optionally ``envelope_capacity_kwh_per_k``,
  ``air_envelope_conductance_w_per_k``, ``carnot_fraction``, ``floor_heating``);
- optional: ``device_id``, ``steering_enabled``, ``tariff_id``.

A header with an unknown or repeated column, or without a required one, refuses the whole file
before anything is written (:class:`~hpsteer.services.operator.errors.Refused`, the column as the
field), as does a file over :data:`MAX_ROWS` rows. Otherwise every row is one registration
(:func:`~hpsteer.services.operator.devices.store_registration`, one transaction with its audit
event: all of the row or none of it), validated like a JSON registration (an empty cell is an
absent value; a ``tariff_id`` must name a tariff of the row's price area, the tariffs read once
per instance); a row that is refused is reported with its line number (its first line in the
file, the header being line 1), a code, the column at fault and the reason, and the next row
goes on. A row registered before with the same settings is ``existing``. Each account is checked
once per file, and the rows' audit events are appended to the analytics table in one call at
the end (1,000 streaming inserts would take most of the function's timeout). A store that stops
answering fails the request (503): the rows before it stand (and are audited), and sending the
file again skips them as ``existing``.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping
from typing import Any, Final

from pydantic import ValidationError

from hpsteer.domain.audit import AuditEvent
from hpsteer.domain.devices import ThermalParameters
from hpsteer.domain.operator_requests import DeviceRegistration
from hpsteer.domain.operator_views import ImportReport, ImportRow
from hpsteer.runtime.bootstrap import Dependencies
from hpsteer.services.operator.audit import Actor, export_audit
from hpsteer.services.operator.devices import require_account, store_registration
from hpsteer.services.operator.errors import Conflict, Refused

__all__ = ["ALL_COLUMNS", "MAX_ROWS", "REQUIRED_COLUMNS", "import_devices"]

MAX_ROWS: Final = 1000
REQUIRED_COLUMNS: Final = (
    "manufacturer",
    "external_id",
    "account_id",
    "price_area",
    "latitude",
    "longitude",
    "min_indoor_temp_c",
    "setpoint_c",
    "max_indoor_temp_c",
)
_LOCATION: Final = ("latitude", "longitude")
_COMFORT: Final = ("min_indoor_temp_c", "setpoint_c", "max_indoor_temp_c")
_THERMAL: Final = tuple(name for name in ThermalParameters.model_fields if name != "archetype")
_OPTIONAL: Final = ("device_id", "archetype", "steering_enabled", "tariff_id", *_THERMAL)
ALL_COLUMNS: Final = frozenset((*REQUIRED_COLUMNS, *_OPTIONAL))


def _check_header(header: list[str]) -> list[str]:
    names = [name.strip() for name in header]
    seen: set[str] = set()
    for name in names:
        if name not in ALL_COLUMNS:
            raise Refused(
                f"unknown column {name!r}; known: {', '.join(sorted(ALL_COLUMNS))}",
                code="unknown_column",
                field=name or "(empty)",
            )
        if name in seen:
            raise Refused(f"column {name!r} appears twice", code="repeated_column", field=name)
        seen.add(name)
    for name in REQUIRED_COLUMNS:
        if name not in seen:
            raise Refused(f"the header lacks column {name!r}", code="missing_column", field=name)
    return names


def _body(cells: Mapping[str, str]) -> dict[str, Any]:
    """A registration body from a row's non-empty cells."""
    body: dict[str, Any] = {k: v for k, v in cells.items() if k not in (*_LOCATION, *_COMFORT)}
    body["location"] = {k: cells[k] for k in _LOCATION if k in cells}
    body["comfort"] = {k: cells[k] for k in _COMFORT if k in cells}
    thermal = {k: body.pop(k) for k in _THERMAL if k in body}
    if thermal:
        body["thermal"] = thermal
    return body


def _column(loc: tuple[int | str, ...]) -> str:
    """The CSV column a validation error's location points at (or the dotted location)."""
    for part in reversed(loc):
        if isinstance(part, str) and part in ALL_COLUMNS:
            return part
    return ".".join(str(p) for p in loc) or "(row)"


def _refused(line: int, code: str, field: str | None, message: str) -> ImportRow:
    return ImportRow(line=line, status="refused", code=code, field=field, message=message)


class _Rows:
    """The rows' registrations: each account checked once, the audit events kept for one
    append at the end (a row is one transaction; its event is the analytics' copy)."""

    def __init__(self, deps: Dependencies, actor: Actor) -> None:
        self.deps = deps
        self.actor = actor
        self.accounts: dict[tuple[str, str], Refused | None] = {}
        self.events: list[AuditEvent] = []

    def account_refusal(self, manufacturer: str, account_id: str) -> Refused | None:
        key = (manufacturer, account_id)
        if key not in self.accounts:
            try:
                require_account(self.deps, manufacturer, account_id)
                self.accounts[key] = None
            except Refused as err:
                self.accounts[key] = err
        return self.accounts[key]

    def register(self, line: int, cells: Mapping[str, str]) -> ImportRow:
        try:
            registration = DeviceRegistration.model_validate(_body(cells))
        except ValidationError as err:
            problems = err.errors(include_url=False)
            message = "; ".join(f"{_column(p['loc'])}: {p['msg']}" for p in problems)
            return _refused(line, "invalid", _column(problems[0]["loc"]), message)
        refusal = self.account_refusal(registration.manufacturer, registration.account_id)
        if refusal is not None:
            return _refused(line, refusal.code, refusal.field, str(refusal))
        context = {"source": "csv_import", "line": line}
        try:
            registered, events = store_registration(
                self.deps, self.actor, registration, context=context
            )
        except (Refused, Conflict) as err:
            return _refused(line, err.code, err.field, str(err))
        self.events.extend(events)
        return ImportRow(
            line=line,
            status="imported" if registered.created else "existing",
            device_id=registered.device.device_id,
        )


def import_devices(deps: Dependencies, actor: Actor, text: str) -> ImportReport:
    """Register the file's rows (module docstring)."""
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        header = next(reader, None)
        if header is None:
            raise Refused("the file is empty: it needs a header row", code="empty_file")
        columns = _check_header(header)
        rows: list[tuple[int, list[str]]] = []
        line = reader.line_num + 1
        for cells in reader:
            if any(cell.strip() for cell in cells):
                rows.append((line, cells))
            line = reader.line_num + 1
    except csv.Error as err:
        raise Refused(f"not CSV at line {reader.line_num}: {err}", code="malformed_csv") from None
    if len(rows) > MAX_ROWS:
        raise Refused(
            f"{len(rows)} rows; at most {MAX_ROWS} per file: split it", code="too_many_rows"
        )
    registering = _Rows(deps, actor)
    report: list[ImportRow] = []
    try:
        _register_rows(registering, columns, rows, report)
    finally:  # what was registered is audited even when a later row's store call failed
        export_audit(deps, registering.events)
    return ImportReport(
        imported=sum(r.status == "imported" for r in report),
        existing=sum(r.status == "existing" for r in report),
        refused=sum(r.status == "refused" for r in report),
        rows=report,
    )


def _register_rows(
    registering: _Rows,
    columns: list[str],
    rows: list[tuple[int, list[str]]],
    report: list[ImportRow],
) -> None:
    for line, cells in rows:
        if len(cells) != len(columns):
            report.append(
                _refused(
                    line,
                    "wrong_cell_count",
                    None,
                    f"{len(cells)} cells where the header names {len(columns)} columns",
                )
            )
            continue
        present = {c: v.strip() for c, v in zip(columns, cells, strict=True) if v.strip()}
        report.append(registering.register(line, present))
