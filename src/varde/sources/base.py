"""What every reader implements, and the context it writes events and warnings into."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from varde.events.schema import COMMON_SCHEMA, event_key
from varde.sources.filetimes import FileTimes

#: How many events of one partition make an Arrow batch: large enough to amortise the per-batch
#: costs (building, encoding, sending, spooling, decoding), small enough that memory stays flat.
BATCH_EVENTS = 8_192
#: How many events a reader holds over all its partitions before it hands on the largest ones:
#: bounds a worker's memory when events spread over hundreds of small partitions.
PENDING_EVENTS = 16_384

_INT32 = (-(2**31), 2**31 - 1)
_INT64 = (-(2**63), 2**63 - 1)


def shown_path(path: os.PathLike[str] | str) -> str:
    """A path as text that can be stored and shown: bytes of a file name that are not UTF-8 (an
    attacker's, or a copy's from another code page) become visible ``\\xff`` escapes."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


@dataclass(frozen=True)
class ReadWarning:
    """Something in a file that could not be read, with where it is and how many records it cost."""

    locator: str | None
    message: str
    skipped: int = 0


@dataclass(frozen=True)
class EvidenceFile:
    """One input as discovered: a file on disk, or a member of a (possibly nested) zip archive.

    ``path`` is the name shown to users and written to the report; ``members`` is the chain of
    archive member names from ``disk_path`` inwards (empty for a plain file); ``times`` are the
    file's times where known (file system, or the zip member header).
    """

    path: str
    disk_path: Path
    members: tuple[str, ...] = ()
    size: int = 0
    times: FileTimes | None = None

    @contextmanager
    def open(self, limits: ArchiveLimits | None = None) -> Iterator[BinaryIO]:
        """Open the content read-only as a binary stream (archive members are streamed)."""
        if not self.members:
            with open(self.disk_path, "rb") as handle:
                yield handle
            return
        from varde.sources.archive import open_member

        with open_member(self.disk_path, self.members, limits or ArchiveLimits()) as handle:
            yield handle

    @contextmanager
    def local_file(self, scratch: Path, limits: ArchiveLimits | None = None) -> Iterator[Path]:
        """A path on disk with the content, for parsers that need one.

        Plain files are used in place (never written); archive members are copied into the
        case's scratch folder under the archive byte limit and removed afterwards.
        """
        if not self.members:
            yield self.disk_path
            return
        scratch.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=scratch, suffix=".member", delete=False) as out:
            tmp = Path(out.name)
            with self.open(limits) as src:
                shutil.copyfileobj(src, out, 1 << 20)
        try:
            yield tmp
        finally:
            tmp.unlink(missing_ok=True)


@dataclass(frozen=True)
class Part:
    """A byte range of a line-oriented file, read by one worker: lines that start in
    ``[start, end)``; the first of them is line ``first_line`` (1-based) of the file."""

    start: int
    end: int
    first_line: int


@dataclass(frozen=True)
class ArchiveLimits:
    """Budgets that stop decompression bombs; every member is checked against them."""

    max_member_bytes: int = 16 << 30
    max_ratio: float = 250.0  # uncompressed / compressed, checked for members over ratio_floor
    ratio_floor: int = 32 << 20
    max_members: int = 100_000
    max_depth: int = 3


class Reader(Protocol):
    """A reader turns one evidence format into rows of :data:`EVENT_SCHEMA`.

    ``sniff`` looks at the first bytes (and the name only as a hint); ``read`` streams the
    content into ``out`` and never holds a whole file in memory.
    """

    name: str

    def sniff(self, head: bytes, name: str) -> bool: ...

    def read(self, evidence: EvidenceFile, out: ReadContext) -> None: ...

    def split(self, evidence: EvidenceFile, part_bytes: int) -> list[Part] | None:
        """Parts that workers can read in parallel, or None when the file is read whole."""
        ...


@dataclass(frozen=True)
class PartitionBatch:
    """Events of one (channel, event id) as an Arrow IPC stream: common columns, then one string
    column per own field. Kept encoded: the parent only spools it to disk (see ingest.Spool)."""

    key: tuple[str | None, int | None]  # (channel, event id)
    rows: int
    data: bytes

    @classmethod
    def encode(cls, key: tuple[str | None, int | None], batch: pa.RecordBatch) -> PartitionBatch:
        # sized first (a dry run counts bytes), then written once: a growing buffer would copy
        # the batch several times over
        sizer = pa.MockOutputStream()
        with pa.ipc.new_stream(sizer, batch.schema) as writer:
            writer.write_batch(batch)
        buffer = pa.allocate_buffer(sizer.size())
        with pa.ipc.new_stream(pa.FixedSizeBufferWriter(buffer), batch.schema) as writer:
            writer.write_batch(batch)
        return cls(key, batch.num_rows, buffer.to_pybytes())

    def decode(self) -> pa.Table:
        return pa.ipc.open_stream(self.data).read_all()


class _Partition:
    """Rows of one partition's events; an event without some field gets a null there (Arrow
    fills them in when the batch is built, faster than padding lists per event)."""

    def __init__(self) -> None:
        self.common: list[tuple[object, ...]] = []
        self.rows: list[dict[str, str | None]] = []
        self.names: set[str] = set()

    def add(self, common: tuple[object, ...], fields: dict[str, str | None]) -> int:
        """Add one event; returns how many the partition now holds."""
        self.common.append(common)
        self.rows.append(fields)
        self.names.update(fields)
        return len(self.rows)

    def batch(self) -> pa.RecordBatch:
        arrays = [pa.array(values, type=f.type) for values, f in zip(zip(*self.common, strict=True), COMMON_SCHEMA, strict=True)]
        names = sorted(self.names)
        if names:  # one struct array from the dicts, split into its columns: cheaper than from_pylist
            own = pa.array(self.rows, type=pa.struct([(n, pa.string()) for n in names]))
            arrays.extend(own.flatten())
        return pa.RecordBatch.from_arrays(arrays, names=[*COMMON_SCHEMA.names, *names])


class ReadContext:
    """Collects a reader's events into Arrow batches per partition, and its warnings.

    ``sink`` receives each :class:`PartitionBatch` and each :class:`ReadWarning` as soon as it
    exists, so a reader that dies half-way has already delivered what it read. A partition is
    handed on when it holds ``batch_events`` events; when ``pending_events`` are held in all, the
    largest partitions are, until half of them are gone. So a batch is seldom small (every batch
    costs a fixed price down the line: 546 batches for 91,775 events of the benchmark, against
    1,652 when every partition was handed on) and memory stays bounded however many partitions there are.
    """

    def __init__(
        self,
        evidence_id: int,
        sink: Callable[[PartitionBatch | ReadWarning], None],
        scratch: Path,
        limits: ArchiveLimits | None = None,
        batch_events: int = BATCH_EVENTS,
        part: Part | None = None,
        pending_events: int = PENDING_EVENTS,
    ) -> None:
        self.evidence_id = evidence_id
        self.part = part
        self.scratch = scratch
        self.limits = limits or ArchiveLimits()
        self.records = 0
        self.skipped = 0
        self._sink = sink
        self._batch_events = batch_events
        self._pending_events = max(batch_events, pending_events)
        self._pending = 0
        self._partitions: dict[tuple[str | None, int | None], _Partition] = {}

    def event(
        self,
        locator: str,
        ts_us: int | None,
        host: str | None,
        channel: str | None,
        provider: str | None,
        event_id: int | None,
        record_id: int | None,
        fields: dict[str, str | None],
        position: int | None = None,
    ) -> None:
        """Add one event; ``ts_us`` is microseconds since 1970 UTC, ``fields`` its own fields.

        ``position`` (0-based) makes the event key; readers of file parts pass the line index,
        others leave it to the running count.
        """
        if event_id is not None and not _INT32[0] <= event_id <= _INT32[1]:
            self.warn(locator, f"event id {event_id} is out of range; the event is kept without one")
            fields = {**fields, "EventID": str(event_id)}  # kept as logged
            event_id = None
        if record_id is not None and not _INT64[0] <= record_id <= _INT64[1]:
            record_id = None
        partition = self._partitions.get((channel, event_id))
        if partition is None:
            partition = self._partitions[(channel, event_id)] = _Partition()
        key = event_key(self.evidence_id, self.records if position is None else position)
        held = partition.add((key, self.evidence_id, locator, ts_us, host, channel, provider, event_id, record_id), fields)
        self.records += 1
        self._pending += 1
        if held >= self._batch_events:
            self._hand_on((channel, event_id))
        elif self._pending >= self._pending_events:
            self._flush_largest()

    def table(
        self,
        channel: str | None,
        event_id: int | None,
        lines: np.ndarray,
        ts: pa.Array,
        host: pa.Array | str | None,
        provider: pa.Array | str | None,
        own: pa.Table,
    ) -> None:
        """Add the rows of ``own`` (text columns, one per own field) as events of one partition,
        handed on at once: the fast path of line-oriented logs, which never build per-event dicts.

        ``lines`` holds each row's 0-based line index in the file: its event position (so keys
        are stable however the file is cut) and its locator (``line N``); ``ts`` is microsecond
        UTC times (nulls allowed); ``host`` and ``provider`` are one value for all rows or a
        column.
        """
        rows = len(lines)
        if not rows:
            return
        positions = pa.array(np.asarray(lines, dtype=np.int64))
        keys = pc.add(positions, np.int64(event_key(self.evidence_id, 0)))
        locators = pc.binary_join_element_wise("line ", pc.cast(pc.add(positions, 1), pa.string()), "")
        arrays = [
            keys,
            pa.nulls(rows, pa.int32()).fill_null(self.evidence_id),
            locators,
            ts.cast(pa.timestamp("us")),
            _column(host, rows),
            pa.nulls(rows, pa.string()).fill_null(channel) if channel is not None else pa.nulls(rows, pa.string()),
            _column(provider, rows),
            pa.nulls(rows, pa.int32()) if event_id is None else pa.nulls(rows, pa.int32()).fill_null(event_id),
            pa.nulls(rows, pa.int64()),
        ]
        own = own.combine_chunks()
        names = [*COMMON_SCHEMA.names, *own.column_names]
        columns = [*arrays, *(c.chunk(0) if c.num_chunks else pa.array([], pa.string()) for c in own.columns)]
        batch = pa.RecordBatch.from_arrays(columns, names=names)
        self.records += rows
        self._sink(PartitionBatch.encode((channel, event_id), batch))

    def warn(self, locator: str | None, message: str, skipped: int = 0) -> None:
        """Record that something could not be read; ``skipped`` records were lost to it."""
        self.skipped += skipped
        self._sink(ReadWarning(locator, message, skipped))

    def _flush_largest(self) -> None:
        """Hand on the largest partitions until half the pending events are gone: the small ones
        wait and grow (every batch costs a fixed price, here and down the line), and what is held
        stays under ``pending_events``."""
        for key in sorted(self._partitions, key=lambda k: len(self._partitions[k].rows), reverse=True):
            self._hand_on(key)
            if self._pending <= self._pending_events // 2:
                return

    def flush(self) -> None:
        """Hand on the events collected so far, one batch per partition."""
        for key in list(self._partitions):
            self._hand_on(key)

    def _hand_on(self, key: tuple[str | None, int | None]) -> None:
        """Send the events held for partition ``key`` as one batch, and stop holding them."""
        partition = self._partitions.pop(key)
        self._pending -= len(partition.rows)
        self._sink(PartitionBatch.encode(key, partition.batch()))


def _column(value: pa.Array | str | None, rows: int) -> pa.Array:
    """A text column of ``rows`` values: ``value`` itself when it is a column, else repeated."""
    if isinstance(value, pa.ChunkedArray):
        value = value.combine_chunks()
    if isinstance(value, pa.Array):
        return value.cast(pa.string())
    column = pa.nulls(rows, pa.string())
    return column if value is None else column.fill_null(value)
