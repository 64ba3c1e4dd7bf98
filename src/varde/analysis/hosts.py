"""One name per server: the case's host identity.

Logs name one server differently: the EVTX ``Computer`` and HttpProxy ``ServerHostName`` give the
short name (``EXCH01``) or the FQDN (``exch01.corp.example``), IIS W3C lines name no host at all
unless ``s-computername`` is logged. Findings are per rule and host, so without one identity a
server's findings, timeline steps, intruder hosts and web shells split per spelling. The rule
(documented in ``docs/analysis.md``):

* names are compared case-insensitively;
* a short name joins an FQDN when it is the first label of exactly one FQDN in the case (two
  FQDNs with that first label: ambiguous, the short name stays a host of its own); FQDNs never
  join each other, and an IP address is a name of its own;
* the name shown is the FQDN when one was joined, spelled as the logs spell it most often;
* an event without a host belongs to the host of its evidence file when that is unambiguous: the
  file's other events, and the folders of its path (a per-server folder such as ``EXCH01/``),
  name exactly one host between them. Only hosts some log names count: no host is invented.

The store is left as read (the raw host stays in the events); the analysis and the report show
the canonical name, and an evidence reference whose event names the host otherwise keeps that
spelling (``EvidenceRef.host``).
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from varde.detect.sigma.findings import MAX_EVIDENCE, sort_findings
from varde.events.store import EventStore
from varde.report.document import EvidenceRef, Finding

if TYPE_CHECKING:
    from varde.analysis.hits import Hit

_NO_HOST = ("", "-")
#: Ids of findings regrouped by host: uuid5 of (detector, rule, canonical host) in this namespace.
_NAMESPACE = uuid.UUID("3c5d8e1a-7b2f-4e60-8d19-7661726465f3")


def named(host: str | None) -> bool:
    """The log names a host (``-`` is W3C's empty value)."""
    return host is not None and host.strip() not in _NO_HOST


@dataclass(frozen=True)
class HostIdentity:
    """Raw host names (lower case) and evidence files (by path) mapped to the canonical host."""

    names: Mapping[str, str] = field(default_factory=dict)
    files: Mapping[str, str] = field(default_factory=dict)

    def of(self, raw: str | None, path: str | None = None) -> str | None:
        """The canonical host of an event that names ``raw`` (or none) in the file at ``path``."""
        if named(raw):
            return self.names.get(raw.strip().lower(), raw)  # type: ignore[union-attr]
        return self.files.get(path) if path is not None else None


def identify(store: EventStore) -> HostIdentity:
    """The host identity of the case in ``store``."""
    rows = store.query("SELECT v.path, e.host, count(*) FROM events e JOIN evidence v ON v.id = e.evidence "
                       "GROUP BY ALL")
    paths = [path for (path,) in store.query("SELECT path FROM evidence ORDER BY id")]
    spellings: Counter[str] = Counter()
    for _, host, count in rows:
        if named(host):
            spellings[host.strip()] += int(count)
    names = canonical_names(spellings)
    logged: dict[str, set[str]] = defaultdict(set)
    for path, host, _ in rows:
        if named(host):
            logged[path].add(names[host.strip().lower()])
    return HostIdentity(names, file_hosts(paths, logged, folder_names(names)))


def canonical_names(spellings: Mapping[str, int]) -> dict[str, str]:
    """Each name (lower case) -> the canonical host, from the names logged and how often."""
    lower: dict[str, Counter[str]] = defaultdict(Counter)
    for text, count in spellings.items():
        lower[text.lower()][text] += count
    fqdns: dict[str, list[str]] = defaultdict(list)
    for name in lower:
        if "." in name and not _address(name):
            fqdns[name.split(".", 1)[0]].append(name)
    preferred = {name: _joined(name, fqdns) for name in lower}
    spelled = {name: min(texts.items(), key=lambda kv: (-kv[1], kv[0]))[0] for name, texts in lower.items()}
    return {name: spelled[preferred[name]] for name in lower}


def _joined(name: str, fqdns: Mapping[str, list[str]]) -> str:
    """The FQDN a short name belongs to, when exactly one has it as first label; else the name."""
    if "." in name or _address(name):
        return name
    matches = fqdns.get(name, [])
    return matches[0] if len(matches) == 1 else name


def _address(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def folder_names(names: Mapping[str, str]) -> dict[str, str]:
    """Folder name (lower case) -> host, for per-server folders: every logged name, and the short
    name of each canonical FQDN whose first label no other host shares."""
    out = dict(names)
    firsts: dict[str, set[str]] = defaultdict(set)
    for host in set(names.values()):
        if "." in host and not _address(host):
            firsts[host.split(".", 1)[0].lower()].add(host)
    for short, hosts in firsts.items():
        if len(hosts) == 1:
            out.setdefault(short, next(iter(hosts)))
    return out


def file_hosts(paths: Iterable[str], logged: Mapping[str, set[str]], folders: Mapping[str, str]) -> dict[str, str]:
    """Evidence path -> its host, where its events' hosts and its folders name exactly one."""
    out = {}
    for path in paths:
        parts = re.split(r"[\\/!]", path)[:-1]
        hosts = set(logged.get(path, ())) | {folders[p.lower()] for p in parts if p.lower() in folders}
        if len(hosts) == 1:
            out[path] = hosts.pop()
    return out


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


def place(finding: Finding, identity: HostIdentity) -> Finding:
    """A finding not built from hits (YARA's) with its host named canonically, or, without one,
    the host of its evidence files when they all have the same."""
    if named(finding.host):
        host = identity.of(finding.host)
    else:
        hosts = {identity.files.get(ref.path) for ref in finding.evidence}
        host = hosts.pop() if len(hosts) == 1 else None
    return finding if host == finding.host else finding.model_copy(update={"host": host})
