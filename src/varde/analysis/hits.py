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

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from varde.analysis.hosts import HostIdentity, regroup
from varde.events.store import EventStore
from varde.report.document import Finding

#: Event fields that hold the client address, for hits whose rule gives no attributes (Sigma).
_ADDRESS_FIELDS = ("c-ip", "ClientIpAddress", "ClientIP", "IpAddress", "SourceAddress")
_AGENT_FIELDS = ("cs(User-Agent)", "UserAgent")
#: The IIS site of Exchange's back end: its clients are the front-end servers.
BACKEND_PORT = "444"
_LOOPBACK = frozenset({"127.0.0.1", "::1", "localhost"})


@dataclass(frozen=True)
class Hit:
    """One matched event of one finding."""

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
              identity: HostIdentity | None = None) -> tuple[list[Finding], list[Hit]]:
    """Every matched event of ``findings``, ordered by time then event key (deterministic), with
    its canonical host (``identity``); and the findings regrouped by canonical host."""
    identity = identity or HostIdentity()
    by_rule = {(f.detector, f.rule_id, f.host): f for f in findings}
    address = "coalesce(" + ", ".join(f"nullif(e.fields->>{_json_path(n)}, '-')" for n in _ADDRESS_FIELDS) + ")"
    agent = "coalesce(" + ", ".join(f"nullif(e.fields->>{_json_path(n)}, '-')" for n in _AGENT_FIELDS) + ")"
    rows = store.query(f"""
        SELECT 'exchange' AS detector, m.rule_uid, m.key, e.ts, e.host, v.path, e.locator, m.attrs::VARCHAR,
            e.fields->>'$."s-ip"', e.fields->>'$."s-port"'
        FROM detector_matches m JOIN events e USING (key) JOIN evidence v ON v.id = e.evidence
        UNION ALL
        SELECT 'sigma', m.rule_uid, m.key, e.ts, e.host, v.path, e.locator,
            json_object('source_ip', {address}, 'user_agent', replace({agent}, '+', ' '))::VARCHAR,
            e.fields->>'$."s-ip"', e.fields->>'$."s-port"'
        FROM (SELECT DISTINCT rule_uid, key FROM sigma_matches) m JOIN events e USING (key)
        JOIN evidence v ON v.id = e.evidence
        ORDER BY 4 NULLS LAST, 3, 2""")
    out = []
    for detector, uid, key, ts, host, path, locator, attrs, server, port in rows:
        finding = by_rule.get((detector, uid, host))
        if finding is None:  # a hidden rule (a correlation's base) or one whose finding was dropped
            continue
        values = {k: str(v) for k, v in (json.loads(attrs) if attrs else {}).items() if v not in (None, "")}
        if relayed(values.get("source_ip"), server, port):
            values["relay"] = values.pop("source_ip")
        canonical = identity.of(host, path)
        logged = host if host is not None and host != canonical else None
        out.append(Hit(finding, int(key), utc(ts), canonical, path, locator, values, logged))
    return regroup(findings, out)


def _json_path(name: str) -> str:
    return "'$.\"" + name.replace("'", "''") + "\"'"


def relayed(source: str | None, server: str | None, port: str | None) -> bool:
    """The logged client is the server itself or its front end, not who sent the request."""
    return source is not None and (port == BACKEND_PORT or source == server or source.lower() in _LOOPBACK)
