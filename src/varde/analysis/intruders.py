"""Intruders: attacker activity clustered by infrastructure and behaviour.

A source address joins an intruder only when it took part in exploitation or post-exploitation:
one of its hits belongs to a finding that shows success (``exploited`` true), or to a rule of
:data:`POST_EXPLOITATION` (a web shell used, a tunnel, loot downloaded, a sprayed password that
worked). Sources whose hits are all failed tries or probes are scanners: kept out, but counted.

Sources are linked into one intruder when they used the same web shell (one planted it, another
used it), or sent the same non-browser user agent within :data:`AGENT_WINDOW` of each other.
Browser-like agents are too common to link anyone. Hits without a source address (file writes,
cmdlets, process events) join the intruder that planted the web shell they name, else the
intruder last active on that host within :data:`ATTACH_WINDOW` before them. Intruders that share
nothing stay apart, so two groups on one server give two intruders.
"""

from __future__ import annotations

import re
import uuid
from bisect import bisect_right, insort
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from varde.analysis.hits import Hit
from varde.analysis.webshells import shell_names
from varde.report.document import Intruder as IntruderEntry
from varde.report.document import Scanners

#: Rules whose hits are post-exploitation by whoever sent them (not mere probes).
POST_EXPLOITATION = frozenset({
    "varde.exchange.webshell.use",
    "varde.exchange.webshell.tunnel",
    "varde.exchange.mailbox.download",
    "varde.exchange.auth.spray-success",
    "varde.exchange.owassrf.rps-client",
})
#: Rules whose hits show an intruder got in with a valid password (an intrusion, like an exploit).
CREDENTIAL_RULES = frozenset({"varde.exchange.auth.spray-success"})
AGENT_WINDOW = timedelta(hours=2)
ATTACH_WINDOW = timedelta(hours=6)
#: Scanner addresses listed in the report (all are counted).
MAX_SCANNERS = 100
_SERIOUS = ("medium", "high", "critical")
_NAMESPACE = uuid.UUID("6a0c1f8e-2f4b-4b43-9a57-7661726465f2")


def got_in(hit: Hit) -> bool:
    """The hit shows the intruder got in: successful exploitation, or a password that worked."""
    return hit.finding.exploited is True or hit.finding.rule_id in CREDENTIAL_RULES


def intrusive(hit: Hit) -> bool:
    """The hit shows exploitation or post-exploitation (not a probe or a failed try)."""
    return hit.finding.exploited is True or hit.finding.rule_id in POST_EXPLOITATION


def shell_key(path: str) -> str:
    """A web shell's file name in lower case: the same page as a URL path and as a file path."""
    return path.replace("\\", "/").rstrip("/").rsplit("/", 1)[-1].lower()


@dataclass
class Intruder:
    """One intruder as clustered: its sources, and every hit attributed to it."""

    id: str
    source_ips: list[str]
    hits: list[Hit] = field(default_factory=list)

    def first_exploitation(self) -> datetime | None:
        times = [h.ts for h in self.hits if got_in(h) and h.ts]
        return min(times, default=None)


@dataclass
class Clustering:
    """The intruders, which intruder each hit belongs to, and the sources left out as scanners."""

    intruders: list[Intruder]
    owner: dict[int, str]  # id(hit) -> intruder id
    scanners: list[str]
    scanner_findings: list[str]
    owner_alias: dict[str, str] = field(default_factory=dict)  # merged intruder id -> the one it joined

    def intruder_of(self, hit: Hit) -> str | None:
        return self.owner.get(id(hit))


class _Union:
    def __init__(self, items: Iterable[str]) -> None:
        self.parent = {i: i for i in items}

    def find(self, item: str) -> str:
        while self.parent[item] != item:
            self.parent[item] = self.parent[self.parent[item]]
            item = self.parent[item]
        return item

    def join(self, a: str, b: str) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


def cluster(hits: Sequence[Hit]) -> Clustering:
    """Cluster ``hits`` (ordered by time) into intruders."""
    members = sorted({h.source_ip for h in hits if h.source_ip and intrusive(h)})
    groups = _Union(members)
    _link_by_shell(hits, groups)
    _link_by_agent(hits, groups)
    by_root: dict[str, list[str]] = defaultdict(list)
    for ip in members:
        by_root[groups.find(ip)].append(ip)
    intruders = {root: Intruder(str(uuid.uuid5(_NAMESPACE, "|".join(ips))), ips) for root, ips in by_root.items()}
    owner: dict[int, str] = {}
    for hit in hits:
        if hit.source_ip in groups.parent:
            intruder = intruders[groups.find(hit.source_ip)]
            intruder.hits.append(hit)
            owner[id(hit)] = intruder.id
    found = list(intruders.values())
    _attach_sourceless(hits, found, owner)
    ordered = sorted(found, key=lambda i: (min(h.ts for h in i.hits if h.ts) if any(
        h.ts for h in i.hits) else datetime.max, i.id))
    scanners = sorted({h.source_ip for h in hits if h.source_ip and h.source_ip not in groups.parent})
    scanner_findings = sorted({h.finding.id for h in hits if h.source_ip in scanners})
    return Clustering(ordered, owner, scanners, scanner_findings)


def _link_by_shell(hits: Sequence[Hit], groups: _Union) -> None:
    users: dict[str, str] = {}
    for hit in hits:
        shell = hit.attrs.get("webshell")
        if shell and hit.source_ip in groups.parent:
            first = users.setdefault(shell_key(shell), hit.source_ip)
            groups.join(first, hit.source_ip)


def _link_by_agent(hits: Sequence[Hit], groups: _Union) -> None:
    last: dict[str, tuple[str, datetime]] = {}
    for hit in hits:
        agent, ip = hit.user_agent, hit.source_ip
        if not agent or ip not in groups.parent or hit.ts is None or agent.startswith("Mozilla/"):
            continue
        seen = last.get(agent)
        if seen and seen[0] != ip and hit.ts - seen[1] <= AGENT_WINDOW:
            groups.join(seen[0], ip)
        last[agent] = (ip, hit.ts)


def _attach_sourceless(hits: Sequence[Hit], intruders: list[Intruder], owner: dict[int, str]) -> None:
    """Hits without a source address join the intruder of their web shell, else the one active on
    that host within :data:`ATTACH_WINDOW` before them. Exploitation that no one claims starts an
    intruder known only by what it did on the host (when there are no web logs, say); then the
    other serious host events join as well."""
    by_id = {i.id: i for i in intruders}
    sourceless = [h for h in hits if not h.source_ip and id(h) not in owner]
    for wanted in (True, False):
        shells = {shell_key(h.attrs["webshell"]): owner[id(h)] for h in hits if id(h) in owner and "webshell" in h.attrs}
        active = _activity(hits, owner)
        for hit in sourceless:
            if id(hit) in owner or intrusive(hit) != wanted or (not wanted and hit.finding.severity not in _SERIOUS):
                continue
            shell = hit.attrs.get("webshell")
            target = shells.get(shell_key(shell)) if shell else None
            target = target or _active_before(active, hit.host, hit.ts)
            if target is None and wanted:
                new = Intruder(str(uuid.uuid5(_NAMESPACE, f"host|{hit.host}|{hit.key}")), [])
                intruders.append(new)
                by_id[new.id] = new
                target = new.id
            if target is not None:
                owner[id(hit)] = target
                by_id[target].hits.append(hit)
                if shell:
                    shells.setdefault(shell_key(shell), target)
                if hit.ts and wanted:
                    insort(active.setdefault(host_key(hit.host), []), (hit.ts, target))


def host_key(host: str | None) -> str:
    """Logs name one server differently (``EXCH01``, ``exch01.corp.example``; IIS logs none):
    the short name in lower case, ``""`` when the log has none."""
    return (host or "").split(".", 1)[0].lower()


def _activity(hits: Sequence[Hit], owner: dict[int, str]) -> dict[str, list[tuple[datetime, str]]]:
    """Per host (:func:`host_key`), the times at which each intruder acted, in order."""
    out: dict[str, list[tuple[datetime, str]]] = defaultdict(list)
    for hit in hits:
        if id(hit) in owner and hit.ts:
            out[host_key(hit.host)].append((hit.ts, owner[id(hit)]))
    return {host: sorted(times) for host, times in out.items()}


def _active_before(active: dict[str, list[tuple[datetime, str]]], host: str | None,
                   ts: datetime | None) -> str | None:
    """The intruder with the latest action on ``host`` (or in a log that names no host) at or
    before ``ts``, if within the window."""
    if ts is None:
        return None
    best: tuple[datetime, str] | None = None
    for times in (active.get(host_key(host), []), active.get("", [])):
        at = bisect_right(times, (ts, "\uffff"))
        if at and ts - times[at - 1][0] <= ATTACH_WINDOW and (best is None or times[at - 1] > best):
            best = times[at - 1]
    return best[1] if best else None

def entries(clustering: Clustering, web: Mapping[str, Any] | None = None) -> list[IntruderEntry]:
    """The intruders as the report lists them: ``Intruder 1`` is the first to act. ``web``: each
    source's requests (``footprint.Activity``: first, last, agents), which widen times and agents."""
    out = []
    web = web or {}
    for number, intruder in enumerate(clustering.intruders, 1):
        times = [h.ts for h in intruder.hits if h.ts]
        agents = {h.user_agent for h in intruder.hits if h.user_agent and h.source_ip}
        for ip in intruder.source_ips:
            if ip in web:
                times += [web[ip].first, web[ip].last]
                agents |= web[ip].agents
        agents = _one_spelling(agents)
        shells = shell_names(h.attrs["webshell"] for h in intruder.hits if h.attrs.get("webshell"))
        out.append(IntruderEntry(
            id=intruder.id,
            name=f"Intruder {number}",
            source_ips=intruder.source_ips,
            user_agents=sorted(agents),
            first_seen=min(times, default=None),
            last_seen=max(times, default=None),
            first_exploitation=intruder.first_exploitation(),
            finding_ids=sorted({h.finding.id for h in intruder.hits}),
            webshells=shells,
            hosts=sorted({h.host for h in intruder.hits if h.host}),
            users=sorted({h.attrs["user"] for h in intruder.hits if h.attrs.get("user")}),
        ))
    return out


def scanners(clustering: Clustering) -> Scanners:
    """The sources kept out (probes and failed tries only), counted."""
    return Scanners(count=len(clustering.scanners), source_ips=clustering.scanners[:MAX_SCANNERS],
                    finding_ids=clustering.scanner_findings)


def _one_spelling(agents: Iterable[str]) -> set[str]:
    """User agents once each: CSV logs write an agent's commas as spaces (``KHTML  like Gecko``),
    IIS keeps them; the spelling with the commas is kept."""
    best: dict[str, str] = {}
    for agent in sorted(agents):
        key = re.sub(r"[,\s]+", " ", agent).strip()
        if key not in best or agent.count(",") > best[key].count(","):
            best[key] = agent
    return set(best.values())
