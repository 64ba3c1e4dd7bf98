"""The one normalised event schema (Arrow), shared by every reader and store.

Each event is a row with a few common columns that every source fills in the same way, and
``fields``: the event's own named values as a JSON object (EventData of a Windows event, the
columns of a log line). Keeping the own fields as one JSON object keeps the schema fixed while
hundreds of sources bring their own field names; detection extracts only the fields a rule
names, once per group of similar events (see :mod:`varde.detect.sigma.engine`).

``docs/schema.md`` describes the columns for users; keep the two in step.
"""

from __future__ import annotations

import pyarrow as pa

SCHEMA_VERSION = 1

#: Bits of the event key that hold the position of the event inside its evidence file.
KEY_SEQ_BITS = 40

EVENT_SCHEMA = pa.schema(
    [
        pa.field("key", pa.int64(), nullable=False),  # (evidence << KEY_SEQ_BITS) | position in file
        pa.field("evidence", pa.int32(), nullable=False),  # evidence.id of the file it came from
        pa.field("locator", pa.string(), nullable=False),  # "record 16094", "line 12": where in the file
        pa.field("ts", pa.timestamp("us")),  # event time, UTC
        pa.field("host", pa.string()),  # computer that logged it
        pa.field("channel", pa.string()),  # event log channel, or the log family of a text log
        pa.field("provider", pa.string()),  # event provider / source name
        pa.field("event_id", pa.int32()),
        pa.field("record_id", pa.int64()),  # EVTX EventRecordID when the source has one
        pa.field("fields", pa.string()),  # JSON object: the event's own fields, values as logged
    ]
)

COLUMNS = tuple(EVENT_SCHEMA.names)


def event_key(evidence: int, position: int) -> int:
    """Deterministic key of the event at ``position`` (0-based) of evidence file ``evidence``."""
    return (evidence << KEY_SEQ_BITS) | position


def split_key(key: int) -> tuple[int, int]:
    """Inverse of :func:`event_key`."""
    return key >> KEY_SEQ_BITS, key & ((1 << KEY_SEQ_BITS) - 1)
