"""`hpsteer devices …` and `hpsteer alerts …`: the operator API from the command line.

Locally (no ``--api``) the commands run the operator's services on a run's store: the store is
made as the service tests make theirs (:class:`~hpsteer.runtime.local_fleet.LocalFleet`: three
simulated homes registered, their accounts onboarded, one with a current plan whose commands are
queued, telemetry and an alert), saved to ``store.sqlite`` as a run leaves it, and the CLI opens
that file. With ``--api`` the commands reach the real API app (``functions/api/main.py`` through
functions-framework, under Cloud Functions' path prefix) through an httpx WSGI transport, with
production settings (Google ID tokens signed by a test key, roles per email) over local ports.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import stat
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from functions_framework import create_app

from hpsteer.adapters.credentials import add_data_key, onboard_account
from hpsteer.api.auth import LOCAL_IDENTITY, caller_verifier, verifier_key
from hpsteer.backends.local.analytics import SqliteAnalytics
from hpsteer.backends.local.secrets import MemorySecretStore
from hpsteer.backends.local.store import LocalDocumentStore
from hpsteer.backends.local.tasks import DispatchedRequest, DispatchResult, LocalTaskQueue
from hpsteer.config import Settings
from hpsteer.domain.actions import Mode
from hpsteer.domain.messages import Alert, AlertSeverity
from hpsteer.domain.operator_requests import DeviceRegistration
from hpsteer.domain.roles import Role
from hpsteer.ports.clock import SimulatedClock
from hpsteer.runtime import bootstrap
from hpsteer.runtime.entrypoint import use_dependencies
from hpsteer.runtime.inspect import add_inspect_parser, run_inspect
from hpsteer.runtime.local_fleet import LocalFleet
from hpsteer.runtime.oidc import GoogleCerts
from hpsteer.runtime.operator_cli import add_operator_parsers, run_operator
from hpsteer.runtime.operator_local import ANALYTICS_FILE
from hpsteer.services.alerts import raise_alert
from hpsteer.services.command_tasks import dispatch_queue
from hpsteer.services.operator import devices
from hpsteer.services.operator.audit import AUDIT_EVENTS, Actor
from hpsteer.services.outbox import sweep
from tests.services.test_dispatch import SLOT, T0
from tests.services.test_fleet_admin import store_plan
from tests.support.oidc import SigningKey, make_key

ROOT = Path(__file__).resolve().parents[2]
OPENAPI = json.loads((ROOT / "docs" / "openapi.json").read_text())
API_SOURCE = str(ROOT / "functions" / "api" / "main.py")
API_URL = "https://europe-west1-acme-energy-prod.cloudfunctions.net/api"
MODES = [Mode.MAX, Mode.MAX, Mode.MIN, Mode.MID]
NOW = SLOT + timedelta(minutes=30)
"""The store's latest write: half an hour into the plan's first slot."""


@dataclass(frozen=True)
class Ran:
    code: int
    out: str
    err: str

    @property
    def err_lines(self) -> list[str]:
        return self.err.splitlines()


def hpsteer(*argv: str, **options: Any) -> Ran:
    """One command line through a parser like ``hpsteer``'s (``cli.py`` registers the same)."""
    parser = argparse.ArgumentParser(prog="hpsteer")
    sub = parser.add_subparsers(dest="command", required=True)
    add_operator_parsers(sub)
    add_inspect_parser(sub)
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            args = parser.parse_args(argv)
        except SystemExit as exit_:
            return Ran(int(exit_.code or 0), out.getvalue(), err.getvalue())
    if args.command == "inspect":
        code = run_inspect(args, out=out, err=err)
    else:
        code = run_operator(args, out, err, **options)
    return Ran(code, out.getvalue(), err.getvalue())


def flags(account: str, external_id: str = "vitocal-0001", /, **changes: str) -> list[str]:
    """``devices add`` flags for a viessmann heat pump on ``account``."""
    values = {
        "--external-id": external_id,
        "--account": account,
        "--area": "SE3",
        "--lat": "59.33",
        "--lon": "18.07",
        "--archetype": "renovated_radiators",
        "--comfort-min": "20",
        "--setpoint": "21",
        "--comfort-max": "23",
        **{f"--{k.replace('_', '-')}": v for k, v in changes.items()},
    }
    return ["viessmann", *(part for pair in values.items() for part in pair)]


CSV_HEADER = (
    "manufacturer,external_id,account_id,price_area,latitude,longitude,archetype,"
    "min_indoor_temp_c,setpoint_c,max_indoor_temp_c"
)


# == locally: a run's store =======================================================================


@dataclass(frozen=True)
class Run:
    """A run's output folder and what is in its store."""

    folder: Path
    planned: str
    """A device with a current plan (commands queued) and telemetry."""
    other: str
    account: str
    """The viessmann account (onboarded)."""

    @property
    def state(self) -> list[str]:
        return ["--state", str(self.folder)]

    def store(self) -> LocalDocumentStore:
        return LocalDocumentStore.open_readonly(self.folder / "store.sqlite")


@pytest.fixture
def run(tmp_path: Path) -> Run:
    local = LocalFleet.build(start=T0, homes=3, seed=11)
    ids = local.register_devices()
    by_oem = {home.manufacturer: home for home in local.fleet}
    planned = by_oem["viessmann"].home_id
    store_plan(local, planned, MODES)
    local.clock.advance_to(NOW)
    store = local.deps.store
    store.update(
        f"devices/{planned}",
        {
            "last_telemetry": {
                "observed_at": NOW - timedelta(minutes=5),
                "indoor_temp_c": 21.4,
                "outdoor_temp_c": -3.0,
                "observed_mode": "mid",
                "online": True,
            }
        },
    )
    raise_alert(
        store,
        local.deps.bus,
        Alert(
            alert_id=f"device_unreachable-{planned}",
            severity=AlertSeverity.WARNING,
            kind="device_unreachable",
            message="no answer for an hour",
            raised_at=NOW,
            device_id=planned,
        ),
    )
    folder = tmp_path / "hpsteer-report"
    folder.mkdir()
    assert isinstance(store, LocalDocumentStore)
    store.save_to(folder / "store.sqlite")
    other = next(i for i in ids if i != planned)
    return Run(folder, planned, other, by_oem["viessmann"].account_id)


def test_a_local_command_says_once_that_it_acts_as_the_local_admin_on_the_store(run: Run) -> None:
    listed = hpsteer("devices", "list", *run.state)

    assert listed.code == 0
    [said] = listed.err_lines
    store = run.folder / "store.sqlite"
    assert said.startswith(f"acting as local admin {LOCAL_IDENTITY} (local store {store})")
    assert "2025-01-15T07:30:00" in said  # the store's latest write is its "now"


def test_devices_list_shows_the_stores_devices_filtered_as_the_api_filters(run: Run) -> None:
    everything = hpsteer("devices", "list", *run.state)
    viessmann = hpsteer("devices", "list", "--manufacturer", "viessmann", "--json", *run.state)
    unsteered = hpsteer("devices", "list", "--steering", "off", *run.state)

    assert all(home in everything.out for home in ("home-0000", "home-0001", "home-0002"))
    assert "3 devices" in everything.out
    assert [d["device_id"] for d in json.loads(viessmann.out)["devices"]] == [run.planned]
    assert unsteered.out.strip() == "0 devices"


def test_devices_list_pages_as_the_api_does_and_all_follows_every_page(run: Run) -> None:
    first = hpsteer("devices", "list", "--page-size", "1", "--json", *run.state)
    every = hpsteer("devices", "list", "--page-size", "1", "--all", "--json", *run.state)

    page = json.loads(first.out)
    assert len(page["devices"]) == 1
    assert page["next_page_token"]
    second = hpsteer(
        "devices", "list", "--page-size", "1", "--page-token", page["next_page_token"], *run.state
    )
    assert "home-0001" in second.out
    assert "more: --page-token" in second.out
    whole = json.loads(every.out)
    assert len(whole["devices"]) == 3
    assert whole["next_page_token"] is None


def test_devices_add_registers_in_the_store_audits_it_and_is_idempotent(run: Run) -> None:
    added = hpsteer("devices", "add", *flags(run.account), *run.state)
    again = hpsteer("devices", "add", *flags(run.account), "--json", *run.state)

    assert added.code == 0
    assert added.out.startswith("registered viessmann-")
    device_id = json.loads(again.out)["device_id"]
    assert again.code == 0
    assert device_id in added.out
    assert json.loads(again.out)["revision"] == 1
    store = run.store()
    stored = store.get(f"devices/{device_id}")
    assert stored is not None
    assert stored.data["registered_by"] == LOCAL_IDENTITY
    [audit] = [
        d.data for d in store.query("audit_events").documents if d.data["target_id"] == device_id
    ]
    assert (audit["operation"], audit["actor"], audit["exported"]) == (
        "register_device",
        LOCAL_IDENTITY,
        True,
    )
    analytics = SqliteAnalytics(run.folder / ANALYTICS_FILE)
    analytics.ensure_table(AUDIT_EVENTS)
    rows = analytics.query("SELECT audit_id FROM `audit_events`")
    analytics.close()
    assert [r["audit_id"] for r in rows] == [audit["audit_id"]]


def test_devices_add_from_json_registers_the_same_as_from_flags(run: Run, tmp_path: Path) -> None:
    body = {
        "manufacturer": "viessmann",
        "external_id": "vitocal-0001",
        "account_id": run.account,
        "price_area": "SE3",
        "location": {"latitude": 59.33, "longitude": 18.07},
        "archetype": "renovated_radiators",
        "comfort": {"min_indoor_temp_c": 20, "setpoint_c": 21, "max_indoor_temp_c": 23},
    }
    registration = tmp_path / "device.json"
    registration.write_text(json.dumps(body))

    from_file = hpsteer("devices", "add", "--from-json", str(registration), "--json", *run.state)
    from_flags = hpsteer("devices", "add", *flags(run.account), "--json", *run.state)

    assert from_file.code == from_flags.code == 0
    assert json.loads(from_file.out) == json.loads(from_flags.out)


def test_devices_add_reads_the_json_registration_from_stdin_given_as_dash(
    run: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    body = {
        "manufacturer": "viessmann",
        "external_id": "from-stdin",
        "account_id": run.account,
        "price_area": "DK1",
        "location": {"latitude": 55.7, "longitude": 12.6},
        "archetype": "new_floor_heating",
        "comfort": {"min_indoor_temp_c": 20, "setpoint_c": 21, "max_indoor_temp_c": 23},
        "steering_enabled": False,
    }
    monkeypatch.setattr("sys.stdin", io.StringIO(json.dumps(body)))

    added = hpsteer("devices", "add", "--from-json", "-", "--json", *run.state)

    assert added.code == 0, added.err
    answer = json.loads(added.out)
    assert (answer["price_area"], answer["steering_enabled"]) == ("DK1", False)


def test_devices_add_takes_thermal_parameters_instead_of_an_archetype(run: Run) -> None:
    given = flags(run.account, heat_loss_w_per_k="150", air_capacity_kwh_per_k="2.5")
    given[given.index("--archetype") : given.index("--archetype") + 2] = []

    added = hpsteer(
        "devices", "add", *given, "--hp-max-heat-kw", "6", "--floor-heating", "--json", *run.state
    )

    assert added.code == 0, added.err
    thermal = json.loads(added.out)["thermal"]
    assert thermal["heat_loss_w_per_k"] == 150.0
    assert thermal["floor_heating"] is True
    assert thermal["archetype"] is None


@pytest.mark.parametrize(
    ("changes", "line"),
    [
        (
            {"comfort_max": "20.5", "setpoint": "20"},
            "error: 422 invalid_body: comfort: Value error, the band 20.0..20.5 °C is 0.5 K wide",
        ),
        ({"lat": "95"}, "error: 422 invalid_body: location.latitude: Input should be less than"),
        ({"area": "SE9"}, "error: 422 invalid_body: price_area: Input should be"),
        (
            {"account": "stranger"},
            "error: 422 unknown_account (account_id): hpsteer holds no credentials for viessmann "
            "account 'stranger'",
        ),
    ],
)
def test_devices_add_refuses_a_bad_registration_in_one_line_naming_the_field_and_writes_nothing(
    run: Run, changes: dict[str, str], line: str
) -> None:
    before = len(run.store().query("devices").documents)

    refused = hpsteer("devices", "add", *flags(run.account, **changes), *run.state)

    assert refused.code == 1
    assert refused.out == ""
    assert refused.err_lines[-1].startswith(line)
    assert "Traceback" not in refused.err
    assert len(run.store().query("devices").documents) == before


def test_devices_add_without_the_registration_or_with_both_forms_is_a_usage_error(
    run: Run, tmp_path: Path
) -> None:
    lacking = hpsteer("devices", "add", "viessmann", "--external-id", "x", *run.state)
    both = hpsteer(
        "devices", "add", *flags(run.account), "--from-json", str(tmp_path / "x"), *run.state
    )

    assert lacking.code == 2
    assert lacking.err_lines == [
        "error: devices add needs --account, --area, --lat, --lon, --comfort-min, --setpoint, "
        "--comfort-max (or --from-json FILE)"
    ]
    assert both.code == 2
    assert both.err_lines == [
        "error: give either --from-json FILE or the registration's flags, not both"
    ]


def test_a_malformed_command_line_is_one_line_and_exit_2(run: Run) -> None:
    ran = hpsteer("devices", "list", "--area", "SE9", *run.state)

    assert ran.code == 2
    [line] = ran.err_lines
    assert line.startswith("hpsteer devices list: error: argument --area: invalid choice: 'SE9'")
    assert line.endswith("(see hpsteer devices list --help)")


def test_devices_import_prints_a_line_per_row_and_exits_1_when_a_row_is_refused(
    run: Run, tmp_path: Path
) -> None:
    good = tmp_path / "good.csv"
    good.write_text(
        f"{CSV_HEADER}\nviessmann,one,{run.account},SE3,59.3,18.1,old_radiators,20,21,23\n"
    )
    mixed = tmp_path / "mixed.csv"
    mixed.write_text(
        f"{CSV_HEADER}\n"
        f"viessmann,one,{run.account},SE3,59.3,18.1,old_radiators,20,21,23\n"
        f"viessmann,two,{run.account},SE3,59.3,18.1,old_radiators,20,20.5,20.5\n"
        f"viessmann,three,stranger,SE3,59.3,18.1,old_radiators,20,21,23\n"
    )

    imported = hpsteer("devices", "import", str(good), *run.state)
    reported = hpsteer("devices", "import", str(mixed), "--json", *run.state)

    assert imported.code == 0
    assert "imported 1, existing 0, refused 0" in imported.out
    assert reported.code == 1
    report = json.loads(reported.out)
    assert (report["imported"], report["existing"], report["refused"]) == (0, 1, 2)
    assert [(r["line"], r["status"], r["field"]) for r in report["rows"]] == [
        (2, "existing", None),
        (3, "refused", "comfort"),
        (4, "refused", "account_id"),
    ]


def test_devices_import_of_a_file_that_is_no_csv_for_it_is_refused_whole(
    run: Run, tmp_path: Path
) -> None:
    wrong = tmp_path / "wrong.csv"
    wrong.write_text("colour\nred\n")

    refused = hpsteer("devices", "import", str(wrong), *run.state)
    missing = hpsteer("devices", "import", str(tmp_path / "none.csv"), *run.state)

    assert refused.code == 1
    assert refused.err_lines[-1].startswith("error: 422 unknown_column (colour): unknown column")
    assert missing.code == 1
    assert missing.err_lines == [
        f"error: cannot read {tmp_path / 'none.csv'}: No such file or directory"
    ]


def test_devices_show_says_what_a_device_is_doing_and_why(run: Run) -> None:
    shown = hpsteer("devices", "show", run.planned, *run.state)
    answer = json.loads(hpsteer("devices", "show", run.planned, "--json", *run.state).out)

    assert shown.code == 0
    text = shown.out
    assert f"device {run.planned} (viessmann" in text
    assert "intended max from 2025-01-15T07:00:00Z to 2025-01-15T09:00:00Z (plan p1)" in text
    assert "actual mid (observed 2025-01-15T07:25:00Z): OUT OF SYNC" in text
    assert "current plan p1" in text
    assert "expected 0.42 € against 0.51 €" in text
    assert "device_unreachable" in text
    assert answer["mode"] == {
        "intended_mode": "max",
        "intended_since": "2025-01-15T07:00:00Z",
        "intended_until": "2025-01-15T09:00:00Z",
        "plan_id": "p1",
        "actual_mode": "mid",
        "actual_observed_at": "2025-01-15T07:25:00Z",
        "in_sync": False,
    }
    assert answer["last_telemetry"]["indoor_temp_c"] == 21.4
    # The change within reach of the release is a command; the later two wait for the sweep.
    assert [c["state"] for c in answer["recent_commands"]] == ["pending"]
    assert [a["alert_id"] for a in answer["open_alerts"]] == [f"device_unreachable-{run.planned}"]


def test_an_unknown_or_malformed_device_id_is_refused_in_one_line(run: Run) -> None:
    unknown = hpsteer("devices", "show", "no-such-device", *run.state)
    malformed = hpsteer("devices", "disable", "../etc", *run.state)

    assert (unknown.code, unknown.out) == (1, "")
    assert unknown.err_lines[-1] == "error: 404 unknown_device: no device no-such-device"
    assert malformed.code == 1
    assert malformed.err_lines == [
        "error: 400 invalid_path_parameter: device_id: String should match pattern "
        "'^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$'"
    ]  # refused before the store is opened: no "acting as" line


def test_disable_hands_back_in_the_store_and_says_the_send_is_not_delivered_locally(
    run: Run,
) -> None:
    disabled = hpsteer("devices", "disable", run.planned, *run.state)

    assert disabled.code == 0
    assert disabled.out.strip() == (
        f"steering of {run.planned} is off (revision 1); handed back with command handback-r000001"
    )
    states = {
        d.id: d.data["state"]
        for d in run.store().query(f"devices/{run.planned}/commands").documents
    }
    assert states.pop("handback-r000001") == "pending"
    assert set(states.values()) == {"superseded"}
    [note] = [line for line in disabled.err_lines if line.startswith("note:")]
    assert note.startswith(
        f"note: command handback-r000001 of {run.planned} is stored pending but not sent"
    )


def test_the_hand_back_left_pending_locally_is_what_the_command_sweep_re_enqueues(
    run: Run,
) -> None:
    hpsteer("devices", "disable", run.planned, *run.state)
    later = SimulatedClock(NOW + timedelta(minutes=61))
    delivered: list[DispatchedRequest] = []

    def dispatcher(request: DispatchedRequest) -> DispatchResult:
        delivered.append(request)
        return DispatchResult(200, {})

    deps = bootstrap.local(clock=later, dispatcher=dispatcher, state_dir=run.folder)
    swept = sweep(deps)

    assert swept.requeued_commands == 1
    queue = deps.tasks
    assert isinstance(queue, LocalTaskQueue)
    assert len(queue.pending_tasks(dispatch_queue("viessmann").name)) == 1
    queue.run_due()
    [request] = delivered
    assert json.loads(request.body) == {
        **json.loads(request.body),
        "device_id": run.planned,
        "command_id": "handback-r000001",
        "purpose": "send",
    }


def test_enable_says_the_re_plan_is_not_delivered_locally(run: Run) -> None:
    hpsteer("devices", "disable", run.planned, *run.state)

    enabled = hpsteer("devices", "enable", run.planned, *run.state)

    assert enabled.code == 0
    assert enabled.out.strip() == f"steering of {run.planned} is on (revision 2)"
    [note] = [line for line in enabled.err_lines if line.startswith("note:")]
    assert note.startswith(f"note: the re-plan of {run.planned} (steering enabled by")
    assert "not delivered" in note


def test_devices_update_changes_the_tariff_and_the_comfort_band_and_says_what_holds(
    run: Run,
) -> None:
    tariffed = hpsteer(
        "devices", "update", run.planned, "--tariff", "se3-vattenfall-t4", *run.state
    )
    band = ("--comfort-min", "19.5", "--setpoint", "20.5", "--comfort-max", "22")
    banded = hpsteer("devices", "update", run.planned, *band, "--no-tariff", *run.state)

    assert (tariffed.code, banded.code) == (0, 0)
    assert "tariff se3-vattenfall-t4" in tariffed.out
    assert "comfort 19.5 / 20.5 / 22" in banded.out
    assert "tariff none (planned on spot)" in banded.out
    device = run.store().get(f"devices/{run.planned}")
    assert device is not None
    assert device.data["tariff_id"] is None
    assert device.data["comfort"]["setpoint_c"] == 20.5


def test_devices_update_refuses_an_unknown_tariff_a_partial_band_and_nothing_to_change(
    run: Run,
) -> None:
    unknown = hpsteer("devices", "update", run.planned, "--tariff", "xx-nowhere", *run.state)
    partial = hpsteer("devices", "update", run.planned, "--setpoint", "21", *run.state)
    nothing = hpsteer("devices", "update", run.planned, *run.state)

    assert unknown.code == 1
    assert "unknown_tariff" in unknown.err
    assert "tariff_id" in unknown.err
    assert partial.code == 2
    assert "--comfort-min, --setpoint and --comfort-max" in partial.err
    assert nothing.code == 2


def test_delete_needs_yes_then_hands_back_and_the_device_is_gone(run: Run) -> None:
    unconfirmed = hpsteer("devices", "delete", run.planned, *run.state)

    assert unconfirmed.code == 2
    assert unconfirmed.err_lines == [
        f"error: deleting {run.planned} hands it back and deletes it: say so with --yes"
    ]
    assert run.store().get(f"devices/{run.planned}") is not None

    deleted = hpsteer("devices", "delete", run.planned, "--yes", *run.state)
    shown = hpsteer("devices", "show", run.planned, *run.state)

    assert deleted.code == 0
    assert deleted.out.startswith(f"deleted {run.planned} at 2025-01-15T07:30:00")
    assert "handed back with command handback-r000001" in deleted.out
    assert shown.code == 1
    assert shown.err_lines[-1] == f"error: 404 unknown_device: no device {run.planned}"


def test_inspect_reads_the_store_the_operator_commands_changed(run: Run) -> None:
    hpsteer("devices", "disable", run.planned, *run.state)

    inspected = hpsteer("inspect", "device", run.planned, "--state", str(run.folder), "--json")

    assert inspected.code == 0
    view = json.loads(inspected.out)
    assert view["steering_enabled"] is False
    assert "handback-r000001" in {c["command_id"] for c in view["commands"]}


def test_alerts_list_and_ack_with_a_note(run: Run) -> None:
    alert_id = f"device_unreachable-{run.planned}"

    listed = hpsteer("alerts", "list", "--status", "open", *run.state)
    acked = hpsteer("alerts", "ack", alert_id, "--note", "gateway rebooted", *run.state)
    again = hpsteer("alerts", "ack", alert_id, "--json", *run.state)
    open_now = hpsteer("alerts", "list", "--status", "open", "--device", run.planned, *run.state)
    critical = hpsteer("alerts", "list", "--severity", "critical", *run.state)

    assert alert_id in listed.out
    assert "1 alert" in listed.out
    assert acked.code == 0
    assert acked.out.strip().startswith(f"alert {alert_id} (warning device_unreachable) is ")
    assert f"acknowledged by {LOCAL_IDENTITY}" in acked.out
    assert json.loads(again.out)["state"] == "acknowledged"
    assert open_now.out.strip() == "0 alerts"
    assert critical.out.strip() == "0 alerts"
    stored = run.store().get(f"alerts/{alert_id}")
    assert stored is not None
    assert stored.data["acknowledgement_note"] == "gateway rebooted"


def test_an_unknown_alert_is_refused_in_one_line(run: Run) -> None:
    refused = hpsteer("alerts", "ack", "no-such-alert", *run.state)

    assert refused.code == 1
    assert refused.err_lines[-1] == "error: 404 unknown_alert: no alert no-such-alert"


def test_without_a_store_the_command_says_so_in_one_line(tmp_path: Path) -> None:
    missing = hpsteer("devices", "list", "--state", str(tmp_path))

    assert missing.code == 1
    assert missing.err_lines == [
        f"error: no store at {tmp_path / 'store.sqlite'}: run `hpsteer simulate` first, "
        "or give --api URL"
    ]


def test_identity_options_without_api_or_a_store_with_it_are_usage_errors(run: Run) -> None:
    token_alone = hpsteer("devices", "list", "--token", "x", *run.state)
    both = hpsteer("devices", "list", "--api", API_URL, *run.state)

    assert token_alone.code == both.code == 2
    assert token_alone.err_lines == [
        "error: --token and --impersonate-service-account go with --api URL"
    ]
    assert both.err_lines == ["error: give --state DIR (a local store) or --api URL, not both"]


@pytest.mark.parametrize(
    "argv",
    [
        ["devices", "--help"],
        ["alerts", "--help"],
        *(["devices", name, "--help"] for name in ("add", "import", "list", "show")),
        *(["devices", name, "--help"] for name in ("update", "enable", "disable", "delete")),
        ["alerts", "list", "--help"],
        ["alerts", "ack", "--help"],
    ],
)
def test_every_command_explains_where_it_acts_in_its_help(argv: list[str]) -> None:
    helped = hpsteer(*argv)

    assert helped.code == 0
    assert "local-admin@hpsteer.local" in helped.out
    assert "--api URL" in helped.out


# == with --api: the deployed API (its real app, in-process) =====================================


ROLES = {"viola@example.com": "viewer", "otto@example.com": "operator", "ada@example.com": "admin"}


@pytest.fixture(scope="module")
def google_key() -> SigningKey:
    return make_key("google-key-1")


def token(key: SigningKey, email: str, **claims: Any) -> str:
    now = int(time.time())
    return key.sign(
        {
            "iss": "https://accounts.google.com",
            "aud": API_URL,
            "email": email,
            "email_verified": True,
            "iat": now,
            "exp": now + 3600,
            **claims,
        }
    )


def under_function_path(app: Any, prefix: str) -> Callable[..., Iterable[bytes]]:
    """The app as Cloud Functions serves it at ``…/api``: the function sees the path after it."""

    def wsgi(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        path = environ["PATH_INFO"]
        assert path.startswith(prefix + "/"), path
        return app({**environ, "PATH_INFO": path[len(prefix) :]}, start_response)  # type: ignore[no-any-return]

    return wsgi


@dataclass
class Deployed:
    deps: bootstrap.Dependencies
    key: SigningKey
    transport: httpx.BaseTransport
    requests: list[httpx.Request]

    def as_(self, email: str, *argv: str, **claims: Any) -> Ran:
        """``hpsteer … --api URL`` with ``email``'s token in HPSTEER_ID_TOKEN."""
        environ = {"HPSTEER_ID_TOKEN": token(self.key, email, **claims)}
        return hpsteer(*argv, "--api", API_URL, transport=self.transport, environ=environ)


@pytest.fixture
def deployed(google_key: SigningKey) -> Iterator[Deployed]:
    """Production settings (gcp backend, roles, the API's URL) over local ports, with one
    onboarded account ``acct-1``, one device ``d1`` and one alert ``a-1``."""
    clock = SimulatedClock(T0)
    base = bootstrap.local(clock=clock, secrets=MemorySecretStore())
    settings = Settings(backend="gcp", project="acme-energy-prod", api_url=API_URL, api_roles=ROLES)
    deps = bootstrap.Dependencies(
        settings,
        clock,
        store=lambda: base.store,
        bus=lambda: base.bus,
        tasks=lambda: base.tasks,
        analytics=lambda: base.analytics,
        secrets=lambda: base.secrets,
    )
    certs = GoogleCerts(lambda: ({google_key.kid: google_key.cert_pem}, 3600.0))
    deps.singleton(verifier_key(API_URL), lambda: caller_verifier(API_URL, certs))
    add_data_key(deps.secrets)
    onboard_account(deps.store, deps.secrets, clock, "viessmann", "acct-1", refresh_token="rt")
    body = {
        "device_id": "d1",
        "manufacturer": "viessmann",
        "external_id": "vitocal-d1",
        "account_id": "acct-1",
        "price_area": "SE3",
        "location": {"latitude": 59.33, "longitude": 18.07},
        "archetype": "renovated_radiators",
        "comfort": {"min_indoor_temp_c": 20, "setpoint_c": 21, "max_indoor_temp_c": 23},
    }
    devices.register_device(
        deps, Actor("setup@example.com", Role.ADMIN), DeviceRegistration.model_validate(body)
    )
    raise_alert(
        deps.store,
        deps.bus,
        Alert(
            alert_id="a-1",
            severity=AlertSeverity.CRITICAL,
            kind="command_failed",
            message="failed",
            raised_at=T0,
            device_id="d1",
        ),
    )
    use_dependencies(deps)
    requests: list[httpx.Request] = []
    app = httpx.WSGITransport(
        app=under_function_path(create_app("api", API_SOURCE, "http"), "/api")  # type: ignore[no-untyped-call]
    )

    class Recording(httpx.BaseTransport):
        def handle_request(self, request: httpx.Request) -> httpx.Response:
            requests.append(request)
            return app.handle_request(request)

    yield Deployed(deps, google_key, Recording(), requests)
    use_dependencies(None)


def audit_actors(deps: bootstrap.Dependencies) -> set[str]:
    return {d.data["actor"] for d in deps.store.query("audit_events").documents}


def test_every_command_reaches_the_api_with_the_callers_identity(
    deployed: Deployed, tmp_path: Path
) -> None:
    csv = tmp_path / "devices.csv"
    csv.write_text(
        f"{CSV_HEADER}\nviessmann,imported,acct-1,SE3,59.3,18.1,old_radiators,20,21,23\n"
    )
    ada = "ada@example.com"

    ran = {
        "list": deployed.as_(ada, "devices", "list", "--json"),
        "add": deployed.as_(ada, "devices", "add", *flags("acct-1"), "--json"),
        "import": deployed.as_(ada, "devices", "import", str(csv), "--json"),
        "show": deployed.as_(ada, "devices", "show", "d1", "--json"),
        "disable": deployed.as_(ada, "devices", "disable", "d1", "--json"),
        "enable": deployed.as_(ada, "devices", "enable", "d1", "--json"),
        "update": deployed.as_(ada, "devices", "update", "d1", "--tariff", "se3-vattenfall-t4"),
        "alerts": deployed.as_(ada, "alerts", "list", "--json"),
        "ack": deployed.as_(ada, "alerts", "ack", "a-1", "--note", "on it", "--json"),
        "delete": deployed.as_(ada, "devices", "delete", "d1", "--yes", "--json"),
    }

    assert {name: r.code for name, r in ran.items()} == dict.fromkeys(ran, 0)
    assert all(r.err == "" for r in ran.values())
    assert [d["device_id"] for d in json.loads(ran["list"].out)["devices"]] == ["d1"]
    assert json.loads(ran["import"].out)["imported"] == 1
    assert json.loads(ran["show"].out)["device"]["device_id"] == "d1"
    assert json.loads(ran["disable"].out)["hand_back_command_id"] == "handback-r000002"
    assert json.loads(ran["ack"].out)["acknowledged_by"] == ada
    assert "tariff se3-vattenfall-t4" in ran["update"].out
    assert json.loads(ran["delete"].out)["device_id"] == "d1"
    assert deployed.deps.store.get("devices/d1").data["deleted_by"] == ada  # type: ignore[union-attr]
    assert ada in audit_actors(deployed.deps)


def test_the_cli_sends_exactly_the_requests_the_openapi_document_describes(
    deployed: Deployed, tmp_path: Path
) -> None:
    csv = tmp_path / "devices.csv"
    csv.write_text(
        f"{CSV_HEADER}\nviessmann,imported,acct-1,SE3,59.3,18.1,old_radiators,20,21,23\n"
    )
    ada = "ada@example.com"
    deployed.as_(ada, "devices", "list", "--area", "SE3", "--steering", "on", "--page-size", "5")
    deployed.as_(ada, "devices", "add", *flags("acct-1"))
    deployed.as_(ada, "devices", "import", str(csv))
    deployed.as_(ada, "devices", "show", "d1")
    deployed.as_(ada, "devices", "disable", "d1")
    deployed.as_(ada, "alerts", "list", "--severity", "critical", "--status", "all")
    deployed.as_(ada, "alerts", "ack", "a-1")
    deployed.as_(ada, "devices", "delete", "d1", "--yes")

    sent = []
    for request in deployed.requests:
        assert request.url.path.startswith("/api/")
        path = request.url.path[len("/api") :]
        operation = openapi_operation(request.method, path)
        assert operation is not None, f"{request.method} {path} is not in docs/openapi.json"
        known = {p["name"] for p in operation.get("parameters", []) if p["in"] == "query"}
        assert set(request.url.params) <= known
        media = request.headers.get("Content-Type", "").split(";")[0] or None
        body = operation.get("requestBody", {}).get("content", {})
        assert media is None or media in body, (request.method, path, media)
        assert request.headers["Authorization"].startswith("Bearer ey")
        sent.append(operation["operationId"])
    assert sent == [
        "listDevices",
        "registerDevice",
        "importDevices",
        "getDeviceStatus",
        "setSteering",
        "listAlerts",
        "acknowledgeAlert",
        "deleteDevice",
    ]


def openapi_operation(method: str, path: str) -> dict[str, Any] | None:
    segments = path.strip("/").split("/")
    for template, operations in OPENAPI["paths"].items():
        parts = template.strip("/").split("/")
        if len(parts) == len(segments) and all(
            t == s or (t.startswith("{") and t.endswith("}"))
            for t, s in zip(parts, segments, strict=True)
        ):
            operation = operations.get(method.lower())
            if operation is not None:
                return dict(operation)
    return None


def test_a_viewer_deleting_is_told_who_they_are_and_which_role_it_needs(
    deployed: Deployed,
) -> None:
    refused = deployed.as_("viola@example.com", "devices", "delete", "d1", "--yes")

    assert refused.code == 1
    assert refused.err_lines == [
        "error: 403 role_too_low: viola@example.com (viewer) may not deleteDevice "
        "(DELETE /v1/devices/{device_id}): it needs role admin or above (the API's "
        "HPSTEER_API_ROLES)"
    ]
    assert deployed.deps.store.get("devices/d1").data.get("deleted_at") is None  # type: ignore[union-attr]


def test_an_email_without_a_role_is_told_which_role_the_operation_needs(
    deployed: Deployed,
) -> None:
    refused = deployed.as_("mallory@example.com", "alerts", "ack", "a-1")

    assert refused.code == 1
    [line] = refused.err_lines
    assert line.startswith("error: 403 no_role: mallory@example.com has no role in this API")
    assert "acknowledgeAlert needs role operator or above" in line


def test_a_refused_token_is_explained_and_never_printed(deployed: Deployed) -> None:
    wrong = token(deployed.key, "otto@example.com", aud="32555940559.apps.googleusercontent.com")

    refused = hpsteer(
        "devices",
        "list",
        "--api",
        API_URL,
        transport=deployed.transport,
        environ={"HPSTEER_ID_TOKEN": wrong},
    )

    assert refused.code == 1
    [line] = refused.err_lines
    assert line.startswith(
        "error: 401 unauthenticated: the API refused the ID token of otto@example.com "
        "(audience 32555940559.apps.googleusercontent.com)"
    )
    assert f"it must be a current Google ID token for audience {API_URL}" in line
    assert wrong not in refused.err + refused.out
    assert wrong.split(".")[2] not in refused.err


def test_the_api_refusing_a_field_is_one_line_as_locally(deployed: Deployed, run: Run) -> None:
    remote = deployed.as_("otto@example.com", "devices", "add", *flags("stranger"))
    local = hpsteer("devices", "add", *flags("stranger"), *run.state)

    assert remote.code == local.code == 1
    assert remote.err_lines == [local.err_lines[-1]]
    assert remote.err_lines[0].startswith("error: 422 unknown_account (account_id):")


def test_an_unknown_device_through_the_api_is_a_404_line(deployed: Deployed) -> None:
    refused = deployed.as_("viola@example.com", "devices", "show", "nope")

    assert refused.err_lines == ["error: 404 unknown_device: no device nope"]


def test_without_the_api_s_json_a_401_or_403_is_cloud_run_s_and_said_so() -> None:
    html = httpx.MockTransport(
        lambda request: httpx.Response(403, text="<html><h1>403 Forbidden</h1></html>")
    )

    refused = hpsteer(
        "devices",
        "delete",
        "d1",
        "--yes",
        "--api",
        API_URL,
        transport=html,
        environ={"HPSTEER_ID_TOKEN": "not-a-jwt"},
    )

    assert refused.code == 1
    [line] = refused.err_lines
    assert line.startswith(
        "error: 403 refused_by_cloud_run: Cloud Run refused the token from HPSTEER_ID_TOKEN "
        "before the API saw the call: the caller needs roles/run.invoker"
    )
    assert "deleteDevice needs the API role admin" in line


def test_an_unreachable_api_is_one_line() -> None:
    def unreachable(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    refused = hpsteer(
        "alerts",
        "list",
        "--api",
        API_URL,
        transport=httpx.MockTransport(unreachable),
        environ={"HPSTEER_ID_TOKEN": "t"},
    )

    assert refused.code == 1
    assert refused.err_lines == [
        f"error: cannot reach the API at {API_URL}: ConnectError: connection refused"
    ]


# -- where the token comes from ----------------------------------------------------------------


@pytest.fixture
def fake_gcloud(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[[str, int], Path]:
    """A ``gcloud`` first on PATH that records its arguments and prints ``output`` (or fails
    with it on stderr when ``status`` is not 0)."""

    def install(output: str, status: int = 0) -> Path:
        calls = tmp_path / "gcloud-calls"
        script = tmp_path / "bin" / "gcloud"
        script.parent.mkdir(exist_ok=True)
        stream = ">&2" if status else ""
        script.write_text(
            f'#!/bin/sh\necho "$@" >> "{calls}"\necho \'{output}\' {stream}\nexit {status}\n'
        )
        script.chmod(script.stat().st_mode | stat.S_IXUSR)
        monkeypatch.setenv("PATH", f"{script.parent}{os.pathsep}{os.environ['PATH']}")
        return calls

    return install


def test_without_a_token_gcloud_prints_the_callers_own(
    deployed: Deployed, fake_gcloud: Callable[[str, int], Path]
) -> None:
    calls = fake_gcloud(token(deployed.key, "otto@example.com"), 0)

    listed = hpsteer("devices", "list", "--api", API_URL, transport=deployed.transport, environ={})

    assert listed.code == 0, listed.err
    assert calls.read_text().splitlines() == ["auth print-identity-token"]


def test_impersonating_a_service_account_asks_gcloud_for_a_token_for_the_api(
    deployed: Deployed, fake_gcloud: Callable[[str, int], Path]
) -> None:
    sa = "operator@acme-energy-prod.iam.gserviceaccount.com"
    calls = fake_gcloud(token(deployed.key, "ada@example.com"), 0)

    listed = hpsteer(
        "devices",
        "list",
        "--api",
        API_URL,
        "--impersonate-service-account",
        sa,
        transport=deployed.transport,
        environ={"HPSTEER_ID_TOKEN": "ignored when impersonating"},
    )

    assert listed.code == 0, listed.err
    assert calls.read_text().splitlines() == [
        f"auth print-identity-token --impersonate-service-account={sa} --audiences={API_URL} "
        "--include-email"
    ]


def test_a_persons_gcloud_token_with_gcloud_s_audience_is_refused_with_the_way_out(
    deployed: Deployed, fake_gcloud: Callable[[str, int], Path]
) -> None:
    persons = token(deployed.key, "otto@example.com", aud="32555940559.apps.googleusercontent.com")
    fake_gcloud(persons, 0)

    refused = hpsteer("devices", "list", "--api", API_URL, transport=deployed.transport, environ={})

    assert refused.code == 1
    [line] = refused.err_lines
    assert "the API refused the ID token of otto@example.com" in line
    assert line.endswith(
        "a person's gcloud token carries gcloud's own audience, which the API accepts only when "
        "HPSTEER_API_EXTRA_AUDIENCES lists it; else use --impersonate-service-account SA"
    )
    assert persons not in refused.err


def test_gcloud_failing_is_one_line(fake_gcloud: Callable[[str, int], Path]) -> None:
    fake_gcloud(
        "ERROR: (gcloud.auth.print-identity-token) You do not currently have an active account", 1
    )

    refused = hpsteer("devices", "list", "--api", API_URL, environ={})

    assert refused.code == 1
    assert refused.err_lines == [
        "error: no ID token: gcloud auth print-identity-token failed: ERROR: "
        "(gcloud.auth.print-identity-token) You do not currently have an active account"
    ]


def test_a_token_flag_and_impersonation_together_are_a_usage_error() -> None:
    ran = hpsteer(
        "devices", "list", "--api", API_URL, "--token", "t", "--impersonate-service-account", "sa"
    )

    assert ran.code == 2
    assert ran.err_lines == ["error: give --token or --impersonate-service-account, not both"]


def test_the_hpsteer_command_line_offers_devices_and_alerts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from hpsteer.runtime.cli import main

    status = main(["devices", "list", "--state", str(tmp_path / "no-run")])

    assert status == 1
    assert "no store at" in capsys.readouterr().err
    with pytest.raises(SystemExit) as usage:
        main(["alerts", "list", "--help"])
    assert usage.value.code == 0
    assert "--severity" in capsys.readouterr().out
