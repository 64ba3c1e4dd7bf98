"""The normalised event schema, shared by every reader and store.

An event has common columns that every source fills in the same way (time in UTC, host,
channel, provider, event id, record id, and where it is in which evidence file), and its own
named fields (EventData of a Windows event, the columns of a log line).

Events are stored partitioned by (channel, event id): each partition is one table whose own
fields are real columns, because events of one channel and id share their field names (a Sysmon
process creation always has Image, CommandLine, ...). Detection then reads plain columns of just
the events a rule can match, with no JSON to parse and no scan of unrelated events; and no table
is wide and mostly null (one table per channel was tried: DuckDB pays for every null cell of a
wide table on insert, and Security events have hundreds of fields over all their ids). The
``events`` view puts the partitions back together in the uniform schema, with the own fields
as one JSON object.

``docs/schema.md`` describes the tables for users; keep the two in step.
"""

from __future__ import annotations

import pyarrow as pa

SCHEMA_VERSION = 2

#: Bits of the event key that hold the position of the event inside its evidence file.
KEY_SEQ_BITS = 40

#: The common columns, in every partition table and in the ``events`` view.
COMMON_SCHEMA = pa.schema(
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
    ]
)

COMMON_COLUMNS = tuple(COMMON_SCHEMA.names)


def event_key(evidence: int, position: int) -> int:
    """Deterministic key of the event at ``position`` (0-based) of evidence file ``evidence``."""
    return (evidence << KEY_SEQ_BITS) | position

