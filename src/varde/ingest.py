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
from varde.sources.base import ArchiveLimits, ReadWarning
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


class _StoreSink:
    """Writes readers' output to the store and keeps the per-file accounting."""

    def __init__(self, store: EventStore) -> None:
        self.store = store
        self.events = 0
        self.skipped = 0
        self.warnings = 0

    def batch(self, evidence_id: int, batch: pa.RecordBatch) -> None:
        self.store.append(batch)
        self.events += batch.num_rows

    def warning(self, evidence_id: int, warning: ReadWarning) -> None:
        self.store.add_warning(evidence_id, warning.locator, warning.message, warning.skipped)
        self.warnings += 1

    def done(self, evidence_id: int, result: FileResult) -> None:
        self.store.finish_evidence(evidence_id, result.sha256, result.records, result.skipped, result.complete)
        self.skipped += result.skipped


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
    sink = _StoreSink(store)
    if workers > 0:
        WorkerPool(scratch, limits, workers).run(tasks, sink, progress)
    else:
        read_inline(tasks, sink, scratch, limits, progress)
    return IngestSummary(
        files=len(tasks),
        read=sum(1 for t in tasks if t.reader),
        events=sink.events,
        skipped=sink.skipped,
        warnings=sink.warnings,
    )

