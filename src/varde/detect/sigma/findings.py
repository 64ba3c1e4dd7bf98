"""Turn rule matches into findings: one per rule and host, with evidence locators.

Sigma matches (``sigma_matches``) and built-in detector matches (``detector_matches``) become
findings the same way. A finding keeps what the Detection Rule License asks of anyone who emits alerts from SigmaHQ
rules: the rule's author, its id and the file it came from.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime

from varde.detect.sigma.rules import RuleInfo
from varde.events.store import EventStore
from varde.report.document import EvidenceRef, Finding

#: Evidence locators listed per finding (the count is always complete; the store has them all).
MAX_EVIDENCE = 50

_NAMESPACE = uuid.UUID("0f2b8a52-5a0e-4d6e-9d43-7661726465f1")


def _utc(moment: datetime | None) -> datetime | None:
    return moment.replace(tzinfo=UTC) if moment is not None else None


def build_findings(
    store: EventStore,
    rules: Mapping[str, RuleInfo],
    hidden: Iterable[str] = (),
    detector: str = "sigma",
    table: str = "sigma_matches",
) -> list[Finding]:
    """Findings for every rule uid in ``rules`` with matches in ``table``, except ``hidden`` ones."""
    hidden = set(hidden)
    joined = (f"SELECT m.rule_uid, e.host, e.ts, e.key, e.evidence, e.locator FROM (SELECT DISTINCT rule_uid, key "
              f"FROM {table}) m JOIN events e USING (key)")
    with store.staged(joined) as matched:  # joined once, then counted and ranked (see EventStore.staged)
        summary = store.query(
            f"SELECT rule_uid, host, count(*), min(ts), max(ts) FROM {matched} GROUP BY 1, 2 ORDER BY 1, 2 NULLS FIRST"
        )
        refs = store.query(
            "SELECT rule_uid, host, path, locator FROM ("
            " SELECT m.rule_uid, m.host, v.path, m.locator, row_number() OVER "
            "  (PARTITION BY m.rule_uid, m.host ORDER BY m.ts NULLS LAST, m.key) AS n "
            f" FROM {matched} m JOIN evidence v ON v.id = m.evidence"
            f") WHERE n <= {MAX_EVIDENCE} ORDER BY rule_uid, host NULLS FIRST, n"
        )
    evidence: dict[tuple[str, str | None], list[EvidenceRef]] = defaultdict(list)
    for uid, host, path, locator in refs:
        evidence[(uid, host)].append(EvidenceRef(path=path, locator=locator))
    findings = []
    for uid, host, count, first, last in summary:
        rule = rules.get(uid)
        if rule is None or uid in hidden:
            continue
        findings.append(
            Finding(
                id=str(uuid.uuid5(_NAMESPACE, f"{detector}|{uid}|{host}")),
                detector=detector,
                rule_id=uid,
                title=rule.title,
                severity=rule.level,  # type: ignore[arg-type]
                first_seen=_utc(first),
                last_seen=_utc(last),
                host=host,
                techniques=list(rule.techniques),
                count=int(count),
                evidence=evidence[(uid, host)],
                author=rule.author,
                rule_path=rule.path or None,
                references=list(rule.references),
                description=rule.description,
                cves=list(rule.cves),
                exploited=rule.exploited,
            )
        )
    return sort_findings(findings)


def sort_findings(findings: list[Finding]) -> list[Finding]:
    """Most severe first, then earliest, then by title and id (a stable order)."""
    rank = {"critical": 0, "high": 1, "medium": 2, "low": 3, "informational": 4}
    far = datetime.max.replace(tzinfo=UTC)
    return sorted(findings, key=lambda f: (rank[f.severity], f.first_seen or far, f.title, f.id))
