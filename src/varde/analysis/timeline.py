"""The intrusion timeline: ordered steps with ATT&CK tactic and technique, and the techniques seen.

A step is a burst of hits of one finding by one intruder: hits less than :data:`BURST` apart are
merged (a scanner-like loop of 300 web shell requests is one step with a count). Steps come from
the intruders' hits, and from hits without a source address that are high or critical and no
intruder claimed (host events an analyst must see). Hits of scanners are left out. The tactic of a
step is the first tactic of its finding's first technique in ATT&CK matrix order; the first
intrusion time is the earliest step of a finding that shows success, never the first scan.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from varde.analysis.hits import Hit
from varde.analysis.intruders import Clustering, got_in
from varde.analysis.tactics import attack_table
from varde.report.document import EvidenceRef, Step, Technique

BURST = timedelta(minutes=10)
#: Steps kept in the report (a cap for pathological cases; the report warns of the rest).
MAX_STEPS = 5000
#: Evidence lines listed per step.
STEP_EVIDENCE = 5
#: Attributes shown as a step's detail, first present wins.
_DETAIL = ("webshell", "mailbox", "url", "path", "step")


@dataclass
class _Burst:
    hits: list[Hit]
    intruder: str | None


def shown(hit: Hit, clustering: Clustering) -> bool:
    """The hit belongs on the timeline: an intruder's, or an unclaimed serious host event."""
    if clustering.intruder_of(hit) is not None:
        return True
    return hit.source_ip is None and hit.finding.severity in ("high", "critical")


def _bursts(hits: Sequence[Hit], clustering: Clustering) -> list[_Burst]:
    open_: dict[tuple[str, str | None], _Burst] = {}
    out = []
    for hit in hits:
        if hit.ts is None or not shown(hit, clustering):
            continue
        owner = clustering.intruder_of(hit)
        key = (hit.finding.id, owner)
        burst = open_.get(key)
        if burst is None or hit.ts - burst.hits[-1].ts > BURST:  # type: ignore[operator]
            burst = open_[key] = _Burst([], owner)
            out.append(burst)
        burst.hits.append(hit)
    return out


def _step(burst: _Burst) -> Step:
    first, finding = burst.hits[0], burst.hits[0].finding
    technique = finding.techniques[0] if finding.techniques else None
    tactics = attack_table().tactics_of(technique) if technique else ()
    detail = next((first.attrs[k] for k in _DETAIL if first.attrs.get(k)), None)
    return Step(
        ts=first.ts,  # type: ignore[arg-type]
        last_ts=burst.hits[-1].ts,
        tactic=tactics[0] if tactics else "unknown",
        technique=technique,
        title=finding.title,
        host=first.host,
        finding_id=finding.id,
        count=len(burst.hits),
        intruder=burst.intruder,
        source_ip=first.source_ip,
        detail=detail,
        evidence=[EvidenceRef(path=h.path, locator=h.locator, host=h.logged_host) for h in burst.hits[:STEP_EVIDENCE]],
    )


def timeline(hits: Sequence[Hit], clustering: Clustering) -> tuple[list[Step], int]:
    """The first :data:`MAX_STEPS` steps in time order (then finding id, a stable order), and the
    number of steps in all (only the steps kept are built)."""
    bursts = _bursts(hits, clustering)
    bursts.sort(key=lambda b: (b.hits[0].ts, b.hits[0].finding.id, b.intruder or ""))
    return [_step(b) for b in bursts[:MAX_STEPS]], len(bursts)


def first_intrusion(hits: Sequence[Hit], clustering: Clustering) -> datetime | None:
    """The earliest hit on the timeline that shows an intruder got in (an exploit that worked, a
    password that worked)."""
    times = [h.ts for h in hits if h.ts and got_in(h) and shown(h, clustering)]
    return min(times, default=None)


def techniques(steps: Sequence[Step], hits: Sequence[Hit], clustering: Clustering) -> list[Technique]:
    """Every technique of the findings on the timeline, with its first time, in id order."""
    on_timeline = {s.finding_id for s in steps}
    first: dict[str, datetime] = {}
    findings: dict[str, set[str]] = defaultdict(set)
    count: dict[str, int] = defaultdict(int)
    for step in steps:
        count[step.technique or ""] += 1
    for hit in hits:
        if hit.finding.id not in on_timeline or hit.ts is None or not shown(hit, clustering):
            continue
        for technique in hit.finding.techniques:
            first[technique] = min(first.get(technique, hit.ts), hit.ts)
            findings[technique].add(hit.finding.id)
    table = attack_table()
    return [
        Technique(id=t, name=table.name(t), tactics=list(table.tactics_of(t)), first_seen=first[t],
                  finding_ids=sorted(findings[t]), steps=count.get(t, 0))
        for t in sorted(first)
    ]
