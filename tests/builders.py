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
