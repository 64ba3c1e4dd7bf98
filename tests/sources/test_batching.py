"""How readers' events are cut into partition batches, and how the spool groups its loads.

Both are about cost, not content: these tests pin down that no event is lost or moved by the
cutting, that a batch is handed on as soon as it is due (so memory stays bounded), and that
loads queued together share a transaction without swallowing the end marker.
"""

from __future__ import annotations

import queue
from pathlib import Path

import pytest

from varde import ingest
from varde.sources.base import PartitionBatch, ReadContext


def _context(tmp_path: Path, batches: list[PartitionBatch], batch: int, pending: int) -> ReadContext:
    def sink(item: object) -> None:
        if isinstance(item, PartitionBatch):
            batches.append(item)

    return ReadContext(1, sink, tmp_path, batch_events=batch, pending_events=pending)


def _add(context: ReadContext, event_id: int, **fields: str) -> None:
    context.event(f"line {context.records + 1}", None, "HOST", "Security", None, event_id, None, fields)


def test_a_full_partition_is_handed_on_alone(tmp_path: Path) -> None:
    batches: list[PartitionBatch] = []
    context = _context(tmp_path, batches, batch=3, pending=100)
    for _ in range(3):
        _add(context, 4624, TargetUserName="alice")
    _add(context, 4625, TargetUserName="bob")
    assert [(b.key, b.rows) for b in batches] == [(("Security", 4624), 3)]
    context.flush()
    assert [(b.key, b.rows) for b in batches[1:]] == [(("Security", 4625), 1)]


def test_the_largest_partitions_are_handed_on_when_enough_events_are_held(tmp_path: Path) -> None:
    batches: list[PartitionBatch] = []
    context = _context(tmp_path, batches, batch=4, pending=6)
    for event_id in (1, 2, 1, 3, 1, 2):
        _add(context, event_id, Data=str(event_id))
    # six held: the largest (1: three events) goes, which leaves half (2: two, 3: one) to grow
    assert [(b.key[1], b.rows) for b in batches] == [(1, 3)]
    context.flush()
    assert sorted((b.key[1], b.rows) for b in batches) == [(1, 3), (2, 2), (3, 1)]


def test_cutting_keeps_every_event_with_its_key_and_fields(tmp_path: Path) -> None:
    batches: list[PartitionBatch] = []
    context = _context(tmp_path, batches, batch=2, pending=3)
    for n in range(11):
        fields = {"A": str(n)} if n % 2 else {"B": str(n), "C": None}
        _add(context, n % 3, **fields)
    context.flush()
    rows = [row for b in batches for row in b.decode().to_pylist()]
    assert sorted(r["key"] & 0xFFFF for r in rows) == list(range(11))
    for row in rows:
        n = row["key"] & 0xFFFF
        assert row["event_id"] == n % 3
        assert row["locator"] == f"line {n + 1}"
        assert (row.get("A"), row.get("B"), row.get("C")) == ((str(n), None, None) if n % 2 else (None, str(n), None))


def _jobs(*rows: int) -> queue.Queue:
    jobs: queue.Queue = queue.Queue()
    for n, count in enumerate(rows):
        jobs.put((("Security", n), Path(f"spool-{n}.arrows"), count))
    jobs.put(None)
    return jobs


def test_a_burst_takes_what_is_queued_up_to_its_limits(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ingest, "TRANSACTION_LOADS", 3)
    monkeypatch.setattr(ingest, "TRANSACTION_ROWS", 100)
    jobs = _jobs(1, 1, 1, 1, 60, 50, 7)
    sizes = []
    while burst := ingest._burst(jobs):
        sizes.append([rows for _, _, rows in burst])
    assert sizes == [[1, 1, 1], [1, 60, 50], [7]]
    assert jobs.empty()


def test_a_burst_ends_at_the_end_marker_and_leaves_it_queued() -> None:
    jobs = _jobs(5)
    assert [rows for _, _, rows in ingest._burst(jobs)] == [5]
    assert ingest._burst(jobs) == []
    assert jobs.empty()
