"""What every reader implements, and the context it writes events and warnings into."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Protocol

import pyarrow as pa

from varde.events.schema import EVENT_SCHEMA, event_key

#: How many events one Arrow batch holds: large enough to amortise the store's per-batch cost,
#: small enough that a worker's memory stays flat.
BATCH_EVENTS = 16_384


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
    archive member names from ``disk_path`` inwards (empty for a plain file).
    """

    path: str
    disk_path: Path
    members: tuple[str, ...] = ()
    size: int = 0

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


class ReadContext:
    """Collects a reader's events into Arrow batches and its warnings, and hands both on.

    ``sink`` receives each full :class:`pyarrow.RecordBatch` and each :class:`ReadWarning` as
    soon as it exists, so a reader that dies half-way has already delivered what it read.
    """

    def __init__(
        self,
        evidence_id: int,
        sink: Callable[[pa.RecordBatch | ReadWarning], None],
        scratch: Path,
        limits: ArchiveLimits | None = None,
        batch_events: int = BATCH_EVENTS,
    ) -> None:
        self.evidence_id = evidence_id
        self.scratch = scratch
        self.limits = limits or ArchiveLimits()
        self.records = 0
        self.skipped = 0
        self._sink = sink
        self._batch_events = batch_events
        self._cols: dict[str, list[object]] = {name: [] for name in EVENT_SCHEMA.names}

    def event(
        self,
        locator: str,
        ts_us: int | None,
        host: str | None,
        channel: str | None,
        provider: str | None,
        event_id: int | None,
        record_id: int | None,
        fields: str,
    ) -> None:
        """Add one event; ``ts_us`` is microseconds since 1970 UTC, ``fields`` a JSON object."""
        cols = self._cols
        cols["key"].append(event_key(self.evidence_id, self.records))
        cols["evidence"].append(self.evidence_id)
        cols["locator"].append(locator)
        cols["ts"].append(ts_us)
        cols["host"].append(host)
        cols["channel"].append(channel)
        cols["provider"].append(provider)
        cols["event_id"].append(event_id)
        cols["record_id"].append(record_id)
        cols["fields"].append(fields)
        self.records += 1
        if len(cols["key"]) >= self._batch_events:
            self.flush()

    def warn(self, locator: str | None, message: str, skipped: int = 0) -> None:
        """Record that something could not be read; ``skipped`` records were lost to it."""
        self.skipped += skipped
        self._sink(ReadWarning(locator, message, skipped))

    def flush(self) -> None:
        """Hand on the events collected so far as one batch."""
        if not self._cols["key"]:
            return
        arrays = [pa.array(self._cols[f.name], type=f.type) for f in EVENT_SCHEMA]
        self._sink(pa.RecordBatch.from_arrays(arrays, schema=EVENT_SCHEMA))
        for values in self._cols.values():
            values.clear()
