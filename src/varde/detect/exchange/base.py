"""What a built-in detector is: rules with words and ATT&CK ids, and a query over the case store.

A built-in detector is one module under ``detect/exchange/`` that knows one family of Exchange
exploitation or post-exploitation. It declares its rules (what a finding will say: title,
severity, techniques, the CVE it is evidence of and whether a match shows success) and yields
:class:`Hit` objects: the event that matched and the attributes read off it (source address,
user agent, request id, mailbox, web shell path ...). The hits go to the ``detector_matches``
table; findings are built from it exactly like Sigma findings, and the analysis links findings
into intruders through the attributes.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import pyarrow as pa

from varde.detect.sigma.rules import RuleInfo
from varde.events.store import EventStore

AUTHOR = "varde"

#: Attribute names a hit may carry (documented in docs/schema.md, detector_matches).
ATTRIBUTES = ("source_ip", "user_agent", "user", "request_id", "url", "mailbox", "path", "webshell", "step", "status")


@dataclass(frozen=True)
class DetectorRule:
    """One kind of finding a detector reports."""

    uid: str  # "varde.exchange.<family>.<what>", stable: findings and tests refer to it
    title: str
    level: str
    techniques: tuple[str, ...]
    description: str
    cves: tuple[str, ...] = ()
    exploited: bool | None = None  # a match shows: True success, False a failed try, None unknown
    references: tuple[str, ...] = ()

    def info(self, module: str) -> RuleInfo:
        """The rule as findings describe it (``module``: where the logic lives)."""
        return RuleInfo(
            uid=self.uid,
            title=self.title,
            path=module,
            level=self.level,
            author=AUTHOR,
            description=self.description,
            references=self.references,
            techniques=self.techniques,
            cves=self.cves,
            exploited=self.exploited,
        )


@dataclass(frozen=True)
class Hit:
    """One event a rule matched, with what the detector read off it."""

    rule: DetectorRule
    key: int
    attrs: dict[str, str] = field(default_factory=dict)


class Detector(Protocol):
    """A family of built-in detections over the case store."""

    name: str
    rules: tuple[DetectorRule, ...]

    def run(self, store: EventStore) -> Iterator[Hit]: ...


def hits(store: EventStore, rule: DetectorRule, sql: str, params: Sequence[object] = ()) -> Iterator[Hit]:
    """Hits of ``rule`` from ``sql``, whose first column is the event key and whose other
    columns are attributes named by their column names (NULLs dropped)."""
    cursor = store.con.execute(sql, list(params))
    names = [d[0] for d in cursor.description][1:]
    unknown = set(names) - set(ATTRIBUTES)
    if unknown:
        raise ValueError(f"{rule.uid}: unknown attributes {sorted(unknown)}")
    for key, *values in cursor.fetchall():
        yield Hit(rule, int(key), attributes(**dict(zip(names, values, strict=True))))


def attributes(**values: object) -> dict[str, str]:
    """Attributes as text, without the empty ones (logs write ``-`` for nothing)."""
    return {k: str(v) for k, v in values.items() if v not in (None, "", "-")}


def save_hits(store: EventStore, found: Iterable[Hit]) -> set[str]:
    """Write hits to ``detector_matches``; the uids of the rules that matched."""
    rows, seen = [], set()
    for hit in found:  # a rule may reach one event by two paths (two logs, two forms): keep the first
        if (hit.rule.uid, hit.key) not in seen:
            seen.add((hit.rule.uid, hit.key))
            rows.append((hit.rule.uid, hit.key, json.dumps(hit.attrs, sort_keys=True)))
    if not rows:
        return set()
    uids, keys, attrs = zip(*rows, strict=True)
    table = pa.table({"rule_uid": list(uids), "key": pa.array(keys, pa.int64()), "attrs": list(attrs)})
    store.con.register("_hits", table)
    try:
        store.con.execute("INSERT INTO detector_matches SELECT rule_uid, key, attrs::JSON FROM _hits")
    finally:
        store.con.unregister("_hits")
    return set(uids)


def status_ok(column: str) -> str:
    """SQL: the HTTP status in ``column`` is a success or redirect (below 400)."""
    return f"(TRY_CAST({column} AS INTEGER) BETWEEN 100 AND 399)"
