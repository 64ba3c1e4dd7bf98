"""``report.html``: one self-contained page for a reader in a browser, rendered from the report.

Jinja2 with autoescaping on for every value: user agents, URLs, cmdlet parameters, file names and
evidence text are attacker-controlled and always go through the template's HTML escaping (never
``|safe``), and control and bidi-override characters are shown as escapes (as in the terminal) so
no evidence text can reorder what a reader sees. The page carries no script at all and a Content-Security-Policy that forbids any, loads
nothing from the network (inline CSS and an inline SVG chart), and drills down with ``<details>``
elements and in-page links from every item to its finding and evidence lines.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime

from jinja2 import Environment, PackageLoader, select_autoescape
from markupsafe import Markup

from varde.analysis.tactics import attack_table
from varde.report.console import safe
from varde.report.document import Report, Step

#: Colours of intruders in the chart (host events of no intruder are grey).
PALETTE = ("#d62728", "#1f77b4", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf")
CHART_WIDTH, ROW_HEIGHT, LABEL_WIDTH = 960, 26, 170
#: Evidence references of one finding, step or mailbox shown with their logged text; the others
#: are listed by place only (report.json has every text).
MAX_TEXTS = 5


@dataclass(frozen=True)
class Dot:
    x: float
    y: float
    colour: str
    label: str
    anchor: str


def _environment() -> Environment:
    env = Environment(loader=PackageLoader("varde.report", "templates"),
                      autoescape=select_autoescape(default=True, default_for_string=True),
                      # a macro's output (Markup) was made safe value by value inside it
                      finalize=lambda value: safe(value) if isinstance(value, str) and not isinstance(value, Markup)
                      else value,
                      trim_blocks=True, lstrip_blocks=True)
    env.filters["when"] = lambda m: m.strftime("%Y-%m-%d %H:%M:%SZ") if m else "-"
    return env


def _colours(report: Report) -> dict[str | None, str]:
    colours: dict[str | None, str] = {i.id: PALETTE[n % len(PALETTE)] for n, i in enumerate(report.intruders)}
    colours[None] = "#7f7f7f"
    return colours


def chart(steps: list[Step], colours: dict[str | None, str]) -> tuple[list[str], list[Dot], list[str]]:
    """The timeline chart: tactic rows (matrix order), dots at step times, and the axis labels."""
    table = attack_table()
    order = [t[0] for t in table.tactics]
    rows = sorted({s.tactic for s in steps}, key=lambda t: order.index(t) if t in order else len(order))
    if not steps:
        return [], [], []
    start, end = steps[0].ts, max(s.last_ts or s.ts for s in steps)
    span = max((end - start).total_seconds(), 1.0)
    width = CHART_WIDTH - LABEL_WIDTH - 20

    def x(moment: datetime) -> float:
        return round(LABEL_WIDTH + width * (moment - start).total_seconds() / span, 1)

    dots = [Dot(x(s.ts), round(rows.index(s.tactic) * ROW_HEIGHT + ROW_HEIGHT / 2, 1), colours.get(s.intruder, "#7f7f7f"),
                f"{s.ts:%Y-%m-%d %H:%M:%S}Z {s.title} ({s.count})", f"s{n}") for n, s in enumerate(steps)]
    axis = [f"{start:%Y-%m-%d %H:%M}Z", f"{end:%Y-%m-%d %H:%M}Z"]
    return [table.tactic_name(r) for r in rows], dots, axis


def heat_map(report: Report) -> list[tuple[str, list[tuple[str, str, int]]]]:
    """Per tactic in matrix order: the techniques seen (id, name, level 1..4 by step count)."""
    table = attack_table()
    cells: dict[str, list[tuple[str, str, int]]] = defaultdict(list)
    top = max((t.steps for t in report.techniques), default=1) or 1
    for technique in report.techniques:
        level = 1 + min(3, (3 * technique.steps) // top)
        for tactic in technique.tactics:
            cells[tactic].append((technique.id, technique.name, level))
    return [(name, cells.get(short, [])) for short, name, _ in table.tactics]


def render_html(report: Report) -> str:
    """The page's HTML text."""
    colours = _colours(report)
    rows, dots, axis = chart(report.timeline, colours)
    findings = {f.id: f for f in report.findings}
    titled: dict[str, list[str]] = {}
    for intruder in report.intruders:  # one link per title (a rule's findings differ only by host)
        seen: dict[str, str] = {}
        for fid in intruder.finding_ids:
            seen.setdefault(findings[fid].title if fid in findings else fid, fid)
        titled[intruder.id] = sorted(seen.values(), key=lambda f: findings[f].title if f in findings else f)
    names = {i.id: i.name for i in report.intruders}
    return _environment().get_template("report.html.j2").render(
        r=report, rows=rows, dots=dots, axis=axis, colours=colours, heat=heat_map(report), findings=findings,
        names=names, titled=titled, width=CHART_WIDTH, row_height=ROW_HEIGHT, label_width=LABEL_WIDTH,
        notice=attack_table().notice, max_texts=MAX_TEXTS,
    )
