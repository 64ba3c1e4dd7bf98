"""Line-oriented text logs with directive headers, read in blocks straight into Arrow tables.

IIS W3C logs and Exchange's own CSV logs share one shape: ``#Name: value`` directive lines, of
which ``#Fields:`` names the columns of the data lines that follow it (until the next
``#Fields:``), and one record per line. Parsing them line by line in Python runs at a few tens of
MB/s; these logs reach gigabytes a day, so this module cuts a file into blocks of whole lines,
classifies every line of a block at once with numpy (directive, blank, overlong, unbalanced
quotes), and hands each run of data lines under one header to ``pyarrow.csv`` in one call.

Every row keeps the 0-based index of its line in the file (its event position), so event keys
are stable however the file is cut into blocks or parts. What cannot be read is a warning with
its line number: a line with the wrong number of columns, unbalanced quotes or over
:data:`MAX_LINE_BYTES` is skipped and counted; invalid UTF-8 is replaced (U+FFFD), reported, and
the line kept. A quoted value that spans lines is not supported (Exchange writes one record per
line); its lines are reported as unbalanced.
"""

from __future__ import annotations

import codecs
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import BinaryIO

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from varde.sources.base import EvidenceFile, Part, ReadContext
from varde.sources.eventjson import line_parts

#: Longest line read; longer ones are skipped with a warning (no IIS or Exchange line is near it).
MAX_LINE_BYTES = 1 << 20
#: Bytes read per block: enough to amortise the per-call cost; 2 MiB read faster than 8 MiB (cache)
#: with half the memory (measured on HttpProxy logs).
BLOCK_BYTES = 2 << 20
#: Rows handed on at once, at most (plus one block's): see :func:`_coalesced`.
SEGMENT_ROWS = 16_384
#: Warnings of one kind given line by line per file; beyond that they are summed up at the end.
MAX_LINE_WARNINGS = 200
#: Most columns a ``#Fields`` header may name (real logs have under 100; a hostile header with
#: thousands would make as many store columns): a longer header is ignored, with a warning.
MAX_FIELDS = 1000


@dataclass(frozen=True)
class Dialect:
    """How the data lines are written: the delimiter, whether ``"`` quotes values, and the field
    names assumed for lines before any ``#Fields`` header (None: such lines cannot be read)."""

    delimiter: str
    quoted: bool
    default_fields: tuple[str, ...] | None = None


@dataclass
class Header:
    """The directive block in force: the latest value of each directive, and the field names."""

    directives: dict[str, str] = field(default_factory=dict)
    fields: tuple[str, ...] | None = None

    def apply(self, text: str) -> None:
        """Take one directive line (``#Name: value``); ``#Fields`` replaces the field names."""
        name, _, value = text[1:].partition(":")
        name, value = name.strip(), value.strip()
        if not name:
            return  # a comment line such as "# note"
        if name.lower() == "fields":
            self.fields = unique_names(value.replace(",", " ").split()) if value else None
        self.directives[name] = value

    def changes(self, before: Header) -> bool:
        """Whether rows read under this header differ from rows read under ``before``: other
        fields, another log type, another date (for logs with ``time`` but no ``date``)."""
        return self.fields != before.fields or any(
            self.directives.get(name) != before.directives.get(name) for name in ("Log-type", "Date"))

    def copy(self) -> Header:
        """A snapshot (a segment keeps the header it was read under; later directives change this one)."""
        return Header(dict(self.directives), self.fields)


def unique_names(names: list[str]) -> tuple[str, ...]:
    """Field names made unique: a repeated name gets ``~2``, ``~3``... (a header is input too)."""
    seen: dict[str, int] = {}
    out = []
    for name in names:
        count = seen[name] = seen.get(name, 0) + 1
        out.append(name if count == 1 else f"{name}~{count}")
    return tuple(out)


@dataclass(frozen=True)
class Segment:
    """Rows of consecutive data lines under one header: all columns text, as logged."""

    header: Header
    table: pa.Table  # no columns when there was no header and no default
    lines: np.ndarray  # 0-based line index of each row
    defaulted: bool = False  # read with the dialect's default fields (no header)


class LineWarnings:
    """Per-line warnings for one file, capped per message kind so a hostile file cannot flood the
    case; the lines beyond the cap are still counted and summed up by :meth:`close`."""

    def __init__(self, out: ReadContext) -> None:
        self.out = out
        self._given: dict[str, int] = {}
        self._over: dict[str, list[int]] = {}  # kind -> [lines, skipped]

    def line(self, index: int, kind: str, skipped: int = 1, detail: str = "") -> None:
        """Warn about the line at 0-based ``index``; ``kind`` is the message without details."""
        given = self._given.get(kind, 0)
        if given < MAX_LINE_WARNINGS:
            self._given[kind] = given + 1
            self.out.warn(f"line {index + 1}", kind + detail, skipped)
            return
        over = self._over.setdefault(kind, [0, 0])
        over[0] += 1
        over[1] += skipped

    def close(self) -> None:
        for kind, (lines, skipped) in sorted(self._over.items()):
            self.out.warn(None, f"{lines} more lines: {kind}", skipped)
        self._over.clear()


def split_lines(evidence: EvidenceFile, part_bytes: int) -> list[Part] | None:
    """Parts of a plain file over ``part_bytes``, cut at line starts (each part finds the header in
    force by itself: :func:`header_before`); None for smaller files and archive members."""
    if evidence.members or evidence.size <= part_bytes:
        return None
    return line_parts(evidence.disk_path, evidence.size, part_bytes)


def read_segments(evidence: EvidenceFile, out: ReadContext, dialect: Dialect,
                  warnings: LineWarnings) -> Iterator[Segment]:
    """The data of ``evidence`` (or of the part ``out.part``) as segments, in file order."""
    part = out.part
    with evidence.open(out.limits) as handle:
        if part is None:
            header, first, limit = Header(), 0, None
            bom = handle.read(3)
            if bom != codecs.BOM_UTF8:
                handle.seek(0)
        else:
            header = header_before(handle, part.start)
            handle.seek(part.start)
            first, limit = part.first_line - 1, part.end - part.start
        blocks = _blocks(handle, limit, first, warnings)
        yield from _coalesced(s for block, line in blocks for s in _block_segments(block, line, header, dialect, warnings))


def _coalesced(segments: Iterator[Segment]) -> Iterator[Segment]:
    """Consecutive segments read under the same header joined, up to SEGMENT_ROWS rows: blocks are
    parsed small (cache-friendly), but the store pays per batch, so events are handed on in
    large batches."""
    pending: list[Segment] = []
    for segment in segments:
        if pending and (segment.header.changes(pending[0].header) or segment.defaulted != pending[0].defaulted
                        or segment.table.schema != pending[0].table.schema
                        or sum(s.table.num_rows for s in pending) >= SEGMENT_ROWS):
            yield _joined(pending)
            pending = []
        pending.append(segment)
    if pending:
        yield _joined(pending)


def _joined(segments: list[Segment]) -> Segment:
    if len(segments) == 1:
        return segments[0]
    table = pa.concat_tables([s.table for s in segments]).combine_chunks()
    first = segments[0]
    return Segment(first.header, table, np.concatenate([s.lines for s in segments]), first.defaulted)


def header_before(handle: BinaryIO, offset: int) -> Header:
    """The directive block in force at byte ``offset``: the last ``#Fields`` line before it and
    the directive lines just above it (found by scanning backwards, for a file read in parts)."""
    found, position, overlap = None, offset, b""
    while position > 0 and found is None:
        start = max(0, position - (1 << 20))
        handle.seek(start)
        data = handle.read(position - start) + overlap
        at = data.rfind(b"\n#Fields:")
        if at >= 0:
            found = start + at + 1
        elif start == 0 and data.removeprefix(codecs.BOM_UTF8).startswith(b"#Fields:"):
            found = len(data) - len(data.removeprefix(codecs.BOM_UTF8))
        position, overlap = start, data[:16]
    header = Header()
    if found is None:
        return header
    window = max(0, found - (1 << 16))
    handle.seek(window)
    above = handle.read(found - window).split(b"\n")[1 if window else 0:-1]
    directives = []
    for line in reversed(above):
        if not line.removeprefix(codecs.BOM_UTF8).startswith(b"#"):
            break
        directives.insert(0, line)
    handle.seek(found)
    directives.append(handle.readline(MAX_LINE_BYTES))
    for line in directives:
        header.apply(line.decode("utf-8", errors="replace").strip().lstrip("\ufeff"))
    if header.fields is not None and len(header.fields) > MAX_FIELDS:
        header.fields = None  # as when read from the start (reported there)
    return header


def _blocks(handle: BinaryIO, limit: int | None, first: int,
            warnings: LineWarnings) -> Iterator[tuple[bytes, int]]:
    """Blocks of whole lines (the last one may lack its newline) with the index of their first
    line; a line over MAX_LINE_BYTES that has no newline within reach is skipped here."""
    carry, line, skipping = b"", first, False
    remaining = limit if limit is not None else -1
    while True:
        size = BLOCK_BYTES if remaining < 0 else min(BLOCK_BYTES, remaining)
        chunk = handle.read(size) if size else b""
        if remaining >= 0:
            remaining -= len(chunk)
        if not chunk:
            if carry and not skipping:
                yield carry, line
            return
        if skipping:  # the rest of an overlong line
            end = chunk.find(b"\n")
            if end < 0:
                continue
            chunk, skipping, line = chunk[end + 1:], False, line + 1
        data = carry + chunk
        cut = data.rfind(b"\n")
        if cut < 0:
            if len(data) > MAX_LINE_BYTES:
                warnings.line(line, f"line longer than {MAX_LINE_BYTES} bytes skipped")
                carry, skipping = b"", True
            else:
                carry = data
            continue
        block, carry = data[: cut + 1], data[cut + 1:]
        yield block, line
        line += block.count(b"\n")


def _line_bounds(block: bytes) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Start and end (the newline's offset, or the block's length) of each line, and the bytes."""
    raw = np.frombuffer(block, dtype=np.uint8)
    ends = np.flatnonzero(raw == 10)
    if not block.endswith(b"\n"):
        ends = np.append(ends, len(block))
    starts = np.empty_like(ends)
    starts[0] = 0
    starts[1:] = ends[:-1] + 1
    return starts, ends, raw


def _repair_utf8(block: bytes, first: int, warnings: LineWarnings) -> bytes:
    """The block with each line that is not valid UTF-8 decoded with replacement (and reported)."""
    if block.isascii():
        return block
    try:
        block.decode("utf-8")
        return block
    except UnicodeDecodeError:
        pass
    lines = block.split(b"\n")
    for number, line in enumerate(lines):
        try:
            line.decode("utf-8")
        except UnicodeDecodeError as exc:
            lines[number] = line.decode("utf-8", errors="replace").encode()
            warnings.line(first + number, "invalid UTF-8 replaced with U+FFFD", 0, f" (byte {exc.start + 1})")
    return b"\n".join(lines)


def _block_segments(block: bytes, first: int, header: Header, dialect: Dialect,
                    warnings: LineWarnings) -> Iterator[Segment]:
    """Segments of one block: split at directive lines, bad lines left out (and reported)."""
    block = _repair_utf8(block, first, warnings)
    starts, ends, raw = _line_bounds(block)
    lengths = ends - starts
    content = lengths - (raw[np.maximum(ends - 1, 0)] == 13) * (lengths > 0)
    blank = content <= 0
    lead = raw[np.minimum(starts, len(raw) - 1)]
    directive = ~blank & (lead == 35)
    drop = blank | directive
    overlong = lengths > MAX_LINE_BYTES
    for index in np.flatnonzero(overlong & ~drop):
        warnings.line(first + int(index), f"line longer than {MAX_LINE_BYTES} bytes skipped")
    drop |= overlong
    if dialect.quoted:
        drop |= _unbalanced(raw, ends, drop, first, warnings)
    low = 0
    for cut in [int(i) for i in np.flatnonzero(directive)]:
        text = block[starts[cut]: ends[cut]].decode("utf-8", errors="replace").strip()
        after = header.copy()
        after.apply(text)
        if after.fields is not None and len(after.fields) > MAX_FIELDS:
            warnings.line(first + cut, f"#Fields header with more than {MAX_FIELDS} names ignored", 0)
            after.fields = None
        if not after.changes(header):  # a comment, or the same header again: no need to cut here
            header.directives = after.directives
            continue
        if cut > low:
            segment = _segment(block, starts, ends, drop, low, cut, first, header, dialect, warnings)
            if segment is not None:
                yield segment
        header.directives, header.fields, low = after.directives, after.fields, cut + 1
    segment = _segment(block, starts, ends, drop, low, len(starts), first, header, dialect, warnings)
    if segment is not None:
        yield segment


def _unbalanced(raw: np.ndarray, ends: np.ndarray, drop: np.ndarray, first: int,
                warnings: LineWarnings) -> np.ndarray:
    """Lines with an odd number of ``"``: their quoting is broken, so they are skipped."""
    quotes = np.flatnonzero(raw == 34)
    odd = np.zeros(len(ends), dtype=bool)
    if quotes.size:
        odd = (np.bincount(np.searchsorted(ends, quotes), minlength=len(ends))[: len(ends)] & 1).astype(bool)
        odd &= ~drop
        for index in np.flatnonzero(odd):
            warnings.line(first + int(index), "unbalanced double quotes; line skipped")
    return odd


def _segment(block: bytes, starts: np.ndarray, ends: np.ndarray, drop: np.ndarray, low: int, high: int,
             first: int, header: Header, dialect: Dialect, warnings: LineWarnings) -> Segment | None:
    """Parse the kept lines of ``[low, high)`` under ``header``."""
    keep = ~drop[low:high]
    indices = np.flatnonzero(keep) + low
    if not indices.size:
        return None
    fields = header.fields or dialect.default_fields
    if fields is None:
        return Segment(header.copy(), pa.table({}), indices + first)
    if keep.all():
        data = block[starts[low]: ends[high - 1] + 1]
    else:  # runs of kept lines
        edges = np.flatnonzero(np.diff(np.concatenate(([0], keep.astype(np.int8), [0]))))
        data = b"".join(block[starts[low + a]: ends[low + b - 1] + 1] for a, b in zip(edges[::2], edges[1::2]))
    table, bad = parse_lines(data, fields, dialect)
    lines = indices + first
    if bad:
        for number, columns in bad:
            warnings.line(int(lines[number - 1]), "wrong number of columns; line skipped",
                          1, f" ({columns}, the fields are {len(fields)})")
        lines = np.delete(lines, [number - 1 for number, _ in bad])
    if table.num_rows != len(lines):  # cannot happen unless pyarrow changes how it counts rows
        raise ValueError(f"{table.num_rows} rows parsed from {len(lines)} lines")
    return Segment(header.copy(), table, lines, header.fields is None)


def parse_lines(data: bytes, fields: tuple[str, ...], dialect: Dialect) -> tuple[pa.Table, list[tuple[int, int]]]:
    """Rows of ``data`` (whole lines, no blanks) as text columns named ``fields``, and the lines
    (1-based within ``data``, with their column count) that had the wrong number of columns."""
    bad: list[tuple[int, int]] = []

    def invalid(row: pacsv.InvalidRow) -> str:
        bad.append((row.number, row.actual_columns))
        return "skip"

    if not data.endswith(b"\n"):
        data += b"\n"
    table = pacsv.read_csv(
        pa.BufferReader(data),
        read_options=pacsv.ReadOptions(column_names=list(fields), use_threads=False,
                                       block_size=max(len(data) + 1, 1 << 16)),
        parse_options=pacsv.ParseOptions(
            delimiter=dialect.delimiter, quote_char='"' if dialect.quoted else False, double_quote=True,
            escape_char=False, newlines_in_values=False, ignore_empty_lines=True, invalid_row_handler=invalid,
        ),
        convert_options=pacsv.ConvertOptions(
            column_types={name: pa.string() for name in fields}, strings_can_be_null=False,
            quoted_strings_can_be_null=False, check_utf8=False,  # the block was checked (and repaired) before
        ),
    )
    return table, bad
