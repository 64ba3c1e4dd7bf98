"""Stage 1: evidence paths in, events and evidence accounting in the case store.

Discovery runs in this process (it only reads file heads and archive directories); reading runs
in worker processes (:mod:`varde.sources.ingest`), and everything they send is stored here.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from varde.events.store import EventStore
from varde.sources.base import ArchiveLimits, PartitionBatch, ReadWarning
from varde.sources import reader_named
from varde.sources.discover import discover
from varde.sources.ingest import FileResult, Task, WorkerPool, read_inline

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class IngestSummary:
    """Counts of one ingest run."""

    files: int
    read: int
    events: int
    skipped: int
    warnings: int


#: Events held in the parent before they are written: partition batches from the readers are
#: small (a batch of events spreads over many partitions), and DuckDB appends far faster in a few
#: large inserts than in many small ones.
BUFFER_EVENTS = 131_072

BUFFER_WARNINGS = 10_000

#: Line-oriented files larger than this are read in parts of about this size, in parallel.
PART_BYTES = 64 << 20


class _StoreSink:
    """Writes readers' output to the store and keeps the per-file accounting."""

    def __init__(self, store: EventStore, parts: dict[int, int]) -> None:
        self.store = store
        self.parts = parts  # evidence id -> tasks still to finish
        self.results: dict[int, list[FileResult]] = {}
        self.events = 0
        self.skipped = 0
        self.warnings = 0
        self._buffer: dict[tuple[str | None, int | None], list[pa.RecordBatch]] = {}
        self._buffered = 0
        self._warnings: list[tuple[int, str | None, str, int]] = []

    def batch(self, evidence_id: int, batch: PartitionBatch) -> None:
        self._buffer.setdefault((batch.channel, batch.event_id), []).append(batch.batch)
        self._buffered += batch.batch.num_rows
        self.events += batch.batch.num_rows
        if self._buffered >= BUFFER_EVENTS:
            self.flush()

    def flush(self) -> None:
        """Write everything buffered, one insert per partition, in one transaction."""
        self.store.add_warnings(self._warnings)
        self._warnings = []
        buffer, self._buffer, self._buffered = self._buffer, {}, 0
        self.store.append_many(
            (channel, event_id, pa.concat_tables([pa.Table.from_batches([b]) for b in batches],
                                                 promote_options="default"))
            for (channel, event_id), batches in sorted(buffer.items(), key=lambda kv: str(kv[0]))
        )

    def warning(self, evidence_id: int, warning: ReadWarning) -> None:
        self._warnings.append((evidence_id, warning.locator, warning.message, warning.skipped))
        self.warnings += 1
        if len(self._warnings) >= BUFFER_WARNINGS:
            self.store.add_warnings(self._warnings)
            self._warnings = []

    def done(self, evidence_id: int, result: FileResult) -> None:
        """One task finished; the file is finished when all its parts are."""
        results = self.results.setdefault(evidence_id, [])
        results.append(result)
        self.skipped += result.skipped
        if len(results) < self.parts.get(evidence_id, 1):
            return
        digest = next((r.sha256 for r in results if r.sha256), None)
        self.store.finish_evidence(
            evidence_id, digest, sum(r.records for r in results), sum(r.skipped for r in results),
            all(r.complete for r in results),
        )


def plan(paths: Iterable[Path], store: EventStore, limits: ArchiveLimits) -> list[Task]:
    """Discover the evidence, list every input in the store, and return the reading tasks."""
    tasks = []
    for number, found in enumerate(discover(paths, limits), 1):
        store.add_evidence(number, found.evidence.path, found.reader, found.evidence.size)
        if found.note:
            store.add_warning(number, None, found.note)
        if found.refused:
            store.finish_evidence(number, None, 0, 0, False)
            continue
        reader = None if found.reader in (None, "zip") else found.reader
        parts = reader_named(reader).split(found.evidence, PART_BYTES) if reader else None
        if parts:
            tasks.extend(Task(number, found.evidence, reader, part) for part in parts)
        else:
            tasks.append(Task(number, found.evidence, reader))
    return tasks


def ingest(
    tasks: list[Task],
    store: EventStore,
    scratch: Path,
    limits: ArchiveLimits,
    workers: int = 2,
    progress: Callable[[Task], None] | None = None,
) -> IngestSummary:
    """Read every task into ``store`` (``workers`` 0 reads in this process)."""
    parts: dict[int, int] = {}
    for task in tasks:
        parts[task.evidence_id] = parts.get(task.evidence_id, 0) + 1
    sink = _StoreSink(store, parts)
    if workers > 0:
        WorkerPool(scratch, limits, workers).run(tasks, sink, progress)
    else:
        read_inline(tasks, sink, scratch, limits, progress)
    sink.flush()
    store.refresh_view()
    return IngestSummary(
        files=len(parts),
        read=len({t.evidence_id for t in tasks if t.reader}),
        events=sink.events,
        skipped=sink.skipped,
        warnings=sink.warnings,
    )

