"""The hunt, wired explicitly: ingest -> detect -> report.

Each stage's output is kept in the case folder (events and matches in ``events.duckdb``, the
result in ``report.json``). Library code reports progress through the :class:`Progress`
callbacks and never prints.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from importlib import resources
from pathlib import Path
from typing import Protocol

from varde.case import Case
from varde.detect.exchange import SOURCE as BUILTIN_DETECTORS
from varde.detect.exchange import run_detectors
from varde.detect.sigma.cache import RuleCache
from varde.detect.sigma.correlation import run_correlations
from varde.detect.sigma.engine import SigmaEngine, runnable_rules
from varde.detect.sigma.findings import build_findings, sort_findings
from varde.detect.sigma.rules import RuleSet, load_placeholders, load_ruleset
from varde.detect.yara import YaraRules, load_yara
from varde.detect.yara_findings import yara_findings
from varde.detect.yara_scan import ScanLimits, scan_evidence
from varde.errors import UsageError
from varde.events.store import EventStore
from varde.ingest import IngestSummary, ingest, plan
from varde.report.build import RulesetOutcome, build_report
from varde.report.document import Finding, Report, RuleProblemEntry, RulesetEntry
from varde.report.excerpts import with_excerpts
from varde.report.outputs import write_outputs
from varde.sources.base import ArchiveLimits
from varde.sources.ingest import Task

logger = logging.getLogger(__name__)

BUILTIN_RULES = "builtin:varde-sigma"


def utc_now() -> datetime:
    """The real clock (tests inject a fixed one)."""
    return datetime.now(UTC)


class Progress(Protocol):
    """Progress callbacks: a stage starts with a total, advances, and ends."""

    def start(self, stage: str, total: int) -> None: ...

    def advance(self, stage: str, amount: int = 1) -> None: ...

    def end(self, stage: str) -> None: ...


class NoProgress:
    """Progress that goes nowhere."""

    def start(self, stage: str, total: int) -> None:
        pass

    def advance(self, stage: str, amount: int = 1) -> None:
        pass

    def end(self, stage: str) -> None:
        pass


@dataclass(frozen=True)
class HuntOptions:
    """What a hunt reads and with which rules."""

    sigma_dirs: tuple[Path, ...] = ()
    builtin_rules: bool = True
    placeholders: Path | None = None
    workers: int = 2
    rule_cache: bool = True
    limits: ArchiveLimits = field(default_factory=ArchiveLimits)
    yara_dirs: tuple[Path, ...] = ()
    builtin_yara: bool = True
    yara_limits: ScanLimits = field(default_factory=ScanLimits)
    victim_country: str | None = None  # ISO 3166 alpha-2, a prior for attribution
    as_of: date | None = None  # attribute with only what ATT&CK knew on that day
    clock: Callable[[], datetime] = utc_now


@dataclass(frozen=True)
class HuntResult:
    """The saved report and the ingest counts."""

    report: Report
    ingest: IngestSummary
    case: Case


def load_rulesets(options: HuntOptions) -> list[RuleSet]:
    """The bundled rules (unless disabled) and every ``--sigma`` folder."""
    for folder in options.sigma_dirs:
        if not folder.exists():
            raise UsageError(f"rule folder {folder} does not exist")
    placeholders = None
    if options.placeholders is not None:
        try:
            placeholders = load_placeholders(options.placeholders)
        except (OSError, ValueError) as exc:
            raise UsageError(f"cannot read placeholder values: {exc}") from exc
    cache = RuleCache.default() if options.rule_cache else None
    rulesets = []
    if options.builtin_rules:
        with resources.as_file(resources.files("varde.data").joinpath("rules")) as folder:
            builtin = load_ruleset(folder, placeholders, cache)
        builtin.source = BUILTIN_RULES
        rulesets.append(builtin)
    rulesets.extend(load_ruleset(folder, placeholders, cache) for folder in options.sigma_dirs)
    return rulesets


def hunt(
    evidence: Sequence[Path],
    case_dir: Path,
    options: HuntOptions,
    progress: Progress | None = None,
    rulesets: list[RuleSet] | None = None,
) -> HuntResult:
    """Read the evidence into a new case, run the rules, write and return the report.

    ``rulesets`` replaces loading the rules named in ``options`` (to reuse them across hunts).
    """
    progress = progress or NoProgress()
    for path in evidence:
        if not path.exists():
            raise UsageError(f"evidence path {path} does not exist")
    started = time.perf_counter()
    if rulesets is None:
        rulesets = load_rulesets(options)
    yara = load_yara(options.yara_dirs, options.builtin_yara)
    logger.info("rules loaded in %.1f s", time.perf_counter() - started)
    case = Case.create(case_dir, evidence)
    with EventStore(case.store_path) as store:
        store.reset()
        mark = time.perf_counter()
        summary, tasks = _read(evidence, store, case, options, progress)
        logger.info("read %d events from %d files in %.1f s", summary.events, summary.files, time.perf_counter() - mark)
        scanned = _yara(store, yara, tasks, options, progress)  # first: detectors may use yara_matches
        mark = time.perf_counter()
        outcomes, findings = _detect(store, rulesets, progress)
        builtin, detected = _detect_builtin(store)
        findings = sort_findings([*findings, *detected, *scanned])
        logger.info("matched in %.1f s: %d findings", time.perf_counter() - mark, len(findings))
        report = with_excerpts(build_report(store, outcomes, findings, options.clock(),
                                            [builtin, *(ruleset.entry() for ruleset in yara.rulesets)],
                                            options.victim_country, options.as_of), store)
    report.save(case.report_path)
    write_outputs(report, case.report_path.parent)
    case.clean_scratch()
    return HuntResult(report, summary, case)


def _read(evidence: Sequence[Path], store: EventStore, case: Case, options: HuntOptions,
          progress: Progress) -> tuple[IngestSummary, list[Task]]:
    tasks = plan(evidence, store, options.limits)
    progress.start("read", sum(t.size for t in tasks))

    def done(task: Task) -> None:
        progress.advance("read", task.size)

    summary = ingest(tasks, store, case.scratch, options.limits, options.workers, done)
    progress.end("read")
    return summary, tasks


def _yara(store: EventStore, yara: YaraRules, tasks: list[Task], options: HuntOptions,
          progress: Progress) -> list[Finding]:
    """Scan every input that could be opened with the YARA rules; their findings."""
    inputs = list({t.evidence_id: t.evidence for t in tasks}.items())
    progress.start("yara", len(inputs))
    mark = time.perf_counter()
    scanned = scan_evidence(store, yara, inputs, options.limits, options.yara_limits,
                            lambda evidence: progress.advance("yara"))
    progress.end("yara")
    logger.info("YARA scanned %d files in %.1f s: %d matches", scanned.files, time.perf_counter() - mark,
                scanned.matches)
    return yara_findings(store, yara)


def _detect(
    store: EventStore, rulesets: list[RuleSet], progress: Progress
) -> tuple[list[RulesetOutcome], list[Finding]]:
    rules, duplicates = runnable_rules(rulesets)
    engine = SigmaEngine(store, rules)
    progress.start("match", len(store.partitions))  # one step per (channel, event id) group
    result = engine.run(lambda group, count: progress.advance("match"))
    progress.end("match")
    infos = [r.info for rs in rulesets for r in (*rs.rules, *rs.correlations)]
    correlations = [(rs.source, c) for rs in rulesets for c in rs.correlations]
    _, hidden, correlation_errors = run_correlations(store, correlations, infos)
    problems = [*duplicates, *result.errors, *correlation_errors]
    outcomes = [RulesetOutcome(rs, [p for src, p in problems if src == rs.source]) for rs in rulesets]
    findings = build_findings(store, {info.uid: info for info in infos}, hidden)
    return outcomes, findings


def _detect_builtin(store: EventStore) -> tuple[RulesetEntry, list[Finding]]:
    """Run the built-in Exchange detectors; their ruleset entry and findings."""
    outcome = run_detectors(store)
    entry = RulesetEntry(
        kind="builtin",
        source=BUILTIN_DETECTORS,
        rules=len(outcome.rules),
        errors=len(outcome.errors),
        problems=[RuleProblemEntry(path=name, reason=reason) for name, reason in outcome.errors],
    )
    return entry, build_findings(store, outcome.rules, detector="exchange", table="detector_matches")
