"""Turn YARA matches into findings.

* A file rule's match is one finding per rule and file (each file is its own artefact: a web
  shell, a dump): the title names the file, the evidence lists the offsets of the first
  occurrences (``offset 1234 ($eval)``), and the time is the file's modification time from the
  inventory (``files.modified``; mind ``files.time_source``).
* A log rule's matches are one finding per rule over all files, like a Sigma rule's: the
  evidence lists the first lines (``line 12``), and times and host come from the events a log
  reader made of those lines, when one did.

A finding keeps the rule's author and references (the DRL 1.1 asks it of signature-base rules).
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from datetime import UTC, datetime

from varde.detect.sigma.findings import MAX_EVIDENCE, sort_findings
from varde.detect.yara import YaraRule, YaraRules
from varde.events.store import EventStore
from varde.report.document import EvidenceRef, Finding

_NAMESPACE = uuid.UUID("4b1e3c0e-96a8-5b57-9a63-7661726465f2")


def _utc(moment: datetime | None) -> datetime | None:
    return moment.replace(tzinfo=UTC) if moment is not None else None


#: One row per finding: rule, evidence id and path (file rules), file name, count, time span, host.
_FILE_ROWS = (
    "SELECT m.rule_uid, m.evidence, f.path, f.name, 1, f.modified, f.modified, NULL FROM yara_matches m "
    "JOIN files f ON f.evidence = m.evidence WHERE m.scope = 'file' GROUP BY ALL ORDER BY 1, 2"
)
_LINE_ROWS = (
    "SELECT m.rule_uid, NULL, NULL, NULL, count(DISTINCT (m.evidence, m.line)), min(e.ts), max(e.ts), min(e.host) "
    "FROM yara_matches m LEFT JOIN ("
    " SELECT evidence, locator, ts, host FROM events"
    " WHERE evidence IN (SELECT evidence FROM yara_matches WHERE scope = 'line')"
    ") e ON e.evidence = m.evidence AND e.locator = 'line ' || m.line "
    "WHERE m.scope = 'line' GROUP BY 1 ORDER BY 1"
)


def yara_findings(store: EventStore, rules: YaraRules) -> list[Finding]:
    """Findings for every rule with matches in ``yara_matches``."""
    findings = []
    for scope, query in (("file", _FILE_ROWS), ("line", _LINE_ROWS)):
        refs = _refs(store, scope)
        for uid, evidence, path, name, count, first, last, host in store.query(query):
            rule = rules.rules.get(uid)
            if rule is None:
                continue
            key = (uid, evidence) if scope == "file" else (uid,)
            findings.append(_finding(
                rule, f"{uid}|{path}" if path else uid, f"{rule.title}: {name}" if name else rule.title,
                int(count), _utc(first), _utc(last), host, refs[key],
            ))
    return sort_findings(findings)


def _refs(store: EventStore, scope: str) -> dict[tuple, list[EvidenceRef]]:
    """The first MAX_EVIDENCE evidence references per rule (and file, for file rules)."""
    group = "m.rule_uid, m.evidence" if scope == "file" else "m.rule_uid"
    rows = store.query(
        f"SELECT rule_uid, evidence, path, \"offset\", line, pattern FROM ("
        f" SELECT m.*, f.path, row_number() OVER (PARTITION BY {group} ORDER BY m.evidence, m.line, m.\"offset\","
        f"  m.pattern) AS n FROM yara_matches m JOIN files f ON f.evidence = m.evidence WHERE m.scope = ?"
        f") WHERE n <= {MAX_EVIDENCE} ORDER BY rule_uid, evidence, line, \"offset\", pattern",
        [scope],
    )
    out: dict[tuple, list[EvidenceRef]] = defaultdict(list)
    for uid, evidence, path, offset, line, pattern in rows:
        key = (uid, evidence) if scope == "file" else (uid,)
        locator = f"line {line}" if scope == "line" else f"offset {offset}" + (f" ({pattern})" if pattern else "")
        out[key].append(EvidenceRef(path=path, locator=locator))
    return out


def _finding(rule: YaraRule, basis: str, title: str, count: int, first: datetime | None,
             last: datetime | None, host: str | None, evidence: list[EvidenceRef]) -> Finding:
    return Finding(
        id=str(uuid.uuid5(_NAMESPACE, f"yara|{basis}")),
        detector="yara",
        rule_id=rule.uid,
        title=title,
        severity=rule.severity,
        first_seen=first,
        last_seen=last,
        host=host,
        techniques=list(rule.techniques),
        count=count,
        evidence=evidence,
        author=rule.author,
        rule_path=rule.path,
        references=list(rule.references),
        description=rule.description,
    )
