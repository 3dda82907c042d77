"""``hpsteer devices …`` and ``hpsteer alerts …``: the operator API from the command line.

``devices add|import|list|show|update|enable|disable|delete`` and ``alerts list|ack`` each call one
operation of the operator API, through one of two transports
(:mod:`hpsteer.runtime.operator_client`):

- without ``--api``: the operator's services run in-process on a local run's store (``--state
  DIR``, as ``hpsteer inspect``), as the fixed local admin, said once on stderr; work the cloud
  would hand to Cloud Tasks or Pub/Sub (a hand-back's send, a re-plan) is kept in the store or
  held, and said on stderr (:mod:`hpsteer.runtime.operator_local`);
- with ``--api URL``: HTTP to the deployed API with the caller's Google ID token
  (:mod:`hpsteer.runtime.operator_http`).

Input is validated by the API's own request models before anything is opened, so a bad value is
refused the same way by both transports. Output is readable text by default and the API's
answer as one JSON document with ``--json``. Exit status: 0 done; 1 refused (one line on stderr:
the status the API answers, its code, the field at fault, why) or an import with a refused row;
2 a command line that does not make sense (one line on stderr). Never a traceback for input.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import textwrap
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TextIO

from pydantic import ValidationError

from hpsteer.domain.market import PriceArea
from hpsteer.domain.messages import AlertSeverity
from hpsteer.domain.operator_requests import (
    MANUFACTURERS,
    AlertListQuery,
    AlertPath,
    DeviceListQuery,
    DevicePath,
    DeviceRegistration,
    DeviceUpdate,
    NoteBody,
)
from hpsteer.runtime.operator_client import TOKEN_ENV, ApiRefusal, ClientError

if TYPE_CHECKING:  # the rest is imported when a command runs: `hpsteer` starts fast
    import httpx

    from hpsteer.runtime.operator_client import OperatorClient

__all__ = ["DEFAULT_STATE", "add_operator_parsers", "run_operator"]

DEFAULT_STATE = Path("hpsteer-report")
ARCHETYPES = ("old_radiators", "renovated_radiators", "new_floor_heating")
ALERT_STATES = ("open", "acknowledged", "resolved", "unresolved", "all")
THERMAL_FLAGS = (
    ("heat_loss_w_per_k", "W/K", "the building's heat loss coefficient"),
    ("air_capacity_kwh_per_k", "kWh/K", "the indoor air's heat capacity (1R1C: the building's)"),
    ("hp_max_heat_kw", "kW", "the heat pump's largest heat output"),
    ("envelope_capacity_kwh_per_k", "kWh/K", "2R2C: the envelope's heat capacity"),
    ("air_envelope_conductance_w_per_k", "W/K", "2R2C: conductance between air and envelope"),
    ("carnot_fraction", "", "COP as a share of Carnot's (default 0.45)"),
)
COMFORT_FLAGS = (
    ("comfort_min", "min_indoor_temp_c"),
    ("setpoint", "setpoint_c"),
    ("comfort_max", "max_indoor_temp_c"),
)
REGISTRATION_FLAGS = ("external_id", "account", "area", "lat", "lon")
HELP_WIDTH = 98


class UsageError(Exception):
    """A command line that does not make sense: one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    """Refuses a bad command line in one line (argparse prints its whole usage first)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _finite(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"not a finite number: {text!r}")
    return value


# -- the parsers -----------------------------------------------------------------------------

WHERE = """\
Where: without --api, the operator's services run in-process on a local run's store (--state DIR,
default hpsteer-report: the folder `hpsteer simulate` writes), as the fixed local admin
local-admin@hpsteer.local; its time is the store's latest write. What the cloud would hand on
(a hand-back command's send to Cloud Tasks, a re-plan request to Pub/Sub) has nothing to deliver
it on a local store: the command stays pending in the store and each such is said on stderr.
With --api URL (terraform output api_url) it calls the deployed operator API with your Google ID
token: --token, else --impersonate-service-account SA (gcloud mints a token for the API's URL),
else $HPSTEER_ID_TOKEN, else `gcloud auth print-identity-token` (a person's token is accepted
only if the API lists gcloud's audience in HPSTEER_API_EXTRA_AUDIENCES). The token is never
printed. Roles: viewer reads, operator registers, steers and acknowledges, admin also imports
and deletes.

Exit status: 0 done; 1 refused (one line on stderr: status, code, field, why) or an import with
a refused row; 2 a command line that does not make sense."""


def _common() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    where = common.add_argument_group("where (one of)")
    where.add_argument(
        "--state",
        type=Path,
        metavar="DIR",
        help="a local run's output folder holding store.sqlite, or the file (default "
        f"{DEFAULT_STATE}); the services run in-process on it as the local admin",
    )
    where.add_argument(
        "--api", metavar="URL", help="the deployed operator API's URL (terraform output api_url)"
    )
    identity = common.add_argument_group("identity (with --api)")
    identity.add_argument(
        "--token",
        metavar="TOKEN",
        help=f"a Google ID token to send (prefer ${TOKEN_ENV}: a flag shows in the process list)",
    )
    identity.add_argument(
        "--impersonate-service-account",
        metavar="SA",
        help="mint the token as service account SA with gcloud, for the API's URL (needs "
        "roles/iam.serviceAccountOpenIdTokenCreator on SA)",
    )
    common.add_argument("--json", action="store_true", help="print the API's answer as JSON")
    return common


def _wrapped(text: str) -> str:
    """A description wrapped as the epilog is (help keeps both as written)."""
    return textwrap.fill(text, width=HELP_WIDTH)


def _group(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], name: str, help_text: str
) -> argparse._SubParsersAction[argparse.ArgumentParser]:
    group = sub.add_parser(
        name,
        help=help_text,
        description=_wrapped(f"{help_text[0].upper()}{help_text[1:]}."),
        epilog=WHERE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    return group.add_subparsers(
        dest=f"{name}_command", required=True, metavar="SUBCOMMAND", parser_class=_Parser
    )


def _leaf(
    actions: argparse._SubParsersAction[argparse.ArgumentParser],
    name: str,
    help_text: str,
    description: str,
    common: argparse.ArgumentParser,
) -> argparse.ArgumentParser:
    return actions.add_parser(
        name,
        parents=[common],
        help=help_text,
        description=_wrapped(description),
        epilog=WHERE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def _page_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--page-size", type=int, default=50, metavar="N", help="at most N per page (1-200; 50)"
    )
    parser.add_argument("--page-token", metavar="TOKEN", help="the page a listing said is next")
    parser.add_argument("--all", action="store_true", help="follow every next page")


def _add_devices(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    common = _common()
    actions = _group(sub, "devices", "register, list, show, steer and delete heat pumps")

    add = _leaf(
        actions,
        "add",
        "register a heat pump (operator)",
        "Register a heat pump, from flags or from a JSON registration (--from-json FILE, the "
        "body of POST /v1/devices). Registering the same manufacturer device again with the "
        "same settings answers the stored device; other settings conflict (409). The account's "
        "credentials must be held by hpsteer (422 naming account_id otherwise).",
        common,
    )
    add.add_argument(
        "manufacturer",
        nargs="?",
        metavar="MANUFACTURER",
        help=f"one of {', '.join(MANUFACTURERS)}",
    )
    add.add_argument("--from-json", metavar="FILE", help="the registration as JSON (- for stdin)")
    add.add_argument("--external-id", metavar="ID", help="the manufacturer's id of the device")
    add.add_argument("--account", metavar="ID", help="the account whose credentials reach it")
    add.add_argument("--area", metavar="AREA", help="its price area, e.g. SE3, DK1 (bidding zone)")
    add.add_argument("--lat", type=_finite, metavar="DEG", help="latitude of the home")
    add.add_argument("--lon", type=_finite, metavar="DEG", help="longitude of the home")
    add.add_argument("--comfort-min", type=_finite, metavar="C", help="lowest indoor °C")
    add.add_argument("--setpoint", type=_finite, metavar="C", help="the household's setpoint °C")
    add.add_argument("--comfort-max", type=_finite, metavar="C", help="highest indoor °C")
    building = add.add_argument_group("the building: --archetype, or its thermal parameters")
    building.add_argument("--archetype", choices=ARCHETYPES, help="a published building type")
    for name, unit, what in THERMAL_FLAGS:
        building.add_argument(
            f"--{name.replace('_', '-')}",
            type=_finite,
            metavar=unit or "X",
            help=what,
        )
    building.add_argument(
        "--floor-heating", action="store_true", default=None, help="floor heating (not radiators)"
    )
    add.add_argument("--tariff", metavar="ID", help="the household's tariff id (optional)")
    add.add_argument(
        "--device-id", metavar="ID", help="hpsteer's id (default: from manufacturer and id)"
    )
    add.add_argument(
        "--steering", choices=("on", "off"), help="steer it from the start (default on)"
    )

    imported = _leaf(
        actions,
        "import",
        "register heat pumps from a CSV file (admin)",
        "Register every row of a UTF-8 CSV file (at most 1,000 rows) and print a report line "
        "per row: imported, existing (registered before with the same settings) or refused "
        "(why, and the column). Columns: manufacturer, external_id, account_id, price_area, "
        "latitude, longitude, min_indoor_temp_c, setpoint_c, max_indoor_temp_c, and archetype "
        "or the thermal parameters; optional device_id, steering_enabled, tariff_id. Exit 1 if "
        "any row was refused (the others are registered).",
        common,
    )
    imported.add_argument("file", type=Path, metavar="FILE.csv")

    listed = _leaf(
        actions,
        "list",
        "list devices (viewer)",
        "List devices in id order, one page at a time (deleted devices are left out, so a page "
        "may be short and still have a next one).",
        common,
    )
    listed.add_argument(
        "--area", choices=[a.value for a in PriceArea], metavar="AREA", help="only this area"
    )
    listed.add_argument("--manufacturer", choices=MANUFACTURERS, help="only this manufacturer")
    listed.add_argument("--steering", choices=("on", "off"), help="only steered, or only not")
    _page_options(listed)

    shown = _leaf(
        actions,
        "show",
        "what a device is doing and why (viewer)",
        "Show a device's status: its settings, last telemetry, the mode its current plan "
        "intends now against the mode it reported, the current plan (mode runs, expected "
        "against baseline cost), its recent commands with their lifecycle, open alerts and a "
        "household override in force.",
        common,
    )
    shown.add_argument("device_id", metavar="ID", help="the device's id (e.g. home-0000)")

    update = _leaf(
        actions,
        "update",
        "change a device's comfort band or tariff (operator)",
        "Change the comfort band (all three of --comfort-min, --setpoint, --comfort-max) and/or "
        "the household tariff (--tariff ID, or --no-tariff to plan on spot); a steered device is "
        "re-planned. The same change again changes nothing.",
        common,
    )
    update.add_argument("device_id", metavar="ID", help="the device's id")
    update.add_argument("--comfort-min", type=_finite, metavar="C", help="lowest indoor °C")
    update.add_argument("--setpoint", type=_finite, metavar="C", help="the household's setpoint °C")
    update.add_argument("--comfort-max", type=_finite, metavar="C", help="highest indoor °C")
    tariff = update.add_mutually_exclusive_group()
    tariff.add_argument("--tariff", metavar="ID", help="the household's tariff id (data/tariffs)")
    tariff.add_argument("--no-tariff", action="store_true", help="remove the tariff: plan on spot")

    for name, what in (
        ("enable", "switch steering on: the device is re-planned (operator)"),
        ("disable", "switch steering off: hand the heat pump back to its own control (operator)"),
    ):
        steer = _leaf(
            actions,
            name,
            what,
            f"{what[0].upper()}{what[1:]}. Switching off supersedes the commands not yet sent "
            "and sends one set_mode_mid command (handback-r…) that hands the heat pump back; "
            "doing it again changes nothing.",
            common,
        )
        steer.add_argument("device_id", metavar="ID", help="the device's id")

    delete = _leaf(
        actions,
        "delete",
        "hand a heat pump back and delete it (admin)",
        "Hand the heat pump back to its own control (when it was steered) and delete the device; "
        "its command history stays readable. Refused without --yes.",
        common,
    )
    delete.add_argument("device_id", metavar="ID", help="the device's id")
    delete.add_argument("--yes", action="store_true", help="yes, delete it")


def _add_alerts(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    common = _common()
    actions = _group(sub, "alerts", "list and acknowledge alerts")
    listed = _leaf(
        actions,
        "list",
        "list alerts (viewer)",
        "List alerts in id order, one page at a time. The status filter applies to each page, "
        "so a page may be short and still have a next one.",
        common,
    )
    listed.add_argument(
        "--status",
        choices=ALERT_STATES,
        default="unresolved",
        help="open: neither acknowledged nor resolved; unresolved (default): open or acknowledged",
    )
    listed.add_argument("--device", metavar="ID", help="only this device's alerts")
    listed.add_argument(
        "--severity", choices=[s.value for s in AlertSeverity], help="only this severity"
    )
    listed.add_argument("--kind", metavar="KIND", help="only this kind, e.g. command_failed")
    _page_options(listed)

    ack = _leaf(
        actions,
        "ack",
        "acknowledge an alert (operator)",
        "Acknowledge an alert (recorded with who and when, and audited); acknowledging it again "
        "changes nothing.",
        common,
    )
    ack.add_argument("alert_id", metavar="ID", help="the alert's id (alerts list shows it)")
    ack.add_argument("--note", metavar="TEXT", help="a note kept with the acknowledgement")


def add_operator_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``hpsteer devices …`` and ``hpsteer alerts …`` (module docstring)."""
    _add_devices(sub)
    _add_alerts(sub)


# -- input, validated by the API's models ------------------------------------------------------


def _refusal(err: ValidationError, status: int, code: str) -> ApiRefusal:
    from hpsteer.api.errors import from_validation

    refused = from_validation(err, status=status, code=code)
    return ApiRefusal(refused.status, refused.code, refused.message, refused.field)


def _path_id(model: type[DevicePath | AlertPath], name: str, value: str) -> str:
    try:
        model.model_validate({name: value})
    except ValidationError as err:
        raise _refusal(err, 400, "invalid_path_parameter") from None
    return value


def _query(model: type[DeviceListQuery | AlertListQuery], values: Mapping[str, Any]) -> Any:
    try:
        return model.model_validate({k: v for k, v in values.items() if v is not None})
    except ValidationError as err:
        raise _refusal(err, 400, "invalid_query") from None


def _not_json(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _body(model: type[DeviceRegistration | NoteBody], text: str) -> Any:
    """The body as the API reads it: JSON (NaN and Infinity refused), then the model, strictly."""
    try:
        json.loads(text, parse_constant=_not_json)
    except ValueError as err:
        raise ApiRefusal(400, "malformed_json", f"the body is not JSON: {err}") from None
    try:
        return model.model_validate_json(text, strict=True)
    except ValidationError as err:
        raise _refusal(err, 422, "invalid_body") from None


def _registration_json(args: argparse.Namespace) -> str:
    """The registration body from ``--from-json`` or from the flags (one or the other)."""
    required = (*REGISTRATION_FLAGS, *(flag for flag, _ in COMFORT_FLAGS))
    optional = ("archetype", "tariff", "device_id", "steering", "floor_heating")
    given = [f for f in (*required, *optional) if getattr(args, f) is not None]
    given += [name for name, _, _ in THERMAL_FLAGS if getattr(args, name) is not None]
    if args.from_json is not None:
        if args.manufacturer is not None or given:
            raise UsageError("give either --from-json FILE or the registration's flags, not both")
        return _read_text(args.from_json)
    missing = [f for f in ("manufacturer", *required) if getattr(args, f) is None]
    if missing:
        wanted = ", ".join("MANUFACTURER" if f == "manufacturer" else _flag(f) for f in missing)
        raise UsageError(f"devices add needs {wanted} (or --from-json FILE)")
    body: dict[str, Any] = {
        "manufacturer": args.manufacturer,
        "external_id": args.external_id,
        "account_id": args.account,
        "price_area": args.area,
        "location": {"latitude": args.lat, "longitude": args.lon},
        "comfort": {field: getattr(args, flag) for flag, field in COMFORT_FLAGS},
    }
    if args.archetype is not None:
        body["archetype"] = args.archetype
    thermal = {n: getattr(args, n) for n, _, _ in THERMAL_FLAGS if getattr(args, n) is not None}
    if args.floor_heating:
        thermal["floor_heating"] = True
    if thermal:
        body["thermal"] = thermal
    if args.tariff is not None:
        body["tariff_id"] = args.tariff
    if args.device_id is not None:
        body["device_id"] = args.device_id
    if args.steering is not None:
        body["steering_enabled"] = args.steering == "on"
    return json.dumps(body)


def _flag(dest: str) -> str:
    return f"--{dest.replace('_', '-')}"


def _read_text(name: str) -> str:
    if name == "-":
        return sys.stdin.read()
    try:
        return Path(name).read_text(encoding="utf-8-sig")
    except OSError as err:
        raise ClientError(f"cannot read {name}: {err.strerror}") from None
    except UnicodeDecodeError as err:
        raise ClientError(f"{name} is not UTF-8: {err}") from None


# -- the commands ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    answer: Any
    """The API's answer, JSON-ready (what ``--json`` prints)."""
    lines: list[str]
    status: int = 0


Connect = Callable[[], "OperatorClient"]


def _devices_add(args: argparse.Namespace, connect: Connect) -> Outcome:
    from hpsteer.runtime import operator_output as show

    registration = _body(DeviceRegistration, _registration_json(args))
    registered = connect().register_device(registration)
    answer = registered.device.model_dump(mode="json")
    return Outcome(answer, show.registration_lines(registered))


def _devices_import(args: argparse.Namespace, connect: Connect) -> Outcome:
    from hpsteer.runtime import operator_output as show

    try:
        data = args.file.read_bytes()
    except OSError as err:
        raise ClientError(f"cannot read {args.file}: {err.strerror}") from None
    report = connect().import_devices(data)
    return Outcome(
        report.model_dump(mode="json"), show.import_lines(report), int(report.refused > 0)
    )


def _devices_list(args: argparse.Namespace, connect: Connect) -> Outcome:
    from hpsteer.domain.operator_views import DevicesPage
    from hpsteer.runtime import operator_output as show

    steering = None if args.steering is None else args.steering == "on"
    query = _query(
        DeviceListQuery,
        {
            "price_area": args.area,
            "manufacturer": args.manufacturer,
            "steering_enabled": steering,
            "page_size": args.page_size,
            "page_token": args.page_token,
        },
    )
    client = connect()
    page = client.list_devices(query)
    found = list(page.devices)
    while args.all and page.next_page_token:
        page = client.list_devices(query.model_copy(update={"page_token": page.next_page_token}))
        found += page.devices
    whole = DevicesPage(devices=found, next_page_token=page.next_page_token)
    return Outcome(whole.model_dump(mode="json"), show.devices_page_lines(whole))


def _devices_show(args: argparse.Namespace, connect: Connect) -> Outcome:
    from hpsteer.runtime import operator_output as show

    device_id = _path_id(DevicePath, "device_id", args.device_id)
    status = connect().device_status(device_id)
    return Outcome(status.model_dump(mode="json"), show.status_lines(status))


def _devices_update(args: argparse.Namespace, connect: Connect) -> Outcome:
    from hpsteer.runtime import operator_output as show

    device_id = _path_id(DevicePath, "device_id", args.device_id)
    body: dict[str, Any] = {}
    comfort = {field: getattr(args, flag) for flag, field in COMFORT_FLAGS}
    if any(v is not None for v in comfort.values()):
        if any(v is None for v in comfort.values()):
            raise UsageError("a comfort band needs --comfort-min, --setpoint and --comfort-max")
        body["comfort"] = comfort
    if args.tariff is not None or args.no_tariff:
        body["tariff_id"] = None if args.no_tariff else args.tariff
    if not body:
        raise UsageError("devices update needs a comfort band or --tariff ID / --no-tariff")
    try:
        update = DeviceUpdate.model_validate(body, strict=True)
    except ValidationError as err:
        raise _refusal(err, 422, "invalid_body") from None
    device = connect().update_device(device_id, update)
    return Outcome(device.model_dump(mode="json"), show.update_lines(device))


def _devices_steer(args: argparse.Namespace, connect: Connect) -> Outcome:
    from hpsteer.runtime import operator_output as show

    device_id = _path_id(DevicePath, "device_id", args.device_id)
    device = connect().set_steering(device_id, args.devices_command == "enable")
    return Outcome(device.model_dump(mode="json"), show.steering_lines(device))


def _devices_delete(args: argparse.Namespace, connect: Connect) -> Outcome:
    from hpsteer.runtime import operator_output as show

    device_id = _path_id(DevicePath, "device_id", args.device_id)
    if not args.yes:
        raise UsageError(f"deleting {device_id} hands it back and deletes it: say so with --yes")
    deleted = connect().delete_device(device_id)
    return Outcome(deleted.model_dump(mode="json"), show.deleted_lines(deleted))


def _alerts_list(args: argparse.Namespace, connect: Connect) -> Outcome:
    from hpsteer.domain.operator_views import AlertsPage
    from hpsteer.runtime import operator_output as show

    query = _query(
        AlertListQuery,
        {
            "device_id": args.device,
            "kind": args.kind,
            "severity": args.severity,
            "state": args.status,
            "page_size": args.page_size,
            "page_token": args.page_token,
        },
    )
    client = connect()
    page = client.list_alerts(query)
    found = list(page.alerts)
    while args.all and page.next_page_token:
        page = client.list_alerts(query.model_copy(update={"page_token": page.next_page_token}))
        found += page.alerts
    whole = AlertsPage(alerts=found, next_page_token=page.next_page_token)
    return Outcome(whole.model_dump(mode="json"), show.alerts_page_lines(whole))


def _alerts_ack(args: argparse.Namespace, connect: Connect) -> Outcome:
    from hpsteer.runtime import operator_output as show

    alert_id = _path_id(AlertPath, "alert_id", args.alert_id)
    note: NoteBody = _body(NoteBody, json.dumps({"note": args.note}))
    alert = connect().acknowledge_alert(alert_id, note.note)
    return Outcome(alert.model_dump(mode="json"), show.acknowledged_lines(alert))


COMMANDS: dict[tuple[str, str], Callable[[argparse.Namespace, Connect], Outcome]] = {
    ("devices", "add"): _devices_add,
    ("devices", "import"): _devices_import,
    ("devices", "list"): _devices_list,
    ("devices", "show"): _devices_show,
    ("devices", "update"): _devices_update,
    ("devices", "enable"): _devices_steer,
    ("devices", "disable"): _devices_steer,
    ("devices", "delete"): _devices_delete,
    ("alerts", "list"): _alerts_list,
    ("alerts", "ack"): _alerts_ack,
}


# -- running one -------------------------------------------------------------------------------


class _Connection:
    """Opens the transport the command line names, once, on first use."""

    def __init__(
        self,
        args: argparse.Namespace,
        err: TextIO,
        transport: httpx.BaseTransport | None,
        environ: Mapping[str, str],
    ) -> None:
        self.args = args
        self.err = err
        self.transport = transport
        self.environ = environ
        self.client: OperatorClient | None = None

    def __call__(self) -> OperatorClient:
        if self.client is None:
            self.client = self._open()
        return self.client

    def _open(self) -> OperatorClient:
        args = self.args
        if args.api is None:
            from hpsteer.runtime.operator_local import LocalClient

            local = LocalClient(args.state or DEFAULT_STATE)
            print(local.announcement, file=self.err)
            return local
        from hpsteer.runtime.operator_http import ApiClient, api_base_url, identity_token

        url = api_base_url(args.api)
        token = identity_token(
            url,
            token=args.token,
            impersonate=args.impersonate_service_account,
            environ=self.environ,
        )
        return ApiClient(url, token, transport=self.transport)


def _check_usage(args: argparse.Namespace) -> None:
    if args.api is not None and args.state is not None:
        raise UsageError("give --state DIR (a local store) or --api URL, not both")
    if args.api is None and (args.token is not None or args.impersonate_service_account):
        raise UsageError("--token and --impersonate-service-account go with --api URL")
    if args.token is not None and args.impersonate_service_account:
        raise UsageError("give --token or --impersonate-service-account, not both")


def _print(out: TextIO, outcome: Outcome, as_json: bool) -> None:
    try:
        if as_json:
            out.write(json.dumps(outcome.answer, indent=2, ensure_ascii=False) + "\n")
        else:
            out.write("\n".join(outcome.lines) + "\n")
        out.flush()
    except BrokenPipeError:  # the reader stopped early (| head): not an error of ours
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - keeps the interpreter's flush quiet


def run_operator(
    args: argparse.Namespace,
    out: TextIO,
    err: TextIO,
    *,
    transport: httpx.BaseTransport | None = None,
    environ: Mapping[str, str] | None = None,
) -> int:
    """Run one ``devices``/``alerts`` command (module docstring); its exit status.

    ``transport`` replaces the network under ``--api`` and ``environ`` the environment (for
    ``HPSTEER_ID_TOKEN``): tests drive the real API app so."""
    sub = getattr(args, f"{args.command}_command")
    command = COMMANDS[(args.command, sub)]
    connection = _Connection(args, err, transport, os.environ if environ is None else environ)
    try:
        _check_usage(args)
        outcome = command(args, connection)
        _print(out, outcome, args.json)
    except UsageError as refused:
        print(f"error: {refused}", file=err)
        return 2
    except ClientError as refused:
        print(f"error: {refused.line}", file=err)
        return 1
    finally:
        if connection.client is not None:
            for note in connection.client.take_notes():
                print(f"note: {note}", file=err)
            connection.client.close()
    return outcome.status
