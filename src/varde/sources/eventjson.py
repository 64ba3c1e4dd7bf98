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
from typing import Any, BinaryIO

import orjson

from varde.sources.base import EvidenceFile, ReadContext
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
        """A JSON object or array whose first event looks like a Windows event."""
        text = _text_head(head)
        if not text.startswith((b"{", b"[")):
            return False
        first_line = text.split(b"\n", 1)[0].strip()
        try:
            doc = orjson.loads(first_line)
        except orjson.JSONDecodeError:
            return bool(_EVENT_HINT.search(text))
        if isinstance(doc, list):
            doc = doc[0] if doc and isinstance(doc[0], dict) else {}
        return isinstance(doc, dict) and layout_of(doc) is not None

    def read(self, evidence: EvidenceFile, out: ReadContext) -> None:
        """Read line by line; fall back to whole-document parsing for pretty-printed JSON."""
        with evidence.open(out.limits) as handle:
            head = handle.read(4096)
        utf16 = head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE))
        first_line = _text_head(head).split(b"\n", 1)[0].strip()
        try:
            orjson.loads(first_line)
            line_mode = True
        except orjson.JSONDecodeError:
            line_mode = False
        if line_mode:
            self._read_lines(evidence, out, utf16)
        else:
            self._read_document(evidence, out, utf16)

    def _read_lines(self, evidence: EvidenceFile, out: ReadContext, utf16: bool) -> None:
        with evidence.open(out.limits) as handle:
            overlong = False
            number = 0
            for line in _utf8_lines(handle, utf16):
                if overlong:  # the rest of a line already reported
                    overlong = len(line) > MAX_LINE_BYTES or not line.endswith(b"\n")
                    continue
                number += 1
                if len(line) > MAX_LINE_BYTES:
                    out.warn(f"line {number}", f"line longer than {MAX_LINE_BYTES} bytes skipped", 1)
                    overlong = True
                    continue
                line = line.strip()
                if line:
                    self._add_line(line, f"line {number}", out)

    def _add_line(self, line: bytes, locator: str, out: ReadContext) -> None:
        try:
            doc = orjson.loads(line)
        except orjson.JSONDecodeError:
            try:
                doc = orjson.loads(line.decode("utf-8", errors="replace"))
            except orjson.JSONDecodeError as exc:
                out.warn(locator, f"not valid JSON: {exc}", 1)
                return
            out.warn(locator, "invalid UTF-8 replaced with U+FFFD")
        self._add_doc(doc, locator, out)

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
            if isinstance(doc, list):
                for number, item in enumerate(doc, 1):
                    self._add_doc(item, f"line {line} item {number}", out)
            else:
                self._add_doc(doc, f"line {line}", out)

    @staticmethod
    def _add_doc(doc: Any, locator: str, out: ReadContext) -> None:
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
            orjson.dumps(event.fields).decode(),
        )
