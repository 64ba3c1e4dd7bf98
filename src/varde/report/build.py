"""Assemble the report document from the case store and the detection results."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from varde import __version__
from varde.analysis.vulnerabilities import vulnerabilities
from varde.analysis.webshells import webshells
from varde.detect.sigma.rules import RuleProblem, RuleSet
from varde.events.store import EventStore
from varde.report.document import (
    CaseInfo,
    EvidenceEntry,
    Finding,
    Report,
    RuleProblemEntry,
    RulesetEntry,
    Verdict,
    Vulnerability,
    Warning,
)
from varde.sources.discover import UNKNOWN_FORMAT

#: Read warnings copied into the report; the store keeps every one.
MAX_WARNINGS = 1000

#: ATT&CK release the technique ids refer to (the tags of the rules in use).
ATTACK_VERSION = "unversioned (technique ids from rule tags)"


@dataclass
class RulesetOutcome:
    """A loaded rule set and the problems its rules met when they ran."""

    ruleset: RuleSet
    errors: list[RuleProblem] = field(default_factory=list)

    def entry(self) -> RulesetEntry:
        problems = [*self.ruleset.errors, *self.errors, *self.ruleset.skipped]
        return RulesetEntry(
            kind="sigma",
            source=self.ruleset.source,
            rules=self.ruleset.count,
            errors=len(self.ruleset.errors) + len(self.errors),
            skipped=len(self.ruleset.skipped),
            not_applicable=len(self.ruleset.not_applicable),
            problems=[
                RuleProblemEntry(path=p.path, rule_id=p.rule_id, title=p.title, reason=p.reason)
                for p in problems
            ],
        )


def evidence_entries(store: EventStore) -> list[EvidenceEntry]:
    """Every input, in discovery order."""
    rows = store.query(
        "SELECT path, sha256, bytes, reader, records, skipped_records, coalesce(complete, true) "
        "FROM evidence ORDER BY id"
    )
    return [
        EvidenceEntry(path=p, sha256=h, bytes=b or 0, reader=r, records=n or 0, skipped_records=s or 0, complete=c)
        for p, h, b, r, n, s, c in rows
    ]


def warnings(store: EventStore) -> list[Warning]:
    """Read warnings (capped at MAX_WARNINGS, with a note of how many more the store holds).

    Inputs no reader recognises (the pages, binaries and archives of a copied file tree) are one
    warning with their count, not one each: they are inventoried and scanned, not lost.
    """
    rows = store.query(
        "SELECT v.path, w.locator, w.message FROM read_warnings w LEFT JOIN evidence v ON v.id = w.evidence "
        f"WHERE w.message <> ? ORDER BY w.evidence NULLS FIRST, w.locator, w.message LIMIT {MAX_WARNINGS + 1}",
        [UNKNOWN_FORMAT],
    )
    out = [Warning(path=p, message=f"{loc}: {msg}" if loc else msg) for p, loc, msg in rows[:MAX_WARNINGS]]
    (unknown,) = store.query("SELECT count(*) FROM read_warnings WHERE message = ?", [UNKNOWN_FORMAT])[0]
    if unknown:
        out.insert(0, Warning(path=None, message=(
            f"{unknown} inputs are in no format a reader knows: they are in the file inventory (path, times, "
            "sha256; table files) and were scanned with YARA, but no events were read from them")))
    if len(rows) > MAX_WARNINGS:
        (total,) = store.query("SELECT count(*) FROM read_warnings WHERE message <> ?", [UNKNOWN_FORMAT])[0]
        out.append(Warning(path=None, message=f"{total - MAX_WARNINGS} more read warnings are in events.duckdb"))
    return out


def provisional_verdict(findings: Sequence[Finding], vulns: Sequence[Vulnerability], events: int) -> Verdict:
    """A verdict that claims no more than the findings show.

    Compromised only when a finding shows successful exploitation (a step only a successful
    attacker reaches); high confidence when two or more such findings agree. Otherwise the
    summary says what was seen, so no reader mistakes rule matches for a conclusion (the
    intrusion analysis of later stages refines this).
    """
    exploited = [v for v in vulns if v.exploited]
    shown = sorted({f.id for f in findings if f.exploited})
    if shown and not exploited:  # a successful intrusion without a CVE: valid accounts after spraying, say
        titles = "; ".join(sorted({f.title for f in findings if f.exploited}))
        first = min((f.first_seen for f in findings if f.exploited and f.first_seen), default=None)
        when = f", first on {first:%Y-%m-%d %H:%M} UTC" if first else ""
        summary = (f"The server was compromised: {len(shown)} findings show a successful intrusion ({titles}){when}. "
                   "Reset the accounts concerned, preserve the evidence, and review the findings after that time "
                   "and the mailbox actions.")
        return Verdict(compromised=True, confidence="high" if len(shown) >= 2 else "moderate", summary=summary)
    if exploited:
        first = min((v.first_seen for v in exploited if v.first_seen), default=None)
        names = "; ".join(f"{v.cve} ({v.name})" for v in exploited)
        when = f", first on {first:%Y-%m-%d %H:%M} UTC" if first else ""
        summary = (f"The server was compromised: {len(shown)} findings show successful exploitation of {names}{when}. "
                   "Isolate it, preserve the evidence, and review the web shells, the findings after that time and "
                   "the mailbox actions.")
        return Verdict(compromised=True, confidence="high" if len(shown) >= 2 else "moderate", summary=summary)
    by_severity = Counter(f.severity for f in findings)
    serious = by_severity["critical"] + by_severity["high"]
    if not findings:
        summary = f"No detection rule matched the {events} events read. No intrusion was found."
    else:
        summary = (
            f"{len(findings)} findings from detection rules over {events} events, {serious} of them high "
            "or critical, none showing successful exploitation. Review the findings and their evidence "
            "before concluding."
        )
    return Verdict(compromised=False, confidence="low", summary=summary)


def build_report(
    store: EventStore,
    outcomes: Sequence[RulesetOutcome],
    findings: list[Finding],
    created: datetime,
    other_rulesets: Sequence[RulesetEntry] = (),
) -> Report:
    """The report document for the case as it stands."""
    events = store.event_count()
    vulns = vulnerabilities(findings)
    return Report(
        case=CaseInfo(
            tool_version=__version__,
            created=created,
            evidence=evidence_entries(store),
            rulesets=[*(o.entry() for o in outcomes), *other_rulesets],
            attack_version=ATTACK_VERSION,
            events=events,
        ),
        verdict=provisional_verdict(findings, vulns, events),
        vulnerabilities=vulns,
        webshells=webshells(store, findings),
        findings=findings,
        warnings=warnings(store),
    )
