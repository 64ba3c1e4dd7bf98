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

import ipaddress
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from varde.events.store import EventStore
from varde.report.document import Finding

_NO_HOST = ("", "-")


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
    events = event_columns(store, ())
    rows = store.query(f"SELECT v.path, e.host, count(*) FROM {events} e JOIN evidence v ON v.id = e.evidence "
                       "GROUP BY ALL") if events else []
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


def event_columns(store: EventStore, fields: Sequence[str]) -> str | None:
    """SQL: every event's common columns and its own ``fields`` as plain columns (NULL where a log
    has no such field); None without events. Reading a few columns of each partition is much
    cheaper than the ``events`` view, which builds the JSON of every event's fields."""
    channels = sorted({channel for channel, _ in store.partitions}, key=lambda c: c or "")
    selects = [sql for sql in (store.select(channel, fields) for channel in channels) if sql]
    return "(" + " UNION ALL ".join(f"SELECT * FROM {sql}" for sql in selects) + ")" if selects else None


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


def place(finding: Finding, identity: HostIdentity) -> Finding:
    """A finding not built from hits (YARA's) with its host named canonically, or, without one,
    the host of its evidence files when they all have the same."""
    if named(finding.host):
        host = identity.of(finding.host)
    else:
        hosts = {identity.files.get(ref.path) for ref in finding.evidence}
        host = hosts.pop() if len(hosts) == 1 else None
    return finding if host == finding.host else finding.model_copy(update={"host": host})
