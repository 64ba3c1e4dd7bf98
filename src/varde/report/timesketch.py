"""``timeline.jsonl``: the intrusion timeline as Timesketch imports it.

Timesketch's JSONL import needs ``message``, ``datetime`` (ISO 8601) and ``timestamp_desc`` on
every line; other keys become event attributes. One line per timeline step, in order, with the
tactic, technique, host, intruder, source address, finding id and the evidence locators.
"""

from __future__ import annotations

import json

from varde.report.document import Report, utc_text

TIMESTAMP_DESC = "Intrusion step (varde)"


def timesketch_lines(report: Report) -> str:
    """The JSONL text (empty when the timeline is)."""
    names = {i.id: i.name for i in report.intruders}
    lines = []
    for step in report.timeline:
        where = f" on {step.host}" if step.host else ""
        source = f" from {step.source_ip}" if step.source_ip else ""
        detail = f": {step.detail}" if step.detail else ""
        record = {
            "message": f"[{step.tactic}] {step.title}{detail}{source}{where}",
            "datetime": utc_text(step.ts),
            "timestamp": int(step.ts.timestamp() * 1_000_000),
            "timestamp_desc": TIMESTAMP_DESC,
            "tactic": step.tactic,
            "technique": step.technique,
            "host": step.host,
            "intruder": names.get(step.intruder or "", None),
            "source_ip": step.source_ip,
            "count": step.count,
            "last_datetime": utc_text(step.last_ts) if step.last_ts else None,
            "finding_id": step.finding_id,
            "evidence": [f"{e.path} {e.locator}" for e in step.evidence],
            "data_type": "varde:timeline:step",
        }
        lines.append(json.dumps(record, ensure_ascii=False, sort_keys=True))
    return "".join(line + "\n" for line in lines)
