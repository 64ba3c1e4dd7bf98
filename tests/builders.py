"""Evidence the tests build themselves: Windows events in the evtx crate's JSON layout, JSON
lines, zip archives. (Imported by test modules; pytest puts ``tests/`` on the path.)"""

from __future__ import annotations

import io
import json
import zipfile


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
