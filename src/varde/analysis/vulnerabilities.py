"""Which vulnerabilities the findings show, and whether any finding shows one exploited.

A finding names the CVEs it is evidence of and whether it shows success (``exploited``: True for
a step only a successful attacker reaches, False for a failed try, None when the rule cannot
tell). A vulnerability is exploited when at least one of its findings shows success; its first
time is the earliest such finding (else the earliest finding at all).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from functools import cache
from importlib import resources

import yaml

from varde.report.document import Finding, Vulnerability


@cache
def cve_names() -> dict[str, str]:
    """Names of the CVEs varde knows (data/exchange/cves.yml)."""
    text = resources.files("varde.data").joinpath("exchange/cves.yml").read_text(encoding="utf-8")
    return dict(yaml.safe_load(text)["cves"])


def vulnerabilities(findings: Sequence[Finding]) -> list[Vulnerability]:
    """One entry per CVE any finding points to, exploited ones first, then by CVE."""
    by_cve: dict[str, list[Finding]] = defaultdict(list)
    for finding in findings:
        for cve in finding.cves:
            by_cve[cve].append(finding)
    out = []
    for cve, group in by_cve.items():
        shown = [f for f in group if f.exploited]
        times = [f.first_seen for f in (shown or group) if f.first_seen is not None]
        out.append(Vulnerability(
            cve=cve,
            name=cve_names().get(cve, cve),
            exploited=bool(shown),
            first_seen=min(times) if times else None,
            finding_ids=sorted(f.id for f in group),
        ))
    return sorted(out, key=lambda v: (not v.exploited, v.cve))
