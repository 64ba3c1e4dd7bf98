"""Stage 1: evidence paths in, events and evidence accounting in the case store.

Discovery runs in this process (it only reads file heads and archive directories); reading runs
in worker processes (:mod:`varde.sources.ingest`), and everything they send is stored here.
"""

from __future__ import annotations

import logging
import queue
import struct
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pyarrow as pa

from varde.events.files import add_files, file_row, fill_hashes
from varde.events.store import EventStore
from varde.sources import reader_named
from varde.sources.base import ArchiveLimits, PartitionBatch, ReadWarning
from varde.sources.discover import discover
from varde.sources.ingest import FileResult, Task, WorkerPool, read_inline, sha256_of

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class IngestSummary:
    """Counts of one ingest run."""

    files: int
    read: int
    events: int
    skipped: int
    warnings: int


BUFFER_WARNINGS = 10_000

#: Line-oriented files larger than this are read in parts of about this size, in parallel.
PART_BYTES = 64 << 20

#: Events of one partition spooled before they are loaded in one insert (and the most a load
#: holds in memory). Low enough that the big partitions are loaded while the readers run (at
#: 32,768 nearly every load waited for the end of reading, even with twice the benchmark's input).
LOAD_ROWS = 8_192

#: Most loads, and events, a loader thread commits in one transaction: a transaction stays open
#: across loads until it holds this many. Every commit syncs DuckDB's write-ahead log to disk,
#: which costs more than the insert of a small partition, and rows committed in small
#: transactions go through the write-ahead log and are compressed again at the checkpoint
#: (loading the log benchmark's 298,000 events in 8,192-event loads alone cost 6.1 CPU s
#: committed every 2 loads, 4.2 s every 4), while every table written in a transaction holds
#: its own buffers until the commit (65,536 events took the benchmark's peak from 934 to
#: 1,086 MiB at 210 MB). 32,768 saved the log benchmark about 1.6 CPU s of 16 but its peak grew
#: with the input (798 -> 836 MiB from 106 to 210 MB, and 629 -> 710 MiB from 1x to 2x of the
#: events benchmark); at 16,384 it stays flat (810 -> 813, 627 -> 653).
TRANSACTION_LOADS = 16
TRANSACTION_ROWS = 16_384


class Spool:
    """Partition batches on disk, loaded into the store by loader threads while reading goes on.

    A batch of events spreads over many partitions, so stored as it comes it would cost one
    small insert per partition per batch, and DuckDB pays a fixed price per statement; and while
    the parent inserted, the workers would wait. So the parent only appends each batch's bytes
    to its partition's spool file; when a file holds LOAD_ROWS events it is handed to a loader
    thread, which inserts it in one statement on its own connection while the parent goes on
    draining the workers. The many small partitions are loaded when reading ends, when the
    cores are free: LOADERS threads, each partition always on the same one (so its loads keep
    their order), each keeping one transaction open across its loads until it holds
    TRANSACTION_ROWS events or TRANSACTION_LOADS loads. Memory: LOADERS transactions at a time.
    """

    LOADERS = 2

    def __init__(self, folder: Path, store: EventStore) -> None:
        self.folder = folder
        self.store = store
        self._files: dict[tuple[str | None, int | None], tuple[Path, int]] = {}  # key -> (file, events)
        self._made = 0
        self._jobs: list[queue.Queue[_Job | None]] = [
            queue.Queue() for _ in range(self.LOADERS)
        ]
        self._failure: BaseException | None = None
        self._threads = [
            threading.Thread(target=self._load_all, args=(jobs,), name=f"spool-loader-{n}", daemon=True)
            for n, jobs in enumerate(self._jobs)
        ]
        self._route: dict[tuple[str | None, int | None], int] = {}
        for thread in self._threads:
            thread.start()

    def _queue(self, key: tuple[str | None, int | None]) -> queue.Queue:
        """The loader of a partition: the one with fewer partitions when it is first seen."""
        number = self._route.setdefault(key, len(self._route) % self.LOADERS)
        return self._jobs[number]

    def add(self, batch: PartitionBatch) -> None:
        path, rows = self._files.get(batch.key) or (None, 0)
        if path is None:
            self.folder.mkdir(parents=True, exist_ok=True)
            self._made += 1
            path = self.folder / f"spool-{self._made}.arrows"
        with open(path, "ab") as out:
            out.write(struct.pack("<Q", len(batch.data)))
            out.write(batch.data)
        rows += batch.rows
        if rows >= LOAD_ROWS:
            self._queue(batch.key).put((batch.key, path, rows))
            self._files.pop(batch.key, None)
        else:
            self._files[batch.key] = (path, rows)

    def finish(self) -> None:
        """Load what is left, wait for the loaders, and raise what they met."""
        for key, (path, rows) in sorted(self._files.items(), key=lambda kv: kv[1][0].name):
            self._queue(key).put((key, path, rows))
        self._files.clear()
        for jobs in self._jobs:
            jobs.put(None)
        for thread in self._threads:
            thread.join()
        if self._failure is not None:
            raise self._failure

    def _load_all(self, jobs: queue.Queue) -> None:
        con = self.store.con.cursor()
        done: list[Path] = []  # loaded in the open transaction
        rows = 0
        try:
            while burst := _burst(jobs):
                if self._failure is not None:
                    continue
                if not done:
                    con.begin()
                for key, path, count in burst:
                    tables = list(_frames(path))
                    self.store.append(key, pa.concat_tables(tables, promote_options="default"), con)
                    done.append(path)
                    rows += count
                if rows >= TRANSACTION_ROWS or len(done) >= TRANSACTION_LOADS:
                    rows = self._commit(con, done)
            if done and self._failure is None:
                self._commit(con, done)
        except BaseException as exc:  # noqa: BLE001 -- reported by finish(), in the parent's thread
            self._failure = exc
            while jobs.get() is not None:
                pass
        finally:
            con.close()

    @staticmethod
    def _commit(con: duckdb.DuckDBPyConnection, done: list[Path]) -> int:
        """Commit the open transaction and remove its spool files; the rows now held (0)."""
        con.commit()
        for path in done:
            path.unlink()
        done.clear()
        return 0


#: A load job: partition, spool file, events in it.
_Job = tuple[tuple[str | None, int | None], Path, int]


def _burst(jobs: queue.Queue) -> list[_Job]:
    """The next load job (waited for) and the ones queued behind it, up to TRANSACTION_LOADS
    loads or TRANSACTION_ROWS events; empty at the end marker (None), which stays queued when
    it comes after some jobs."""
    burst: list[_Job] = []
    rows = 0
    job = jobs.get()
    while job is not None:
        burst.append(job)
        rows += job[2]
        if len(burst) >= TRANSACTION_LOADS or rows >= TRANSACTION_ROWS:
            return burst
        try:
            job = jobs.get_nowait()
        except queue.Empty:
            return burst
    if burst:
        jobs.put(None)
    return burst


def _frames(path: Path) -> Iterator[pa.Table]:
    """The length-prefixed Arrow IPC streams of a spool file, one table each."""
    with open(path, "rb") as handle:
        while header := handle.read(8):
            (size,) = struct.unpack("<Q", header)
            yield pa.ipc.open_stream(handle.read(size)).read_all()


class _StoreSink:
    """Spools readers' events, stores their warnings, and keeps the per-file accounting."""

    def __init__(
        self, store: EventStore, parts: dict[int, int], spool: Spool, hashes: dict[int, Future[str]]
    ) -> None:
        self.store = store
        self.parts = parts  # evidence id -> tasks (file parts) it was read in
        self.spool = spool
        self.hashes = hashes  # evidence id -> sha256 of a file read in parts, computed apart
        self.results: dict[int, list[FileResult]] = {}
        self.events = 0
        self.skipped = 0
        self.warnings = 0
        self._warnings: list[tuple[int, str | None, str, int]] = []

    def batch(self, evidence_id: int, batch: PartitionBatch) -> None:
        self.spool.add(batch)
        self.events += batch.rows

    def finish(self) -> None:
        """Store the remaining warnings and load the spooled events."""
        self.store.add_warnings(self._warnings)
        self._warnings = []
        self.spool.finish()

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
        if evidence_id in self.hashes:
            try:
                digest = self.hashes[evidence_id].result()
            except OSError as exc:
                self.warning(evidence_id, ReadWarning(None, f"cannot be hashed: {exc}"))
        self.store.finish_evidence(
            evidence_id, digest, sum(r.records for r in results), sum(r.skipped for r in results),
            all(r.complete for r in results),
        )


def plan(paths: Iterable[Path], store: EventStore, limits: ArchiveLimits) -> list[Task]:
    """Discover the evidence, list every input in the store (and in the file inventory), and
    return the reading tasks."""
    tasks, files = [], []
    for number, found in enumerate(discover(paths, limits), 1):
        store.add_evidence(number, found.evidence.path, found.reader, found.evidence.size)
        files.append(file_row(number, found.evidence))
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
    store.flush_evidence()
    add_files(store, files)
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
    split = {t.evidence_id: t.evidence for t in tasks if t.part is not None}
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="hash") as hasher:  # while the parts are read
        hashes = {number: hasher.submit(sha256_of, evidence, limits) for number, evidence in split.items()}
        sink = _StoreSink(store, parts, Spool(scratch / "spool", store), hashes)
        if workers > 0:
            WorkerPool(scratch, limits, workers).run(tasks, sink, progress)
        else:
            read_inline(tasks, sink, scratch, limits, progress)
        sink.finish()
    store.flush_evidence()
    fill_hashes(store)
    store.refresh_view()
    return IngestSummary(
        files=len(parts),
        read=len({t.evidence_id for t in tasks if t.reader}),
        events=sink.events,
        skipped=sink.skipped,
        warnings=sink.warnings,
    )

