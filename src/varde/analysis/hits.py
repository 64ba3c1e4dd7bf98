"""The matched events behind the findings, with what the analysis links them by.

Built-in detector hits carry attributes (``detector_matches.attrs``: source address, user agent,
request id, web shell, mailbox ...); Sigma hits carry none, so the client address is read off the
event's own fields where the log has one (IIS ``c-ip``, HttpProxy ``ClientIpAddress``, Security
``IpAddress``). A request that reached the Exchange Back End site (IIS port 444) came from the
front end, and a client address equal to the server's own (``s-ip``) or a loopback address is the
server itself: such hits keep the address as ``relay`` but have no source, so they never make the
server an intruder. Every hit knows the finding it belongs to (findings are per rule and host), so
intruders, the timeline and mailbox impact all point back to findings and their evidence.

A hit's host is the canonical one of the case's host identity (:mod:`varde.analysis.hosts`), and
the findings are regrouped to match: one finding per rule and canonical host.
"""

from __future__ import annotations

import dataclasses
import json
import uuid
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import duckdb

from varde.analysis.hosts import HostIdentity, event_columns, named
from varde.detect.sigma.findings import MAX_EVIDENCE, sort_findings
from varde.events.store import EventStore, quote
from varde.report.document import EvidenceRef, Finding

#: Event fields that hold the client address, for hits whose rule gives no attributes (Sigma).
_ADDRESS_FIELDS = ("c-ip", "ClientIpAddress", "ClientIP", "IpAddress", "SourceAddress")
_AGENT_FIELDS = ("cs(User-Agent)", "UserAgent")
#: Every own field the hits read: addresses, agents, and the server's own address and port.
_FIELDS = (*_ADDRESS_FIELDS, *_AGENT_FIELDS, "s-ip", "s-port")
#: The IIS site of Exchange's back end: its clients are the front-end servers.
BACKEND_PORT = "444"
_LOOPBACK = frozenset({"127.0.0.1", "::1", "localhost"})
#: The attributes of a hit that has none (shared: hits never change their attributes).
_NO_ATTRS: dict[str, str] = {}
#: Ids of findings regrouped by host: uuid5 of (detector, rule, canonical host) in this namespace.
_NAMESPACE = uuid.UUID("3c5d8e1a-7b2f-4e60-8d19-7661726465f3")


@dataclass(frozen=True, slots=True)
class Hit:
    """One matched event of one finding. A case holds one per match (tens of thousands on a busy
    server), so it is slotted and shares its repeated texts (file, host) and its empty attributes."""

    finding: Finding
    key: int
    ts: datetime | None
    host: str | None
    path: str  # evidence file
    locator: str
    attrs: dict[str, str] = field(default_factory=dict)
    logged_host: str | None = None  # the host as the event names it, when ``host`` is another name

    @property
    def source_ip(self) -> str | None:
        return self.attrs.get("source_ip")

    @property
    def user_agent(self) -> str | None:
        return self.attrs.get("user_agent")


def utc(moment: datetime | None) -> datetime | None:
    """A time from the store (naive UTC) as an aware UTC time."""
    return moment.replace(tzinfo=UTC) if moment is not None and moment.tzinfo is None else moment


def account_key(name: str) -> str:
    """The account name alone, lower case: ``CORP\\Alice`` and ``alice@corp.example`` give ``alice``."""
    return name.rsplit("\\", 1)[-1].split("@", 1)[0].strip().lower()


def load_hits(store: EventStore, findings: Sequence[Finding],
              identity: HostIdentity) -> tuple[list[Finding], list[Hit]]:
    """Every matched event of ``findings``, ordered by time then event key (deterministic), with
    its canonical host (``identity``); and the findings regrouped by canonical host."""
    by_rule = {(f.detector, f.rule_id, f.host): f for f in findings}
    events = event_columns(store, _FIELDS)
    if events is None:
        return regroup(findings, [])
    address = "coalesce(" + ", ".join(f"nullif(e.{quote(n)}, '-')" for n in _ADDRESS_FIELDS) + ")"
    agent = "coalesce(" + ", ".join(f"nullif(e.{quote(n)}, '-')" for n in _AGENT_FIELDS) + ")"
    sigma = "m.detector = 'sigma'"
    joined = f"""
        WITH m AS (SELECT 'exchange' AS detector, rule_uid, key, attrs::VARCHAR AS attrs FROM detector_matches
            UNION ALL SELECT DISTINCT 'sigma', rule_uid, key, NULL FROM sigma_matches)
        SELECT m.detector, m.rule_uid, m.key, e.ts, e.host, v.path, e.locator, m.attrs,
            CASE WHEN {sigma} THEN {address} END, CASE WHEN {sigma} THEN replace({agent}, '+', ' ') END,
            e."s-ip", e."s-port"
        FROM m JOIN {events} e USING (key) JOIN evidence v ON v.id = e.evidence"""  # one pass for both kinds
    out = []
    shared: dict[str, str] = {}  # one object per distinct file and host name
    with store.staged(joined) as table:  # sorted once joined (see EventStore.staged)
        for row in _rows(store.con.execute(f"SELECT * FROM {table} ORDER BY 4 NULLS LAST, 3, 2")):
            hit = _hit(row, by_rule, identity, shared)
            if hit is not None:
                out.append(hit)
    return regroup(findings, out)


def _hit(row: tuple[Any, ...], by_rule: dict[tuple[str, str, str | None], Finding], identity: HostIdentity,
         shared: dict[str, str]) -> Hit | None:
    """The hit of one joined row; None for a rule without a finding (a correlation's hidden base,
    or a dropped one). ``shared`` holds one object per distinct file and host name."""
    detector, uid, key, ts, host, path, locator, attrs, address, agent, server, port = row
    finding = by_rule.get((detector, uid, host))
    if finding is None:
        return None
    given = json.loads(attrs) if attrs else {"source_ip": address, "user_agent": agent}
    values = {k: str(v) for k, v in given.items() if v not in (None, "")} or _NO_ATTRS
    if relayed(values.get("source_ip"), server, port):
        values = {**values, "relay": values["source_ip"]}
        del values["source_ip"]
    canonical = identity.of(host, path)
    logged = host if named(host) and host != canonical else None
    canonical = shared.setdefault(canonical, canonical) if canonical else canonical
    return Hit(finding, int(key), utc(ts), canonical, shared.setdefault(path, path), locator, values, logged)


def _rows(result: duckdb.DuckDBPyConnection, size: int = 8192) -> Iterator[tuple[Any, ...]]:
    """The rows of a query result, fetched a block at a time (never all at once)."""
    while block := result.fetchmany(size):
        yield from block


def relayed(source: str | None, server: str | None, port: str | None) -> bool:
    """The logged client is the server itself or its front end, not who sent the request."""
    return source is not None and (port == BACKEND_PORT or source == server or source.lower() in _LOOPBACK)


def regroup(findings: Sequence[Finding], hits: Sequence[Hit]) -> tuple[list[Finding], list[Hit]]:
    """Findings as one per rule and canonical host, and ``hits`` pointing at them.

    A finding all of whose hits are on its own host stays as it is (same id); the others (a host
    spelled two ways, events without a host attributed to their file's host) are merged or split
    into findings of the canonical host, with counts, times and evidence from their hits.
    """
    groups: dict[tuple[str, str, str | None], list[Hit]] = defaultdict(list)
    members: dict[tuple[str, str, str | None], set[str]] = defaultdict(set)
    moved: set[str] = set()
    for hit in hits:
        group = (hit.finding.detector, hit.finding.rule_id, hit.host)
        groups[group].append(hit)
        members[group].add(hit.finding.id)
        if hit.host != hit.finding.host:
            moved.add(hit.finding.id)
    changed = {g for g, ids in members.items() if len(ids) > 1 or ids & moved}
    if not changed:
        return list(findings), list(hits)
    by_id = {f.id: f for f in findings}
    made = {g: _merged([by_id[i] for i in sorted(members[g])], g[2], groups[g]) for g in sorted(
        changed, key=lambda g: (g[0], g[1], g[2] or ""))}
    gone = {i for g in changed for i in members[g]}
    kept = [f for f in findings if f.id not in gone]
    hits = [dataclasses.replace(h, finding=made[g]) if (g := (h.finding.detector, h.finding.rule_id, h.host))
            in made else h for h in hits]
    return sort_findings([*kept, *made.values()]), hits


def _merged(parts: Sequence[Finding], host: str | None, hits: Sequence[Hit]) -> Finding:
    """One finding of ``host`` from the findings ``parts`` of one rule and their ``hits`` (in order)."""
    first = {}
    for hit in hits:
        first.setdefault(hit.key, hit)
    times = [h.ts for h in first.values() if h.ts is not None]
    base = parts[0]
    return base.model_copy(update={
        "id": str(uuid.uuid5(_NAMESPACE, f"{base.detector}|{base.rule_id}|{host}")),
        "host": host,
        "count": len(first),
        "first_seen": min(times, default=None),
        "last_seen": max(times, default=None),
        "evidence": [EvidenceRef(path=h.path, locator=h.locator, host=h.logged_host)
                     for h in list(first.values())[:MAX_EVIDENCE]],
    })
