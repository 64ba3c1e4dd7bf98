"""Evidence the tests build themselves: Windows events in the evtx crate's JSON layout, JSON
lines, zip archives; and :func:`read`, which reads evidence into a fresh case store the real way
(discovery + ingest). (Imported by test modules; pytest puts ``tests/`` on the path.)"""

from __future__ import annotations

import io
import json
import zipfile
from dataclasses import dataclass
from pathlib import Path

from varde.events.store import EventStore
from varde.ingest import ingest, plan
from varde.sources.base import ArchiveLimits


def sysmon_event(
    n: int, command: str | None = None, host: str = "EXCH01", data: dict[str, str] | None = None, **system: object
) -> dict:
    """A Sysmon process creation (event 1) with record id ``n``; ``data`` adds EventData fields,
    ``system`` overrides System keys."""
    return {
        "Event": {
            "System": {
                "Provider": {"#attributes": {"Name": "Microsoft-Windows-Sysmon"}},
                "EventID": 1,
                "EventRecordID": n,
                "Channel": "Microsoft-Windows-Sysmon/Operational",
                "Computer": host,
                "TimeCreated": {"#attributes": {"SystemTime": "2021-03-03T02:10:11.000Z"}},
                **system,
            },
            "EventData": {"CommandLine": command if command is not None else f"cmd /c echo {n}", **(data or {})},
        }
    }


def jsonl(count: int, start: int = 0) -> bytes:
    """``count`` Sysmon events as JSON lines, record ids from ``start``."""
    return b"".join(json.dumps(sysmon_event(n)).encode() + b"\n" for n in range(start, start + count))


def zip_bytes(members: dict[str, bytes], method: int = zipfile.ZIP_DEFLATED) -> bytes:
    """A zip archive holding ``members`` (name -> content)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", method) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


@dataclass
class Read:
    evidence: list[dict]
    warnings: list[dict]
    events: list[dict]

    def only(self) -> dict:
        assert len(self.evidence) == 1, self.evidence
        return self.evidence[0]


def read(tmp_path: Path, *paths: Path, workers: int = 0, limits: ArchiveLimits | None = None) -> Read:
    """Discover and read ``paths`` into a fresh case store; return evidence, warnings and events."""
    limits = limits or ArchiveLimits()
    case = tmp_path / f"case-{len(list(tmp_path.glob('case-*')))}"
    case.mkdir()
    with EventStore(case / "events.duckdb") as store:
        ingest(plan(list(paths), store, limits), store, case / "tmp", limits, workers=workers)
        cols = ("id", "path", "reader", "sha256", "bytes", "records", "skipped_records", "complete")
        evidence = [
            dict(zip(cols, r, strict=True))
            for r in store.query(f"SELECT {', '.join(cols)} FROM evidence ORDER BY id")
        ]
        warnings = [
            dict(zip(("evidence", "locator", "message", "skipped"), r, strict=True))
            for r in store.query(
                "SELECT evidence, locator, message, skipped FROM read_warnings ORDER BY evidence"
            )
        ]
        ecols = (
            "evidence",
            "locator",
            "ts",
            "host",
            "channel",
            "provider",
            "event_id",
            "record_id",
            "fields",
        )
        events = []
        for row in store.query(
            "SELECT evidence, locator, ts, host, channel, provider, event_id, record_id, "
            "CAST(fields AS VARCHAR) "
            "FROM events ORDER BY key"
        ):
            event = dict(zip(ecols, row, strict=True))
            event["fields"] = json.loads(event["fields"]) if event["fields"] else {}
            events.append(event)
    return Read(evidence, warnings, events)
