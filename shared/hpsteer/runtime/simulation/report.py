"""``report.html``: a simulation run's report, drawn from its :class:`~.record.RunRecord` alone.

:func:`render_report` writes one self-contained HTML file: inline CSS, figures as inline SVG,
no script, and no external URL, font or stylesheet, so it reads offline and prints. It shows
the headline figures and the run's options, then six kinds of figure: prices and the fleet's
load, a few sample homes, the command lifecycle funnel per manufacturer, a few commands'
timelines (their spans from the event that caused them to their verification, as Gantt rows),
hourly drift/override/remediation/alert counts, and the spread of savings over homes (with a
tariff, bill savings beside spot savings: in the headline, each sample home's title and the
spread). A figure
whose inputs are empty (or, for timelines, absent from an older record) is replaced by one line,
``nothing to show: <why>``; empty inputs never raise.

Every string taken from the record is escaped (HTML in the page, XML inside the SVG, and never
parsed as mathtext). The output is deterministic: the same record gives the same bytes.
Matplotlib is used through :class:`~matplotlib.figure.Figure` only, inside
:func:`matplotlib.rc_context`, so no pyplot or rcParams state outlives a call.
"""

from __future__ import annotations

import html
import io
import math
import re
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import matplotlib
import numpy as np
from matplotlib import dates as mdates
from matplotlib.artist import Artist
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator
from numpy.typing import NDArray

from hpsteer.runtime.simulation.record import (
    FUNNEL_STAGES,
    CommandTimeline,
    HomeRecord,
    RunRecord,
    TimelineSpan,
)

__all__ = ["MAX_SAMPLE_HOMES", "MAX_TIMELINE_ROWS", "render_report"]

MAX_SAMPLE_HOMES = 6
"""At most this many homes with samples are drawn (the first ones in the record)."""

MAX_TIMELINE_ROWS = 60
"""At most this many spans of one command timeline are drawn (the first ones by start)."""

TIMELINE_DETAILS = (
    ("outcome", ""),
    ("http.status_code", "HTTP "),
    ("attempt", "attempt "),
    ("action", ""),
)
"""The span attributes a timeline row's label shows after the span's name, with their prefix."""

HEADLINE = (
    ("devices", "Homes"),
    ("days", "Days simulated"),
    ("savings_pct", "Savings vs baseline (%)"),
    ("bill_savings_pct", "Bill savings vs baseline (%)"),
    ("cost_eur", "Electricity cost (EUR)"),
    ("baseline_cost_eur", "Baseline cost (EUR)"),
    ("tariff_id", "Tariff"),
    ("bill_eur", "Household bill (EUR)"),
    ("baseline_bill_eur", "Baseline bill (EUR)"),
    ("comfort_kh_below_per_home_day", "Below comfort (K·h per home and day)"),
    ("baseline_comfort_kh_below_per_home_day", "Baseline below comfort (K·h per home and day)"),
    ("mode_changes_per_day", "Mode changes per home and day"),
    ("commands", "Commands by final state"),
    ("commands_lost", "Commands lost"),
    ("drift_corrected_within_interval_pct", "Drift corrected within an interval (%)"),
    ("overrides_respected", "Household overrides respected"),
    ("alerts", "Alerts by kind"),
)
"""The summary's headline keys, in the order shown, with their labels."""

BILL_KEYS = frozenset({"bill_savings_pct", "bill_eur", "baseline_bill_eur"})
"""Headline keys shown only when the run had a tariff (``tariff_id`` not None)."""

MAX_VECTOR_POINTS = 2_000
"""Above this many homes the cost scatter is embedded as an image inside its SVG (still inline),
so a large fleet's report stays a few megabytes at most."""

MODE_LEVELS = {"min": 0, "mid": 1, "max": 2}
_NO_METADATA: dict[str, str | None] = {"Date": None, "Creator": None, "Format": None, "Type": None}
_STYLE = {
    "svg.fonttype": "none",
    "text.parse_math": False,
    "font.size": 9.0,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "legend.fontsize": 8.0,
    "legend.frameon": False,
}
_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#17becf")
_STEERED, _BASELINE, _COMFORT = "#1f77b4", "#ff7f0e", "#2ca02c"
_ERROR = "#d62728"
_SVG_TAG = re.compile(r"<[^<>]+>")
_SVG_ID = re.compile(r'(\bid="|url\(#|href="#)')

_CSS = """
body { font-family: system-ui, sans-serif; max-width: 62rem; margin: 1.5rem auto;
  padding: 0 1rem; color: #222; line-height: 1.45; }
h1 { font-size: 1.5rem; margin-bottom: 0.2rem; }
h2 { font-size: 1.15rem; margin: 2rem 0 0.3rem; border-bottom: 1px solid #ddd; }
caption { text-align: left; padding-top: 0.4rem; }
table { border-collapse: collapse; margin: 0.5rem 0 1rem; font-size: 0.92rem; }
th, td { text-align: left; padding: 0.2rem 0.8rem 0.2rem 0; border-bottom: 1px solid #eee;
  vertical-align: top; }
th code { color: #777; font-weight: normal; font-size: 0.8rem; margin-left: 0.4rem; }
td { font-variant-numeric: tabular-nums; }
figure { margin: 0.5rem 0 1.2rem; }
svg { width: 100%; height: auto; }
.nothing { color: #777; font-style: italic; }
footer { margin-top: 2.5rem; font-size: 0.85rem; color: #666; }
@media print { body { max-width: none; margin: 0; } section, figure { break-inside: avoid; } }
"""


@dataclass(frozen=True)
class Nothing:
    """What a figure section shows instead of a figure: why there is nothing to draw."""

    reason: str


Drawing = Figure | Nothing


def render_report(record: RunRecord, out_dir: Path) -> Path:
    """Write ``out_dir/report.html`` drawn from ``record``; return its path."""
    with matplotlib.rc_context(_STYLE):
        page = _page(record)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "report.html"
    path.write_text(page, encoding="utf-8")
    return path


def _page(record: RunRecord) -> str:
    options = record["options"]
    days = f"{options['days']} day" + ("" if options["days"] == 1 else "s")
    title = f"hpsteer simulation: {options['area']}, from {options['start']}, {days}"
    homes = _sample_home_figures(record["homes"])
    parts = [
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_esc(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>",
        f"<h1>{_esc(title)}</h1>",
        _headline(record),
        _section(
            "Prices and fleet load",
            "The day-ahead price in force (left axis) and the fleet's mean electric power, "
            "steered and under the heat pumps' own control (right axis), in UTC.",
            [("prices", _prices_and_load(record))],
        ),
        _section(
            "Sample homes",
            "Indoor temperature of a few homes against their comfort band and their never-steered "
            "twin (dashed); beneath, the mode the plan asked for and the mode the heat pump ran in "
            "(a gap: no plan, or a setting of the household's own).",
            homes,
        ),
        _section(
            "Command lifecycle",
            "How many commands of each manufacturer reached each stage of their lifecycle.",
            [("funnel", _funnel(record["funnel"]))],
        ),
        _section(
            "Command timelines",
            "The path of a few commands from the event that caused them to their verification, "
            "in simulated time (UTC): one row per span, indented under the span that started it, "
            "red where it ended in error, a diamond where it took no simulated time. They are "
            "taken from traces.jsonl in the same folder, which holds every span of the run.",
            _timeline_figures(record),
            slug="timelines",
        ),
        _section(
            "Drift, overrides, remediations and alerts",
            "Per hour: drift episodes first seen, household overrides recognised, remediation "
            "commands created and alerts published.",
            [("activity", _activity(record))],
        ),
        _section(
            "Savings per home",
            "How savings spread over the homes (median marked; with a tariff, the savings on "
            "the household's bill beside those at spot), and each home's cost at spot against "
            "its twin's (below the diagonal: cheaper than the baseline).",
            [("savings", _savings(record["homes"]))],
        ),
        "<footer>Drawn from run.json in the same folder. Prices are real (the bundled day-ahead "
        "data); the homes are simulated.</footer>\n</body>\n</html>\n",
    ]
    return "\n".join(parts)


# --- HTML ---------------------------------------------------------------------------------------


def _esc(value: object) -> str:
    return html.escape(str(value), quote=True)


def _headline(record: RunRecord) -> str:
    summary = record["summary"]
    known = {key for key, _ in HEADLINE}
    billed = summary.get("tariff_id") is not None
    headline = [
        (label, key)
        for key, label in HEADLINE
        if key in summary and (billed or key not in BILL_KEYS)
    ]
    others = [(key.replace("_", " ").capitalize(), key) for key in summary if key not in known]
    options = [(key.capitalize(), key) for key in record["options"]]
    return "\n".join(
        [
            '<section id="headline">\n<h2>Headline</h2>',
            "<p>The run's headline figures (as in summary.json) and the options it ran with.</p>",
            _table(headline, summary),
            _table(others, summary, caption="Other figures") if others else "",
            _table(options, dict(record["options"]), caption="Run options"),
            "</section>",
        ]
    )


def _table(rows: list[tuple[str, str]], values: dict[str, object], caption: str = "") -> str:
    head = f"<caption><strong>{_esc(caption)}</strong></caption>" if caption else ""
    body = "".join(
        f"<tr><th>{_esc(label)}<code>{_esc(key)}</code></th><td>{_esc(_text(values[key]))}</td>"
        "</tr>\n"
        for label, key in rows
    )
    return f"<table>{head}\n{body}</table>"


def _text(value: object, depth: int = 0) -> str:
    """A summary value as one short line: None is "n/a", dicts and lists are listed inline."""
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int | float):
        return _number(value)
    if isinstance(value, dict):
        items = [f"{key}: {_text(item, depth + 1)}" for key, item in value.items()]
        return _listed(items, depth)
    if isinstance(value, list | tuple):
        return _listed([_text(item, depth + 1) for item in value], depth)
    return str(value)


def _number(value: float) -> str:
    if isinstance(value, int):
        return f"{value:,}"
    if not math.isfinite(value):
        return str(value)
    return f"{value:,.3f}".rstrip("0").rstrip(".")


def _listed(items: list[str], depth: int, most: int = 8) -> str:
    if not items:
        return "none"
    shown = items[:most] + ([f"… ({len(items) - most} more)"] if len(items) > most else [])
    joined = ", ".join(shown)
    return f"({joined})" if depth else joined


def _section(
    heading: str,
    sentence: str,
    drawings: Sequence[tuple[str, Drawing]],
    slug: str | None = None,
) -> str:
    """A titled section; its id is ``slug``, by default the heading's first word."""
    slug = slug or heading.split()[0].lower().strip(",")
    body = [f'<section id="{slug}">\n<h2>{_esc(heading)}</h2>\n<p>{_esc(sentence)}</p>']
    for name, drawing in drawings:
        if isinstance(drawing, Nothing):
            body.append(f'<p class="nothing">nothing to show: {_esc(drawing.reason)}</p>')
        else:
            body.append(f"<figure>\n{_svg(drawing, name)}</figure>")
    body.append("</section>")
    return "\n".join(body)


def _svg(figure: Figure, name: str) -> str:
    """The figure as an ``<svg>`` element to inline: no prolog, ids unique to this figure."""
    buffer = io.StringIO()
    with matplotlib.rc_context({"svg.hashsalt": f"hpsteer-report-{name}"}):
        figure.savefig(buffer, format="svg", metadata=_NO_METADATA, dpi=150)
    text = buffer.getvalue()
    svg = text[text.index("<svg") :]

    def prefix_ids(tag: re.Match[str]) -> str:
        return _SVG_ID.sub(lambda ref: f"{ref.group(1)}{name}-", tag.group(0))

    return _SVG_TAG.sub(prefix_ids, svg)


# --- figures ------------------------------------------------------------------------------------


def _instant(at: str) -> datetime:
    moment = datetime.fromisoformat(at)
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _instants(points: Sequence[Mapping[str, object]]) -> list[datetime]:
    return [_instant(str(point["at"])) for point in points]


def _step_after(times: list[datetime]) -> timedelta:
    """The spacing of evenly spaced instants (15 minutes when there are fewer than two)."""
    return times[-1] - times[-2] if len(times) > 1 else timedelta(minutes=15)


def _held(
    times: list[datetime], values: list[float], until: datetime
) -> tuple[NDArray[np.datetime64], list[float]]:
    """Step-line points holding the last value until ``until`` (times as numpy UTC instants)."""
    naive = [moment.astimezone(UTC).replace(tzinfo=None) for moment in [*times, until]]
    return np.array(naive, dtype="datetime64[ms]"), [*values, values[-1]]


def _legend_above(axes: Axes, handles: list[Artist] | None = None, right: bool = False) -> None:
    """A one-row legend just above the axes (left or right), clear of the data."""
    corner = ("lower right", (1.0, 1.0)) if right else ("lower left", (0.0, 1.0))
    shown = handles if handles is not None else axes.get_legend_handles_labels()[0]
    axes.legend(handles=shown, loc=corner[0], bbox_to_anchor=corner[1], ncols=max(1, len(shown)))


def _time_axis(axes: Axes) -> None:
    locator = mdates.AutoDateLocator(tz=UTC)  # type: ignore[no-untyped-call]
    axes.xaxis.set_major_locator(locator)
    formatter = mdates.ConciseDateFormatter(locator, tz=UTC)  # type: ignore[no-untyped-call]
    axes.xaxis.set_major_formatter(formatter)
    axes.set_xlabel("time (UTC)")


def _run_end(record: RunRecord) -> datetime:
    """The run's end, as far as the record tells: after its last load, activity or price slot."""
    ends: list[datetime] = []
    if loads := _instants(record["fleet_load"]):
        ends.append(loads[-1] + _step_after(loads))
    if hours := _instants(record["activity"]):
        ends.append(hours[-1] + timedelta(hours=1))
    if prices := _instants(record["prices"]):
        ends.append(prices[-1] + timedelta(minutes=15))
    return max(ends)


def _prices_and_load(record: RunRecord) -> Drawing:
    prices, load = record["prices"], record["fleet_load"]
    if not prices and not load:
        return Nothing("the record holds no prices and no fleet load")
    end = _run_end(record)
    figure = Figure(figsize=(10, 3.8), layout="constrained")
    price_axes = figure.add_subplot()
    if prices:
        xs, ys = _held(_instants(prices), [p["eur_per_mwh"] for p in prices], end)
        price_axes.step(xs, ys, where="post", color="#555555", label="price (EUR/MWh)")
        price_axes.axhline(0.0, color="#999999", linewidth=0.6)
    price_axes.set_ylabel("price (EUR/MWh)")
    load_axes = price_axes.twinx()
    load_axes.grid(False)
    load_axes.spines["right"].set_visible(True)
    if load:
        times = _instants(load)
        xs, kw = _held(times, [p["kw"] for p in load], end)
        _, base = _held(times, [p["baseline_kw"] for p in load], end)
        load_axes.step(xs, kw, where="post", color=_STEERED, label="fleet, steered (kW)")
        load_axes.step(
            xs, base, where="post", color=_BASELINE, linestyle="--", label="fleet, baseline (kW)"
        )
    load_axes.set_ylabel("fleet power (kW)")
    handles = price_axes.get_legend_handles_labels()[0] + load_axes.get_legend_handles_labels()[0]
    _legend_above(price_axes, handles=handles)
    _time_axis(price_axes)
    return figure


def _sample_home_figures(homes: list[HomeRecord]) -> list[tuple[str, Drawing]]:
    sampled = [home for home in homes if home["samples"]][:MAX_SAMPLE_HOMES]
    if not sampled:
        return [("homes", Nothing("no home has samples in the record"))]
    return [(f"home{index}", _sample_home(home)) for index, home in enumerate(sampled, start=1)]


def _mode_level(mode: str | None) -> float:
    return float(MODE_LEVELS[mode]) if mode in MODE_LEVELS else math.nan


def _savings_text(savings: float | None) -> str:
    return "savings n/a" if savings is None else f"savings {_number(savings)} %"


def _home_savings_text(home: HomeRecord) -> str:
    """Spot savings, and the bill's beside them when the run had a tariff."""
    spot = _savings_text(home["savings_pct"])
    if "bill_savings_pct" not in home:
        return spot
    return f"{spot}, bill {_savings_text(home['bill_savings_pct'])}"


def _sample_home(home: HomeRecord) -> Figure:
    samples = home["samples"]
    times = _instants(samples)
    end = times[-1] + _step_after(times)
    figure = Figure(figsize=(10, 4.4), layout="constrained")
    temps, modes = figure.subplots(2, 1, sharex=True, height_ratios=(3, 1.3))
    temps.axhspan(
        home["comfort_min_c"], home["comfort_max_c"], color=_COMFORT, alpha=0.15, label="comfort"
    )
    temps.plot(times, [s["indoor_c"] for s in samples], color=_STEERED, label="indoor, steered")
    temps.plot(
        times,
        [s["baseline_indoor_c"] for s in samples],
        color=_BASELINE,
        linestyle="--",
        label="indoor, baseline",
    )
    temps.set_ylabel("°C")
    _legend_above(temps, right=True)
    temps.set_title(
        f"{home['device_id']} · {home['manufacturer']} · {home['archetype']} · "
        f"{_home_savings_text(home)}",
        loc="left",
    )
    for levels, label, colour, width in (
        ([_mode_level(s["planned_mode"]) for s in samples], "planned", "#9ecae1", 4.0),
        ([_mode_level(s["actual_mode"]) for s in samples], "actual", "#08306b", 1.4),
    ):
        xs, ys = _held(times, levels, end)
        modes.step(xs, ys, where="post", color=colour, linewidth=width, label=label)
    modes.set_yticks(range(len(MODE_LEVELS)), list(MODE_LEVELS))
    modes.set_ylim(-0.5, len(MODE_LEVELS) - 0.5)
    modes.set_ylabel("mode")
    _legend_above(modes, right=True)
    _time_axis(modes)
    return figure


def _funnel(funnel: dict[str, dict[str, int]]) -> Drawing:
    manufacturers = sorted(funnel)
    if not any(funnel[m].get(stage, 0) for m in manufacturers for stage in FUNNEL_STAGES):
        return Nothing("no command was created")
    figure = Figure(figsize=(10, 3.8), layout="constrained")
    axes = figure.add_subplot()
    width = 0.8 / len(manufacturers)
    for index, manufacturer in enumerate(manufacturers):
        offset = (index - (len(manufacturers) - 1) / 2) * width
        counts = [funnel[manufacturer].get(stage, 0) for stage in FUNNEL_STAGES]
        bars = axes.bar(
            [x + offset for x in range(len(FUNNEL_STAGES))],
            counts,
            width=width,
            color=_COLOURS[index % len(_COLOURS)],
            label=manufacturer,
        )
        axes.bar_label(bars, fontsize=7, padding=1)
    axes.set_xticks(range(len(FUNNEL_STAGES)), list(FUNNEL_STAGES))
    axes.set_ylabel("commands")
    axes.grid(axis="x", visible=False)
    _legend_above(axes, right=True)
    return figure


def _timeline_figures(record: RunRecord) -> list[tuple[str, Drawing]]:
    if "timelines" not in record:
        return [("timelines", Nothing("run.json was written before command timelines existed"))]
    timelines = record["timelines"]
    if not timelines:
        why = "no command has spans in traces.jsonl, or the run wrote no traces.jsonl"
        return [("timelines", Nothing(why))]
    return [
        (f"timeline{index}", _timeline(timeline))
        for index, timeline in enumerate(timelines, start=1)
    ]


def _timeline_title(timeline: CommandTimeline) -> str:
    spans = len(timeline["spans"])
    shown = (
        f" (the first {MAX_TIMELINE_ROWS} of {spans} spans)" if spans > MAX_TIMELINE_ROWS else ""
    )
    return (
        f"{timeline['command_id']} · {timeline['device_id']} · {timeline['manufacturer']} · "
        f"{timeline['final_state']} · picked: {timeline['why']}{shown}"
    )


def _span_label(span: TimelineSpan) -> str:
    details = [
        f"{prefix}{span['attributes'][key]}"
        for key, prefix in TIMELINE_DETAILS
        if span["attributes"].get(key) is not None
    ]
    return " · ".join([span["name"], *details])


def _timeline(timeline: CommandTimeline) -> Drawing:
    spans = timeline["spans"][:MAX_TIMELINE_ROWS]
    if not spans:
        return Nothing(f"the timeline of {timeline['command_id']} holds no span")
    rows = list(range(len(spans)))
    starts = [_day_number(span["start_at"]) for span in spans]
    ends = [_day_number(span["end_at"]) for span in spans]
    colours = [_ERROR if span["status"] == "ERROR" else _STEERED for span in spans]
    figure = Figure(figsize=(10, 1.5 + 0.17 * len(spans)), layout="constrained")
    labels, bars = figure.subplots(1, 2, sharey=True, width_ratios=(1.15, 2.0))
    lasting = [row for row in rows if ends[row] > starts[row]]
    instant = [row for row in rows if ends[row] <= starts[row]]
    bars.barh(
        lasting,
        [ends[row] - starts[row] for row in lasting],
        left=[starts[row] for row in lasting],
        height=0.6,
        color=[colours[row] for row in lasting],
    )
    bars.scatter(
        [starts[row] for row in instant],
        instant,
        marker="D",
        s=14,
        color=[colours[row] for row in instant],
        zorder=3,
    )
    _timeline_labels(labels, spans)
    bars.set_ylim(len(spans) - 0.5, -0.5)
    bars.set_yticks(rows)
    bars.tick_params(axis="y", left=False, labelleft=False)
    bars.set_xlim(*_padded(min(starts), max(ends)))
    _time_axis(bars)
    bars.set_xlabel("simulated time (UTC)")
    handles: list[Artist] = [
        Patch(color=_STEERED, label="span"),
        Line2D([], [], marker="D", linestyle="none", color=_STEERED, label="no simulated time"),
        Patch(color=_ERROR, label="ended in error"),
    ]
    _legend_above(bars, handles=handles, right=True)
    figure.suptitle(_timeline_title(timeline), x=0.01, ha="left", fontsize=9.0)
    return figure


def _timeline_labels(axes: Axes, spans: Sequence[TimelineSpan]) -> None:
    """The spans' names as a tree: one row each, indented by depth."""
    axes.set_axis_off()
    axes.set_xlim(0.0, 1.0)
    for row, span in enumerate(spans):
        axes.text(
            0.01 + 0.035 * span["depth"],
            row,
            _span_label(span),
            ha="left",
            va="center",
            fontsize=7.0,
            color=_ERROR if span["status"] == "ERROR" else "#222222",
        )


def _day_number(at: str) -> float:
    """An instant as matplotlib's date number (days), which bar widths can be given in."""
    return float(mdates.date2num(_instant(at)))  # type: ignore[no-untyped-call]


def _padded(low: float, high: float) -> tuple[float, float]:
    """An x range around ``low``..``high`` (date numbers) with a margin, a minute at least."""
    margin = max((high - low) * 0.03, 1.0 / (24 * 60))
    return low - margin, high + margin


def _activity(record: RunRecord) -> Drawing:
    activity = record["activity"]
    if not activity:
        return Nothing("the record holds no hourly activity")
    series = {
        "drifts": [point["drifts"] for point in activity],
        "overrides": [point["overrides"] for point in activity],
        "remediations": [point["remediations"] for point in activity],
        "alerts": [point["alerts"] for point in activity],
    }
    if not any(any(counts) for counts in series.values()):
        return Nothing("no drift, override, remediation or alert in the run")
    hours = _instants(activity)
    figure = Figure(figsize=(10, 4.6), layout="constrained")
    panels = figure.subplots(len(series), 1, sharex=True)
    for index, (panel, (label, counts)) in enumerate(zip(panels, series.items(), strict=True)):
        panel.bar(hours, counts, width=0.9 / 24, align="edge", color=_COLOURS[index])
        panel.set_ylabel(label, rotation=0, ha="right", va="center")
        panel.set_ylim(0, max(1, *counts) * 1.15)
        panel.yaxis.set_major_locator(MaxNLocator(integer=True))
        panel.grid(axis="x", visible=False)
    _time_axis(panels[-1])
    return figure


def _savings(homes: list[HomeRecord]) -> Drawing:
    if not homes:
        return Nothing("the record holds no homes")
    figure = Figure(figsize=(10, 3.6), layout="constrained")
    spread, costs = figure.subplots(1, 2)
    _savings_histogram(
        spread,
        [h["savings_pct"] for h in homes if h["savings_pct"] is not None],
        [s for h in homes if (s := h.get("bill_savings_pct")) is not None],
    )
    baseline = [h["baseline_cost_eur"] for h in homes]
    steered = [h["cost_eur"] for h in homes]
    top = max(0.0, *baseline, *steered) * 1.05 or 1.0
    bottom = min(0.0, *baseline, *steered) * 1.05
    costs.plot(
        [bottom, top], [bottom, top], color="#999999", linewidth=0.8, label="cost = baseline"
    )
    costs.scatter(
        baseline,
        steered,
        s=12,
        color=_STEERED,
        alpha=0.7,
        label="a home",
        rasterized=len(homes) > MAX_VECTOR_POINTS,
    )
    costs.set_xlim(bottom, top)
    costs.set_ylim(bottom, top)
    costs.set_xlabel("baseline cost (EUR)")
    costs.set_ylabel("steered cost (EUR)")
    _legend_above(costs)
    return figure


def _savings_histogram(
    axes: Axes, savings: list[float], bill_savings: Sequence[float] = ()
) -> None:
    """Spot savings over the homes; with a tariff, the bill savings over them beside."""
    axes.set_xlabel("savings vs baseline (%)")
    axes.set_ylabel("homes")
    if not savings:
        message = "no home had a positive baseline cost"
        axes.text(0.5, 0.5, message, ha="center", transform=axes.transAxes)
        return
    count = min(30, max(5, len(savings) // 4))
    bins = list(np.histogram_bin_edges([*savings, *bill_savings], bins=count))  # one grid
    shown = [(savings, "at spot", _COMFORT, "--")]
    if bill_savings:
        shown.append((list(bill_savings), "on the bill", _STEERED, ":"))
    for values, name, colour, style in shown:
        label = name if bill_savings else None
        axes.hist(
            values, bins=bins, color=colour, alpha=0.8 if len(shown) == 1 else 0.5, label=label
        )
        median = statistics.median(values)
        axes.axvline(
            median,
            color="#222222",
            linestyle=style,
            label=f"median {median:.1f} %" + (f" {name}" if bill_savings else ""),
        )
    axes.yaxis.set_major_locator(MaxNLocator(integer=True))
    _legend_above(axes)
