"""Assemble the report document from the case store and the detection results."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime

from varde import __version__
from varde.analysis import footprint, hosts
from varde.analysis import intruders as intruder_analysis
from varde.analysis import timeline as timeline_analysis
from varde.analysis.attack import default_index
from varde.analysis.attribution import AttributionInput, attribute
from varde.analysis.hits import load_hits
from varde.analysis.impact import mailbox_impact
from varde.analysis.tactics import attack_table
from varde.analysis.verdict import verdict
from varde.analysis.vulnerabilities import vulnerabilities
from varde.analysis.webshells import webshells
from varde.detect.sigma.rules import RuleProblem, RuleSet
from varde.events.store import EventStore
from varde.report.document import (
    Attribution,
    CaseInfo,
    EvidenceEntry,
    Finding,
    Report,
    RuleProblemEntry,
    RulesetEntry,
    Warning,
)
from varde.sources.discover import UNKNOWN_FORMAT

#: Read warnings copied into the report; the store keeps every one.
MAX_WARNINGS = 1000


def attack_version() -> str:
    """The ATT&CK release of the bundled technique table (names and tactics)."""
    return f"enterprise-attack {attack_table().version}"


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


def build_report(
    store: EventStore,
    outcomes: Sequence[RulesetOutcome],
    findings: list[Finding],
    created: datetime,
    other_rulesets: Sequence[RulesetEntry] = (),
    victim_country: str | None = None,
    as_of: date | None = None,
) -> Report:
    """The report document for the case as it stands; ``victim_country`` (ISO 3166 alpha-2) and
    ``as_of`` (attribute with only what ATT&CK knew then) are for the attribution."""
    events = store.event_count()
    identity = hosts.identify(store)
    findings, hits = load_hits(store, [hosts.place(f, identity) if f.detector == "yara" else f for f in findings],
                               identity)
    vulns = vulnerabilities(findings)
    clustering = intruder_analysis.cluster(hits)
    intruders = intruder_analysis.entries(clustering, footprint.extend(store, clustering))
    steps, total = timeline_analysis.timeline(hits, clustering)
    notes = warnings(store)
    if total > len(steps):
        notes.append(Warning(path=None, message=f"{total - len(steps)} more timeline steps "
                                                "are not listed (the findings hold them)"))
    first = timeline_analysis.first_intrusion(hits, clustering)
    mailboxes = mailbox_impact(store, hits, clustering)
    shells = webshells(store, findings, hits, identity)
    scanners = intruder_analysis.scanners(clustering)
    techniques = timeline_analysis.techniques(steps, hits, clustering)
    return Report(
        case=CaseInfo(
            tool_version=__version__,
            created=created,
            evidence=evidence_entries(store),
            rulesets=[*(o.entry() for o in outcomes), *other_rulesets],
            attack_version=attack_version(),
            events=events,
        ),
        verdict=verdict(findings, vulns, intruders, mailboxes, shells, scanners, first, events),
        vulnerabilities=vulns,
        intruders=intruders,
        webshells=shells,
        mailboxes=mailboxes,
        techniques=techniques,
        timeline=steps,
        attribution=case_attribution([t.id for t in techniques] if intruders else [], victim_country, as_of),
        first_intrusion=first,
        scanners=scanners,
        findings=findings,
        warnings=notes,
    )


def case_attribution(techniques: Sequence[str], victim_country: str | None, as_of: date | None) -> Attribution:
    """Candidate actors for the intruders' ATT&CK techniques (``analysis/attribution``). Without
    intruders there is nothing to attribute: no candidates, all mass on "unknown"."""
    if not techniques:
        return Attribution(notes=["no intruder activity to attribute"])
    evidence = AttributionInput(techniques=list(techniques), victim_country=victim_country)
    return attribute(evidence, default_index(), as_of)
