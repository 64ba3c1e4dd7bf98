"""Web shells the evidence points to: the page requested, written or exported to, and the files
the YARA web-shell rules matched.

Two sources. Built-in detector hits with a ``webshell`` attribute name one (a URL path such as
``/owa/auth/help.aspx`` from a request, or a file path from a file write, an OAB download or a
mailbox export). YARA findings of web-shell rules (ATT&CK T1505.003) name inventoried files, with
their sha256 and modification time. A named shell whose last three path parts match an
inventoried file gets that file's sha256. One entry per (path, host), first seen first.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import UTC, datetime

from varde.events.store import EventStore
from varde.report.document import Finding, Webshell

WEBSHELL_TECHNIQUE = "T1505.003"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def webshells(store: EventStore, findings: Sequence[Finding]) -> list[Webshell]:
    """Web shells named by detector hits and YARA web-shell findings."""
    hashes = _inventory(store)
    out = {(w.path, w.host): w for w in _from_yara(store, findings)}
    for shell in _from_detectors(store, findings):
        key = (shell.path, shell.host)
        if key not in out:
            out[key] = shell.model_copy(update={"sha256": hashes.get(_tail(shell.path))})
    return sorted(out.values(), key=lambda w: (w.first_seen is None, w.first_seen or _EPOCH, w.path, w.host or ""))


def _from_detectors(store: EventStore, findings: Sequence[Finding]) -> list[Webshell]:
    ids = {(f.rule_id, f.host): f.id for f in findings if f.detector == "exchange"}
    rows = store.query("""SELECT m.attrs->>'webshell' AS path, e.host, min(e.ts), list(DISTINCT m.rule_uid)
        FROM detector_matches m JOIN events e USING (key) WHERE m.attrs->>'webshell' IS NOT NULL
        GROUP BY 1, 2 ORDER BY 3 NULLS LAST, 1, 2""")
    return [Webshell(path=path, host=host, first_seen=first.replace(tzinfo=UTC) if first else None, sha256=None,
                     finding_ids=sorted({ids[(r, host)] for r in rules if (r, host) in ids}))
            for path, host, first, rules in rows]


def _from_yara(store: EventStore, findings: Sequence[Finding]) -> list[Webshell]:
    by_path: dict[str, set[str]] = defaultdict(set)
    for finding in findings:
        if finding.detector == "yara" and WEBSHELL_TECHNIQUE in finding.techniques:
            for ref in finding.evidence:
                by_path[ref.path].add(finding.id)
    if not by_path:
        return []
    rows = store.query("SELECT path, sha256, modified FROM files WHERE path IN (SELECT unnest(?))", [sorted(by_path)])
    return [Webshell(path=path, host=None, first_seen=modified.replace(tzinfo=UTC) if modified else None,
                     sha256=sha256, finding_ids=sorted(by_path[path]))
            for path, sha256, modified in rows]


def _inventory(store: EventStore) -> dict[str, str]:
    """sha256 of each inventoried file by the last three parts of its path (lower case)."""
    rows = store.query("SELECT tree_path, sha256 FROM files WHERE sha256 IS NOT NULL ORDER BY evidence")
    return {_tail(path): sha256 for path, sha256 in rows}


def _tail(path: str) -> str:
    parts = [p for p in path.replace("\\", "/").lower().split("/") if p]
    return "/".join(parts[-3:])
