"""Web shells the evidence points to: the page requested, written or exported to, and the files
the YARA web-shell rules matched, one entry per shell.

Sources: built-in detector hits with a ``webshell`` attribute name one (a URL path such as
``/owa/auth/help.aspx`` from a request, or a file path from a file write, an OAB download or a
mailbox export); YARA findings of web-shell rules (ATT&CK T1505.003) name inventoried files, with
their sha256 and modification time.

One shell seen several ways is one entry: every path is matched by the URL IIS serves it at
(:func:`served_url`: the path under its web root, ``...\\FrontEnd\\HttpProxy\\owa\\auth\\x.aspx``
is ``/owa/auth/x.aspx``), and entries of one URL on one host (or on no known host) are merged:
``path`` is the file (the inventoried copy first, then the path written on the server), ``url``
the page requested, ``files`` every file path, ``sha256`` the inventoried file's. A URL on two
hosts is two shells; an entry without a host joins only when one host has that URL.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime

from varde.analysis.hits import Hit
from varde.analysis.hosts import HostIdentity
from varde.events.files import WEB_ROOTS
from varde.events.store import EventStore
from varde.report.document import Finding, Webshell

WEBSHELL_TECHNIQUE = "T1505.003"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
#: The URL folder each web root of :data:`~varde.events.files.WEB_ROOTS` serves (the Exchange
#: front end ``FrontEnd\HttpProxy\owa`` and back end ``ClientAccess\Owa`` are ``/owa``; IIS serves
#: ``inetpub\wwwroot`` at ``/``); compiled ASP.NET pages are served from nowhere.
_SERVED_AT = {"exchange-frontend": "/", "exchange-backend": "/", "aspnet-client": "/aspnet_client/",
              "iis-wwwroot": "/"}


def webshells(store: EventStore, findings: Sequence[Finding], hits: Sequence[Hit],
              identity: HostIdentity) -> list[Webshell]:
    """Web shells named by detector hits, YARA web-shell findings and the file inventory, merged."""
    shells = _merge([*_from_yara(store, findings, identity), *_from_hits(hits)], _inventory(store, identity))
    return sorted(shells, key=lambda w: (w.first_seen is None, w.first_seen or _EPOCH, w.path, w.host or ""))


def served_url(path: str) -> str | None:
    """The URL path (lower case) at which IIS serves the file at ``path``: its tail under its web
    root (``...\\FrontEnd\\HttpProxy\\owa\\auth\\x.aspx``: ``/owa/auth/x.aspx``); None outside
    every web root."""
    text = path.replace("\\", "/").lower()
    for marker, root in WEB_ROOTS:
        at = text.rfind(marker)
        if at >= 0:
            return _SERVED_AT[root] + text[at + len(marker):] if root in _SERVED_AT else None
    return None


def _is_url(shell: str) -> bool:
    """A detector names a page requested by its URL path, a file by its Windows path."""
    return shell.startswith("/") and "\\" not in shell


def shell_names(shells: Iterable[str]) -> list[str]:
    """Web shells as detectors name them (URL paths and file paths), one name per shell: a file
    under a web root is the page served at its URL, named as requested where it was requested."""
    named: dict[str, str] = {}
    for shell in shells:
        url = shell if _is_url(shell) else served_url(shell)
        key = (url or shell).lower()
        if url == shell or key not in named:  # the logged spelling of a URL wins over the lower-cased path
            named[key] = url or shell
    return sorted(named.values())


def _url_of(shell: Webshell) -> str | None:
    if shell.url:
        return shell.url.lower()
    return next((url for url in map(served_url, shell.files) if url), None)


def _from_hits(hits: Sequence[Hit]) -> list[Webshell]:
    first: dict[tuple[str, str | None], datetime | None] = {}
    ids: dict[tuple[str, str | None], set[str]] = defaultdict(set)
    for hit in hits:
        shell = hit.attrs.get("webshell")
        if not shell or hit.finding.detector != "exchange":
            continue
        key = (shell, hit.host)
        seen = first.get(key)
        first[key] = hit.ts if seen is None or (hit.ts is not None and hit.ts < seen) else seen
        ids[key].add(hit.finding.id)
    return [Webshell(path=path, host=host, first_seen=first[(path, host)], sha256=None,
                     finding_ids=sorted(ids[(path, host)]), url=path if _is_url(path) else None,
                     files=[] if _is_url(path) else [path])
            for path, host in sorted(first, key=lambda k: (k[0], k[1] or ""))]


def _from_yara(store: EventStore, findings: Sequence[Finding], identity: HostIdentity) -> list[Webshell]:
    by_path: dict[str, set[str]] = defaultdict(set)
    for finding in findings:
        if finding.detector == "yara" and WEBSHELL_TECHNIQUE in finding.techniques:
            for ref in finding.evidence:
                by_path[ref.path].add(finding.id)
    if not by_path:
        return []
    rows = store.query("SELECT path, sha256, modified FROM files WHERE path IN (SELECT unnest(?)) ORDER BY path",
                       [sorted(by_path)])
    return [Webshell(path=path, host=identity.files.get(path), first_seen=modified.replace(tzinfo=UTC) if modified
                     else None, sha256=sha256, finding_ids=sorted(by_path[path]), files=[path])
            for path, sha256, modified in rows]


def _inventory(store: EventStore, identity: HostIdentity) -> dict[str, list[tuple[str, str, str | None]]]:
    """Inventoried web-root files with a hash by served URL: (path, sha256, host), evidence order."""
    out: dict[str, list[tuple[str, str, str | None]]] = defaultdict(list)
    rows = store.query("SELECT path, tree_path, sha256 FROM files WHERE sha256 IS NOT NULL AND web_root IS NOT NULL "
                       "ORDER BY evidence")
    for path, tree, sha256 in rows:
        url = served_url(tree)
        if url:
            out[url].append((path, sha256, identity.files.get(path)))
    return out


def _merge(shells: Iterable[Webshell], inventory: dict[str, list[tuple[str, str, str | None]]]) -> list[Webshell]:
    """One entry per served URL and host (entries without a host join when one host has the URL)."""
    by_url: dict[str, list[Webshell]] = defaultdict(list)
    out = []
    for shell in shells:
        url = _url_of(shell)
        if url is None:
            out.append(shell)
        else:
            by_url[url].append(shell)
    for url, group in by_url.items():
        stored = inventory.get(url, [])
        hosts = sorted({s.host for s in group if s.host} | {h for _, _, h in stored if h})
        if len(hosts) <= 1:
            out.append(_one(group, hosts[0] if hosts else None, stored))
            continue
        if unplaced := [s for s in group if s.host is None]:  # ambiguous: one entry of its own
            out.append(_one(unplaced, None, []))
        out += [_one(on, h, [c for c in stored if c[2] == h]) for h in hosts if (on := [s for s in group if s.host == h])]
    return out


def _one(group: Sequence[Webshell], host: str | None, stored: Sequence[tuple[str, str, str | None]]) -> Webshell:
    """The entries of ``group`` (one shell on ``host``) and its inventoried copies as one entry."""
    hashed = [(s.path, s.sha256) for s in group if s.sha256] + [(path, sha256) for path, sha256, _ in stored]
    files = sorted({f for s in group for f in s.files} | {path for path, _, _ in stored})
    urls = sorted({s.url for s in group if s.url})
    times = [s.first_seen for s in group if s.first_seen]
    path = hashed[0][0] if hashed else next(iter(files), urls[0] if urls else group[0].path)
    return Webshell(path=path, host=host, first_seen=min(times, default=None),
                    sha256=hashed[0][1] if hashed else None,
                    finding_ids=sorted({i for s in group for i in s.finding_ids}),
                    url=urls[0] if urls else None, files=files)
