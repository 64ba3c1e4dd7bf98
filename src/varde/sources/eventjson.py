"""Windows events exported as JSON: JSON lines, or one JSON document (object or array).

Accepts the ``evtx`` crate's layout, Winlogbeat and flattened NXLog/OTRF events, line by line
(each line may use another layout). Text in UTF-8 (with or without BOM) or UTF-16 with BOM, as
PowerShell writes it. A line that is not valid JSON, not a Windows event, or over the line limit
is skipped and reported with its line number; invalid UTF-8 is replaced and reported, and the
event is kept.
"""

from __future__ import annotations

import codecs
import io
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

import orjson

from varde.sources.base import EvidenceFile, Part, ReadContext
from varde.sources.winevent import layout_of, normalise

#: Longest line read as an event; longer ones are skipped (with a warning), not loaded.
MAX_LINE_BYTES = 64 << 20
#: Largest file parsed as one JSON document (pretty-printed object or array).
MAX_DOCUMENT_BYTES = 512 << 20

_EVENT_HINT = re.compile(rb'"(?:Event|winlog|EventID|EventId)"\s*:')


def _text_head(head: bytes) -> bytes:
    """The head as UTF-8 bytes without BOM and leading white space."""
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        head = head.decode("utf-16", errors="ignore").encode()
    return head.removeprefix(codecs.BOM_UTF8).lstrip()


def _pretty_printed(text: bytes) -> bool:
    """Whether the text opens a pretty-printed JSON document: the first line holds only the
    opening bracket (JSON lines, even a truncated first line, hold more)."""
    return text.split(b"\n", 1)[0].strip() in (b"{", b"[")


def _utf8_lines(handle: BinaryIO, utf16: bool) -> Iterator[bytes]:
    """Lines of the stream as UTF-8 bytes, each at most MAX_LINE_BYTES (+1 marks an overlong one)."""
    if utf16:
        text = io.TextIOWrapper(handle, encoding="utf-16", errors="replace", newline=None)
        for line in iter(lambda: text.readline(MAX_LINE_BYTES + 1), ""):
            yield line.encode()
        return
    first = True
    for line in iter(lambda: handle.readline(MAX_LINE_BYTES + 1), b""):
        if first:
            line = line.removeprefix(codecs.BOM_UTF8)
            first = False
        yield line


def _lines_until(handle: BinaryIO, end: int) -> Iterator[bytes]:
    """Lines (at most MAX_LINE_BYTES + 1 bytes each) that start before byte ``end``."""
    position = handle.tell()
    while position < end:
        line = handle.readline(MAX_LINE_BYTES + 1)
        if not line:
            return
        position += len(line)
        yield line


def line_parts(path: Path, size: int, part_bytes: int) -> list[Part]:
    """Split a file into parts of about ``part_bytes`` that start at line starts, with the
    number of each part's first line (one pass over the file, counting newlines)."""
    parts: list[Part] = []
    start, line = 0, 1
    with open(path, "rb") as handle:
        while start < size:
            target = min(start + part_bytes, size)
            handle.seek(target)
            if target < size:
                handle.readline()  # to the start of the next line
            end = min(handle.tell(), size)
            parts.append(Part(start, end, line))
            handle.seek(start)
            remaining = end - start
            while remaining > 0:
                block = handle.read(min(remaining, 1 << 24))
                if not block:
                    break
                line += block.count(b"\n")
                remaining -= len(block)
            start = end
    return parts


def _documents(text: str, out: ReadContext) -> Iterator[tuple[int, Any]]:
    """Successive JSON values in ``text`` with the line each starts on; stops at bad JSON."""
    decoder = json.JSONDecoder()
    position, line, length = 0, 1, len(text)
    while True:
        start = position
        while position < length and text[position] in " \t\r\n":
            position += 1
        line += text.count("\n", start, position)
        if position >= length:
            return
        try:
            doc, end = decoder.raw_decode(text, position)
        except json.JSONDecodeError as exc:
            rest = text.count("\n", position) + 1
            out.warn(f"line {line}", f"not valid JSON, the remaining {rest} lines are not read: {exc.msg}", 1)
            return
        yield line, doc
        line += text.count("\n", position, end)
        position = end


class EventJsonReader:
    """Reads Windows events exported as JSON lines or as one JSON document."""

    name = "event-json"

    def sniff(self, head: bytes, name: str) -> bool:
        """Some line of the head is a Windows event in JSON (junk lines before it are
        tolerated), or the head opens a pretty-printed document with Windows event keys."""
        text = _text_head(head)
        if _pretty_printed(text):
            return bool(_EVENT_HINT.search(text))
        for line in text.split(b"\n"):
            line = line.strip()
            if not line.startswith((b"{", b"[")):
                continue
            try:
                doc = orjson.loads(line)
            except orjson.JSONDecodeError:
                continue
            if isinstance(doc, list):
                doc = doc[0] if doc and isinstance(doc[0], dict) else {}
            if isinstance(doc, dict) and layout_of(doc) is not None:
                return True
        return False

    def split(self, evidence: EvidenceFile, part_bytes: int) -> list[Part] | None:
        """JSON lines files on disk over ``part_bytes`` split at line starts, for parallel reading."""
        if evidence.members or evidence.size <= part_bytes:
            return None
        with evidence.open() as handle:
            head = handle.read(4096)
        if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)) or _pretty_printed(_text_head(head)):
            return None
        return line_parts(evidence.disk_path, evidence.size, part_bytes)

    def read(self, evidence: EvidenceFile, out: ReadContext) -> None:
        """Read line by line; fall back to whole-document parsing for pretty-printed JSON."""
        if out.part is not None:
            self._read_lines(evidence, out, utf16=False)
            return
        with evidence.open(out.limits) as handle:
            head = handle.read(4096)
        utf16 = head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE))
        if _pretty_printed(_text_head(head)):
            self._read_document(evidence, out, utf16)
        else:
            self._read_lines(evidence, out, utf16)

    def _read_lines(self, evidence: EvidenceFile, out: ReadContext, utf16: bool) -> None:
        part = out.part
        with evidence.open(out.limits) as handle:
            overlong = False
            number = 0
            lines = _utf8_lines(handle, utf16)
            if part is not None:
                handle.seek(part.start)
                number = part.first_line - 1
                lines = _lines_until(handle, part.end)
            for line in lines:
                if overlong:  # the rest of a line already reported
                    overlong = not line.endswith(b"\n")
                    continue
                number += 1
                if len(line) > MAX_LINE_BYTES and not line.endswith(b"\n"):
                    out.warn(f"line {number}", f"line longer than {MAX_LINE_BYTES} bytes skipped", 1)
                    overlong = True
                    continue
                line = line.strip()
                if line:
                    self._add_line(line, number, out)

    def _add_line(self, line: bytes, number: int, out: ReadContext) -> None:
        locator = f"line {number}"
        try:
            doc = orjson.loads(line)
        except orjson.JSONDecodeError:
            try:
                doc = orjson.loads(line.decode("utf-8", errors="replace"))
            except orjson.JSONDecodeError as exc:
                out.warn(locator, f"not valid JSON: {exc}", 1)
                return
            out.warn(locator, "invalid UTF-8 replaced with U+FFFD")
        self._add_doc(doc, locator, out, number - 1)

    def _read_document(self, evidence: EvidenceFile, out: ReadContext, utf16: bool) -> None:
        """Pretty-printed JSON: one object, one array, or several objects one after another
        (what ``evtx_dump -o json`` writes). Each event's locator is the line it starts on."""
        if evidence.size > MAX_DOCUMENT_BYTES:
            out.warn(None, f"a pretty-printed JSON file over {MAX_DOCUMENT_BYTES} bytes is not read")
            return
        with evidence.open(out.limits) as handle:
            data = handle.read(MAX_DOCUMENT_BYTES + 1)
        text = data.decode("utf-16" if utf16 else "utf-8-sig", errors="replace")
        if "\ufffd" in text and not utf16:
            out.warn(None, "invalid UTF-8 replaced with U+FFFD")
        for line, doc in _documents(text, out):
            self._add_doc(doc, f"line {line}", out)

    @staticmethod
    def _add_doc(doc: Any, locator: str, out: ReadContext, position: int | None = None) -> None:
        if isinstance(doc, list):  # a JSON array on one line: each item is an event
            for number, item in enumerate(doc, 1):
                EventJsonReader._add_doc(item, f"{locator} item {number}", out)
            return
        layout = layout_of(doc) if isinstance(doc, dict) else None
        if layout is None:
            out.warn(locator, "not a Windows event in a known JSON layout", 1)
            return
        event = normalise(doc, layout)
        out.event(
            locator,
            event.ts_us,
            event.host,
            event.channel,
            event.provider,
            event.event_id,
            event.record_id,
            event.fields,
            position,
        )
