"""Windows ``.evtx`` files, through the ``evtx`` package (the Rust parser).

The parser raises on a damaged chunk or record part-way through iteration; this reader calls
the iterator again after every error, so it keeps every record that can be recovered (the
parser resumes at the next chunk). To say how many records were lost it reads the chunk
headers itself: each intact header states the range of record ids its chunk holds, and every
id in those ranges that was not delivered is counted as skipped. A chunk whose header is
damaged is reported as such; its record count is unknown.
"""

from __future__ import annotations

import bisect
import re
import struct
from pathlib import Path

import orjson

from varde.sources.base import EvidenceFile, Part, ReadContext
from varde.sources.winevent import as_int, from_evtx_layout

FILE_MAGIC = b"ElfFile\x00"
CHUNK_MAGIC = b"ElfChnk\x00"
HEADER_BYTES = 4096
CHUNK_BYTES = 65536

_CHUNK_ERROR = re.compile(r"chunk (?:number )?(\d+)", re.IGNORECASE)


def chunk_ranges(path: Path) -> tuple[list[tuple[int, int, int]], list[int]]:
    """Record-id ranges ``(chunk, first, last)`` of intact chunk headers, and damaged chunk numbers.

    All-zero chunks (pre-allocated, never written) are neither.
    """
    ranges: list[tuple[int, int, int]] = []
    damaged: list[int] = []
    with open(path, "rb") as handle:
        handle.seek(0, 2)
        size = handle.tell()
        for chunk in range(max(0, -(-(size - HEADER_BYTES) // CHUNK_BYTES))):  # a cut-off last chunk too
            handle.seek(HEADER_BYTES + chunk * CHUNK_BYTES)
            head = handle.read(40)
            if head[:8] == CHUNK_MAGIC:
                first, last = struct.unpack_from("<QQ", head, 24)
                if first <= last and last - first < CHUNK_BYTES:
                    ranges.append((chunk, first, last))
                    continue
            if head.strip(b"\x00"):
                damaged.append(chunk)
    return ranges, damaged


class _Tally:
    """Counts delivered record ids per intact chunk range, in memory proportional to chunks."""

    def __init__(self, ranges: list[tuple[int, int, int]]) -> None:
        self.ranges = sorted(ranges, key=lambda r: r[1])
        self.starts = [r[1] for r in self.ranges]
        self.seen = [0] * len(self.ranges)

    def add(self, record_id: int | None) -> None:
        if record_id is None:
            return
        i = bisect.bisect_right(self.starts, record_id) - 1
        if i >= 0 and record_id <= self.ranges[i][2]:
            self.seen[i] += 1

    def missing(self) -> list[tuple[int, int]]:
        """``(chunk, records missing)`` for every intact chunk that delivered fewer than it lists."""
        out = []
        for (chunk, first, last), seen in zip(self.ranges, self.seen, strict=True):
            lost = (last - first + 1) - seen
            if lost > 0:
                out.append((chunk, lost))
        return out


class EvtxReader:
    """Reads Windows EVTX files with the Rust ``evtx`` parser, recovering past damage."""

    name = "evtx"

    def sniff(self, head: bytes, name: str) -> bool:
        """EVTX files start with the ``ElfFile`` magic, whatever they are called."""
        return head.startswith(FILE_MAGIC)

    def split(self, evidence: EvidenceFile, part_bytes: int) -> list[Part] | None:
        """EVTX files are read whole (the parser walks the chunks itself)."""
        return None

    def read(self, evidence: EvidenceFile, out: ReadContext) -> None:
        """Stream every recoverable record of the file into ``out``."""
        import evtx

        with evidence.local_file(out.scratch, out.limits) as path:
            self._check_size(path, out)
            ranges, damaged = chunk_ranges(path)
            for chunk in damaged:
                out.warn(f"chunk {chunk}", "chunk header is damaged; its records could not be counted")
            tally = _Tally(ranges)
            parser = evtx.PyEvtxParser(str(path), number_of_threads=1)
            records = parser.records_json()
            position = 0
            while True:
                try:
                    record = next(records)
                except StopIteration:
                    break
                except Exception as exc:  # noqa: BLE001 -- the parser reports damage as RuntimeError
                    match = _CHUNK_ERROR.search(str(exc))
                    out.warn(f"chunk {match.group(1)}" if match else None, f"unreadable data: {exc}")
                    continue
                position += 1
                self._add(record, position, tally, out)
            for chunk, lost in tally.missing():
                out.warn(f"chunk {chunk}", f"{lost} record(s) listed in the chunk header were not recovered", lost)

    @staticmethod
    def _check_size(path: Path, out: ReadContext) -> None:
        """Warn when the file is shorter than its header says (a truncated copy)."""
        with open(path, "rb") as handle:
            header = handle.read(HEADER_BYTES)
            size = handle.seek(0, 2)
        if len(header) < 44 or not header.startswith(FILE_MAGIC):
            return
        listed = struct.unpack_from("<H", header, 42)[0]
        present = max(0, size - HEADER_BYTES) / CHUNK_BYTES
        if present < listed:
            out.warn(None, f"file is truncated: its header lists {listed} chunks, {present:.2f} are present")
        elif present != int(present):
            out.warn(f"chunk {int(present)}", "the last chunk is cut off")

    @staticmethod
    def _add(record: dict, position: int, tally: _Tally, out: ReadContext) -> None:
        header_id = as_int(record.get("event_record_id"))
        tally.add(header_id)
        try:
            doc = orjson.loads(record["data"])
            event = from_evtx_layout(doc["Event"])
        except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError) as exc:
            out.warn(f"record {header_id}" if header_id is not None else f"entry {position}",
                     f"record could not be decoded: {exc}", 1)
            return
        # The record's own EventRecordID (what Event Viewer and exports show); an exported log
        # renumbers the record headers, so the header id is only the fallback.
        record_id = event.record_id if event.record_id is not None else header_id
        out.event(
            f"record {record_id}" if record_id is not None else f"entry {position}",
            event.ts_us,
            event.host,
            event.channel,
            event.provider,
            event.event_id,
            record_id,
            event.fields,
        )
