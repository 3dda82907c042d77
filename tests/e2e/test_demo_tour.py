"""`hpsteer demo` drives planned commands through the real command path and leaves inspectable
state."""

import io
import itertools

from hpsteer.backends.local.analytics import SqliteAnalytics
from hpsteer.backends.local.store import LocalDocumentStore
from hpsteer.domain.commands import Command, CommandEventType, CommandState
from hpsteer.runtime.cli import main
from hpsteer.runtime.tour import run_tour
from hpsteer.services.command_log import history


def test_the_tour_verifies_every_planned_command_and_shows_the_retries(tmp_path):
    out = io.StringIO()
    assert run_tour(tmp_path / "demo", out=out) == 0

    store = LocalDocumentStore.open_readonly(tmp_path / "demo" / "store.sqlite")
    commands = [Command.parse(doc.data) for doc in store.collection_group("commands").documents]
    assert len(commands) == 9  # three homes, three mode changes each
    assert all(c.state is CommandState.COMPLETED for c in commands)
    retried = [c for c in commands if c.retry_count]
    assert [(c.manufacturer, c.retry_count, c.slot_index) for c in retried] == [("viessmann", 2, 0)]
    events = history(store, retried[0].device_id, retried[0].command_id)
    sends = [e.at for e in events if e.type is CommandEventType.SENT]
    assert [(b - a).total_seconds() for a, b in itertools.pairwise(sends)] == [10, 20]

    analytics = SqliteAnalytics(tmp_path / "demo" / "analytics.sqlite")
    (row,) = analytics.query("SELECT COUNT(*) AS n FROM `command_events`")
    stored = sum(len(history(store, c.device_id, c.command_id)) for c in commands)
    assert row["n"] == stored == 9 * 5 + 4  # one row per event
    text = out.getvalue()
    assert "TaskAlreadyExists" in text
    assert "`hpsteer simulate`, is not built yet" in text
    assert "part 2: planning on real prices" in text
    assert "average" in text.splitlines()[-1]


def test_the_tour_starts_afresh_when_run_again(tmp_path):
    assert run_tour(tmp_path / "demo", out=io.StringIO()) == 0
    assert run_tour(tmp_path / "demo", out=io.StringIO()) == 0


def test_the_command_line_prints_its_version(capsys):
    assert main(["version"]) == 0
    assert capsys.readouterr().out.startswith("hpsteer ")
