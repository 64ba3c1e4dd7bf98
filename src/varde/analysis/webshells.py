"""Web shells the detectors point to: the page requested, written or exported to.

Every built-in hit with a ``webshell`` attribute names one (a URL path such as
``/owa/auth/help.aspx`` from a request, or a file path from a file write, an OAB download or a
mailbox export). One entry per (path, host), with the first time and the findings behind it.
"""

from __future__ import annotations

from collections.abc import Sequence

from varde.events.store import EventStore
from varde.report.document import Finding, Webshell


def webshells(store: EventStore, findings: Sequence[Finding]) -> list[Webshell]:
    """Web shells named by built-in detector hits, by path and host."""
    ids = {(f.rule_id, f.host): f.id for f in findings if f.detector == "exchange"}
    rows = store.query("""SELECT m.attrs->>'webshell' AS path, e.host, min(e.ts), list(DISTINCT m.rule_uid)
        FROM detector_matches m JOIN events e USING (key) WHERE m.attrs->>'webshell' IS NOT NULL
        GROUP BY 1, 2 ORDER BY 3 NULLS LAST, 1, 2""")
    out = []
    for path, host, first, rules in rows:
        finding_ids = sorted({ids[(r, host)] for r in rules if (r, host) in ids})
        out.append(Webshell(path=path, host=host, first_seen=first, sha256=None, finding_ids=finding_ids))
    return out
