"""`hpsteer demo` drives one command through every local backend and leaves inspectable state."""

import io
import itertools

from hpsteer.backends.local.analytics import SqliteAnalytics
from hpsteer.backends.local.store import LocalDocumentStore
from hpsteer.domain.commands import CommandEventType, CommandState
from hpsteer.runtime.cli import main
from hpsteer.runtime.tour import COMMAND_ID, DEVICE_ID, run_tour
from hpsteer.services.command_log import history, load_command


def test_the_tour_completes_its_command_after_two_retries_and_records_each_event_once(tmp_path):
    out = io.StringIO()
    assert run_tour(tmp_path / "demo", out=out) == 0

    store = LocalDocumentStore.open_readonly(tmp_path / "demo" / "store.sqlite")
    command = load_command(store, DEVICE_ID, COMMAND_ID)
    assert command is not None
    assert command.state is CommandState.COMPLETED
    assert command.retry_count == 2
    events = history(store, DEVICE_ID, COMMAND_ID)
    assert [e.type for e in events].count(CommandEventType.SENT) == 3
    retries = [e.at for e in events if e.type is CommandEventType.SENT]
    assert [(b - a).total_seconds() for a, b in itertools.pairwise(retries)] == [10, 20]

    analytics = SqliteAnalytics(tmp_path / "demo" / "analytics.sqlite")
    (row,) = analytics.query("SELECT COUNT(*) AS n FROM `command_events`")
    assert row["n"] == len(events)  # the redelivered last event was ignored
    assert "TaskAlreadyExists" in out.getvalue()
    assert "`hpsteer simulate`, is not built yet" in out.getvalue()
    assert "part 2: planning on real prices" in out.getvalue()
    assert "average" in out.getvalue().splitlines()[-1]


def test_the_tour_starts_afresh_when_run_again(tmp_path):
    assert run_tour(tmp_path / "demo", out=io.StringIO()) == 0
    assert run_tour(tmp_path / "demo", out=io.StringIO()) == 0


def test_the_command_line_prints_its_version(capsys):
    assert main(["version"]) == 0
    assert capsys.readouterr().out.startswith("hpsteer ")
