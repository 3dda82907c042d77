"""`report.html` is one self-contained, deterministic page drawn from a run record alone.

The record is synthetic and small: two manufacturers, three homes (two with samples over one day
at 15-minute steps), hourly prices including a negative one, a funnel, two command timelines
(one with errors, instantaneous and lasting spans) and hourly activity. The page is parsed as
HTML, each inline SVG as XML, and the page is opened in headless Chromium.
"""

from __future__ import annotations

import copy
import re
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path

import pytest

from hpsteer.runtime.simulation.record import (
    FUNNEL_STAGES,
    ActivityPoint,
    CommandTimeline,
    HomeRecord,
    HomeSample,
    LoadPoint,
    PricePoint,
    RunOptions,
    RunRecord,
    TimelineSpan,
)
from hpsteer.runtime.simulation.report import render_report
from tests.support.browser import looks_drawn, screenshot

T0 = datetime(2025, 1, 14, 23, tzinfo=UTC)
MODES = ("min", "mid", "max", None)
SUMMARY: dict[str, object] = {"devices": 3, "days": 1, "savings_pct": 17.25, "cost_eur": 9.93}
SUMMARY |= {"commands": {"completed": 40, "failed": 2}, "commands_lost": 0, "interrupted": False}
SUMMARY |= {"drift_corrected_within_interval_pct": None, "alerts": {"command_failed": 2}}
OPTIONS = RunOptions(
    area="SE3", start="2025-01-15", days=1, devices=3, seed=7, faults="heavy", backend="local"
)
HOMES = (("hp-1", "acme", 3.1, True), ("hp-2", "boreal", 3.5, True), ("hp-3", "boreal", 3.3, False))
TIMELINES = 2
DRAWN_FIGURES = 1 + 2 + 1 + TIMELINES + 1 + 1
"""Prices, one per sample home, funnel, one per command timeline, activity, savings."""
RED_TEXT = re.compile(r"<text [^>]*fill: #d62728[^>]*>([^<]*)</text>")


def samples(offset: float) -> list[HomeSample]:
    return [
        HomeSample(
            at=(T0 + timedelta(minutes=15 * i)).isoformat(),
            indoor_c=20.5 + offset + (i % 8) / 4,
            baseline_indoor_c=21.0 + offset,
            outdoor_c=-2.0,
            planned_mode=MODES[(i // 8) % 3],
            actual_mode=MODES[(i // 8) % 4],
        )
        for i in range(96)
    ]


def home(device_id: str, manufacturer: str, cost: float, sampled: bool) -> HomeRecord:
    return HomeRecord(
        device_id=device_id,
        manufacturer=manufacturer,
        archetype="terraced_1970s",
        comfort_min_c=20.0,
        comfort_max_c=23.0,
        setpoint_c=21.0,
        cost_eur=cost,
        baseline_cost_eur=4.0,
        savings_pct=round(100 * (4.0 - cost) / 4.0, 2),
        comfort_kh_below=0.2,
        baseline_comfort_kh_below=0.1,
        samples=samples(cost / 10) if sampled else [],
    )


def span(
    name: str, depth: int, start_s: int, end_s: int, status: str = "UNSET", **attributes: object
) -> TimelineSpan:
    return TimelineSpan(
        name=name,
        start_at=(T0 + timedelta(seconds=start_s)).isoformat(),
        end_at=(T0 + timedelta(seconds=end_s)).isoformat(),
        status=status,
        depth=depth,
        attributes=attributes,
    )


def timeline(
    command_id: str, final_state: str, why: str, spans: list[TimelineSpan]
) -> CommandTimeline:
    return CommandTimeline(
        device_id="hp-1",
        command_id=command_id,
        manufacturer="acme",
        final_state=final_state,
        why=why,
        spans=spans,
    )


def timelines() -> list[CommandTimeline]:
    failed = [
        span("handle_price_ingest_request", 0, 0, 0),
        span("handle_optimize_request", 1, 0, 2),
        span("release_plan", 2, 1, 2),
        span("execute_command", 3, 2, 2, "ERROR", outcome="retrying"),
        span("send_to_oem", 4, 2, 2, "ERROR", attempt=1),
        span("execute_command", 3, 70, 75, outcome="acknowledged"),
        span("verify_execution", 3, 600, 600),
    ]
    quick = [
        span("handle_optimize_request", 0, 0, 0),
        span("execute_command", 1, 0, 0),
        span("verify_execution", 2, 600, 600),
    ]
    return [
        timeline("c-failed", "failed", "failed; most dispatch attempts (2)", failed),
        timeline("c-quick", "completed", "completed at its first attempt", quick),
    ]


def synthetic_record() -> RunRecord:
    hours = [T0 + timedelta(hours=h) for h in range(24)]
    quarters = [T0 + timedelta(minutes=15 * q) for q in range(96)]
    return RunRecord(
        options=OPTIONS.copy(),
        summary=SUMMARY.copy(),
        prices=[
            PricePoint(at=h.isoformat(), eur_per_mwh=40.0 - 4 * i) for i, h in enumerate(hours)
        ],
        fleet_load=[
            LoadPoint(at=q.isoformat(), kw=3 + i % 5, baseline_kw=4) for i, q in enumerate(quarters)
        ],
        homes=[home(*spec) for spec in HOMES],
        funnel={
            "acme": dict(zip(FUNNEL_STAGES, (20, 20, 19, 18, 18, 1, 1), strict=True)),
            "boreal": dict(zip(FUNNEL_STAGES, (22, 22, 22, 21, 21, 1, 0), strict=True)),
        },
        activity=[
            ActivityPoint(
                at=h.isoformat(),
                drifts=i % 3,
                overrides=int(i == 7),
                remediations=i % 2,
                alerts=int(i in (3, 9)),
            )
            for i, h in enumerate(hours)
        ],
        timelines=timelines(),
    )


def empty_record() -> RunRecord:
    record = synthetic_record()
    record["prices"], record["fleet_load"], record["homes"] = [], [], []
    record["funnel"], record["activity"], record["timelines"] = {}, [], []
    return record


class Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.ids: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.ids += [value or "" for name, value in attrs if name == "id"]

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def parsed(page: str) -> Tags:
    tags = Tags()
    tags.feed(page)
    tags.close()
    return tags


def svgs(page: str) -> list[str]:
    return [page[start : page.index("</svg>", start) + 6] for start in _starts(page, "<svg")]


def _starts(page: str, needle: str) -> list[int]:
    return [match.start() for match in re.finditer(re.escape(needle), page)]


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return render_report(synthetic_record(), tmp_path_factory.mktemp("run"))


def test_the_report_is_one_html_file_with_one_svg_per_drawn_figure(report: Path) -> None:
    assert sorted(p.name for p in report.parent.iterdir()) == ["report.html"]
    page = report.read_text(encoding="utf-8")
    tags = parsed(page)
    assert tags.tags[:1] == ["html"]
    assert tags.tags.count("svg") == page.count("<svg") == DRAWN_FIGURES
    assert {"title", "h1", "table", "footer"} <= set(tags.tags)
    assert len(tags.ids) == len(set(tags.ids)), "ids must be unique across the inline SVGs"
    assert "SE3" in "".join(tags.text)
    assert "2025-01-15" in "".join(tags.text)


def test_the_report_needs_nothing_from_the_network(report: Path) -> None:
    page = report.read_text(encoding="utf-8")
    urls = [page[i : i + 40] for i in _starts(page, "http://") + _starts(page, "https://")]
    assert all(url.startswith("http://www.w3.org/") for url in urls), urls
    assert "<script" not in page
    assert "<link" not in page


def test_every_inline_svg_is_well_formed_xml(report: Path) -> None:
    figures = svgs(report.read_text(encoding="utf-8"))
    assert len(figures) == DRAWN_FIGURES
    for svg in figures:
        assert ET.fromstring(svg).tag == "{http://www.w3.org/2000/svg}svg"


def test_the_headline_shows_savings_and_commands_by_final_state(report: Path) -> None:
    text = " ".join(parsed(report.read_text(encoding="utf-8")).text)
    assert "savings_pct" in text
    assert "17.25" in text
    assert "completed: 40, failed: 2" in text
    assert "n/a" in text  # drift_corrected_within_interval_pct is None


def test_a_record_with_nothing_in_it_says_so_for_every_figure(tmp_path: Path) -> None:
    page = render_report(empty_record(), tmp_path).read_text(encoding="utf-8")
    assert "<svg" not in page
    assert page.count("nothing to show:") == 6


def test_strings_from_the_record_are_escaped(tmp_path: Path) -> None:
    record = synthetic_record()
    record["homes"][0]["device_id"] = "<b>x</b>&"
    record["options"]["area"] = "<i>SE3</i>"
    record["funnel"] = {"<b>m</b>": record["funnel"]["acme"]}
    record["timelines"][0]["command_id"] = "<b>c</b>"
    record["timelines"][0]["spans"][0]["name"] = "<b>span</b>"
    page = render_report(record, tmp_path).read_text(encoding="utf-8")
    assert "<b>" not in page
    assert "<i>" not in page
    assert "&lt;b&gt;x&lt;/b&gt;&amp;" in page
    for svg in svgs(page):
        ET.fromstring(svg)


def timeline_svgs(page: str) -> list[str]:
    section = page[page.index('<section id="timelines">') :]
    return svgs(section[: section.index("</section>")])


def test_each_command_timeline_is_a_figure_titled_with_the_command_and_why_it_was_picked(
    report: Path,
) -> None:
    page = report.read_text(encoding="utf-8")
    sections = [page.index(f'<section id="{slug}">') for slug in ("command", "timelines", "drift")]
    assert sections == sorted(sections), "timelines come after the lifecycle funnel"
    figures = timeline_svgs(page)
    assert len(figures) == TIMELINES
    failed, quick = figures
    assert "c-failed · hp-1 · acme · failed · picked: failed; most dispatch attempts (2)" in failed
    assert "c-quick · hp-1 · acme · completed · picked: completed at its first attempt" in quick
    assert "send_to_oem · attempt 1" in failed
    assert "execute_command · retrying" in failed
    assert "simulated time (UTC)" in failed


def test_a_timeline_shows_errors_in_red_and_only_where_a_span_ended_in_error(
    report: Path,
) -> None:
    failed, quick = timeline_svgs(report.read_text(encoding="utf-8"))
    assert RED_TEXT.findall(failed) == ["execute_command · retrying", "send_to_oem · attempt 1"]
    assert RED_TEXT.findall(quick) == []


def test_a_record_from_before_timelines_renders_and_says_it_has_none(tmp_path: Path) -> None:
    record = synthetic_record()
    del record["timelines"]
    page = render_report(record, tmp_path).read_text(encoding="utf-8")
    assert page.count("<svg") == DRAWN_FIGURES - TIMELINES
    assert "nothing to show: run.json was written before command timelines existed" in page


def test_rendering_twice_gives_the_same_bytes(tmp_path: Path) -> None:
    record = synthetic_record()
    first = render_report(copy.deepcopy(record), tmp_path / "a").read_bytes()
    second = render_report(record, tmp_path / "b").read_bytes()
    assert first == second


def test_chromium_draws_the_report_as_a_picture(report: Path, tmp_path: Path) -> None:
    assert looks_drawn(screenshot(report, tmp_path))
