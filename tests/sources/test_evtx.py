"""The EVTX reader: sniffing, chunk accounting, damaged and truncated files, EVTX inside zips.

Synthetic fixtures are written into ``tmp_path``. Tests that need a real EVTX file copy one from
the shared corpus into ``tmp_path`` at test time (``corpus`` fixture; skipped without ../shared).
"""

from __future__ import annotations

import json
import random
import shutil
import struct
import zipfile
from pathlib import Path

import pytest

from varde.events.store import EventStore
from varde.ingest import ingest, plan
from varde.sources.base import ArchiveLimits
from varde.sources.evtx import CHUNK_MAGIC, FILE_MAGIC, EvtxReader, chunk_ranges

SAMPLES = "evtx-samples/evtx-crate-samples"
#: 26 chunks, 2,261 records, all intact: good for cutting short.
MULTI_CHUNK = f"{SAMPLES}/security_bad_string_cache.evtx"
SMALL = f"{SAMPLES}/new-user-security.evtx"


def read(paths: list[Path], case: Path, workers: int = 0) -> dict:
    """Read ``paths`` into a new store; evidence rows, warnings and events (by evidence path)."""
    limits = ArchiveLimits()
    case.mkdir(parents=True)
    with EventStore(case / "events.duckdb") as store:
        ingest(plan(paths, store, limits), store, case / "tmp", limits, workers=workers)
        cols = ("id", "path", "reader", "sha256", "records", "skipped_records", "complete")
        evidence = {
            r[1]: dict(zip(cols, r, strict=True))
            for r in store.query(f"SELECT {', '.join(cols)} FROM evidence")
        }
        warnings: dict[str, list[tuple]] = {}
        for path, locator, message, skipped in store.query(
            "SELECT v.path, w.locator, w.message, w.skipped FROM read_warnings w "
            "JOIN evidence v ON v.id = w.evidence"
        ):
            warnings.setdefault(path, []).append((locator, message, skipped))
        events: dict[str, list[tuple]] = {}
        for path, *row in store.query(
            "SELECT v.path, e.locator, e.ts, e.host, e.channel, e.provider, e.event_id, e.record_id, "
            "CAST(e.fields AS VARCHAR) FROM events e JOIN evidence v ON v.id = e.evidence ORDER BY e.key"
        ):
            events.setdefault(path, []).append((*row[:-1], json.loads(row[-1])))
    return {"evidence": evidence, "warnings": warnings, "events": events, "scratch": case / "tmp"}


def listed_in_chunk_headers(data: bytes) -> list[int]:
    """Records each complete, intact chunk header of ``data`` lists (parsed here, not by varde)."""
    counts = []
    for offset in range(4096, len(data) - 65536 + 1, 65536):
        if data[offset : offset + 8] == CHUNK_MAGIC:
            first, last = struct.unpack_from("<QQ", data, offset + 24)
            counts.append(last - first + 1)
    return counts


# --- sniffing and chunk accounting (no corpus needed) ----------------------------------------------


@pytest.mark.parametrize(
    ("head", "expected"),
    [
        (FILE_MAGIC + bytes(100), True),
        (FILE_MAGIC, True),
        (b"ElfFile", False),
        (b"ElfChnk\x00" + bytes(100), False),
        (b'{"Event": {}}', False),
        (b"\x00" * 4096, False),
    ],
)
def test_sniff_by_magic_whatever_the_name(head: bytes, expected: bool) -> None:
    assert EvtxReader().sniff(head, "notes.txt") is expected
    assert EvtxReader().sniff(head, "Security.evtx") is expected


def _chunk(first: int, last: int, magic: bytes = CHUNK_MAGIC) -> bytes:
    head = magic + struct.pack("<QQQQ", first, last, first, last)
    return head + bytes(65536 - len(head))


def test_chunk_ranges_intact_empty_and_damaged_chunks(tmp_path: Path) -> None:
    path = tmp_path / "synthetic.evtx"
    garbage = b"\x13\x37" * 32768
    path.write_bytes(
        FILE_MAGIC
        + bytes(4088)
        + _chunk(10, 19)  # 0: intact
        + bytes(65536)  # 1: pre-allocated, never written
        + garbage  # 2: damaged header
        + _chunk(40, 30)  # 3: magic but an impossible range
        + _chunk(50, 50)  # 4: intact, one record
        + _chunk(60, 70)[:1000]  # 5: cut short, header intact: its records count as expected
    )
    ranges, damaged = chunk_ranges(path)
    assert ranges == [(0, 10, 19), (4, 50, 50), (5, 60, 70)]
    assert damaged == [2, 3]


def test_garbage_with_evtx_magic_is_reported_not_fatal(tmp_path: Path) -> None:
    """Damaged EVTX files are read in worker processes next to good evidence; none stops the run."""
    rng = random.Random(1234)
    evidence = tmp_path / "evidence"
    evidence.mkdir()
    (evidence / "1-random.evtx").write_bytes(FILE_MAGIC + rng.randbytes(200_000))
    (evidence / "2-magic-only.evtx").write_bytes(FILE_MAGIC)
    (evidence / "3-chunk-garbage.evtx").write_bytes(
        FILE_MAGIC
        + bytes(4088)
        + CHUNK_MAGIC
        + rng.randbytes(65528)
        + _chunk(1, 5)[:512]
        + rng.randbytes(65024)
    )
    (evidence / "4-random.txt").write_bytes(FILE_MAGIC + rng.randbytes(70_000))
    good = {
        "Event": {
            "System": {"EventID": 1, "Channel": "Security", "EventRecordID": 1},
            "EventData": {"A": "b"},
        }
    }
    (evidence / "5-good.jsonl").write_bytes(json.dumps(good).encode() + b"\n")

    result = read([evidence], tmp_path / "case", workers=2)
    for name in ("1-random.evtx", "2-magic-only.evtx", "3-chunk-garbage.evtx", "4-random.txt"):
        path = str(evidence / name)
        row = result["evidence"][path]
        assert row["reader"] == "evtx", name
        assert row["sha256"] is not None, name
        assert result["warnings"].get(path), f"{name}: damage not reported"
        assert row["records"] == len(result["events"].get(path, [])), name
    assert result["evidence"][str(evidence / "2-magic-only.evtx")]["complete"] is False
    assert result["evidence"][str(evidence / "5-good.jsonl")]["records"] == 1


# --- real EVTX files from the corpus ---------------------------------------------------------------


@pytest.fixture
def multi_chunk(corpus: Path) -> bytes:
    return (corpus / MULTI_CHUNK).read_bytes()


def test_truncated_evtx_keeps_the_intact_chunk(tmp_path: Path, multi_chunk: bytes) -> None:
    path = tmp_path / "evidence" / "truncated.evtx"
    path.parent.mkdir()
    path.write_bytes(multi_chunk[:70_000])
    result = read([path], tmp_path / "case")
    row = result["evidence"][str(path)]
    (first_chunk,) = listed_in_chunk_headers(multi_chunk[:70_000])
    assert row["reader"] == "evtx" and row["sha256"] is not None
    assert row["records"] == first_chunk > 0
    assert [e[0] for e in result["events"][str(path)]][:3] == ["record 1", "record 2", "record 3"]


@pytest.mark.parametrize("size", [70_000, 4096 + 65536 + 30_000], ids=["70000-bytes", "chunk-1-half"])
def test_truncated_evtx_is_reported(tmp_path: Path, multi_chunk: bytes, size: int) -> None:
    path = tmp_path / "evidence" / "truncated.evtx"
    path.parent.mkdir()
    path.write_bytes(multi_chunk[:size])
    result = read([path], tmp_path / "case")
    assert result["warnings"].get(str(path)), "2,000+ records cut off and not a word about it"


def test_evtx_named_txt_is_read_as_evtx(tmp_path: Path, corpus: Path) -> None:
    original = corpus / SMALL
    disguised = tmp_path / "evidence" / "notes.txt"
    disguised.parent.mkdir()
    shutil.copyfile(original, disguised)
    result = read([disguised, original], tmp_path / "case")
    assert result["evidence"][str(disguised)]["reader"] == "evtx"
    assert result["evidence"][str(disguised)]["records"] == result["evidence"][str(original)]["records"] > 0
    assert result["events"][str(disguised)] == result["events"][str(original)]


@pytest.mark.parametrize("workers", [0, 2])
def test_evtx_inside_a_zip_is_read_through_scratch_and_cleaned_up(
    tmp_path: Path, corpus: Path, workers: int
) -> None:
    original = corpus / SMALL
    archive = tmp_path / "evidence" / "triage.zip"
    archive.parent.mkdir()
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zipped:
        zipped.write(original, "C/Windows/System32/winevt/Logs/Security.evtx")
    result = read([archive, original], tmp_path / "case", workers=workers)
    member = f"{archive}!C/Windows/System32/winevt/Logs/Security.evtx"
    assert result["evidence"][member]["reader"] == "evtx"
    assert result["evidence"][member]["sha256"] == result["evidence"][str(original)]["sha256"]
    assert result["events"][member] == result["events"][str(original)]
    assert result["warnings"].get(member) is None
    leftovers = [p for p in result["scratch"].rglob("*") if p.is_file()] if result["scratch"].exists() else []
    assert leftovers == []


def test_worker_processes_read_the_same_as_inline(tmp_path: Path, corpus: Path) -> None:
    files = [corpus / SMALL, corpus / f"{SAMPLES}/sample_with_a_bad_chunk_magic.evtx"]
    inline = read(files, tmp_path / "inline", workers=0)
    pooled = read(files, tmp_path / "pooled", workers=2)
    assert pooled["evidence"] == inline["evidence"]
    assert {k: sorted(v) for k, v in pooled["warnings"].items()} == {
        k: sorted(v) for k, v in inline["warnings"].items()
    }
    assert pooled["events"] == inline["events"]
