"""The terminal summary (Rich), and the one place that makes evidence text safe for a terminal.

Evidence strings are attacker-controlled: a user agent or a command line can carry escape
sequences that rewrite the screen or the clipboard of whoever reads the output. Every string
from a report goes through :func:`safe` (control and bidi characters become visible escapes) and
into Rich ``Text`` objects (never parsed as markup).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from rich.console import Console
from rich.table import Table
from rich.text import Text

if TYPE_CHECKING:  # only annotations: the command line imports this module for safe() alone
    from varde.report.document import Report

#: Findings listed in the terminal; the report has them all.
MAX_ROWS = 30

_UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_STYLE = {"critical": "bold red", "high": "red", "medium": "yellow", "low": "cyan", "informational": "dim"}


def safe(text: object) -> str:
    """``text`` with every control and bidi-override character shown as an escape."""
    return _UNSAFE.sub(lambda m: f"\\u{ord(m.group()):04x}", "" if text is None else str(text))


def _t(value: object, style: str = "") -> Text:
    return Text(safe(value), style=style)


def render(report: Report, console: Console) -> None:
    """Print the case summary, rule sets and findings."""
    case = report.case
    records = sum(e.records for e in case.evidence)
    skipped = sum(e.skipped_records for e in case.evidence)
    unread = sum(1 for e in case.evidence if e.reader is None)
    console.print(Text("varde hunt", style="bold"), _t(f"({case.tool_version})", "dim"))
    console.print(
        _t(f"{len(case.evidence)} inputs, {records} records read, {skipped} skipped, "
           f"{unread} other files (no log format: hashed and scanned), {len(report.warnings)} warnings")
    )
    rules = Table(title="Rule sets", title_justify="left", show_edge=False)
    for name in ("source", "rules", "errors", "skipped", "not applicable"):
        rules.add_column(name, justify="left" if name == "source" else "right")
    for rs in case.rulesets:
        rules.add_row(_t(rs.source), _t(rs.rules), _t(rs.errors), _t(rs.skipped), _t(rs.not_applicable))
    console.print(rules)
    _findings(report, console)
    _intruders(report, console)
    _timeline(report, console)
    _mailboxes(report, console)
    _attribution(report, console)
    verdict = report.verdict
    state = ("COMPROMISED", "bold red") if verdict.compromised else ("not compromised", "bold green")
    console.print(Text("Verdict: ", style="bold"), _t(state[0], state[1]), _t(f" (confidence {verdict.confidence})"))
    console.print(_t(verdict.summary))


def _when(moment: object) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%SZ") if moment else "-"  # type: ignore[attr-defined]


def _table(title: str, columns: tuple[str, ...]) -> Table:
    table = Table(title=title, title_justify="left", show_edge=False)
    for name in columns:
        table.add_column(name, overflow="fold")
    return table


def _intruders(report: Report, console: Console) -> None:
    if not report.intruders:
        return
    table = _table(f"Intruders ({len(report.intruders)})", ("intruder", "sources", "user agents", "first seen",
                                                            "first exploitation", "web shells"))
    for i in report.intruders:
        table.add_row(_t(i.name), _t(", ".join(i.source_ips) or "-"), _t(" | ".join(i.user_agents) or "-"),
                      _t(_when(i.first_seen)), _t(_when(i.first_exploitation)), _t(", ".join(i.webshells) or "-"))
    console.print(table)
    if report.scanners.count:
        console.print(_t(f"{report.scanners.count} other sources only probed or failed (left out)", "dim"))


def _timeline(report: Report, console: Console) -> None:
    if not report.timeline:
        return
    names = {i.id: i.name for i in report.intruders}
    table = _table(f"Timeline ({len(report.timeline)} steps)", ("time", "tactic", "technique", "step", "intruder"))
    for step in report.timeline[:MAX_ROWS]:
        title = step.title + (f" x{step.count}" if step.count > 1 else "") + (f": {step.detail}" if step.detail else "")
        table.add_row(_t(_when(step.ts)), _t(step.tactic), _t(step.technique or "-"), _t(title),
                      _t(names.get(step.intruder or "", "-")))
    console.print(table)
    if len(report.timeline) > MAX_ROWS:
        console.print(_t(f"... and {len(report.timeline) - MAX_ROWS} more steps in report.json", "dim"))


def _mailboxes(report: Report, console: Console) -> None:
    if not report.mailboxes:
        return
    table = _table(f"Mailboxes ({len(report.mailboxes)})", ("mailbox", "access", "first seen", "items", "bytes"))
    for m in report.mailboxes[:MAX_ROWS]:
        table.add_row(_t(m.mailbox), _t(", ".join(m.access)), _t(_when(m.first_seen)),
                      _t("-" if m.items is None else m.items), _t("-" if m.bytes is None else m.bytes))
    console.print(table)


def _attribution(report: Report, console: Console) -> None:
    attribution = report.attribution
    if not attribution.candidates:
        return
    table = _table("Attribution (candidates)", ("actor", "country", "probability", "likelihood", "confidence"))
    for c in attribution.candidates[:5]:
        table.add_row(_t(c.name), _t(c.country or "-"), _t(f"{c.probability:.2f}"), _t(c.likelihood), _t(c.confidence))
    console.print(table)
    console.print(_t(f"{attribution.unknown_probability:.2f} left for an actor not in the reference data", "dim"))


def _findings(report: Report, console: Console) -> None:
    if not report.findings:
        console.print(_t("No findings."))
        return
    table = Table(title=f"Findings ({len(report.findings)})", title_justify="left", show_edge=False)
    for name in ("severity", "title", "host", "count", "first seen", "rule author"):
        table.add_column(name, justify="right" if name == "count" else "left", overflow="fold")
    for finding in report.findings[:MAX_ROWS]:
        first = finding.first_seen.strftime("%Y-%m-%d %H:%M:%SZ") if finding.first_seen else "-"
        table.add_row(
            _t(finding.severity, _STYLE[finding.severity]),
            _t(finding.title),
            _t(finding.host or "-"),
            _t(finding.count),
            _t(first),
            _t(finding.author or "-"),
        )
    console.print(table)
    if len(report.findings) > MAX_ROWS:
        console.print(_t(f"... and {len(report.findings) - MAX_ROWS} more findings in report.json", "dim"))
