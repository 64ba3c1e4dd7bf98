"""Run readers over discovered evidence in worker processes, and hand their output to a sink.

Why processes: the EVTX parser is native code that has been seen to loop forever or abort the
whole process on crafted files, and one evidence file must never take the hunt down with it.
Each worker reads one file at a time under a memory cap; the parent watches it, and if it dies
or stops making progress the file is reported (with what it had delivered kept) and a new worker
takes the next file. Two workers also keep both cores busy while the parent stores batches.

Batches cross the process boundary as Arrow IPC; their event keys are deterministic, so the
order in which workers finish does not change the case.
"""

from __future__ import annotations

import hashlib
import logging
import multiprocessing
import resource
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Protocol

from varde.sources.base import ArchiveLimits, EvidenceFile, Part, PartitionBatch, ReadContext, ReadWarning

logger = logging.getLogger(__name__)

#: Address-space cap of a worker: far above what a streaming reader needs, far below the machine.
WORKER_MEMORY_BYTES = 6 << 30
#: A worker that sends nothing for this long is taken to hang, and is stopped.
STALL_SECONDS = 600.0


@dataclass(frozen=True)
class Task:
    """Read (or, with ``reader`` None, only hash) one evidence file, or one part of it."""

    evidence_id: int
    evidence: EvidenceFile
    reader: str | None
    part: Part | None = None

    @property
    def size(self) -> int:
        """Bytes this task reads."""
        return self.part.end - self.part.start if self.part else self.evidence.size


@dataclass(frozen=True)
class FileResult:
    """What reading one file gave: its hash and its record accounting."""

    sha256: str | None
    records: int
    skipped: int
    complete: bool


class IngestSink(Protocol):
    """Receives everything the readers produce, in the parent process."""

    def batch(self, evidence_id: int, batch: PartitionBatch) -> None: ...

    def warning(self, evidence_id: int, warning: ReadWarning) -> None: ...

    def done(self, evidence_id: int, result: FileResult) -> None: ...


def sha256_of(evidence: EvidenceFile, limits: ArchiveLimits) -> str:
    """SHA-256 of the evidence content (archive members are hashed as decompressed)."""
    with evidence.open(limits) as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def read_one(task: Task, send: Callable[[tuple], None], scratch: Path, limits: ArchiveLimits) -> None:
    """Hash and read one file, sending ('batch'|'warn'|'done', ...) messages through ``send``."""
    from varde.sources import reader_named

    def sink(item: PartitionBatch | ReadWarning) -> None:
        if isinstance(item, ReadWarning):
            send(("warn", item.locator, item.message, item.skipped))
        else:
            send(("batch", item))

    ctx = ReadContext(task.evidence_id, sink, scratch, limits, part=task.part)
    complete = True
    try:  # a file read in parts is hashed by the parent (see varde.ingest), not by each part
        digest = sha256_of(task.evidence, limits) if task.part is None else None
    except Exception as exc:  # noqa: BLE001 -- unreadable input is reported, never fatal
        send(("warn", None, f"cannot be read: {exc}", 0))
        send(("done", None, 0, 0, False))
        return
    if task.reader is not None:
        try:
            reader_named(task.reader).read(task.evidence, ctx)
        except Exception as exc:  # a reader bug must not lose the rest of the evidence
            logger.debug("reader %s failed on %s", task.reader, task.evidence.path, exc_info=exc)
            ctx.flush()
            ctx.warn(None, f"reading stopped early: {type(exc).__name__}: {exc}")
            complete = False
        ctx.flush()
    send(("done", digest, ctx.records, ctx.skipped, complete))


def _serve(conn: Connection, scratch: Path, limits: ArchiveLimits, memory: int) -> None:
    """Worker main loop: take tasks until told to stop (None)."""
    try:
        resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    except (ValueError, OSError):  # a lower hard limit is already in force
        pass
    while True:
        task = conn.recv()
        if task is None:
            return
        read_one(task, conn.send, scratch, limits)


@dataclass
class _Worker:
    process: multiprocessing.process.BaseProcess
    conn: Connection
    task: Task | None = None
    last_seen: float = 0.0
    records: int = 0


class WorkerPool:
    """A few reader processes and the loop that feeds them tasks and drains their messages."""

    def __init__(self, scratch: Path, limits: ArchiveLimits, workers: int, stall: float = STALL_SECONDS) -> None:
        self._ctx = multiprocessing.get_context("forkserver")
        self._scratch = scratch
        self._limits = limits
        self._size = max(1, workers)
        self._stall = stall
        self._workers: list[_Worker] = []

    def _start(self) -> _Worker:
        parent, child = self._ctx.Pipe()
        process = self._ctx.Process(
            target=_serve, args=(child, self._scratch, self._limits, WORKER_MEMORY_BYTES), daemon=True
        )
        process.start()
        child.close()
        return _Worker(process, parent)

    def run(self, tasks: list[Task], sink: IngestSink, progress: Callable[[Task], None] | None = None) -> None:
        """Read every task; returns when all are done, failed or timed out."""
        queue = deque(sorted(tasks, key=lambda t: -t.size))  # big ones first: even load
        self._workers = [self._start() for _ in range(min(self._size, len(queue)))]
        try:
            while queue or any(w.task for w in self._workers):
                for worker in self._workers:
                    if worker.task is None and queue:
                        worker.task, worker.last_seen, worker.records = queue.popleft(), time.monotonic(), 0
                        worker.conn.send(worker.task)
                busy = [w for w in self._workers if w.task]
                ready = wait([w.conn for w in busy], timeout=1.0)
                for worker in busy:
                    if worker.conn in ready:
                        self._drain(worker, sink, progress)
                    elif time.monotonic() - worker.last_seen > self._stall:
                        self._lost(worker, sink, f"no progress for {self._stall:.0f} s; reading stopped", progress)
        finally:
            for worker in self._workers:
                self._stop(worker)

    def _drain(self, worker: _Worker, sink: IngestSink, progress: Callable[[Task], None] | None) -> None:
        task = worker.task
        assert task is not None
        while worker.conn.poll():
            try:
                message = worker.conn.recv()
            except (EOFError, OSError):
                code = worker.process.exitcode
                self._lost(worker, sink, f"reader process ended unexpectedly (exit code {code})", progress)
                return
            worker.last_seen = time.monotonic()
            kind = message[0]
            if kind == "batch":
                worker.records += message[1].rows
                sink.batch(task.evidence_id, message[1])
            elif kind == "warn":
                sink.warning(task.evidence_id, ReadWarning(message[1], message[2], message[3]))
            else:
                _, digest, records, skipped, complete = message
                sink.done(task.evidence_id, FileResult(digest, records, skipped, complete))
                worker.task = None
                if progress:
                    progress(task)
                return

    def _lost(self, worker: _Worker, sink: IngestSink, why: str, progress: Callable[[Task], None] | None) -> None:
        """The worker died or hung: report it, keep what it delivered, replace the worker."""
        task = worker.task
        assert task is not None
        logger.warning("%s: %s", task.evidence.path, why)
        sink.warning(task.evidence_id, ReadWarning(None, f"{why} after {worker.records} records"))
        sink.done(task.evidence_id, FileResult(None, worker.records, 0, False))
        self._stop(worker)
        replacement = self._start()
        worker.process, worker.conn, worker.task = replacement.process, replacement.conn, None
        if progress:
            progress(task)

    @staticmethod
    def _stop(worker: _Worker) -> None:
        try:
            if worker.process.is_alive() and worker.task is None:
                worker.conn.send(None)
                worker.process.join(timeout=5)
        except (OSError, BrokenPipeError):
            pass
        if worker.process.is_alive():
            worker.process.kill()
            worker.process.join(timeout=5)
        worker.conn.close()


def read_inline(tasks: list[Task], sink: IngestSink, scratch: Path, limits: ArchiveLimits,
                progress: Callable[[Task], None] | None = None) -> None:
    """Read every task in this process (no isolation): for tests and single-file debugging."""
    for task in tasks:
        records = 0

        def send(message: tuple, task: Task = task) -> None:
            nonlocal records
            if message[0] == "batch":
                records += message[1].rows
                sink.batch(task.evidence_id, message[1])
            elif message[0] == "warn":
                sink.warning(task.evidence_id, ReadWarning(message[1], message[2], message[3]))
            else:
                _, digest, n, skipped, complete = message
                sink.done(task.evidence_id, FileResult(digest, n, skipped, complete))

        read_one(task, send, scratch, limits)
        if progress:
            progress(task)
